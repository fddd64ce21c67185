//! The ENIConfig resource as a Rust type: the single source of the CRD (`vpcctl crd`,
//! `deploy/crd.yaml`) and what the watches and the status writer read and write.

use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The subnet and security groups of pod ENIs.
// `eniconfig::EniConfigSpec` is the one spec type; this wrapper only carries the derive.
// The printer columns repeat `type_ = "string"`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "crd.k8s.amazonaws.com",
    version = "v1alpha1",
    kind = "ENIConfig",
    plural = "eniconfigs",
    singular = "eniconfig",
    status = "EniConfigStatus",
    derive = "PartialEq",
    doc = "ENIConfig names the subnet and security groups of the ENIs that ipamd creates for pods on the nodes that select it (custom networking).",
    printcolumn(name = "Subnet", type_ = "string", json_path = ".spec.subnet"),
    printcolumn(name = "MoreSubnets", type_ = "string", json_path = ".spec.subnets"),
    printcolumn(
        name = "SecurityGroups",
        type_ = "string",
        json_path = ".spec.securityGroups"
    ),
    printcolumn(name = "AZ", type_ = "string", json_path = ".status.availabilityZone"),
    printcolumn(
        name = "Free",
        type_ = "integer",
        json_path = ".status.availableIpAddressCount"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct EniConfigResourceSpec(pub eniconfig::EniConfigSpec);

impl std::ops::Deref for EniConfigResourceSpec {
    type Target = eniconfig::EniConfigSpec;
    fn deref(&self) -> &eniconfig::EniConfigSpec {
        &self.0
    }
}

/// Written by the ENIConfig validator (ipamd's elected status writer or `vpcctl validate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EniConfigStatus {
    /// The availability zone of spec.subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Free addresses in spec.subnet (with spec.subnets: in all of them) when last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_ip_address_count: Option<i64>,
    /// With spec.subnets: each subnet that exists, with its zone and free addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"]))]
    pub subnets: Option<Vec<SubnetStatus>>,
    /// SubnetFound, SecurityGroupsFound or SecurityGroupsDefaulted, SameVPC, Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<Condition>>,
}

/// One subnet of an ENIConfig as EC2 reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnetStatus {
    pub id: String,
    pub cidr: String,
    pub availability_zone: String,
    pub available_ip_address_count: i64,
}

/// A standard Kubernetes condition (metav1.Condition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[schemars(extend("maxLength" = 316, "pattern" = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"))]
    #[serde(rename = "type")]
    pub type_: String,
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: String,
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    #[schemars(extend("maxLength" = 1024, "minLength" = 1, "pattern" = "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"))]
    pub reason: String,
    #[schemars(extend("maxLength" = 32768))]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub observed_generation: Option<i64>,
}

const CRD_HEADER: &str = "\
# The ENIConfig CustomResourceDefinition (group crd.k8s.amazonaws.com, cluster scoped).
# Accepts every ENIConfig of the reference procedure and of the older v1beta1 CRD's users that has a
# spec.subnet; adds a status subresource (written by the ENIConfig validator) and printer columns.
# Generated from the Rust type (crates/cluster/src/crd.rs) by `vpcctl crd`: do not edit by hand.
# A copy lives in the Helm chart's crds/ directory; a test fails when either drifts from the type.
";

/// The CRD as YAML, with a header saying where it comes from.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    Ok(format!(
        "{CRD_HEADER}{}",
        serde_yaml::to_string(&ENIConfig::crd())?
    ))
}
