//! Connecting to the daemon's gRPC server (spec §2.1, §5.3).
//!
//! The address is `--gRPC`, else `$KUBEARMOR_SERVICE`, else `localhost:32767`, as in upstream
//! karmor, over plaintext TCP; `--secure` uses mutual TLS with upstream's file names in
//! `--tlsCertPath` (`ca.crt`, `client.crt`, `client.key`). `--socket` talks to the daemon's
//! root-only Unix socket instead. The daemon accepts policy changes from root over loopback
//! or the Unix socket, and from elsewhere only over mutual TLS.

use std::error::Error as StdError;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use kubearmor_proto::values::GRPC_PORT;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::cli::ConnArgs;

/// The daemon's default `gRPCSocket`.
pub const DEFAULT_SOCKET: &str = "/var/run/kubearmor/grpc.sock";

/// Environment variable upstream karmor reads when `--gRPC` is not given.
pub const SERVICE_ENV: &str = "KUBEARMOR_SERVICE";

/// How long to wait for the TCP (and HTTP/2) connection before saying the daemon is
/// unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-call deadline of unary RPCs (policy push, probe, health check).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `flag`, else `env`, else `localhost:32767`. Empty values count as unset.
pub fn resolve_addr(flag: Option<&str>, env: Option<&str>) -> String {
    flag.filter(|s| !s.is_empty())
        .or(env.filter(|s| !s.is_empty()))
        .map_or_else(|| format!("localhost:{GRPC_PORT}"), str::to_string)
}

/// The address from the command line and the environment.
pub fn addr_from_env(flag: Option<&str>) -> String {
    let env = std::env::var(SERVICE_ENV).ok();
    resolve_addr(flag, env.as_deref())
}

/// Turns a Go-style dial target into a URI: `host:port`, `:port` (localhost, like Go's
/// dialer), `[v6]:port`, a bare `host` (default port), or an `http://` URI as is.
pub fn to_uri(addr: &str) -> anyhow::Result<String> {
    let addr = addr.trim();
    if addr.starts_with("http://") || addr.starts_with("https://") {
        return Ok(addr.to_string());
    }
    if addr.is_empty() {
        return Err(anyhow!("empty gRPC address"));
    }
    let port_only = addr
        .strip_prefix(':')
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let uri = if let Some(port) = port_only {
        format!("http://localhost:{port}")
    } else if addr.starts_with('[') {
        if addr.contains("]:") {
            format!("http://{addr}")
        } else {
            format!("http://{addr}:{GRPC_PORT}")
        }
    } else {
        match addr.matches(':').count() {
            0 => format!("http://{addr}:{GRPC_PORT}"),
            1 => format!("http://{addr}"),
            // A bare IPv6 address.
            _ => format!("http://[{addr}]:{GRPC_PORT}"),
        }
    };
    uri.parse::<tonic::codegen::http::Uri>()
        .with_context(|| format!("invalid gRPC address {addr:?}"))?;
    Ok(uri)
}

/// Connects as `conn` says; returns what it connected to (for messages) and the channel.
pub async fn connect(conn: &ConnArgs) -> anyhow::Result<(String, Channel)> {
    if let Some(path) = &conn.socket {
        let shown = format!("unix:{}", path.display());
        return Ok((shown, connect_unix(path).await?));
    }
    let addr = addr_from_env(conn.grpc.as_deref());
    let tls = if conn.secure {
        Some(client_tls(&conn.tls_cert_path)?)
    } else {
        None
    };
    let channel = connect_tcp(&addr, tls).await?;
    Ok((addr, channel))
}

/// The client side of mutual TLS from `dir` (upstream karmor's external provider names).
pub fn client_tls(dir: &std::path::Path) -> anyhow::Result<ClientTlsConfig> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).with_context(|| format!("--secure: cannot read {}", p.display()))
    };
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.crt")?))
        .identity(Identity::from_pem(read("client.crt")?, read("client.key")?)))
}

/// Connects to the daemon's Unix socket.
pub async fn connect_unix(path: &std::path::Path) -> anyhow::Result<Channel> {
    let path = path.to_path_buf();
    let shown = path.display().to_string();
    // The URI is required by the API but unused: the connector ignores it.
    let endpoint = Endpoint::from_static("http://localhost").connect_timeout(CONNECT_TIMEOUT);
    endpoint
        .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .map_err(|e| {
            anyhow!(
                "cannot connect to KubeArmor on {shown}: {} (is the daemon running with gRPCSocket? are you root?)",
                chain(&e)
            )
        })
}

/// Connects now (not lazily), so an unreachable daemon is reported before anything else.
pub async fn connect_tcp(addr: &str, tls: Option<ClientTlsConfig>) -> anyhow::Result<Channel> {
    let mut uri = to_uri(addr)?;
    if tls.is_some() {
        uri = uri.replacen("http://", "https://", 1);
    }
    let mut endpoint = Endpoint::from_shared(uri)
        .with_context(|| format!("invalid gRPC address {addr:?}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("TLS settings for {addr}"))?;
    }
    endpoint.connect().await.map_err(|e| {
        anyhow!(
            "cannot connect to KubeArmor at {addr}: {} (is the daemon running? set --gRPC or {SERVICE_ENV})",
            chain(&e)
        )
    })
}

/// An error and its sources, `a: b: c`, without repeating a source already in the text.
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// A failed RPC, for humans: `unavailable: connection refused` rather than the whole
/// `Status { .. }` debug dump.
pub fn status_text(s: &tonic::Status) -> String {
    let code = format!("{:?}", s.code());
    let msg = s.message();
    if msg.is_empty() {
        code
    } else {
        format!("{code}: {msg}")
    }
}

/// `<what> failed: <status>`, with a hint when the server does not know the method (not a
/// KubeArmor daemon, or one whose PolicyService/ProbeService is off, as in k8s mode).
pub fn rpc_failed(what: &str, s: &tonic::Status) -> anyhow::Error {
    let mut m = format!("{what} failed: {}", status_text(s));
    if s.code() == tonic::Code::PermissionDenied {
        m.push_str(
            " (policy changes are accepted from root on this host, over loopback or --socket, \
             and from elsewhere only with --secure)",
        );
    }
    if s.code() == tonic::Code::Unimplemented {
        m.push_str(
            " (the server does not offer this RPC: is it a KubeArmor daemon in systemd/VM mode?)",
        );
    }
    anyhow!(m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn address_precedence() {
        assert_eq!(resolve_addr(None, None), "localhost:32767");
        assert_eq!(resolve_addr(Some(""), Some("")), "localhost:32767");
        assert_eq!(resolve_addr(None, Some("10.0.0.1:1")), "10.0.0.1:1");
        assert_eq!(resolve_addr(Some("h:2"), Some("10.0.0.1:1")), "h:2");
    }

    #[test]
    fn go_style_targets() {
        assert_eq!(to_uri(":32767").unwrap(), "http://localhost:32767");
        assert_eq!(to_uri("localhost:1").unwrap(), "http://localhost:1");
        assert_eq!(to_uri("10.1.2.3").unwrap(), "http://10.1.2.3:32767");
        assert_eq!(to_uri("[::1]:5").unwrap(), "http://[::1]:5");
        assert_eq!(to_uri("[::1]").unwrap(), "http://[::1]:32767");
        assert_eq!(to_uri("::1").unwrap(), "http://[::1]:32767");
        assert_eq!(to_uri("http://x:1").unwrap(), "http://x:1");
        assert!(to_uri("").is_err());
        assert!(to_uri("a b:1").is_err());
    }

    #[test]
    fn status_rendering() {
        assert_eq!(
            status_text(&tonic::Status::unavailable("gone")),
            "Unavailable: gone"
        );
        assert_eq!(status_text(&tonic::Status::cancelled("")), "Cancelled");
        let e = rpc_failed("getProbeData", &tonic::Status::unimplemented("x"));
        assert!(e
            .to_string()
            .starts_with("getProbeData failed: Unimplemented: x (the server"));
    }
}
