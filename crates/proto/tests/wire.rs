//! Wire-compatibility checks: field names/numbers and method paths against the spec's tables
//! (§1.3, §1.4, §1.5, §2, §6), and a real client/server round trip over TCP.
#![allow(clippy::unwrap_used)]

use kubearmor_proto::feeder::log_service_client::LogServiceClient;
use kubearmor_proto::feeder::log_service_server::{LogService, LogServiceServer};
use kubearmor_proto::feeder::{Alert, Log, Message, NonceMessage, ReplyMessage, RequestMessage};
use kubearmor_proto::{policy, values, FILE_DESCRIPTOR_SET};
use prost::Message as _;
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use tonic::codegen::tokio_stream::{self, StreamExt as _};
use tonic::{Request, Response, Status};

fn descriptors() -> Vec<FileDescriptorProto> {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap().file
}

/// (field name, number) of `package.message` in declaration order.
fn fields(package: &str, message: &str) -> Vec<(String, i32)> {
    let files = descriptors();
    let file = files
        .iter()
        .find(|f| f.package() == package && f.message_type.iter().any(|m| m.name() == message))
        .unwrap_or_else(|| panic!("{package}.{message} missing"));
    let msg = file
        .message_type
        .iter()
        .find(|m| m.name() == message)
        .unwrap();
    msg.field
        .iter()
        .map(|f| (f.name().to_string(), f.number()))
        .collect()
}

fn expect(package: &str, message: &str, want: &[(&str, i32)]) {
    let want: Vec<(String, i32)> = want.iter().map(|(n, i)| (n.to_string(), *i)).collect();
    assert_eq!(fields(package, message), want, "{package}.{message}");
}

#[test]
#[rustfmt::skip]
fn alert_fields_match_spec() {
    expect(
        "feeder",
        "Alert",
        &[
            ("Timestamp", 1), ("UpdatedTime", 2), ("ClusterName", 3), ("HostName", 4),
            ("NamespaceName", 5), ("Owner", 31), ("PodName", 6), ("Labels", 29),
            ("ContainerID", 7), ("ContainerName", 8), ("ContainerImage", 24), ("HostPPID", 27),
            ("HostPID", 9), ("PPID", 10), ("PID", 11), ("UID", 12), ("ParentProcessName", 25),
            ("ProcessName", 26), ("PolicyName", 13), ("Severity", 14), ("Tags", 15),
            ("ATags", 30), ("Message", 16), ("Type", 17), ("Source", 18), ("Operation", 19),
            ("Resource", 20), ("Data", 21), ("EventData", 43), ("Enforcer", 28), ("Action", 22),
            ("Result", 23), ("Cwd", 32), ("TTY", 33), ("MaxAlertsPerSec", 34),
            ("DroppingAlertsInterval", 35), ("ExecEvent", 36), ("KubeArmorVersion", 37),
            ("NodeID", 38), ("ProcessHash", 39), ("ParentHash", 40), ("ResourceHash", 41),
            ("HashAlgo", 42), ("UserName", 44),
        ],
    );
}

#[test]
#[rustfmt::skip]
fn log_fields_match_spec() {
    expect(
        "feeder",
        "Log",
        &[
            ("Timestamp", 1), ("UpdatedTime", 2), ("ClusterName", 3), ("HostName", 4),
            ("NamespaceName", 5), ("Owner", 24), ("PodName", 6), ("Labels", 23),
            ("ContainerID", 7), ("ContainerName", 8), ("ContainerImage", 19),
            ("ParentProcessName", 20), ("ProcessName", 21), ("HostPPID", 22), ("HostPID", 9),
            ("PPID", 10), ("PID", 11), ("UID", 12), ("Type", 13), ("Source", 14),
            ("Operation", 15), ("Resource", 16), ("Data", 17), ("EventData", 33), ("Result", 18),
            ("Cwd", 25), ("TTY", 26), ("ExecEvent", 27), ("NodeID", 28), ("ProcessHash", 29),
            ("ParentHash", 30), ("ResourceHash", 31), ("HashAlgo", 32), ("UserName", 34),
        ],
    );
}

#[test]
#[rustfmt::skip]
fn small_messages_match_spec() {
    expect(
        "feeder",
        "Message",
        &[
            ("Timestamp", 1), ("UpdatedTime", 2), ("ClusterName", 3), ("HostName", 4),
            ("HostIP", 5), ("Type", 6), ("Level", 7), ("Message", 8),
        ],
    );
    expect("feeder", "Podowner", &[("Ref", 1), ("Name", 2), ("Namespace", 3)]);
    expect("feeder", "ExecEvent", &[("ExecID", 1), ("ExecutableName", 2)]);
    expect("feeder", "NonceMessage", &[("nonce", 1)]);
    expect("feeder", "ReplyMessage", &[("Retval", 1)]);
    expect("feeder", "RequestMessage", &[("Filter", 1)]);
    expect("policy", "policy", &[("policy", 1)]);
    expect("policy", "response", &[("status", 1)]);
    expect(
        "policy",
        "ContainerData",
        &[("policyList", 1), ("policyEnabled", 2), ("policyDataList", 3)],
    );
    expect("policy", "HostSecurityPolicies", &[("policyList", 1), ("policyDataList", 2)]);
    expect("policy", "NetworkSecurityPolicies", &[("policyList", 1), ("policyDataList", 2)]);
    expect(
        "policy",
        "ProbeResponse",
        &[("containerList", 1), ("containerMap", 2), ("hostMap", 3), ("networkMap", 4)],
    );
    expect(
        "state_agent",
        "StateEvent",
        &[("Kind", 1), ("Type", 2), ("Name", 3), ("Object", 4)],
    );
    expect("state_agent", "StateEvents", &[("StateEvents", 1)]);
}

#[test]
fn method_paths_match_spec() {
    let mut paths = Vec::new();
    for f in descriptors() {
        for s in &f.service {
            for m in &s.method {
                paths.push(format!("/{}.{}/{}", f.package(), s.name(), m.name()));
            }
        }
    }
    paths.sort();
    assert_eq!(
        paths,
        [
            "/feeder.LogService/HealthCheck",
            "/feeder.LogService/WatchAlerts",
            "/feeder.LogService/WatchLogs",
            "/feeder.LogService/WatchMessages",
            "/policy.PolicyService/containerPolicy",
            "/policy.PolicyService/hostPolicy",
            "/policy.PolicyService/networkPolicy",
            "/policy.ProbeService/getProbeData",
            "/state_agent.StateAgent/GetState",
            "/state_agent.StateAgent/WatchState",
        ]
    );
}

#[test]
fn policy_status_values() {
    use policy::PolicyStatus as S;
    let all = [
        (S::Failure, 0, "Failure"),
        (S::Applied, 1, "Applied"),
        (S::Deleted, 2, "Deleted"),
        (S::Modified, 3, "Modified"),
        (S::NotExist, 4, "NotExist"),
        (S::Invalid, 5, "Invalid"),
        (S::NotEnabled, 6, "NotEnabled"),
    ];
    for (status, number, name) in all {
        assert_eq!(status as i32, number);
        // karmor prints "Policy <name>".
        assert_eq!(status.as_str_name(), name);
    }
}

#[test]
fn out_of_order_tags_on_the_wire() {
    // HostPPID = 27, varint: key (27 << 3 | 0) = 216 = 0xd8 0x01.
    let a = Alert {
        host_ppid: 1,
        ..Default::default()
    };
    assert_eq!(a.encode_to_vec(), [0xd8, 0x01, 0x01]);
    // Log UserName = 34, length-delimited: key (34 << 3 | 2) = 274 = 0x92 0x02.
    let l = Log {
        user_name: "r".into(),
        ..Default::default()
    };
    assert_eq!(l.encode_to_vec(), [0x92, 0x02, 0x01, b'r']);
}

/// Minimal LogService: echoes the nonce and sends one alert to accepted subscribers.
struct Feed;

type Stream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl LogService for Feed {
    async fn health_check(
        &self,
        req: Request<NonceMessage>,
    ) -> Result<Response<ReplyMessage>, Status> {
        Ok(Response::new(ReplyMessage {
            retval: req.into_inner().nonce,
        }))
    }

    type WatchMessagesStream = Stream<Message>;
    async fn watch_messages(
        &self,
        _: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchMessagesStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }

    type WatchAlertsStream = Stream<Alert>;
    async fn watch_alerts(
        &self,
        req: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let filter = req.into_inner().filter;
        if filter != values::filter::ALL && filter != values::filter::POLICY {
            return Ok(Response::new(Box::pin(tokio_stream::empty())));
        }
        let alert = Alert {
            host_ppid: 42,
            user_name: "root".into(),
            event_data: [("Lsm".to_string(), "CAPABLE".to_string())].into(),
            ..Default::default()
        };
        Ok(Response::new(Box::pin(tokio_stream::iter([Ok(alert)]))))
    }

    type WatchLogsStream = Stream<Log>;
    async fn watch_logs(
        &self,
        _: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchLogsStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }
}

#[tokio::test]
async fn client_server_round_trip() {
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LogServiceServer::new(Feed))
            .serve_with_incoming(incoming),
    );

    let mut client = LogServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let reply = client
        .health_check(NonceMessage { nonce: 77 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.retval, 77);

    let mut alerts = client
        .watch_alerts(RequestMessage {
            filter: values::filter::POLICY.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let got = alerts.next().await.unwrap().unwrap();
    assert_eq!(got.host_ppid, 42);
    assert_eq!(got.user_name, "root");
    assert_eq!(got.event_data["Lsm"], "CAPABLE");
    assert!(alerts.next().await.is_none());

    // A filter other than all/policy ends the stream with OK and no items.
    let mut none = client
        .watch_alerts(RequestMessage {
            filter: "system".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.next().await.is_none());
}
