//! Custom-networking errors for people: always a log line naming the reason, and in Kubernetes
//! mode also an Event on this node's Node (published by the cluster crate from a bounded queue,
//! so a slow API server never holds up the pool manager).

use cluster::NodeEvent;
use tokio::sync::mpsc;
use tracing::{error, warn};

#[derive(Debug, Default)]
pub struct EventSink {
    tx: Option<mpsc::Sender<NodeEvent>>,
}

impl EventSink {
    pub fn kubernetes(tx: mpsc::Sender<NodeEvent>) -> Self {
        EventSink { tx: Some(tx) }
    }

    /// `reason` is PascalCase (`ENIConfigNotFound`); callers send an event when the situation
    /// changes, not on every look.
    pub fn warning(&self, reason: &str, message: &str) {
        error!(event = reason, "{message}");
        if let Some(tx) = &self.tx
            && tx
                .try_send(NodeEvent {
                    warning: true,
                    reason: reason.to_string(),
                    message: message.to_string(),
                })
                .is_err()
        {
            warn!(
                event = reason,
                "Event dropped: the queue to the API server is full"
            );
        }
    }
}
