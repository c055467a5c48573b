//! `/metrics` in the Prometheus text format: what is enforced, and the event pipeline's
//! counters. Served on `metricsPort` (0, the default, turns it off).

use std::fmt::Write as _;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::enforce::Enforcer;
use crate::pipeline::Pipeline;
use crate::planes::{Enforcement, LiveEnforcement};

/// Renders the metrics text.
pub fn render(enforcement: &Enforcement, pipeline: &Pipeline, enforcer: &Enforcer) -> String {
    let mut out = String::new();
    out.push_str("# HELP kubearmor_family_enforced 1 when a running plane enforces the operation family, 0 when nothing does on this kernel.\n");
    out.push_str("# TYPE kubearmor_family_enforced gauge\n");
    for p in &enforcement.planes {
        for f in &p.families {
            let _ = writeln!(
                out,
                "kubearmor_family_enforced{{family=\"{f}\",plane=\"{}\",enforcer=\"{}\"}} 1",
                p.name, p.enforcer
            );
        }
    }
    for (f, _) in &enforcement.unenforced {
        let _ = writeln!(
            out,
            "kubearmor_family_enforced{{family=\"{f}\",plane=\"\",enforcer=\"\"}} 0"
        );
    }
    out.push_str("# HELP kubearmor_plane_up 1 while the plane enforces, 0 while it is down (stalled, aborted, restarting).\n# TYPE kubearmor_plane_up gauge\n");
    for p in &enforcement.planes {
        let _ = writeln!(out, "kubearmor_plane_up{{plane=\"{}\"}} 1", p.name);
    }
    for p in &enforcement.down {
        let _ = writeln!(out, "kubearmor_plane_up{{plane=\"{}\"}} 0", p.name);
        if let Some(o) = &p.down {
            let since = o
                .since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let _ = writeln!(
                out,
                "kubearmor_plane_down_since_seconds{{plane=\"{}\"}} {since}",
                p.name
            );
        }
    }
    let world = enforcer.world();
    out.push_str(
        "# HELP kubearmor_containers Registered containers.\n# TYPE kubearmor_containers gauge\n",
    );
    let _ = writeln!(out, "kubearmor_containers {}", world.containers.len());
    out.push_str("# HELP kubearmor_host_rules Rules compiled for the host.\n# TYPE kubearmor_host_rules gauge\n");
    let _ = writeln!(out, "kubearmor_host_rules {}", world.host.len());
    let s = pipeline.stats();
    out.push_str("# HELP kubearmor_events_total Events through the pipeline, by outcome.\n# TYPE kubearmor_events_total counter\n");
    for (what, n) in [
        ("emitted", s.emitted),
        ("queue_full", s.queue_full),
        ("malformed", s.malformed),
        ("throttled", s.throttled),
        ("alerts_sent", s.alerts_sent),
        ("logs_sent", s.logs_sent),
        ("alert_subscriber_drops", s.alert_subscriber_drops),
        ("log_subscriber_drops", s.log_subscriber_drops),
        ("log_lines_dropped", s.log_lines_dropped),
    ] {
        let _ = writeln!(out, "kubearmor_events_total{{outcome=\"{what}\"}} {n}");
    }
    out
}

/// Serves `GET /metrics` until shutdown. One short request per connection; anything else is
/// answered 404. Requests are capped at 8 KiB.
pub async fn serve(
    listener: TcpListener,
    enforcement: Arc<LiveEnforcement>,
    pipeline: Pipeline,
    enforcer: Arc<Enforcer>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("metrics: accept: {e}");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let (enforcement, pipeline, enforcer) =
            (enforcement.clone(), pipeline.clone(), enforcer.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let request = String::from_utf8_lossy(&buf[..n]);
            let ok = request.starts_with("GET /metrics ") || request.starts_with("GET /metrics?");
            let response = if ok {
                let body = render(&enforcement.now(), &pipeline, &enforcer);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = sock.write_all(response.as_bytes()).await;
        });
    }
}
