//! `karmor`: the kubearmor-rs command-line client. Argument parsing lives in `cli`, each
//! command in its own module; this file only dispatches and turns errors into exit codes.
//!
//! Exit status: 0 on success, 1 on any error (invalid policy, unreachable daemon, a policy the
//! daemon refused, a stream that failed), 2 on a usage error.

mod cli;
mod client;
mod logs;
mod probe;
mod validate;
mod vm;

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, PolicyCommand, VmCommand, VmPolicyCommand};

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
            exit(result.map_err(anyhow::Error::from))
        }
        Command::Logs(args) => exit(block_on(logs::run(&args)).map(|()| true)),
        Command::Probe(args) => exit(block_on(probe::run(&args)).map(|()| true)),
        Command::Vm {
            command: VmCommand::Policy { command },
        } => {
            let (action, args) = match command {
                VmPolicyCommand::Add(a) => (vm::Action::Add, a),
                VmPolicyCommand::Delete(a) => (vm::Action::Delete, a),
            };
            exit(block_on(vm::run(action, &args)))
        }
    }
}

/// Runs a command's future on a single-threaded runtime.
fn block_on<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?
        .block_on(f)
}

fn exit(r: anyhow::Result<bool>) -> ExitCode {
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("karmor: {e:#}");
            ExitCode::FAILURE
        }
    }
}
