//! Forgets released addresses' connection-tracking entries (`ipam.md`), one `conntrack` at a
//! time.
//!
//! DelNetwork and GC queue each released address; a single worker flushes it a second later
//! (the plugin removes the pod's routes after DelNetwork returns), unless the address has been
//! given to a pod again meanwhile: that pod's connections stay. One worker bounds what churn
//! costs: a process pair per release spawned at once was 215 `conntrack` processes on a
//! 2-core node during 1000 ADD/DEL cycles, and the gRPC calls behind them waited up to a
//! second (docs/benchmarks.md).
//!
//! Lifecycle: in memory. Addresses still queued when ipamd stops are not flushed; a restarted
//! ipamd does not know them, and their entries age out by conntrack's own timeouts (the
//! address cooldown keeps the address unused for `IP_COOLDOWN_PERIOD` meanwhile).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::node::Node;

/// How long after the release the entries go.
const DELAY: Duration = Duration::from_secs(1);

/// The queue's sending side; the worker ends when every clone is dropped.
#[derive(Debug, Clone)]
pub struct Forgetter {
    tx: mpsc::UnboundedSender<(Ipv4Addr, Instant)>,
}

impl Forgetter {
    /// Starts the worker on the current tokio runtime.
    pub fn start(node: Arc<Node>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(worker(node, rx));
        Forgetter { tx }
    }

    /// Queues `ip`, released just now.
    pub fn forget(&self, ip: Ipv4Addr) {
        // The worker is gone only at shutdown: the entries then age out (module doc).
        let _ = self.tx.send((ip, Instant::now() + DELAY));
    }
}

async fn worker(node: Arc<Node>, mut rx: mpsc::UnboundedReceiver<(Ipv4Addr, Instant)>) {
    while let Some((ip, due)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if node.lock().ds.allocations().any(|(_, a)| a.ip == ip) {
            debug!(%ip, "conntrack entries kept: the address serves a pod again");
            continue;
        }
        match tokio::task::spawn_blocking(move || crate::datapath::conntrack::flush(ip)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                debug!(%ip, entries = n, "conntrack entries of a released address deleted")
            }
            Ok(Err(e)) => warn!(%ip, error = e, "conntrack entries of a released address kept"),
            Err(e) => warn!(%ip, error = %e, "conntrack flush task"),
        }
    }
}
