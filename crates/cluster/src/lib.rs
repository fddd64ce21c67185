//! The Kubernetes side of the node agent, kept thin: the ENIConfig CRD type, the watches of this
//! node's Node and of the ENIConfigs (feeding the same channel as standalone mode), Events on the
//! Node, and the ENIConfig status writer elected through a Lease.

pub mod admin;
pub mod connect;
pub mod crd;
pub mod events;
pub mod lease;
pub mod status;
pub mod watch;

pub use connect::{ConnectError, Retry, connect, wait_for_api};
pub use crd::{
    Condition, ENIConfig, EniConfigResourceSpec, EniConfigStatus, SubnetStatus, crd_yaml,
};
pub use events::{NodeEvent, publish_node_events};
pub use lease::{Election, LEASE_NAME, elect};
pub use status::{Facts, run_writer, status_for, write_all};
pub use watch::{Merge, ObjectsRx, node_object, watch_objects};
