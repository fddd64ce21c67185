//! The ENIConfig resource (`custom-networking.md`): its manifest form, which one a node uses,
//! and its validation against EC2 facts. Pure: no I/O.

mod manifest;
mod select;
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
