//! LogService, health, StateAgent and the event pipeline, against the real daemon with real
//! tonic clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use kubearmor_proto::feeder::{Alert, Log, NonceMessage, RequestMessage};
use kubearmor_proto::state_agent::state_agent_client::StateAgentClient;
use serde_json::json;
use tonic::Streaming;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const WAIT: Duration = Duration::from_secs(20);

async fn next<T>(s: &mut Streaming<T>) -> T {
    tokio::time::timeout(WAIT, s.message())
        .await
        .expect("stream item timed out")
        .unwrap()
        .expect("stream ended")
}

async fn watch_alerts(d: &Daemon, filter: &str) -> Streaming<Alert> {
    d.log_client()
        .await
        .watch_alerts(RequestMessage {
            filter: filter.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn watch_logs(d: &Daemon, filter: &str) -> Streaming<Log> {
    d.log_client()
        .await
        .watch_logs(RequestMessage {
            filter: filter.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Waits until the daemon counts `n` subscribers of a stream (so injected events reach them).
async fn subscribed(d: &Daemon, what: &str, n: usize) {
    let needle = format!("{what} subscriber");
    eventually("subscribers registered", || async {
        d.stderr().matches(&needle).count() >= n
    })
    .await;
}

#[tokio::test]
async fn health_check_echoes_the_nonce_and_grpc_health_serves() {
    let dir = TestDir::new();
    // No config file: built-in defaults.
    let d = Daemon::start(&dir, Options::default());
    assert!(d.stderr().contains("config file: none: built-in defaults"));
    assert!(d.stderr().contains("no enforcement plane is active"));
    let mut c = d.log_client().await;
    for nonce in [0, 1, 12345, -7, i32::MAX] {
        let r = c.health_check(NonceMessage { nonce }).await.unwrap();
        assert_eq!(r.into_inner().retval, nonce);
    }

    let ch = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", d.health_port))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = HealthClient::new(ch);
    for service in [
        "",
        "feeder.LogService",
        "policy.PolicyService",
        "policy.ProbeService",
    ] {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
    }
    // The state agent is off by default: unknown to health, unimplemented on the API port.
    let err = h
        .check(HealthCheckRequest {
            service: "state_agent.StateAgent".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = StateAgentClient::new(d.channel().await)
        .get_state(())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    // The health port serves health only.
    let err = kubearmor_proto::feeder::log_service_client::LogServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", d.health_port))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
    .health_check(NonceMessage { nonce: 1 })
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    // getProbeData tells the truth: nothing enforced, and the probe file says so too.
    let probe: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("probe.cfg")).unwrap())
            .unwrap();
    assert_eq!(probe["ActiveLSM"], "");
    assert_eq!(probe["HostSecurity"], false);
    assert_eq!(probe["ContainerSecurity"], false);
    let p = d.probe().await;
    assert!(p.container_list.is_empty());
    assert!(p.host_map["test-vm"].policy_list.is_empty());
}

#[tokio::test]
async fn state_agent_serves_the_node() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir, Options::config("enableKubeArmorStateAgent: true\n"));
    let mut s = StateAgentClient::new(d.channel().await);
    let mut snap = s.get_state(()).await.unwrap().into_inner();
    let events = next(&mut snap).await;
    assert!(
        snap.message().await.unwrap().is_none(),
        "GetState sends one snapshot"
    );
    let node = &events.state_events[0];
    assert_eq!(
        (node.kind.as_str(), node.r#type.as_str(), node.name.as_str()),
        ("node", "added", "test-vm")
    );
    let obj: serde_json::Value = serde_json::from_slice(&node.object).unwrap();
    assert_eq!(obj["nodeName"], "test-vm");
    assert_eq!(obj["policyEnabled"], 0);
    let ch = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", d.health_port))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let r = HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: "state_agent.StateAgent".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, ServingStatus::Serving as i32);
}

fn alert(policy: &str, resource: &str) -> serde_json::Value {
    json!({
        "Type": "MatchedHostPolicy", "PolicyName": policy, "Severity": "5", "Tags": "CIS,creds",
        "Operation": "File", "Resource": resource, "Data": "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY",
        "Enforcer": "eBPF Monitor", "Action": "Audit", "Result": "Passed",
        "HostPID": 42, "PID": 42, "ProcessName": "/usr/bin/cat", "Source": "/usr/bin/cat /etc/shadow",
        "Cwd": "/", "ExecEvent": {"ExecID": "0", "ExecutableName": "cat"}
    })
}

#[tokio::test]
async fn subscribers_receive_events_with_filter_semantics() {
    let dir = TestDir::new();
    let events = dir.path().join("events.json");
    let d = Daemon::start(
        &dir,
        Options::config(&format!(
            "logPath: {}\nmaxAlertPerSec: 3\nthrottleSec: 30\n",
            events.display()
        ))
        .with_test_source(),
    );
    // Filters that are not accepted end the stream at once, with OK and no items.
    for (alerts, filter) in [
        (true, "system"),
        (true, "bogus"),
        (false, "policy"),
        (false, ""),
    ] {
        let mut c = d.log_client().await;
        let r = if alerts {
            let mut s = c
                .watch_alerts(RequestMessage {
                    filter: filter.into(),
                })
                .await
                .unwrap()
                .into_inner();
            tokio::time::timeout(WAIT, s.message())
                .await
                .unwrap()
                .map(|m| m.is_some())
        } else {
            let mut s = c
                .watch_logs(RequestMessage {
                    filter: filter.into(),
                })
                .await
                .unwrap()
                .into_inner();
            tokio::time::timeout(WAIT, s.message())
                .await
                .unwrap()
                .map(|m| m.is_some())
        };
        assert!(matches!(r, Ok(false)), "filter {filter:?}: {r:?}");
    }
    let mut policy = watch_alerts(&d, "policy").await;
    let mut all_alerts = watch_alerts(&d, "all").await;
    let mut system = watch_logs(&d, "system").await;
    let mut all_logs = watch_logs(&d, "all").await;
    subscribed(&d, "WatchAlerts", 2).await;
    subscribed(&d, "WatchLogs", 2).await;

    let replies = tokio::task::spawn_blocking({
        let socket = dir.socket();
        move || {
            let mut s = Injector::connect_path(&socket);
            let mut out = vec![s.send(&alert("hsp-audit-shadow", "/etc/shadow"))];
            out.push(s.send(&json!({
                "Type": "HostLog", "Operation": "Network", "Resource": "domain=AF_INET type=SOCK_RAW protocol=ICMP",
                "Data": "syscall=SYS_SOCKET", "Result": "Passed", "ProcessName": "/usr/bin/ping"
            })));
            out.push(s.send(&json!({"Type": "HostLog", "Bogus": 1})));
            // Throttling, per container: 3 per second pass, the 4th becomes the notice, the
            // rest are dropped. One write, so all six fall in the same one-second window.
            let burst: Vec<_> = (0..6)
                .map(|i| {
                    let mut a = alert("ksp-burst", &format!("/tmp/{i}"));
                    a["Type"] = json!("MatchedPolicy");
                    a["ContainerID"] = json!("c1");
                    a["ContainerName"] = json!("web");
                    a
                })
                .collect();
            out.extend(s.send_many(&burst));
            out
        }
    })
    .await
    .unwrap();
    assert_eq!(&replies[..2], ["ok", "ok"]);
    assert!(
        replies[2].starts_with("error: unknown field `Bogus`"),
        "{}",
        replies[2]
    );
    assert!(replies[3..].iter().all(|r| r == "ok"));

    for s in [&mut policy, &mut all_alerts] {
        let a = next(s).await;
        assert_eq!(a.policy_name, "hsp-audit-shadow");
        assert_eq!(a.host_name, "test-vm", "filled by the pipeline");
        assert_eq!(a.cluster_name, "default");
        assert!(a.timestamp > 0 && a.updated_time.ends_with('Z'));
        assert_eq!(a.a_tags, vec!["CIS", "creds"]);
        assert_eq!(a.event_data["Syscall"], "SYS_OPENAT");
        assert_eq!(a.exec_event.as_ref().unwrap().executable_name, "cat");
        for i in 0..3 {
            let b = next(s).await;
            assert_eq!(
                (b.resource.as_str(), b.container_name.as_str()),
                (format!("/tmp/{i}").as_str(), "web")
            );
        }
        let notice = next(s).await;
        assert_eq!(
            notice.resource, "/tmp/3",
            "the notice is the alert that crossed the limit"
        );
        assert_eq!(notice.r#type, "SystemEvent");
        assert_eq!(notice.operation, "AlertThreshold");
        assert_eq!(notice.max_alerts_per_sec, 3);
        assert_eq!(notice.dropping_alerts_interval, 30);
    }
    for s in [&mut system, &mut all_logs] {
        let l = next(s).await;
        assert_eq!(l.r#type, "HostLog");
        assert_eq!(l.process_name, "/usr/bin/ping");
        assert_eq!(
            l.event_data["Type"], "SOCK_RAW",
            "Network Resource parsed into EventData"
        );
        assert_eq!(l.host_name, "test-vm");
    }
    // Nothing else arrives (throttled alerts are dropped).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), policy.message())
            .await
            .is_err()
    );

    // logPath: every event, before throttling, as daemon-native JSON lines.
    eventually("logPath lines written", || async {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .count()
            == 8
    })
    .await;
    let text = std::fs::read_to_string(&events).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["policyName"], "hsp-audit-shadow");
    assert_eq!(first["hostName"], "test-vm");
    assert!(first.get("clusterName").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_does_not_hold_up_another() {
    const N: usize = 5000;
    let dir = TestDir::new();
    let d = Daemon::start(
        &dir,
        Options::config("alertThrottling: false\n").with_test_source(),
    );
    // Each on its own connection, as two karmor processes would be. The stalled client also
    // has a small HTTP/2 window (hyper's default of 2 MiB would absorb thousands of events
    // before the daemon notices anything).
    let small = tonic::transport::Channel::from_shared(d.url())
        .unwrap()
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await
        .unwrap();
    let _stalled = kubearmor_proto::feeder::log_service_client::LogServiceClient::new(small)
        .watch_alerts(RequestMessage {
            filter: "all".into(),
        })
        .await
        .unwrap()
        .into_inner(); // never read
    let mut reader = watch_alerts(&d, "all").await;
    subscribed(&d, "WatchAlerts", 2).await;

    let socket = dir.socket();
    let inject = tokio::task::spawn_blocking(move || {
        let mut s = Injector::connect_path(&socket);
        for i in 0..N {
            let r = s.send(&alert("hsp-flood", &format!("/f/{i}")));
            assert_eq!(r, "ok");
        }
    });
    for i in 0..N {
        let a = next(&mut reader).await;
        assert_eq!(a.resource, format!("/f/{i}"));
    }
    inject.await.unwrap();
    d.wait_log("subscriber is not keeping up").await;
    // The daemon still answers.
    let r = d
        .log_client()
        .await
        .health_check(NonceMessage { nonce: 9 })
        .await
        .unwrap();
    assert_eq!(r.into_inner().retval, 9);
}

#[tokio::test]
async fn debug_mode_streams_daemon_messages() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir, Options::config("debug: true\n"));
    let mut messages = d
        .log_client()
        .await
        .watch_messages(RequestMessage {
            filter: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // A policy change logs a line, which reaches the message stream.
    let mut c = d.policy_client().await;
    send_host(&mut c, "ADDED", host_policy("hsp-msg", "/etc/shadow")).await;
    loop {
        let m = next(&mut messages).await;
        assert_eq!(m.r#type, "Message");
        assert_eq!(m.host_name, "test-vm");
        if m.message.contains("hsp-msg") {
            assert_eq!(m.level, "INFO");
            break;
        }
    }
}
