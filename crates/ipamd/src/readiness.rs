//! Readiness: the one rule (`NodeState::can_serve`), evaluated when the node's state changes
//! and published on a watch channel. The plugin's STATUS (the `rpc.CNIBackend` health) and the
//! CNI config file (the runtime's network-ready signal) both follow it.
//!
//! Lifecycle: nothing persists; after a restart the CNI config from before is rewritten once the
//! node can serve again (the same bytes), and the health starts NOT_SERVING until then.

use std::sync::Arc;
use std::time::Duration;

use ipam::Time;
use tokio::sync::watch;
use tracing::{error, info};

use crate::node::Node;

type CniServer = rpc::cni_backend_server::CniBackendServer<crate::server::Backend>;

/// Why the node cannot serve a new pod now; `Ok` when it can.
pub type Readiness = Result<(), String>;

/// Re-evaluates readiness on every state change (and once a second, for what changes with
/// time alone) until `stop`.
pub async fn track(node: Arc<Node>, tx: watch::Sender<Readiness>, mut stop: watch::Receiver<bool>) {
    loop {
        let now = node.lock().can_serve(Time::now());
        tx.send_if_modified(|current| {
            let changed = *current != now;
            if changed {
                *current = now.clone();
            }
            changed
        });
        tokio::select! {
            _ = node.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// `rpc.CNIBackend` is SERVING exactly while the node can serve (the plugin's STATUS); the
/// overall service ("") stays SERVING while ipamd runs (liveness).
pub async fn health(
    mut rx: watch::Receiver<Readiness>,
    reporter: tonic_health::server::HealthReporter,
) {
    loop {
        let readiness = rx.borrow_and_update().clone();
        info!(
            serving = readiness.is_ok(),
            reason = readiness.as_ref().err(),
            "rpc.CNIBackend health"
        );
        match readiness {
            Ok(()) => reporter.set_serving::<CniServer>().await,
            Err(_) => reporter.set_not_serving::<CniServer>().await,
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Writes the CNI config the first time the node can serve (after health says SERVING, so a
/// runtime that sees the file finds the plugin's STATUS ready too).
pub async fn write_cni_config(
    node: Arc<Node>,
    mut rx: watch::Receiver<Readiness>,
    reporter: tonic_health::server::HealthReporter,
) {
    loop {
        if rx.borrow_and_update().is_ok() {
            reporter.set_serving::<CniServer>().await;
            match crate::cniconf::write(&node) {
                Ok(()) => {
                    node.lock().network_ready = true;
                    info!(path = %crate::cniconf::path(&node).display(), "network-ready: CNI config written");
                    return;
                }
                Err(e) => error!(error = %e, "writing the CNI config"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
