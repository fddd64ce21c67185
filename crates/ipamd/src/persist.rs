//! The checkpoint: one place that writes it (before every reply that changed an allocation, after
//! a restore or a reconcile, at shutdown).
//!
//! Lifecycle: written atomically (0600) on every change; read once at start-up. An unparsable
//! file is moved aside and the state rebuilt from EC2 and the host's pod routes; a file that
//! cannot be read at all (I/O error) stops start-up, so it is never overwritten.

use ipam::Time;
use ipam::checkpoint::{self, Checkpoint, CheckpointError, Loaded, Restorable};
use tracing::{error, info, warn};

use crate::node::{Node, NodeState};

pub fn save(node: &Node, st: &NodeState) -> Result<(), CheckpointError> {
    checkpoint::store(
        &node.cli.settings.backing_store,
        &Checkpoint::from_datastore(&st.ds),
    )
}

/// Reads the checkpoint (before the ENIs are known: whether it holds any allocation decides
/// whether start-up must ask EC2 for them). A file that cannot be parsed is moved aside and
/// reported; a file that cannot be read at all stops start-up: it may hold every running pod,
/// and is never overwritten.
pub fn read(node: &Node) -> Result<Vec<Restorable>, String> {
    let path = &node.cli.settings.backing_store;
    match checkpoint::load(path, Time::now()) {
        Ok(Loaded::Missing) => {
            info!(path = %path.display(), "no checkpoint: a fresh node");
            Ok(Vec::new())
        }
        Ok(Loaded::Quarantined { moved_to, error }) => {
            error!(path = %path.display(), moved_to = %moved_to.display(), error = %error, "the checkpoint is unusable: moved aside, state rebuilt from EC2");
            node.metrics.errors.with_label_values(&["checkpoint"]).inc();
            Ok(Vec::new())
        }
        Ok(Loaded::Read(c)) => Ok(c.restorable().unwrap_or_else(|e| {
            error!(error = %e, "checkpoint entries");
            Vec::new()
        })),
        Err(e) => Err(format!(
            "{e}: ipamd will not overwrite a checkpoint it cannot read (it lists the running \
             pods); fix the file or move it aside, then restart"
        )),
    }
}

/// Restores what [`read`] returned once the ENIs are in the datastore: allocations whose
/// address is not on this node are dropped and reported.
pub fn restore(node: &Node, entries: &[Restorable]) -> Result<(), String> {
    let mut st = node.lock();
    if !entries.is_empty() {
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
    save(node, &st).map_err(|e| format!("writing the checkpoint: {e}"))
}
