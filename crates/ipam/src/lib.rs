//! The node's pool of ENIs and addresses, with no I/O but the checkpoint file helper: the datastore
//! (who holds which address), the warm-pool arithmetic (when to grow or shrink and by how much) and
//! the checkpoint codec shared with the existing implementation.

pub mod checkpoint;
mod datastore;
mod pool;
mod time;

pub use datastore::{
    AllocKey, Allocation, Assignment, Datastore, DatastoreError, Eni, EniView, PodMetadata,
    Released, Stats, route_table_id,
};
pub use pool::simulate::{Held, Simulation, settle};
pub use pool::{PoolAction, PoolSettings, PoolState, decide};
pub use time::Time;
