//! Kubernetes mode against recorded API exchanges: ipamd's max-pods check follows its Node (watched
//! through the API server) and raises a Warning Event on it when the kubelet admits more pods than
//! the node's ENIs can serve, naming both figures and the --max-pods to set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../cluster/tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use instance_limits::{KubeletCheck, LimitsTable, MaxPodsOptions, max_pods};
use ipamd::capacity::{EVENT, Gauges, follow};
use ipamd::events::EventSink;
use serde_json::json;
use support::*;

/// A recorded object of the cluster crate's fixtures (the support module's own looks in this crate).
fn fixture(name: &str) -> serde_json::Value {
    let path = format!(
        "{}/../cluster/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The recorded Node (an m5.large) with the kubelet's max pods set to `pods`.
fn node_with_pods(pods: &str, rv: &str) -> serde_json::Value {
    let mut node = with_resource_version(&fixture("node.json"), rv);
    node["status"]["capacity"]["pods"] = json!(pods);
    node["status"]["allocatable"]["pods"] = json!(pods);
    node
}

#[tokio::test]
async fn a_kubelet_max_pods_above_what_the_enis_serve_raises_an_event_on_the_node() {
    let (client, api) = fake_api();
    // The node group kept m5.large's default 29 when custom networking was turned on.
    api.json(NODES, node_list(&node_with_pods("29", "1001"), "1001"));
    api.json(ENICONFIGS, fixture("eniconfigs.json"));
    let nodes = api.watch(&format!("{NODES} watch"));
    let _eniconfigs = api.watch(&format!("{ENICONFIGS} watch"));
    api.json(&format!("GET /api/v1/nodes/{NODE}"), fixture("node.json"));
    let events = "POST /apis/events.k8s.io/v1/namespaces/default/events";
    for _ in 0..2 {
        api.json(events, json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "x", "namespace": "default"}, "eventTime": "2026-11-27T20:00:00.000000Z"}));
    }

    let objects = cluster::watch_objects(client.clone(), NODE);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(cluster::publish_node_events(client, NODE.to_string(), rx));
    let sink = EventSink::kubernetes(tx);
    let options = MaxPodsOptions {
        custom_networking: true,
        ..Default::default()
    };
    let computed = max_pods(LimitsTable::builtin().get("m5.large").unwrap(), &options).unwrap();
    let registry = prometheus::Registry::new();
    let gauges = Gauges::register(&registry).unwrap();
    let seen: Arc<Mutex<Vec<KubeletCheck>>> = Arc::default();
    let published = seen.clone();
    tokio::spawn(async move {
        follow(objects, computed, options, &sink, &gauges, |c| {
            published.lock().unwrap().push(c)
        })
        .await
    });

    let posted = api.wait_requests(events, 1).await;
    let e = &posted[0].body;
    assert_eq!(e["reason"], EVENT);
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["regarding"]["kind"], "Node");
    assert_eq!(e["regarding"]["name"], NODE);
    let note = e["note"].as_str().unwrap();
    for part in [
        "kubelet max pods is 29",
        "can serve 20 pods",
        "custom networking",
        "--max-pods=20",
    ] {
        assert!(note.contains(part), "{part:?} missing from {note}");
    }
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("awscni_max_pods_too_high 1")
            && text.contains(r#"awscni_max_pods{source="kubelet"} 29"#)
            && text.contains(r#"awscni_max_pods{source="node"} 20"#)
            && text.contains(r#"awscni_max_pods{source="recommended"} 20"#),
        "{text}"
    );

    // The node group is fixed and the kubelet restarted with --max-pods=20: no new Event, the
    // check follows.
    nodes
        .send(event("MODIFIED", &node_with_pods("20", "1002")))
        .unwrap();
    let mut fixed = false;
    for _ in 0..200 {
        if seen
            .lock()
            .unwrap()
            .last()
            .is_some_and(|c| c.kubelet_max_pods == 20 && !c.too_high)
        {
            fixed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(fixed, "{:?}", seen.lock().unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(api.requests(events).len(), 1, "an Event for a fine figure");
    assert_eq!(seen.lock().unwrap().len(), 2);
}
