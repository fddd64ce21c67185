//! The checkpoint: one place that writes it (before every reply that changed an allocation, after
//! a restore or a reconcile, at shutdown).
//!
//! Lifecycle: written atomically (0600) on every change; read once at start-up. An unparsable
//! file is moved aside and the state rebuilt from EC2 and the host's pod routes; a file that
//! cannot be read at all (I/O error) stops start-up, so it is never overwritten.

use ipam::Time;
use ipam::checkpoint::{self, Checkpoint, CheckpointError, Loaded};
use tracing::{error, info, warn};

use crate::node::{Node, NodeState};

pub fn save(node: &Node, st: &NodeState) -> Result<(), CheckpointError> {
    checkpoint::store(
        &node.cli.settings.backing_store,
        &Checkpoint::from_datastore(&st.ds),
    )
}

/// Restores the checkpoint; a file that cannot be parsed is moved aside and reported, and
/// allocations whose address is not on this node are dropped and reported. A file that cannot
/// be read at all stops start-up: it may hold every running pod, and is never overwritten.
pub fn restore(node: &Node) -> Result<(), String> {
    let path = &node.cli.settings.backing_store;
    let mut st = node.lock();
    match checkpoint::load(path, Time::now()) {
        Ok(Loaded::Missing) => info!(path = %path.display(), "no checkpoint: a fresh node"),
        Ok(Loaded::Quarantined { moved_to, error }) => {
            error!(path = %path.display(), moved_to = %moved_to.display(), error = %error, "the checkpoint is unusable: moved aside, state rebuilt from EC2");
            node.metrics.errors.with_label_values(&["checkpoint"]).inc();
        }
        Ok(Loaded::Read(c)) => match c.restorable() {
            Ok(entries) => {
                let (mut kept, mut dropped) = (0, 0);
                for r in entries {
                    match st
                        .ds
                        .restore(&r.key, r.ip, r.metadata.clone(), r.assigned_at)
                    {
                        Ok(_) => kept += 1,
                        Err(e) => {
                            dropped += 1;
                            warn!(key = %r.key, ip = %r.ip, error = %e, "dropping a checkpointed allocation");
                        }
                    }
                }
                info!(kept, dropped, "checkpoint restored");
            }
            Err(e) => error!(error = %e, "checkpoint entries"),
        },
        Err(e) => {
            return Err(format!(
                "{e}: ipamd will not overwrite a checkpoint it cannot read (it lists the running \
                 pods); fix the file or move it aside, then restart"
            ));
        }
    }
    save(node, &st).map_err(|e| format!("writing the checkpoint: {e}"))
}
