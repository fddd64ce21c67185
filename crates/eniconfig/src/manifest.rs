//! The YAML a person would `kubectl apply`: `Node` and `ENIConfig` objects, possibly several
//! documents per file. Standalone mode reads them from a directory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "crd.k8s.amazonaws.com/v1alpha1";

/// The subnet and security groups of pod ENIs: the one spec type of the ENIConfig resource
/// (standalone manifests read it; `cluster`'s CRD is generated from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EniConfigSpec {
    /// Subnet ID (subnet-...) in the node's VPC and availability zone.
    pub subnet: String,
    /// Security group IDs (sg-...) of the same VPC. Empty or missing means the VPC's default
    /// security group (ENI_CONFIG_SG_FALLBACK=primary-eni copies the primary ENI's groups).
    #[serde(
        rename = "securityGroups",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub security_groups: Option<Vec<String>>,
    /// More subnets for pod ENIs beside `subnet`, all in the same VPC and zone (ours: clients of
    /// the existing CRD ignore it). Each new ENI goes to the one of them with the most free
    /// addresses, the next when one is full; ENIs already made stay where they are. Listing
    /// `subnet` again is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnets: Option<Vec<String>>,
}

impl EniConfigSpec {
    /// A spec of one subnet (what the reference document's ENIConfigs are).
    pub fn new(subnet: impl Into<String>, security_groups: Option<Vec<String>>) -> Self {
        EniConfigSpec {
            subnet: subnet.into(),
            security_groups,
            subnets: None,
        }
    }

    /// Listed groups; empty when the field is missing or empty.
    pub fn groups(&self) -> &[String] {
        self.security_groups.as_deref().unwrap_or_default()
    }

    /// Every subnet pod ENIs may go to: `subnet` first, then `subnets` in order, each once.
    pub fn all_subnets(&self) -> Vec<String> {
        let mut out = vec![self.subnet.clone()];
        for s in self.subnets.iter().flatten() {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }

    /// This spec with `subnet` added to `spec.subnets` (unchanged when it is listed already).
    pub fn with_subnet(&self, subnet: String) -> EniConfigSpec {
        let mut out = self.clone();
        if !self.all_subnets().contains(&subnet) {
            out.subnets.get_or_insert_with(Vec::new).push(subnet);
        }
        out
    }

    /// `spec.subnets` entries that cannot name a subnet (empty), by position.
    fn subnet_list_problem(&self) -> Option<String> {
        let empty: Vec<String> = self
            .subnets
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, s)| s.trim().is_empty())
            .map(|(i, _)| i.to_string())
            .collect();
        (!empty.is_empty()).then(|| format!("spec.subnets[{}] is empty", empty.join(", ")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EniConfig {
    pub name: String,
    pub spec: EniConfigSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeObject {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `status.capacity.pods`: the kubelet's max pods, when the object says.
    pub pod_capacity: Option<u32>,
    /// Cordoned: `spec.unschedulable`, or the `node.kubernetes.io/unschedulable:NoSchedule` taint.
    pub unschedulable: bool,
}

/// The taint the node lifecycle controller puts on a cordoned node.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// A quantity as the kubelet writes `capacity.pods`: a plain whole number.
pub fn pod_count(quantity: &str) -> Option<u32> {
    quantity.trim().parse().ok()
}

/// What a source (a manifests directory or the API server) knows now: this node's Node object and
/// every ENIConfig by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Objects {
    pub node: Option<NodeObject>,
    pub eniconfigs: BTreeMap<String, EniConfigSpec>,
    /// What could not be read (a file, a watch); the last good content is kept.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Node(NodeObject),
    EniConfig(EniConfig),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("document {document}: not valid YAML: {message}")]
    Yaml { document: usize, message: String },
    #[error("document {document} ({kind} {name:?}): {problem}")]
    Invalid {
        document: usize,
        kind: String,
        name: String,
        problem: String,
    },
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    metadata: Option<Meta>,
    spec: Option<serde_yaml::Value>,
    status: Option<serde_yaml::Value>,
}

/// A Node's pod capacity and cordon state from its spec and status (as `kubectl get -o yaml`
/// shows them); absent fields mean unknown capacity and schedulable.
fn node_state(
    spec: Option<&serde_yaml::Value>,
    status: Option<&serde_yaml::Value>,
) -> (Option<u32>, bool) {
    let capacity = status
        .and_then(|s| s.get("capacity"))
        .and_then(|c| c.get("pods"))
        .and_then(|p| match p {
            serde_yaml::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            serde_yaml::Value::String(s) => pod_count(s),
            _ => None,
        });
    let cordoned = spec
        .and_then(|s| s.get("unschedulable"))
        .and_then(serde_yaml::Value::as_bool)
        .unwrap_or(false);
    let tainted = spec
        .and_then(|s| s.get("taints"))
        .and_then(serde_yaml::Value::as_sequence)
        .is_some_and(|taints| {
            taints.iter().any(|t| {
                t.get("key").and_then(serde_yaml::Value::as_str) == Some(UNSCHEDULABLE_TAINT)
                    && t.get("effect").and_then(serde_yaml::Value::as_str) == Some("NoSchedule")
            })
        });
    (capacity, cordoned || tainted)
}

/// Parses every document; objects of other kinds are skipped, a malformed one is an error that
/// names the document, the kind and the name.
pub fn parse_manifests(text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = index + 1;
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| ManifestError::Yaml {
            document,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let raw: Raw = serde_yaml::from_value(value).map_err(|e| ManifestError::Yaml {
            document,
            message: e.to_string(),
        })?;
        let meta = raw.metadata;
        let name = meta.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let invalid = |problem: String| ManifestError::Invalid {
            document,
            kind: raw.kind.clone(),
            name: name.clone(),
            problem,
        };
        match raw.kind.as_str() {
            "Node" => {
                if name.is_empty() {
                    return Err(invalid("metadata.name is missing".into()));
                }
                let meta = meta.unwrap_or(Meta {
                    name: String::new(),
                    labels: None,
                    annotations: None,
                });
                let (pod_capacity, unschedulable) =
                    node_state(raw.spec.as_ref(), raw.status.as_ref());
                out.push(Object::Node(NodeObject {
                    name: name.clone(),
                    labels: meta.labels.unwrap_or_default(),
                    annotations: meta.annotations.unwrap_or_default(),
                    pod_capacity,
                    unschedulable,
                }));
            }
            "ENIConfig" => {
                if raw.api_version != API_VERSION {
                    return Err(invalid(format!(
                        "apiVersion is {:?}, expected {API_VERSION}",
                        raw.api_version
                    )));
                }
                if name.is_empty() {
                    return Err(invalid("metadata.name is missing".into()));
                }
                let spec = raw.spec.ok_or_else(|| invalid("spec is missing".into()))?;
                let spec: EniConfigSpec =
                    serde_yaml::from_value(spec).map_err(|e| invalid(format!("spec: {e}")))?;
                if spec.subnet.trim().is_empty() {
                    return Err(invalid("spec.subnet is empty".into()));
                }
                if let Some(problem) = spec.subnet_list_problem() {
                    return Err(invalid(problem));
                }
                out.push(Object::EniConfig(EniConfig { name, spec }));
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_reference_documents_objects() {
        let text = r#"
apiVersion: crd.k8s.amazonaws.com/v1alpha1
kind: ENIConfig
metadata:
  name: us-west-2a
spec:
  securityGroups:
    - sg-0dff111a1d11c1c11
  subnet: subnet-011b111c1f11fdf11
---
apiVersion: crd.k8s.amazonaws.com/v1alpha1
kind: ENIConfig
metadata:
  name: us-west-2b
spec:
  subnet: subnet-022b222c2f22fdf22
---
apiVersion: v1
kind: Node
metadata:
  name: ip-10-0-1-5.us-west-2.compute.internal
  labels: {topology.kubernetes.io/zone: us-west-2a}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
"#;
        let objects = parse_manifests(text).unwrap();
        assert_eq!(objects.len(), 3);
        let Object::EniConfig(a) = &objects[0] else {
            panic!()
        };
        assert_eq!(a.spec.groups(), ["sg-0dff111a1d11c1c11"]);
        let Object::EniConfig(b) = &objects[1] else {
            panic!()
        };
        assert!(b.spec.groups().is_empty());
        let Object::Node(n) = &objects[2] else {
            panic!()
        };
        assert_eq!(n.labels["topology.kubernetes.io/zone"], "us-west-2a");
    }

    #[test]
    fn several_subnets_beside_the_required_one() {
        let objects = parse_manifests(
            "apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata: {name: a}\nspec: {subnet: subnet-1, subnets: [subnet-2, subnet-1, subnet-3]}\n",
        )
        .unwrap();
        let Object::EniConfig(a) = &objects[0] else {
            panic!()
        };
        assert_eq!(a.spec.all_subnets(), ["subnet-1", "subnet-2", "subnet-3"]);
        // Without the list: the one subnet, as the reference document's ENIConfigs.
        assert_eq!(
            EniConfigSpec::new("subnet-9", None).all_subnets(),
            ["subnet-9"]
        );
        let err = parse_manifests(
            "apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata: {name: a}\nspec: {subnet: subnet-1, subnets: [subnet-2, \"\"]}\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("spec.subnets[1] is empty"),
            "{err}"
        );
        let err = parse_manifests(
            "apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata: {name: a}\nspec: {subnet: subnet-1, subnets: subnet-2}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("spec:"), "{err}");
    }

    #[test]
    fn a_nodes_pod_capacity_and_cordon() {
        let objects = parse_manifests(
            "kind: Node\nmetadata: {name: a}\nspec: {taints: [{key: node.kubernetes.io/unschedulable, effect: NoSchedule}]}\nstatus: {capacity: {cpu: \"2\", pods: \"29\"}}\n---\nkind: Node\nmetadata: {name: b}\nspec: {unschedulable: true}\nstatus: {capacity: {pods: 110}}\n---\nkind: Node\nmetadata: {name: c}\nspec: {taints: [{key: node.kubernetes.io/unschedulable, effect: PreferNoSchedule}]}\n",
        )
        .unwrap();
        let nodes: Vec<(Option<u32>, bool)> = objects
            .iter()
            .map(|o| match o {
                Object::Node(n) => (n.pod_capacity, n.unschedulable),
                Object::EniConfig(_) => panic!(),
            })
            .collect();
        assert_eq!(nodes, [(Some(29), true), (Some(110), true), (None, false)]);
    }

    #[test]
    fn errors_name_document_kind_and_name() {
        let err = parse_manifests("kind: ENIConfig\napiVersion: crd.k8s.amazonaws.com/v1alpha1\nmetadata: {name: x}\nspec: {securityGroups: [sg-1]}\n").unwrap_err();
        assert!(
            err.to_string().contains("document 1 (ENIConfig \"x\")")
                && err.to_string().contains("subnet"),
            "{err}"
        );
        let err = parse_manifests("---\nkind: Node\n---\nkind: [").unwrap_err();
        assert!(err.to_string().starts_with("document 1 (Node"), "{err}");
        let err = parse_manifests("a: b\n---\n: : :\n").unwrap_err();
        assert!(matches!(err, ManifestError::Yaml { .. }), "{err}");
        let err = parse_manifests(
            "kind: ENIConfig\napiVersion: v1\nmetadata: {name: x}\nspec: {subnet: s}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("apiVersion"), "{err}");
    }
}
