//! `kubearmor-hook`: the OCI hook (createRuntime / poststop, prestart accepted) that registers
//! containers with the kubearmor daemon over ka.sock. See docs/oci-hooks.md.

mod cli;
mod client;
mod detached;
mod run;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kubearmor_containers::procfs::HostProc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse_from(cli::normalize_args(std::env::args()));
    let fail_closed = cli.fail_closed(std::env::var(cli::FAIL_CLOSED_ENV).ok().as_deref());
    if let Err(e) = init_logging(&cli) {
        eprintln!("kubearmor-hook: {e:#}");
    }
    let proc = HostProc::new(&cli.procfs);

    if cli.detached {
        return match detached::replay(
            &cli.kubearmor_socket,
            cli.runc_root.clone(),
            &proc,
            detached::GIVE_UP_AFTER,
        ) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("replay failed: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let opts = run::Options {
        socket: cli.kubearmor_socket.clone(),
        timeout: cli.timeout(),
        hook_path: cli.hook_path.clone(),
    };
    let outcome = run::run_hook(&opts, std::io::stdin().lock(), &proc);
    if let run::Outcome::Failed(msg) = &outcome {
        if fail_closed {
            tracing::error!("{msg}; failing the container (fail-closed)");
        } else {
            tracing::warn!("{msg}; letting the container start (fail-open)");
        }
    }
    ExitCode::from(u8::try_from(outcome.exit_code(fail_closed)).unwrap_or(1))
}

fn init_logging(cli: &cli::Cli) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUBEARMOR_HOOK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    match &cli.log_path {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?;
            builder.with_writer(std::sync::Mutex::new(file)).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}
