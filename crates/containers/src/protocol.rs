//! The ka.sock wire protocol (spec §4.3): KubeArmor's `HookRequest` JSON, our extra fields, a
//! streaming decoder with a size cap, and the `ok` / `err` replies.
//!
//! Upstream has no framing: each request is one JSON object in one `write`, each reply is the
//! raw bytes `ok` or `err`. We decode a byte stream instead of single reads, so coalesced or
//! split writes are handled, and we never act on a message that failed to decode.
//!
//! Our additions ride in extra container fields (`cgroupId`, `cgroupPath`, `rootfs`, `bundle`,
//! `labelsMap`, `annotations`). Go's `encoding/json` ignores unknown keys, so an upstream daemon
//! accepts what our hook sends, and we accept what upstream hooks send (the extras default to
//! empty).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Largest request we accept, in bytes (upstream reads into a 4096-byte buffer; we allow room
/// for labels and annotations). A request that grows past this is rejected and the connection
/// closed.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Reply for a message that was applied.
pub const REPLY_OK: &[u8] = b"ok";
/// Reply for a message that was rejected (malformed, invalid, or the readiness gate is closed).
pub const REPLY_ERR: &[u8] = b"err";

/// `tp.HookOperation`: an integer on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Operation {
    /// `HookContainerCreate` (0).
    #[default]
    Create,
    /// `HookContainerDelete` (1).
    Delete,
}

impl Serialize for Operation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(match self {
            Operation::Create => 0,
            Operation::Delete => 1,
        })
    }
}

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Option::<i64>::deserialize(d)? {
            None | Some(0) => Ok(Operation::Create),
            Some(1) => Ok(Operation::Delete),
            Some(n) => Err(serde::de::Error::custom(format!(
                "unknown operation {n} (0 = create, 1 = delete)"
            ))),
        }
    }
}

/// `tp.HookRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HookRequest {
    pub operation: Operation,
    #[serde(deserialize_with = "nullable")]
    pub detached: bool,
    #[serde(deserialize_with = "nullable")]
    pub container: Container,
}

/// `tp.PodOwner` (every member omitempty upstream).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Owner {
    #[serde(
        rename = "ref",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub reference: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub name: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub namespace: String,
}

/// `tp.Container` with the field names of spec §4.3, in upstream order, followed by our
/// extensions. Missing fields and `null` take the zero value, as in Go.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Container {
    #[serde(rename = "containerID", deserialize_with = "nullable")]
    pub container_id: String,
    #[serde(rename = "containerName", deserialize_with = "nullable")]
    pub container_name: String,
    #[serde(rename = "containerImage", deserialize_with = "nullable")]
    pub container_image: String,
    #[serde(rename = "namespaceName", deserialize_with = "nullable")]
    pub namespace_name: String,
    #[serde(deserialize_with = "nullable")]
    pub owner: Owner,
    #[serde(rename = "endPointName", deserialize_with = "nullable")]
    pub endpoint_name: String,
    /// Upstream's label string: `k=v` pairs joined by commas.
    #[serde(deserialize_with = "nullable")]
    pub labels: String,
    #[serde(rename = "apparmorProfile", deserialize_with = "nullable")]
    pub apparmor_profile: String,
    #[serde(deserialize_with = "nullable")]
    pub privileged: bool,
    #[serde(deserialize_with = "nullable")]
    pub pidns: u32,
    #[serde(deserialize_with = "nullable")]
    pub mntns: u32,
    #[serde(deserialize_with = "nullable")]
    pub pid: u32,
    #[serde(rename = "node_name", deserialize_with = "nullable")]
    pub node_name: String,
    #[serde(rename = "node_id", deserialize_with = "nullable")]
    pub node_id: String,
    #[serde(rename = "protocolPort", deserialize_with = "nullable")]
    pub protocol_port: String,
    #[serde(deserialize_with = "nullable")]
    pub status: String,
    #[serde(rename = "container_ip", deserialize_with = "nullable")]
    pub container_ip: String,
    #[serde(rename = "last_updated_at", deserialize_with = "nullable")]
    pub last_updated_at: String,
    #[serde(rename = "policyEnabled", deserialize_with = "nullable")]
    pub policy_enabled: i32,
    #[serde(rename = "processVisibilityEnabled", deserialize_with = "nullable")]
    pub process_visibility_enabled: bool,
    #[serde(rename = "fileVisibilityEnabled", deserialize_with = "nullable")]
    pub file_visibility_enabled: bool,
    #[serde(rename = "networkVisibilityEnabled", deserialize_with = "nullable")]
    pub network_visibility_enabled: bool,
    #[serde(
        rename = "capabilitiesVisibilityEnabled",
        deserialize_with = "nullable"
    )]
    pub capabilities_visibility_enabled: bool,

    // ---- kubearmor-rs extensions (ignored by upstream) ----
    /// Inode of the container's cgroup-v2 directory (= `bpf_get_current_cgroup_id()`); 0 when
    /// unknown.
    #[serde(
        rename = "cgroupId",
        skip_serializing_if = "is_zero",
        deserialize_with = "nullable"
    )]
    pub cgroup_id: u64,
    /// The container's cgroup-v2 path as in `/proc/PID/cgroup` (`0::<path>`).
    #[serde(
        rename = "cgroupPath",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub cgroup_path: String,
    /// Absolute path of the root filesystem on the host.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub rootfs: String,
    /// The OCI bundle directory.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub bundle: String,
    /// The full label map (the `labels` string cannot carry values with commas).
    #[serde(
        rename = "labelsMap",
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub labels_map: BTreeMap<String, String>,
    /// The OCI annotations of the container.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub annotations: BTreeMap<String, String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Go semantics: `null` leaves the zero value.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl HookRequest {
    pub fn create(container: Container) -> Self {
        HookRequest {
            operation: Operation::Create,
            detached: false,
            container,
        }
    }

    /// A delete carries only the container id, as upstream's hook sends it.
    pub fn delete(container_id: impl Into<String>) -> Self {
        HookRequest {
            operation: Operation::Delete,
            detached: false,
            container: Container {
                container_id: container_id.into(),
                ..Container::default()
            },
        }
    }

    /// Serialise for the wire (one JSON object, no newline).
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// Why a message was rejected.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are not JSON, or not a JSON object. The stream cannot be resynchronised: reply
    /// `err` and close the connection.
    #[error("malformed hook message: {0}")]
    Syntax(String),
    /// A message grew past the size cap. Reply `err` and close the connection.
    #[error("hook message larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Well-formed JSON that is not a valid `HookRequest` (wrong types, unknown operation).
    /// The stream is still in sync: reply `err` and carry on.
    #[error("invalid hook message: {0}")]
    Schema(String),
}

impl DecodeError {
    /// Whether the connection must be closed after replying.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, DecodeError::Schema(_))
    }
}

/// Splits a byte stream into `HookRequest`s.
///
/// Feed bytes with [`Decoder::push`] and drain with [`Decoder::next_message`] until it returns
/// `None` (need more bytes). After a fatal error the decoder keeps returning that error.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    limit: usize,
    failed: Option<DecodeError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(MAX_MESSAGE_BYTES)
    }
}

impl Decoder {
    pub fn new(limit: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            limit,
            failed: None,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes received but not yet decoded (ignoring leading whitespace).
    pub fn pending(&self) -> usize {
        self.buf.len() - leading_ws(&self.buf)
    }

    /// The next complete message, an error, or `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Option<Result<HookRequest, DecodeError>> {
        if let Some(e) = &self.failed {
            return Some(Err(e.clone()));
        }
        let start = leading_ws(&self.buf);
        if start == self.buf.len() {
            self.buf.clear();
            return None;
        }
        if self.buf[start] != b'{' {
            return Some(Err(
                self.fail(DecodeError::Syntax("expected a JSON object".to_string()))
            ));
        }
        let mut stream = serde_json::Deserializer::from_slice(&self.buf[start..])
            .into_iter::<serde_json::Value>();
        match stream.next() {
            Some(Ok(value)) => {
                let end = start + stream.byte_offset();
                if end - start > self.limit {
                    return Some(Err(self.fail(DecodeError::TooLarge { limit: self.limit })));
                }
                self.buf.drain(..end);
                Some(request_from_value(value).map_err(DecodeError::Schema))
            }
            Some(Err(e)) if e.is_eof() => {
                if self.buf.len() - start > self.limit {
                    Some(Err(self.fail(DecodeError::TooLarge { limit: self.limit })))
                } else {
                    None
                }
            }
            Some(Err(e)) => Some(Err(self.fail(DecodeError::Syntax(e.to_string())))),
            None => None,
        }
    }

    fn fail(&mut self, e: DecodeError) -> DecodeError {
        self.buf = Vec::new();
        self.failed = Some(e.clone());
        e
    }
}

/// Convert a decoded JSON value into a `HookRequest`. Objects must be objects: serde would
/// accept an array for a struct (positionally), Go does not.
pub fn request_from_value(value: serde_json::Value) -> Result<HookRequest, String> {
    use serde_json::Value;
    let is_object_or_null =
        |v: Option<&Value>| matches!(v, None | Some(Value::Null | Value::Object(_)));
    let Value::Object(top) = &value else {
        return Err("expected a JSON object".to_string());
    };
    let container = top.get("container");
    if !is_object_or_null(container) {
        return Err("\"container\" must be an object".to_string());
    }
    if !is_object_or_null(container.and_then(|c| c.get("owner"))) {
        return Err("\"container.owner\" must be an object".to_string());
    }
    serde_json::from_value::<HookRequest>(value).map_err(|e| e.to_string())
}

fn leading_ws(b: &[u8]) -> usize {
    b.iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .count()
}

/// A reply as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Ok,
    Err,
}

impl Reply {
    /// Parse what one read returned. Anything but exactly `ok` counts as `err`, as upstream's
    /// hook compares the bytes with `ok`.
    pub fn parse(bytes: &[u8]) -> Reply {
        if bytes == REPLY_OK {
            Reply::Ok
        } else {
            Reply::Err
        }
    }

    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Reply::Ok => REPLY_OK,
            Reply::Err => REPLY_ERR,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const UPSTREAM: &str = r#"{"operation":0,"detached":false,
 "container":{"containerID":"abc","containerName":"","containerImage":"","namespaceName":"","owner":{},
  "endPointName":"","labels":"","apparmorProfile":"crio-default","privileged":false,"pidns":4026532456,
  "mntns":4026532455,"pid":0,"node_name":"","node_id":"","protocolPort":"","status":"","container_ip":"",
  "last_updated_at":"","policyEnabled":0,"processVisibilityEnabled":false,"fileVisibilityEnabled":false,
  "networkVisibilityEnabled":false,"capabilitiesVisibilityEnabled":false}}"#;

    fn decode_all(d: &mut Decoder) -> Vec<Result<HookRequest, DecodeError>> {
        let mut out = Vec::new();
        while let Some(r) = d.next_message() {
            let fatal = r.as_ref().err().is_some_and(DecodeError::is_fatal);
            out.push(r);
            if fatal {
                break;
            }
        }
        out
    }

    #[test]
    fn decodes_upstream_message() {
        let mut d = Decoder::default();
        d.push(UPSTREAM.as_bytes());
        let r = d.next_message().unwrap().unwrap();
        assert_eq!(r.operation, Operation::Create);
        assert!(!r.detached);
        assert_eq!(r.container.container_id, "abc");
        assert_eq!(r.container.apparmor_profile, "crio-default");
        assert_eq!(r.container.pidns, 4026532456);
        assert_eq!(r.container.mntns, 4026532455);
        assert_eq!(r.container.cgroup_id, 0);
        assert!(d.next_message().is_none());
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn serialises_upstream_field_names_and_order() {
        let req = HookRequest::create(Container {
            container_id: "abc".into(),
            ..Container::default()
        });
        let s = String::from_utf8(req.to_bytes().unwrap()).unwrap();
        assert!(s.starts_with(r#"{"operation":0,"detached":false,"container":{"containerID":"abc","containerName":"","containerImage":"","namespaceName":"","owner":{},"endPointName":"","labels":"","apparmorProfile":"","privileged":false,"pidns":0,"mntns":0,"pid":0,"node_name":"","node_id":"","protocolPort":"","status":"","container_ip":"","last_updated_at":"","policyEnabled":0,"processVisibilityEnabled":false,"fileVisibilityEnabled":false,"networkVisibilityEnabled":false,"capabilitiesVisibilityEnabled":false}}"#), "{s}");
        let del = String::from_utf8(HookRequest::delete("x").to_bytes().unwrap()).unwrap();
        assert!(del.starts_with(r#"{"operation":1,"#));
    }

    #[test]
    fn extensions_round_trip() {
        let mut c = Container {
            container_id: "abc".into(),
            cgroup_id: 82,
            cgroup_path: "/abc".into(),
            rootfs: "/b/rootfs".into(),
            bundle: "/b".into(),
            ..Container::default()
        };
        c.labels_map.insert("a".into(), "b,c".into());
        c.annotations
            .insert("io.kubernetes.pod.name".into(), "p".into());
        let req = HookRequest::create(c);
        let bytes = req.to_bytes().unwrap();
        let mut d = Decoder::default();
        d.push(&bytes);
        assert_eq!(d.next_message().unwrap().unwrap(), req);
    }

    #[test]
    fn missing_and_null_fields_take_zero_values() {
        let mut d = Decoder::default();
        d.push(br#"{"container":{"containerID":"x","labels":null,"owner":null,"pid":null}}"#);
        let r = d.next_message().unwrap().unwrap();
        assert_eq!(r.operation, Operation::Create);
        assert_eq!(r.container.container_id, "x");
        assert_eq!(r.container.labels, "");
        let mut d = Decoder::default();
        d.push(br#"{"operation":1,"container":{"containerID":"x"}}"#);
        assert_eq!(
            d.next_message().unwrap().unwrap().operation,
            Operation::Delete
        );
    }

    #[test]
    fn coalesced_messages_are_all_decoded() {
        let mut d = Decoder::default();
        let one = HookRequest::delete("a").to_bytes().unwrap();
        let two = HookRequest::delete("b").to_bytes().unwrap();
        let mut both = one.clone();
        both.extend_from_slice(&two);
        both.extend_from_slice(b"\n");
        both.extend_from_slice(&one);
        d.push(&both);
        let ids: Vec<String> = decode_all(&mut d)
            .into_iter()
            .map(|r| r.unwrap().container.container_id)
            .collect();
        assert_eq!(ids, ["a", "b", "a"]);
    }

    #[test]
    fn split_messages_wait_for_the_rest() {
        let bytes = UPSTREAM.as_bytes();
        let mut d = Decoder::default();
        for chunk in bytes.chunks(7) {
            assert!(d.pending() < bytes.len());
            if let Some(r) = d.next_message() {
                panic!("decoded early: {r:?}");
            }
            d.push(chunk);
        }
        assert_eq!(
            d.next_message().unwrap().unwrap().container.container_id,
            "abc"
        );
    }

    #[test]
    fn malformed_json_is_fatal() {
        for bad in [
            &b"not json"[..],
            b"{\"operation\":0,,}",
            b"[1,2]",
            b"\"str\"",
            b"{} x",
        ] {
            let mut d = Decoder::default();
            d.push(bad);
            let out = decode_all(&mut d);
            let last = out.last().unwrap();
            assert!(
                matches!(last, Err(DecodeError::Syntax(_))),
                "{:?} -> {out:?}",
                String::from_utf8_lossy(bad)
            );
            // once failed, always failed: nothing more is processed
            d.push(UPSTREAM.as_bytes());
            assert!(matches!(
                d.next_message(),
                Some(Err(DecodeError::Syntax(_)))
            ));
        }
    }

    #[test]
    fn schema_errors_keep_the_stream_in_sync() {
        let mut d = Decoder::default();
        d.push(br#"{"operation":7,"container":{"containerID":"x"}}"#);
        d.push(br#"{"operation":0,"container":{"pid":"twelve"}}"#);
        d.push(br#"{"operation":0,"container":{"pidns":-1}}"#);
        d.push(br#"{"operation":0,"container":[]}"#);
        d.push(br#"{"operation":0,"container":{"owner":["a"]}}"#);
        d.push(UPSTREAM.as_bytes());
        let out = decode_all(&mut d);
        assert_eq!(out.len(), 6);
        for r in &out[..5] {
            assert!(matches!(r, Err(DecodeError::Schema(_))), "{r:?}");
        }
        assert_eq!(out[5].as_ref().unwrap().container.container_id, "abc");
    }

    #[test]
    fn oversized_messages_are_rejected() {
        // complete but too large
        let mut d = Decoder::new(100);
        let big = format!(r#"{{"container":{{"containerID":"{}"}}}}"#, "x".repeat(200));
        d.push(big.as_bytes());
        assert_eq!(
            d.next_message(),
            Some(Err(DecodeError::TooLarge { limit: 100 }))
        );
        // incomplete and already too large: rejected before the end arrives
        let mut d = Decoder::new(100);
        d.push(br#"{"container":{"containerID":""#);
        assert!(d.next_message().is_none());
        d.push("y".repeat(200).as_bytes());
        assert_eq!(
            d.next_message(),
            Some(Err(DecodeError::TooLarge { limit: 100 }))
        );
        // the default cap is 64 KiB
        let mut d = Decoder::default();
        d.push(b"{\"container\":{\"labels\":\"");
        d.push(&vec![b'a'; MAX_MESSAGE_BYTES]);
        assert!(matches!(
            d.next_message(),
            Some(Err(DecodeError::TooLarge { .. }))
        ));
    }

    #[test]
    fn replies() {
        assert_eq!(Reply::parse(b"ok"), Reply::Ok);
        assert_eq!(Reply::parse(b"err"), Reply::Err);
        assert_eq!(Reply::parse(b"okok"), Reply::Err);
        assert_eq!(Reply::parse(b""), Reply::Err);
        assert_eq!(Reply::Ok.as_bytes(), b"ok");
        assert_eq!(Reply::Err.as_bytes(), b"err");
    }
}
