//! Command line of `karmor`, shaped like upstream karmor's (`kubearmor-client`, cobra) where the
//! spec describes it: the same subcommands and the same camelCase long flags (`--gRPC`,
//! `--logFilter`, `--logType`, ...). Every camelCase flag also has a kebab-case alias
//! (`--log-filter`, `--log-type`, `--grpc`, ...).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where `karmor probe` reads the daemon's probe file by default (spec §5.3).
pub const DEFAULT_PROBE_FILE: &str = "/tmp/karmorProbeData.cfg";

#[derive(Debug, Parser)]
#[command(
    name = "karmor",
    version,
    about = "CLI for kubearmor-rs, compatible with KubeArmor's karmor",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Observe alerts and logs from KubeArmor (gRPC LogService)
    #[command(visible_alias = "log")]
    Logs(Box<LogsArgs>),
    /// Show what the daemon enforces: host, host policies and armored containers
    Probe(ProbeArgs),
    /// Manage a KubeArmor daemon running in systemd / VM mode
    Vm {
        #[command(subcommand)]
        command: VmCommand,
    },
    /// Work with policy files offline
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Apply or remove policies through the daemon's PolicyService
    Policy {
        #[command(subcommand)]
        command: VmPolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum VmPolicyCommand {
    /// Send every policy in FILE to the daemon as ADDED
    Add(VmPolicyArgs),
    /// Send every policy in FILE to the daemon as DELETED
    Delete(VmPolicyArgs),
}

/// How to reach the daemon (shared by every command that talks to it).
#[derive(Debug, Clone, Default, Args)]
pub struct ConnArgs {
    /// gRPC server address [default: $KUBEARMOR_SERVICE, else localhost:32767]
    #[arg(long = "gRPC", visible_alias = "grpc", value_name = "HOST:PORT")]
    pub grpc: Option<String>,
    /// Use the daemon's root-only Unix socket (its gRPCSocket) instead of TCP
    #[arg(
        long,
        value_name = "PATH",
        num_args = 0..=1,
        default_missing_value = crate::client::DEFAULT_SOCKET,
        conflicts_with_all = ["grpc", "secure"]
    )]
    pub socket: Option<PathBuf>,
    /// Mutual TLS: present tlsCertPath/client.crt and client.key, trust tlsCertPath/ca.crt
    #[arg(long)]
    pub secure: bool,
    /// Directory of ca.crt, client.crt and client.key for --secure
    #[arg(
        long = "tlsCertPath",
        visible_alias = "tls-cert-path",
        default_value = "/var/lib/kubearmor/tls",
        value_name = "DIR"
    )]
    pub tls_cert_path: PathBuf,
}

#[derive(Debug, Args)]
pub struct VmPolicyArgs {
    /// Policy file(s): YAML or JSON, possibly with several `---` separated documents
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Send the file even if local validation finds errors
    #[arg(long)]
    pub no_validate: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check policy files (and directories of *.yaml, *.yml, *.json) without a daemon
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or directories (walked recursively)
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
}

/// `--logFilter`: which streams to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFilter {
    /// Alerts only (WatchAlerts)
    Policy,
    /// Telemetry only (WatchLogs)
    System,
    /// Both streams
    All,
}

impl LogFilter {
    /// The `RequestMessage.Filter` value sent to the daemon.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFilter::Policy => "policy",
            LogFilter::System => "system",
            LogFilter::All => "all",
        }
    }

    pub fn alerts(self) -> bool {
        matches!(self, LogFilter::Policy | LogFilter::All)
    }

    pub fn logs(self) -> bool {
        matches!(self, LogFilter::System | LogFilter::All)
    }
}

/// `-o/--output` of `karmor logs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    Text,
    Json,
    PrettyJson,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Output location for messages: PATH, stdout or none (anything but none opens WatchMessages)
    #[arg(
        long = "msgPath",
        visible_alias = "msg-path",
        default_value = "none",
        value_name = "PATH|stdout|none"
    )]
    pub msg_path: String,
    /// Output location for alerts and logs: PATH, stdout or none
    #[arg(
        long = "logPath",
        visible_alias = "log-path",
        default_value = "stdout",
        value_name = "PATH|stdout|none"
    )]
    pub log_path: String,
    /// What to receive: policy (alerts), system (logs) or all
    #[arg(
        long = "logFilter",
        visible_alias = "log-filter",
        value_enum,
        default_value = "policy",
        ignore_case = true
    )]
    pub log_filter: LogFilter,
    /// Print alerts and logs as JSON, one per line (same as -o json)
    #[arg(long)]
    pub json: bool,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputArg>,
    /// Only events whose namespace matches this regex (case-insensitive)
    #[arg(short = 'n', long, value_name = "REGEX")]
    pub namespace: Option<String>,
    /// Only events whose Operation matches this regex (case-insensitive), e.g. process, file,
    /// network, capabilities, syscall, device, AlertThreshold
    #[arg(long, value_name = "REGEX")]
    pub operation: Option<String>,
    /// Only events whose Type matches this regex (case-insensitive), e.g. ContainerLog, HostLog,
    /// MatchedPolicy, MatchedHostPolicy
    #[arg(long = "logType", visible_alias = "log-type", value_name = "REGEX")]
    pub log_type: Option<String>,
    /// Only events whose container name matches this regex (case-insensitive)
    #[arg(long, value_name = "REGEX")]
    pub container: Option<String>,
    /// Only events whose pod name matches this regex (case-insensitive)
    #[arg(long, value_name = "REGEX")]
    pub pod: Option<String>,
    /// Only events whose Source matches this regex (case-sensitive)
    #[arg(long, value_name = "REGEX")]
    pub source: Option<String>,
    /// Only events whose Resource matches this regex (case-sensitive)
    #[arg(long, value_name = "REGEX")]
    pub resource: Option<String>,
    /// Only events carrying this exact label (k=v); repeat for any-of
    #[arg(
        short = 'l',
        long = "labels",
        visible_alias = "selector",
        value_name = "K=V"
    )]
    pub labels: Vec<String>,
    /// Exit after printing this many alerts/logs (0 = no limit)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub limit: u32,
}

/// `-f/--format` of `karmor probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeFormat {
    Text,
    Json,
    NoColor,
}

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Output format
    #[arg(short = 'f', long = "format", value_enum, default_value = "text")]
    pub format: ProbeFormat,
    /// Same as -f json
    #[arg(long)]
    pub json: bool,
    /// The daemon's probe data file (host facts); skipped when absent
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PROBE_FILE)]
    pub probe_file: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("karmor").chain(args.iter().copied()))
    }

    fn logs(args: &[&str]) -> LogsArgs {
        match parse(args).map(|c| c.command) {
            Ok(Command::Logs(l)) => *l,
            other => panic!("not logs: {other:?}"),
        }
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn logs_defaults() {
        let l = logs(&["logs"]);
        assert_eq!(l.conn.grpc, None);
        assert_eq!(l.log_filter, LogFilter::Policy);
        assert_eq!(l.msg_path, "none");
        assert_eq!(l.log_path, "stdout");
        assert!(!l.json);
        assert_eq!(l.limit, 0);
        assert!(l.labels.is_empty());
    }

    #[test]
    fn logs_upstream_spelling() {
        let l = logs(&[
            "log",
            "--gRPC=:32767",
            "--logFilter",
            "all",
            "--logType",
            "HostLog",
            "--operation",
            "File",
            "--json",
            "--namespace",
            "container_namespace",
            "--container",
            "web",
            "--limit",
            "3",
            "-l",
            "app=a",
            "-l",
            "tier=b",
        ]);
        assert_eq!(l.conn.grpc.as_deref(), Some(":32767"));
        assert_eq!(l.log_filter, LogFilter::All);
        assert_eq!(l.log_type.as_deref(), Some("HostLog"));
        assert_eq!(l.operation.as_deref(), Some("File"));
        assert!(l.json);
        assert_eq!(l.namespace.as_deref(), Some("container_namespace"));
        assert_eq!(l.container.as_deref(), Some("web"));
        assert_eq!(l.limit, 3);
        assert_eq!(l.labels, ["app=a", "tier=b"]);
    }

    #[test]
    fn logs_kebab_aliases() {
        let l = logs(&[
            "logs",
            "--grpc",
            "h:1",
            "--log-filter=system",
            "--log-type",
            "ContainerLog",
            "-n",
            "ns",
            "-o",
            "pretty-json",
        ]);
        assert_eq!(l.conn.grpc.as_deref(), Some("h:1"));
        assert_eq!(l.log_filter, LogFilter::System);
        assert_eq!(l.log_type.as_deref(), Some("ContainerLog"));
        assert_eq!(l.namespace.as_deref(), Some("ns"));
        assert_eq!(l.output, Some(OutputArg::PrettyJson));
    }

    #[test]
    fn log_filter_is_checked_and_case_insensitive() {
        assert_eq!(
            logs(&["logs", "--logFilter", "ALL"]).log_filter,
            LogFilter::All
        );
        assert!(parse(&["logs", "--logFilter", "alerts"]).is_err());
        assert!(LogFilter::All.alerts() && LogFilter::All.logs());
        assert!(LogFilter::Policy.alerts() && !LogFilter::Policy.logs());
        assert!(!LogFilter::System.alerts() && LogFilter::System.logs());
    }

    #[test]
    fn vm_policy_args() {
        match parse(&["vm", "policy", "add", "p.yaml", "--gRPC", "127.0.0.1:1"]) {
            Ok(Cli {
                command:
                    Command::Vm {
                        command:
                            VmCommand::Policy {
                                command: VmPolicyCommand::Add(a),
                            },
                    },
            }) => {
                assert_eq!(a.files, [PathBuf::from("p.yaml")]);
                assert_eq!(a.conn.grpc.as_deref(), Some("127.0.0.1:1"));
                assert!(!a.no_validate);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["vm", "policy", "delete", "--no-validate", "p.yaml"]) {
            Ok(Cli {
                command:
                    Command::Vm {
                        command:
                            VmCommand::Policy {
                                command: VmPolicyCommand::Delete(a),
                            },
                    },
            }) => assert!(a.no_validate),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["vm", "policy", "add"]).is_err());
    }

    #[test]
    fn probe_and_validate_args() {
        match parse(&["probe", "-f", "json"]) {
            Ok(Cli {
                command: Command::Probe(p),
            }) => {
                assert_eq!(p.format, ProbeFormat::Json);
                assert_eq!(p.probe_file, PathBuf::from(DEFAULT_PROBE_FILE));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["policy", "validate"]).is_err());
        assert!(parse(&["policy", "validate", "a.yaml", "dir"]).is_ok());
    }
}
