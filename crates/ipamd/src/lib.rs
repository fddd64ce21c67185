//! ipamd, the node agent: learns the instance and its ENIs, picks the node's ENIConfig, keeps
//! the warm pool by calling EC2, hands addresses to the plugin over gRPC, routes the node's
//! ENIs, sets up SNAT, checkpoints, serves introspection and metrics.

pub mod app;
pub mod capacity;
pub mod cli;
pub mod cniconf;
pub mod compat;
pub mod datapath;
pub mod drift;
pub mod events;
pub mod facts;
pub mod forget;
pub mod introspection;
pub mod limits;
pub mod logging;
pub mod manager;
pub mod memory;
pub mod metrics;
pub mod node;
pub mod pacing;
pub mod persist;
pub mod readiness;
pub mod reconcile;
pub mod serve;
pub mod server;
pub mod source;
pub mod subnets;
