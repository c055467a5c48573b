//! `kubearmor [CONFIG] [-KEY=VALUE ...]`: see `kubearmor --help`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use kubearmor_daemon::config::{self, FileInput, Inputs};
use kubearmor_daemon::{daemon, host_info, logging};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubearmor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = config::parse_args(std::env::args().skip(1))?;
    if args.help {
        print!("{}", config::usage());
        return Ok(());
    }
    if args.version {
        println!("kubearmor (kubearmor-rs) {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let binary_dir: Option<PathBuf> = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from));
    let location = config::locate(args.config.as_deref(), &env, binary_dir.as_deref(), |p| {
        p.is_file()
    });
    let text = match location.path() {
        Some(p) => Some(config::read_file(p)?),
        None => None,
    };
    let hostname = host_info::hostname();
    let resolved = config::resolve(Inputs {
        file: match (location.path(), text.as_deref()) {
            (Some(path), Some(text)) => Some(FileInput { path, text }),
            _ => None,
        },
        env: &env,
        flags: &args.flags,
        hostname: &hostname,
    })
    .context("invalid configuration")?;

    let sink = logging::init(resolved.config.debug);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("kubearmor-rt")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(daemon::run(resolved, location, sink))?;
    Ok(())
}
