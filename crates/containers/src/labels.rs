//! Name, namespace and labels of a container, derived the same way whatever delivered it (our
//! hook, an upstream hook, the runc rescan, the hookPath file), so KubeArmorPolicy selectors
//! match as upstream (spec-policy §1.4, runtime §5.1 step 6):
//!
//! * labels: every OCI annotation (values up to [`MAX_ANNOTATION_LABEL_BYTES`]), the pod and
//!   container labels CRI-O records in `io.kubernetes.cri-o.Labels`, upstream's `k=v,...`
//!   label string, then our full label map, **except keys under `kubearmor.io/`**, which are
//!   the daemon's own; then `kubearmor.io/container.name=<name>`, always the derived name;
//! * name: the message's `containerName`, else `io.kubernetes.cri.container-name` (containerd),
//!   `io.kubernetes.container.name` (CRI-O, kubelet), `nerdctl/name`, else the container id;
//! * namespace: `io.kubernetes.pod.namespace` / `io.kubernetes.cri.sandbox-namespace`, else
//!   the message's `namespaceName`, else `container_namespace`.
//!
//! Identity (namespace, name, `kubearmor.io/*` labels) comes only from fields the runtime
//! writes, never from what a workload controls: annotations and pod labels are copied as
//! ordinary labels (policies select on them, as upstream), but a `kubearmor.io/namespace` or
//! `kubearmor.io/container.name` among them is dropped, so a pod cannot pick another
//! namespace's or another container's policies. The runtime fields trusted per delivery path
//! are listed in docs/oci-hooks.md.

use std::collections::BTreeMap;

/// The label a non-Kubernetes policy uses to select containers by name.
pub const CONTAINER_NAME_LABEL: &str = "kubearmor.io/container.name";
/// A label a workload might set to claim a namespace; never read from untrusted input.
pub const NAMESPACE_LABEL: &str = "kubearmor.io/namespace";
/// Label keys under this prefix are the daemon's: dropped from annotations and pod labels.
pub const RESERVED_PREFIX: &str = "kubearmor.io/";
/// The namespace of every non-Kubernetes container.
pub const DEFAULT_NAMESPACE: &str = "container_namespace";
/// Annotation values longer than this are not copied into labels (they are kept as annotations).
pub const MAX_ANNOTATION_LABEL_BYTES: usize = 1024;

/// Annotations naming the container, best first.
const NAME_ANNOTATIONS: &[&str] = &[
    "io.kubernetes.cri.container-name",
    "io.kubernetes.container.name",
    "nerdctl/name",
];
const NAMESPACE_ANNOTATIONS: &[&str] = &[
    "io.kubernetes.pod.namespace",
    "io.kubernetes.cri.sandbox-namespace",
];
const POD_ANNOTATIONS: &[&str] = &["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"];
const IMAGE_ANNOTATIONS: &[&str] = &[
    "io.kubernetes.cri.image-name",
    "io.kubernetes.cri-o.ImageName",
    "org.opencontainers.image.ref.name",
];
/// CRI-O stores the container's labels (pod labels included) as a JSON object here.
const CRIO_LABELS_ANNOTATION: &str = "io.kubernetes.cri-o.Labels";

/// What a container told us about itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct LabelInput<'a> {
    pub container_id: &'a str,
    /// `containerName` of the message (may be empty).
    pub name: &'a str,
    /// `namespaceName` of the message (may be empty).
    pub namespace: &'a str,
    /// `endPointName` of the message (may be empty).
    pub endpoint: &'a str,
    /// `containerImage` of the message (may be empty).
    pub image: &'a str,
    /// Upstream's label string, `k=v` joined by commas.
    pub labels: &'a str,
    /// Our full label map.
    pub labels_map: Option<&'a BTreeMap<String, String>>,
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

/// The identity fields derived from a [`LabelInput`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Derived {
    pub name: String,
    pub namespace: String,
    /// The pod name for Kubernetes containers, else the container name.
    pub endpoint: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
}

pub fn derive(input: &LabelInput<'_>) -> Derived {
    let empty = BTreeMap::new();
    let annotations = input.annotations.unwrap_or(&empty);
    let first = |keys: &[&str]| -> Option<String> {
        keys.iter()
            .filter_map(|k| annotations.get(*k))
            .find(|v| !v.is_empty())
            .cloned()
    };

    let mut labels = BTreeMap::new();
    for (k, v) in annotations {
        if v.len() <= MAX_ANNOTATION_LABEL_BYTES && !k.is_empty() {
            labels.insert(k.clone(), v.clone());
        }
    }
    if let Some(raw) = annotations.get(CRIO_LABELS_ANNOTATION) {
        if let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(raw) {
            labels.extend(map.into_iter().filter(|(k, _)| !k.is_empty()));
        }
    }
    labels.extend(parse_label_string(input.labels));
    if let Some(map) = input.labels_map {
        labels.extend(
            map.iter()
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.clone(), v.clone())),
        );
    }
    labels.retain(|k, _| !k.starts_with(RESERVED_PREFIX));

    let name = non_empty(input.name)
        .or_else(|| first(NAME_ANNOTATIONS))
        .unwrap_or_else(|| input.container_id.to_string());
    labels.insert(CONTAINER_NAME_LABEL.to_string(), name.clone());

    let namespace = first(NAMESPACE_ANNOTATIONS)
        .or_else(|| non_empty(input.namespace))
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let endpoint = first(POD_ANNOTATIONS)
        .or_else(|| non_empty(input.endpoint))
        .unwrap_or_else(|| name.clone());
    let image = non_empty(input.image)
        .or_else(|| first(IMAGE_ANNOTATIONS))
        .unwrap_or_default();

    Derived {
        name,
        namespace,
        endpoint,
        image,
        labels,
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Upstream's `GetLabelsFromString`: `k=v` pairs separated by commas; entries without `=` are
/// ignored, the value is everything after the first `=`.
pub fn parse_label_string(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Upstream's label string: sorted `k=v` joined by commas. Pairs that cannot be represented
/// (a comma anywhere, `=` in the key) are left out; they stay in the label map.
pub fn label_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .filter(|(k, v)| !k.contains([',', '=']) && !v.contains(','))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bare_runc_container_is_named_by_its_id() {
        let d = derive(&LabelInput {
            container_id: "web",
            ..Default::default()
        });
        assert_eq!(d.name, "web");
        assert_eq!(d.namespace, DEFAULT_NAMESPACE);
        assert_eq!(d.endpoint, "web");
        assert_eq!(d.labels, map(&[(CONTAINER_NAME_LABEL, "web")]));
    }

    #[test]
    fn annotations_become_labels() {
        let ann = map(&[
            ("app", "nginx"),
            ("org.opencontainers.image.title", "nginx"),
            ("huge", &"x".repeat(MAX_ANNOTATION_LABEL_BYTES + 1)),
        ]);
        let d = derive(&LabelInput {
            container_id: "c1",
            annotations: Some(&ann),
            ..Default::default()
        });
        assert_eq!(d.labels.get("app").map(String::as_str), Some("nginx"));
        assert!(d.labels.contains_key("org.opencontainers.image.title"));
        assert!(!d.labels.contains_key("huge"));
        assert_eq!(d.labels[CONTAINER_NAME_LABEL], "c1");
    }

    #[test]
    fn kubernetes_annotations_give_name_namespace_and_pod() {
        // containerd CRI
        let ann = map(&[
            ("io.kubernetes.cri.container-name", "mysql"),
            ("io.kubernetes.cri.sandbox-name", "mysql-0"),
            ("io.kubernetes.cri.sandbox-namespace", "wordpress-mysql"),
            (
                "io.kubernetes.cri.image-name",
                "docker.io/library/mysql:5.6",
            ),
        ]);
        let d = derive(&LabelInput {
            container_id: "0123456789abcdef",
            annotations: Some(&ann),
            ..Default::default()
        });
        assert_eq!(d.name, "mysql");
        assert_eq!(d.namespace, "wordpress-mysql");
        assert_eq!(d.endpoint, "mysql-0");
        assert_eq!(d.image, "docker.io/library/mysql:5.6");
        assert_eq!(d.labels[CONTAINER_NAME_LABEL], "mysql");

        // CRI-O, with pod labels in io.kubernetes.cri-o.Labels
        let ann = map(&[
            ("io.kubernetes.container.name", "nginx"),
            ("io.kubernetes.pod.name", "nginx-8f458dc5b-fl42t"),
            ("io.kubernetes.pod.namespace", "default"),
            (
                "io.kubernetes.cri-o.Labels",
                r#"{"app":"nginx","io.kubernetes.pod.namespace":"default"}"#,
            ),
        ]);
        let d = derive(&LabelInput {
            container_id: "c2",
            annotations: Some(&ann),
            ..Default::default()
        });
        assert_eq!(d.name, "nginx");
        assert_eq!(d.namespace, "default");
        assert_eq!(d.endpoint, "nginx-8f458dc5b-fl42t");
        assert_eq!(d.labels["app"], "nginx");
    }

    #[test]
    fn workload_labels_cannot_claim_identity() {
        // a pod's annotations, its labels (CRI-O's JSON) and the hook's label fields all try
        // to move the container to namespace `other` and to take another container's name
        let ann = map(&[
            (NAMESPACE_LABEL, "other"),
            (CONTAINER_NAME_LABEL, "victim"),
            (
                CRIO_LABELS_ANNOTATION,
                r#"{"kubearmor.io/namespace":"other","kubearmor.io/container.name":"victim","app":"web"}"#,
            ),
        ]);
        let extra = map(&[(NAMESPACE_LABEL, "other"), ("tier", "db")]);
        let d = derive(&LabelInput {
            container_id: "c3",
            name: "real-name",
            labels: "kubearmor.io/namespace=other,kubearmor.io/container.name=victim,zone=a",
            labels_map: Some(&extra),
            annotations: Some(&ann),
            ..Default::default()
        });
        assert_eq!(d.name, "real-name");
        assert_eq!(d.namespace, DEFAULT_NAMESPACE);
        assert_eq!(d.labels[CONTAINER_NAME_LABEL], "real-name");
        assert!(!d.labels.contains_key(NAMESPACE_LABEL));
        // ordinary labels still select, as upstream
        assert_eq!(
            (
                d.labels["app"].as_str(),
                d.labels["tier"].as_str(),
                d.labels["zone"].as_str()
            ),
            ("web", "db", "a")
        );
        // the runtime's own fields do set the namespace
        let ann = map(&[("io.kubernetes.cri.sandbox-namespace", "shop")]);
        let d = derive(&LabelInput {
            container_id: "c4",
            namespace: "ignored",
            annotations: Some(&ann),
            ..Default::default()
        });
        assert_eq!(d.namespace, "shop");
    }

    #[test]
    fn upstream_podman_message() {
        // what deployments/podman/Hook sends
        let d = derive(&LabelInput {
            container_id: "f00",
            name: "wordpress-mysql",
            namespace: "container_namespace",
            endpoint: "wordpress-mysql",
            image: "mysql:5.6",
            labels: "io.container.manager=libpod,namespaceName=container_namespace,containerType=podman,kubearmor.io/container.name=wordpress-mysql",
            ..Default::default()
        });
        assert_eq!(d.name, "wordpress-mysql");
        assert_eq!(d.namespace, DEFAULT_NAMESPACE);
        assert_eq!(d.image, "mysql:5.6");
        assert_eq!(d.labels["containerType"], "podman");
        assert_eq!(d.labels[CONTAINER_NAME_LABEL], "wordpress-mysql");
    }

    #[test]
    fn derivation_is_idempotent() {
        let ann = map(&[("io.kubernetes.container.name", "x"), ("a", "1,2")]);
        let d1 = derive(&LabelInput {
            container_id: "id",
            annotations: Some(&ann),
            ..Default::default()
        });
        let s = label_string(&d1.labels);
        let d2 = derive(&LabelInput {
            container_id: "id",
            name: &d1.name,
            namespace: &d1.namespace,
            endpoint: &d1.endpoint,
            labels: &s,
            labels_map: Some(&d1.labels),
            annotations: Some(&ann),
            ..Default::default()
        });
        assert_eq!(d1, d2);
    }

    #[test]
    fn label_string_round_trip() {
        let m = map(&[("b", "2"), ("a", "1"), ("c", "x,y"), ("d", "k=v")]);
        let s = label_string(&m);
        assert_eq!(s, "a=1,b=2,d=k=v");
        let back = parse_label_string(&s);
        assert_eq!(back, map(&[("a", "1"), ("b", "2"), ("d", "k=v")]));
        assert!(parse_label_string("").is_empty());
        assert_eq!(
            parse_label_string("novalue,=x, k = v"),
            map(&[("k ", " v")])
        );
    }
}
