//! Kubernetes Events on this node's Node for custom-networking errors (`kubectl describe node`
//! shows them). The agent sends [`NodeEvent`]s on a channel; this side publishes them, aggregated
//! by kube's recorder (a repeated event bumps a series instead of creating new objects).

use k8s_openapi::api::core::v1::Node;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;
use tracing::warn;

/// Reporting controller name on every Event.
pub const CONTROLLER: &str = "aws-node";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    pub warning: bool,
    /// PascalCase, e.g. `ENIConfigNotFound`.
    pub reason: String,
    pub message: String,
}

/// Publishes every event received until the sender is dropped. The Node is read once for its
/// uid (Events must carry it to show up on the Node); until that succeeds events are retried.
pub async fn publish_node_events(
    client: Client,
    node_name: String,
    mut rx: mpsc::Receiver<NodeEvent>,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: CONTROLLER.into(),
            instance: Some(node_name.clone()),
        },
    );
    let nodes: Api<Node> = Api::all(client);
    let mut reference = None;
    while let Some(event) = rx.recv().await {
        if reference.is_none() {
            match nodes.get(&node_name).await {
                Ok(node) => reference = Some(node.object_ref(&())),
                Err(e) => {
                    warn!(node = node_name, error = %e, reason = event.reason, "Event not published: the Node cannot be read");
                    continue;
                }
            }
        }
        let Some(r) = &reference else { continue };
        let published = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.clone(),
            note: Some(truncate(&event.message, 1024)),
            action: "CustomNetworking".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&published, r).await {
            warn!(node = node_name, error = %e, reason = event.reason, "Event not published");
        }
    }
}

/// The API server refuses notes over 1 kB.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        assert_eq!(super::truncate("short", 1024), "short");
        let long = "é".repeat(600);
        let cut = super::truncate(&long, 1024);
        assert!(cut.len() <= 1024 && cut.ends_with("..."), "{}", cut.len());
    }
}
