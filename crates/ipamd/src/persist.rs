//! The checkpoint: one place that writes it (before every reply that changed an allocation, after
//! a restore or a reconcile, at shutdown).
//!
//! Lifecycle: written atomically (0600) on every change; read once at start-up. An unparsable
//! file is moved aside and the state rebuilt from EC2 and the host's pod routes; a file that
//! cannot be read at all (I/O error) stops start-up, so it is never overwritten.

use ipam::checkpoint::{self, Checkpoint, CheckpointError};

use crate::node::{Node, NodeState};

pub fn save(node: &Node, st: &NodeState) -> Result<(), CheckpointError> {
    checkpoint::store(
        &node.cli.settings.backing_store,
        &Checkpoint::from_datastore(&st.ds),
    )
}
