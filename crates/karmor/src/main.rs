//! `karmor`: the kubearmor-rs command-line client. Argument parsing lives in `cli`, each
//! command in its own module; this file only dispatches and turns errors into exit codes.

mod cli;
mod validate;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, PolicyCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Policy {
            command: PolicyCommand::Validate(args),
        } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let result = validate::run(&args.paths, &mut out).and_then(|ok| {
                out.flush()?;
                Ok(ok)
            });
            match result {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => fail(&anyhow::Error::from(e)),
            }
        }
        _ => fail(&anyhow::anyhow!("not implemented yet")),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("karmor: {e:#}");
    ExitCode::FAILURE
}
