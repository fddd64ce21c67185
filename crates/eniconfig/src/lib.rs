//! The ENIConfig resource (`custom-networking.md`): its manifest form, which one a node uses,
//! its validation against EC2 facts, and which subnet a new pod ENI goes to. Pure: no I/O.

mod manifest;
mod select;
pub mod subnets;
mod validate;

pub use manifest::{
    API_VERSION, EniConfig, EniConfigSpec, ManifestError, NodeObject, Object, Objects,
    UNSCHEDULABLE_TAINT, parse_manifests, pod_count,
};
pub use validate::{GroupFacts, NodeFacts, SubnetFacts, Validation, validate};

pub use select::{
    DEFAULT_ENICONFIG, DEFAULT_KEY, EXTERNAL_ENICONFIG_LABEL, Rule, Selection, SelectionKeys,
    is_zone_name, select,
};
