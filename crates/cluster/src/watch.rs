//! This node's Node and every ENIConfig, watched, feeding the same channel of
//! [`Objects`] as standalone mode. kube's watcher lists then watches, re-watches after a dropped
//! connection and re-lists after 410 Gone; [`Merge`] turns its events into the current objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use eniconfig::{EniConfigSpec, NodeObject, Objects};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::crd::ENIConfig;

pub type ObjectsRx = watch::Receiver<Arc<Objects>>;

/// Pure: the objects as the watch events leave them. A re-list (Init … InitDone) replaces what
/// was known, so objects deleted while the watch was down disappear.
#[derive(Debug)]
pub struct Merge {
    node_name: String,
    node: Option<NodeObject>,
    eniconfigs: BTreeMap<String, EniConfigSpec>,
    relisting_nodes: Option<Option<NodeObject>>,
    relisting_eniconfigs: Option<BTreeMap<String, EniConfigSpec>>,
    node_listed: bool,
    eniconfigs_listed: bool,
    node_error: Option<String>,
    eniconfig_error: Option<String>,
}

/// What the agent and `vpcctl` read of a Node: name, labels, annotations, pod capacity, cordon.
pub fn node_object(n: &Node) -> NodeObject {
    let spec = n.spec.as_ref();
    let tainted = spec.and_then(|s| s.taints.as_ref()).is_some_and(|taints| {
        taints
            .iter()
            .any(|t| t.key == eniconfig::UNSCHEDULABLE_TAINT && t.effect == "NoSchedule")
    });
    NodeObject {
        name: n.name_any(),
        labels: n.labels().clone(),
        annotations: n.annotations().clone(),
        pod_capacity: n
            .status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("pods"))
            .and_then(|q| eniconfig::pod_count(&q.0)),
        unschedulable: tainted || spec.and_then(|s| s.unschedulable).unwrap_or(false),
    }
}

impl Merge {
    pub fn new(node_name: &str) -> Self {
        Merge {
            node_name: node_name.to_string(),
            node: None,
            eniconfigs: BTreeMap::new(),
            relisting_nodes: None,
            relisting_eniconfigs: None,
            node_listed: false,
            eniconfigs_listed: false,
            node_error: None,
            eniconfig_error: None,
        }
    }

    pub fn node_event(&mut self, event: Event<Node>) {
        self.node_error = None;
        match event {
            Event::Init => self.relisting_nodes = Some(None),
            Event::InitApply(n) => {
                if n.name_any() == self.node_name {
                    self.relisting_nodes = Some(Some(node_object(&n)));
                }
            }
            Event::InitDone => {
                self.node = self.relisting_nodes.take().flatten();
                self.node_listed = true;
            }
            Event::Apply(n) if n.name_any() == self.node_name => self.node = Some(node_object(&n)),
            Event::Delete(n) if n.name_any() == self.node_name => self.node = None,
            Event::Apply(_) | Event::Delete(_) => {}
        }
    }

    pub fn eniconfig_event(&mut self, event: Event<ENIConfig>) {
        self.eniconfig_error = None;
        match event {
            Event::Init => self.relisting_eniconfigs = Some(BTreeMap::new()),
            Event::InitApply(c) => {
                let spec = c.spec.0.clone();
                self.relisting_eniconfigs
                    .get_or_insert_with(BTreeMap::new)
                    .insert(c.name_any(), spec);
            }
            Event::InitDone => {
                self.eniconfigs = self.relisting_eniconfigs.take().unwrap_or_default();
                self.eniconfigs_listed = true;
            }
            Event::Apply(c) => {
                self.eniconfigs.insert(c.name_any(), c.spec.0.clone());
            }
            Event::Delete(c) => {
                self.eniconfigs.remove(&c.name_any());
            }
        }
    }

    pub fn node_failed(&mut self, error: String) {
        self.node_error = Some(error);
    }

    pub fn eniconfig_failed(&mut self, error: String) {
        self.eniconfig_error = Some(error);
    }

    /// What the agent sees: the last good objects, plus why they may be stale.
    pub fn objects(&self) -> Objects {
        let mut errors = Vec::new();
        if !self.node_listed {
            errors.push(format!(
                "Node {}: not listed from the API server yet",
                self.node_name
            ));
        }
        if !self.eniconfigs_listed {
            errors.push("ENIConfigs: not listed from the API server yet".to_string());
        }
        if let Some(e) = &self.node_error {
            errors.push(format!("watch of Node {}: {e}", self.node_name));
        }
        if let Some(e) = &self.eniconfig_error {
            errors.push(format!("watch of ENIConfigs: {e}"));
        }
        Objects {
            node: self.node.clone(),
            eniconfigs: self.eniconfigs.clone(),
            errors,
        }
    }
}

/// Watches the Node named `node_name` and all ENIConfigs until the receiver is dropped.
pub fn watch_objects(client: Client, node_name: &str) -> ObjectsRx {
    let mut merge = Merge::new(node_name);
    let (tx, rx) = watch::channel(Arc::new(merge.objects()));
    let nodes: Api<Node> = Api::all(client.clone());
    let eniconfigs: Api<ENIConfig> = Api::all(client);
    let by_name = watcher::Config::default().fields(&format!("metadata.name={node_name}"));
    let node_events = watcher(nodes, by_name)
        .default_backoff()
        .map(|e| Update::Node(Box::new(e)))
        .boxed();
    let eniconfig_events = watcher(eniconfigs, watcher::Config::default())
        .default_backoff()
        .map(|e| Update::EniConfig(Box::new(e)))
        .boxed();
    let mut updates = futures_util::stream::select(node_events, eniconfig_events);
    tokio::spawn(async move {
        while let Some(update) = updates.next().await {
            match update {
                Update::Node(e) => match *e {
                    Ok(e) => merge.node_event(e),
                    Err(e) => {
                        warn!(error = %e, "watch of this node's Node object (retrying)");
                        merge.node_failed(e.to_string());
                    }
                },
                Update::EniConfig(e) => match *e {
                    Ok(e) => merge.eniconfig_event(e),
                    Err(e) => {
                        warn!(error = %e, "watch of ENIConfigs (retrying)");
                        merge.eniconfig_failed(e.to_string());
                    }
                },
            }
            let objects = merge.objects();
            if **tx.borrow() != objects {
                if objects.errors.is_empty() && !tx.borrow().errors.is_empty() {
                    info!(
                        eniconfigs = objects.eniconfigs.len(),
                        node = objects.node.is_some(),
                        "Node and ENIConfigs in sync with the API server"
                    );
                }
                if tx.send(Arc::new(objects)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

enum Update {
    // Objects are large; boxed so an update is a pointer.
    Node(Box<Result<Event<Node>, watcher::Error>>),
    EniConfig(Box<Result<Event<ENIConfig>, watcher::Error>>),
}
