//! Forgets released addresses' connection-tracking entries (`ipam.md`), one `conntrack` at a
//! time.
//!
//! DelNetwork and GC queue each released address; a single worker flushes it a second later
//! (the plugin removes the pod's routes after DelNetwork returns), unless the address has been
//! given to a pod again meanwhile: that pod's connections stay. Addresses due together are one
//! batch: one `conntrack -L`, then deletes only for the addresses it shows. One worker bounds what churn
//! costs: a process pair per release spawned at once was 215 `conntrack` processes on a
//! 2-core node during 1000 ADD/DEL cycles, and the gRPC calls behind them waited up to a
//! second (docs/benchmarks.md).
//!
//! Lifecycle: in memory. Addresses still queued when ipamd stops are not flushed; a restarted
//! ipamd does not know them, and their entries age out by conntrack's own timeouts (the
//! address cooldown keeps the address unused for `IP_COOLDOWN_PERIOD` meanwhile).

use std::collections::{BTreeSet, VecDeque};
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
    // In the order they fall due (the delay is constant).
    let mut pending: VecDeque<(Ipv4Addr, Instant)> = VecDeque::new();
    loop {
        let next = pending.front().map(|p| p.1);
        tokio::select! {
            item = rx.recv() => match item {
                Some(item) => pending.push_back(item),
                None => return,
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                while let Ok(item) = rx.try_recv() {
                    pending.push_back(item);
                }
                let now = Instant::now();
                let mut due = BTreeSet::new();
                while let Some(&(ip, at)) = pending.front() {
                    if at > now {
                        break;
                    }
                    pending.pop_front();
                    due.insert(ip);
                }
                {
                    let st = node.lock();
                    due.retain(|ip| {
                        let again = st.ds.allocations().any(|(_, a)| a.ip == *ip);
                        if again {
                            debug!(%ip, "conntrack entries kept: the address serves a pod again");
                        }
                        !again
                    });
                }
                let n = due.len();
                match tokio::task::spawn_blocking(move || {
                    crate::datapath::conntrack::flush_listed(&due)
                })
                .await
                {
                    Ok(Ok(0)) => {}
                    Ok(Ok(entries)) => {
                        debug!(addresses = n, entries, "conntrack entries of released addresses deleted")
                    }
                    Ok(Err(e)) => {
                        warn!(addresses = n, error = e, "conntrack entries of released addresses kept")
                    }
                    Err(e) => warn!(error = %e, "conntrack flush task"),
                }
            }
        }
    }
}
