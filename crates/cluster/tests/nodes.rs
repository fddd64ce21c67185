#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What `vpcctl validate --kubeconfig` and the agent read of Nodes, against recorded exchanges:
//! the kubelet's max pods (`status.capacity.pods`) and the cordon (spec or taint).

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn nodes_are_listed_with_their_max_pods_and_cordon() {
    let (client, api) = fake_api();
    let mut cordoned = fixture("node.json");
    cordoned["metadata"]["name"] = json!("ip-10-0-2-7.us-west-2.compute.internal");
    cordoned["status"]["capacity"]["pods"] = json!("29");
    cordoned["spec"]["taints"] =
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]);
    let mut bare = fixture("node.json");
    bare["metadata"]["name"] = json!("a-node-without-status");
    bare.as_object_mut().unwrap().remove("status");
    api.json(
        NODES,
        json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
               "items": [cordoned, fixture("node.json"), bare]}),
    );
    let nodes = cluster::admin::nodes(&client).await.unwrap();
    let seen: Vec<(&str, Option<u32>, bool)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.pod_capacity, n.unschedulable))
        .collect();
    assert_eq!(
        seen,
        [
            ("a-node-without-status", None, false),
            ("ip-10-0-2-7.us-west-2.compute.internal", Some(29), true),
            (NODE, Some(20), false),
        ]
    );
    assert_eq!(
        nodes[2].labels["node.kubernetes.io/instance-type"],
        "m5.large"
    );
    // spec.unschedulable (kubectl cordon) alone also counts.
    let mut node: k8s_openapi::api::core::v1::Node =
        serde_json::from_value(fixture("node.json")).unwrap();
    node.spec.as_mut().unwrap().unschedulable = Some(true);
    assert!(cluster::node_object(&node).unschedulable);
}
