//! Who may change state over gRPC.
//!
//! Reading (LogService, ProbeService, StateAgent, health, reflection) is open to whoever
//! reaches the port, as upstream. Changing (PolicyService) needs one of:
//! * the Unix socket `gRPCSocket`, with the peer's uid 0 (SO_PEERCRED; the socket is also
//!   0600 in a 0750 root directory);
//! * plaintext TCP from a loopback address, where the connecting socket, looked up in this
//!   network namespace's `/proc/net/tcp{,6}`, belongs to uid 0, so an unprivileged user on the
//!   host cannot change policy through `localhost` either;
//! * TCP with a verified client certificate (`tlsEnabled`: the TLS layer requires one signed
//!   by `tlsCertPath/ca.crt` before any request is read).
//!
//! Anything else (a container reaching the port through a bridge, another machine without
//! TLS) gets `PERMISSION_DENIED` and changes nothing. `immutablePolicies` is checked after
//! this, by the store, and refuses everyone.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use tonic::transport::server::{TcpConnectInfo, UdsConnectInfo};
use tonic::{Request, Status};

/// Who made an authorized change request, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    UnixRoot { pid: Option<i32> },
    LoopbackRoot { addr: SocketAddr },
    MutualTls { addr: Option<SocketAddr> },
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::UnixRoot { pid: Some(p) } => write!(f, "root (pid {p}) on the Unix socket"),
            Caller::UnixRoot { pid: None } => f.write_str("root on the Unix socket"),
            Caller::LoopbackRoot { addr } => write!(f, "root over loopback from {addr}"),
            Caller::MutualTls { addr: Some(a) } => write!(f, "a mutual-TLS client at {a}"),
            Caller::MutualTls { addr: None } => f.write_str("a mutual-TLS client"),
        }
    }
}

/// Where the `/proc/net` socket tables are read (tests point it elsewhere).
#[derive(Debug, Clone)]
pub struct Authorizer {
    proc_net: std::path::PathBuf,
}

impl Default for Authorizer {
    fn default() -> Self {
        Self {
            proc_net: "/proc/net".into(),
        }
    }
}

impl Authorizer {
    /// Whether `request` may change state; the refusal names what would have been accepted.
    pub fn authorize_change<T>(&self, request: &Request<T>, what: &str) -> Result<Caller, Status> {
        if let Some(uds) = request.extensions().get::<UdsConnectInfo>() {
            let cred = uds.peer_cred;
            return match cred {
                Some(c) if c.uid() == 0 => Ok(Caller::UnixRoot { pid: c.pid() }),
                Some(c) => Err(refuse(
                    what,
                    format!(
                        "the Unix-socket peer is uid {} (pid {:?}); only root may change policy",
                        c.uid(),
                        c.pid()
                    ),
                )),
                None => Err(refuse(
                    what,
                    "the Unix-socket peer's credentials are unknown".into(),
                )),
            };
        }
        let remote = request.remote_addr();
        if request.peer_certs().is_some_and(|c| !c.is_empty()) {
            return Ok(Caller::MutualTls { addr: remote });
        }
        let Some(remote) = remote else {
            return Err(refuse(what, "the peer address is unknown".into()));
        };
        let local = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::local_addr);
        let remote = canonical(remote);
        if !remote.ip().is_loopback() {
            return Err(refuse(
                what,
                format!(
                    "{remote} is not on this host's loopback: policy changes over TCP from \
                     elsewhere need mutual TLS (tlsEnabled)"
                ),
            ));
        }
        let Some(local) = local.map(canonical) else {
            return Err(refuse(what, "the local address is unknown".into()));
        };
        match tcp_owner(&self.proc_net, remote, local) {
            Some(0) => Ok(Caller::LoopbackRoot { addr: remote }),
            Some(uid) => Err(refuse(
                what,
                format!("the loopback client {remote} is uid {uid}; only root may change policy"),
            )),
            None => Err(refuse(
                what,
                format!("the owner of the loopback client socket {remote} cannot be found"),
            )),
        }
    }
}

fn refuse(what: &str, why: String) -> Status {
    tracing::warn!("{what}: refused: {why}");
    Status::permission_denied(format!("{what}: refused: {why}"))
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// The uid owning the TCP socket whose local end is `peer` and remote end is `ours`, from the
/// `/proc/net/tcp` and `tcp6` tables of this network namespace.
pub fn tcp_owner(proc_net: &Path, peer: SocketAddr, ours: SocketAddr) -> Option<u32> {
    ["tcp", "tcp6"].iter().find_map(|f| {
        let text = std::fs::read_to_string(proc_net.join(f)).ok()?;
        text.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = parse_addr(fields.get(1)?)?;
            let remote = parse_addr(fields.get(2)?)?;
            (local == peer && remote == ours)
                .then(|| fields.get(7)?.parse().ok())
                .flatten()
        })
    })
}

/// `0100007F:9C40` (IPv4) or 32 hex digits `:PORT` (IPv6): each 32-bit word as the kernel
/// prints it, in host (little-endian) byte order.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_le_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::from(word(0)?),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::from(b)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

/// One line for the startup log: who may change policy.
pub fn policy_access_summary(
    immutable: bool,
    unix_socket: Option<&Path>,
    tls: Option<&Path>,
) -> String {
    if immutable {
        return "policy changes over gRPC: refused for everyone (immutablePolicies)".into();
    }
    let mut who = Vec::new();
    if let Some(p) = unix_socket {
        who.push(format!("root on the Unix socket {}", p.display()));
    }
    match tls {
        Some(ca) => who.push(format!(
            "TCP clients with a certificate signed by {} (mutual TLS)",
            ca.display()
        )),
        None => who.push("root over loopback TCP (uid of the client socket checked)".into()),
    }
    format!(
        "policy changes over gRPC accepted from: {}; refused from everyone else",
        who.join(", ")
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn proc_net_addresses() {
        assert_eq!(
            parse_addr("0100007F:9C40"),
            Some("127.0.0.1:40000".parse().unwrap())
        );
        assert_eq!(
            parse_addr("00000000000000000000000001000000:1F90"),
            Some("[::1]:8080".parse().unwrap())
        );
        // IPv4-mapped: ::ffff:127.0.0.1 is reported as the IPv4 address.
        assert_eq!(
            parse_addr("0000000000000000FFFF00000100007F:0050"),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(parse_addr("zz:1"), None);
        assert_eq!(parse_addr("0100007F"), None);
    }

    #[test]
    fn socket_owner_from_the_tables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tcp"),
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: 0100007F:7FFF 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
             1: 0100007F:9C40 0100007F:7FFF 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n\
             2: 0100007F:9C41 0100007F:7FFF 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n",
        )
        .unwrap();
        let ours: SocketAddr = "127.0.0.1:32767".parse().unwrap();
        assert_eq!(
            tcp_owner(dir.path(), "127.0.0.1:40000".parse().unwrap(), ours),
            Some(1000)
        );
        assert_eq!(
            tcp_owner(dir.path(), "127.0.0.1:40001".parse().unwrap(), ours),
            Some(0)
        );
        assert_eq!(
            tcp_owner(dir.path(), "127.0.0.1:40002".parse().unwrap(), ours),
            None
        );
    }

    #[test]
    fn summary_says_who() {
        let s = policy_access_summary(false, Some(Path::new("/run/kubearmor/grpc.sock")), None);
        assert!(
            s.contains("root on the Unix socket /run/kubearmor/grpc.sock"),
            "{s}"
        );
        assert!(s.contains("root over loopback"), "{s}");
        let s = policy_access_summary(false, None, Some(Path::new("/tls/ca.crt")));
        assert!(s.contains("/tls/ca.crt"), "{s}");
        assert!(policy_access_summary(true, None, None).contains("immutablePolicies"));
    }
}
