#![allow(clippy::unwrap_used)]
//! The Kubernetes side against recorded API exchanges: watches, Events, status, Lease, start-up.

mod support;

use std::time::Duration;

use cluster::{ENIConfig, Facts, NodeEvent, Retry};
use eniconfig::{GroupFacts, SelectionKeys, SubnetFacts, select};
use http::StatusCode;
use kube::Api;
use serde_json::{Value, json};
use support::*;

fn zone_keys() -> SelectionKeys {
    SelectionKeys::new(None, Some("topology.kubernetes.io/zone"))
}

fn chosen(o: &eniconfig::Objects) -> Option<String> {
    let node = o.node.as_ref()?;
    let s = select(&node.labels, &node.annotations, &zone_keys());
    o.eniconfigs.contains_key(&s.name).then_some(s.name)
}

/// Lists answered with the fixtures; returns the senders of the two first watches.
fn listed(
    api: &FakeApi,
) -> (
    tokio::sync::mpsc::UnboundedSender<Value>,
    tokio::sync::mpsc::UnboundedSender<Value>,
) {
    api.json(NODES, node_list(&fixture("node.json"), "1001"));
    api.json(ENICONFIGS, fixture("eniconfigs.json"));
    (
        api.watch(&format!("{NODES} watch")),
        api.watch(&format!("{ENICONFIGS} watch")),
    )
}

#[tokio::test]
async fn the_chosen_eniconfig_follows_label_and_annotation_changes() {
    let (client, api) = fake_api();
    let (nodes, _eniconfigs) = listed(&api);
    let mut rx = cluster::watch_objects(client, NODE);
    let o = wait_objects(&mut rx, "the listed node", |o| o.errors.is_empty()).await;
    assert_eq!(chosen(&o).as_deref(), Some("us-west-2a"));
    let list = &api.requests(NODES)[0];
    assert!(
        list.query.contains("fieldSelector=metadata.name%3D"),
        "{}",
        list.query
    );

    let mut node = fixture("node.json");
    node["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!("us-west-2b");
    nodes
        .send(event("MODIFIED", &with_resource_version(&node, "1002")))
        .unwrap();
    wait_objects(&mut rx, "the relabelled node", |o| {
        chosen(o).as_deref() == Some("us-west-2b")
    })
    .await;

    // The annotation overrides the label.
    node["metadata"]["annotations"]["k8s.amazonaws.com/eniConfig"] = json!("us-west-2a");
    nodes
        .send(event("MODIFIED", &with_resource_version(&node, "1003")))
        .unwrap();
    let o = wait_objects(&mut rx, "the annotated node", |o| {
        chosen(o).as_deref() == Some("us-west-2a")
    })
    .await;
    let node = o.node.unwrap();
    let s = select(&node.labels, &node.annotations, &zone_keys());
    assert!(s.rule.to_string().contains("annotation"), "{}", s.rule);
}

#[tokio::test]
async fn eniconfigs_created_changed_and_deleted_take_effect() {
    let (client, api) = fake_api();
    let (_nodes, eniconfigs) = listed(&api);
    let mut rx = cluster::watch_objects(client, NODE);
    wait_objects(&mut rx, "the lists", |o| o.errors.is_empty()).await;
    let list = fixture("eniconfigs.json");
    let a = list["items"][0].clone();

    let mut c = a.clone();
    c["metadata"]["name"] = json!("us-west-2c");
    eniconfigs
        .send(event("ADDED", &with_resource_version(&c, "2002")))
        .unwrap();
    wait_objects(&mut rx, "us-west-2c", |o| {
        o.eniconfigs.contains_key("us-west-2c")
    })
    .await;

    let mut changed = a.clone();
    changed["spec"]["subnet"] = json!("subnet-0ffffffffffffffff");
    eniconfigs
        .send(event("MODIFIED", &with_resource_version(&changed, "2003")))
        .unwrap();
    wait_objects(&mut rx, "the new subnet", |o| {
        o.eniconfigs["us-west-2a"].subnet == "subnet-0ffffffffffffffff"
    })
    .await;

    // Deleted while the node uses it: the node's choice no longer exists.
    eniconfigs
        .send(event("DELETED", &with_resource_version(&changed, "2004")))
        .unwrap();
    let o = wait_objects(&mut rx, "us-west-2a gone", |o| {
        !o.eniconfigs.contains_key("us-west-2a")
    })
    .await;
    assert_eq!(chosen(&o), None);
    assert_eq!(o.eniconfigs.len(), 2);
}

#[tokio::test]
async fn a_dropped_watch_resumes_from_the_last_resource_version() {
    let (client, api) = fake_api();
    let (nodes, _e) = listed(&api);
    let mut rx = cluster::watch_objects(client, NODE);
    wait_objects(&mut rx, "the lists", |o| o.errors.is_empty()).await;
    let mut node = fixture("node.json");
    node["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!("us-west-2b");
    nodes
        .send(event("MODIFIED", &with_resource_version(&node, "1005")))
        .unwrap();
    wait_objects(&mut rx, "the change", |o| {
        chosen(o).as_deref() == Some("us-west-2b")
    })
    .await;
    let next = api.watch(&format!("{NODES} watch"));
    drop(nodes); // the connection drops
    let watches = api.wait_requests(&format!("{NODES} watch"), 2).await;
    assert!(
        watches[1].query.contains("resourceVersion=1005"),
        "{}",
        watches[1].query
    );
    assert_eq!(
        api.requests(NODES).len(),
        1,
        "a dropped watch must not re-list"
    );
    node["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!("us-west-2a");
    next.send(event("MODIFIED", &with_resource_version(&node, "1006")))
        .unwrap();
    wait_objects(&mut rx, "the change after the drop", |o| {
        chosen(o).as_deref() == Some("us-west-2a")
    })
    .await;
}

#[tokio::test]
async fn gone_410_relists_and_forgets_what_was_deleted_meanwhile() {
    let (client, api) = fake_api();
    let (_n, eniconfigs) = listed(&api);
    let mut rx = cluster::watch_objects(client, NODE);
    wait_objects(&mut rx, "the lists", |o| o.eniconfigs.len() == 2).await;
    // While the watch was away, us-west-2b was deleted; the server has compacted its history.
    let mut relist = fixture("eniconfigs.json");
    relist["items"].as_array_mut().unwrap().truncate(1);
    relist["metadata"]["resourceVersion"] = json!("3000");
    api.json(ENICONFIGS, relist);
    eniconfigs
        .send(json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version: 2001 (2950)")}))
        .unwrap();
    let o = wait_objects(&mut rx, "the re-listed ENIConfigs", |o| {
        o.eniconfigs.len() == 1 && o.errors.is_empty()
    })
    .await;
    assert!(o.eniconfigs.contains_key("us-west-2a"));
    assert_eq!(api.requests(ENICONFIGS).len(), 2, "410 Gone must re-list");
}

#[tokio::test]
async fn watch_errors_are_reported_and_the_last_objects_kept() {
    let (client, api) = fake_api();
    api.reply(NODES, Reply::Json(StatusCode::FORBIDDEN, status(403, "Forbidden", "nodes is forbidden: User \"system:serviceaccount:kube-system:aws-node\" cannot list resource \"nodes\"")));
    api.json(NODES, node_list(&fixture("node.json"), "1001"));
    api.json(ENICONFIGS, fixture("eniconfigs.json"));
    let mut rx = cluster::watch_objects(client, NODE);
    wait_objects(&mut rx, "the error", |o| {
        o.errors.iter().any(|e| e.contains("forbidden"))
    })
    .await;
    // The watcher retries with a back-off and then succeeds.
    let o = wait_objects(&mut rx, "the node after the retry", |o| o.errors.is_empty()).await;
    assert!(o.node.is_some());
}

#[tokio::test]
async fn node_events_are_published_on_the_node() {
    let (client, api) = fake_api();
    api.json(&format!("GET /api/v1/nodes/{NODE}"), fixture("node.json"));
    let events = "POST /apis/events.k8s.io/v1/namespaces/default/events";
    api.json(events, json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "x", "namespace": "default"}, "eventTime": "2026-11-27T20:00:00.000000Z"}));
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let task = tokio::spawn(cluster::publish_node_events(client, NODE.to_string(), rx));
    tx.send(NodeEvent {
        warning: true,
        reason: "ENIConfigNotFound".into(),
        message:
            "ENIConfig \"us-west-2a\" (chosen by label topology.kubernetes.io/zone) does not exist"
                .into(),
    })
    .await
    .unwrap();
    let posted = api.wait_requests(events, 1).await;
    let e = &posted[0].body;
    assert_eq!(e["reason"], "ENIConfigNotFound");
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["regarding"]["kind"], "Node");
    assert_eq!(e["regarding"]["name"], NODE);
    assert_eq!(
        e["regarding"]["uid"],
        "5d0c3b7e-2b1e-4f0a-9a57-0f1c2d3e4f50"
    );
    assert_eq!(e["reportingController"], "aws-node");
    assert!(e["note"].as_str().unwrap().contains("us-west-2a"));
    drop(tx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn start_up_waits_for_the_api_server_and_gives_up_after_the_bound() {
    let retry = Retry {
        attempts: 4,
        first_pause: Duration::from_millis(10),
        max_pause: Duration::from_millis(20),
    };
    let (client, api) = fake_api();
    for _ in 0..2 {
        api.reply(
            "GET /version",
            Reply::Json(
                StatusCode::SERVICE_UNAVAILABLE,
                status(503, "ServiceUnavailable", "etcd leader changed"),
            ),
        );
    }
    api.json("GET /version", json!({"major": "1", "minor": "34", "gitVersion": "v1.34.2-eks-b707fbb", "gitCommit": "", "gitTreeState": "", "buildDate": "2026-11-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}));
    cluster::wait_for_api(&client, "https://kube", retry)
        .await
        .unwrap();
    assert_eq!(api.requests("GET /version").len(), 3);

    let (client, api) = fake_api();
    let err = cluster::wait_for_api(&client, "https://kube", retry)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(api.requests("GET /version").len(), 4);
    assert!(
        err.contains("https://kube") && err.contains("4 attempts"),
        "{err}"
    );
}

struct FakeEc2;

impl Facts for FakeEc2 {
    async fn subnets(&self, ids: &[String]) -> Result<Vec<SubnetFacts>, String> {
        Ok(ids
            .iter()
            .filter(|id| *id != "subnet-gone")
            .map(|id| SubnetFacts {
                id: id.clone(),
                vpc_id: if id == "subnet-other-vpc" {
                    "vpc-other"
                } else {
                    "vpc-1"
                }
                .into(),
                availability_zone: "us-west-2a".into(),
                cidr: "100.64.0.0/19".parse().unwrap(),
                available_addresses: 8000,
                tags: Default::default(),
            })
            .collect())
    }
    async fn groups(&self, ids: &[String]) -> Result<Vec<GroupFacts>, String> {
        Ok(ids
            .iter()
            .map(|id| GroupFacts {
                id: id.clone(),
                vpc_id: "vpc-1".into(),
            })
            .collect())
    }
}

fn eniconfig(name: &str, subnet: &str, groups: Option<&[&str]>) -> Value {
    let mut spec = json!({"subnet": subnet});
    if let Some(g) = groups {
        spec["securityGroups"] = json!(g);
    }
    json!({
        "apiVersion": "crd.k8s.amazonaws.com/v1alpha1", "kind": "ENIConfig",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "10", "generation": 1, "creationTimestamp": "2026-11-20T08:02:11Z"},
        "spec": spec
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {status}"))
}

#[tokio::test]
async fn status_conditions_are_written_once_per_change() {
    let (client, api) = fake_api();
    let items = vec![
        eniconfig("us-west-2a", "subnet-good", Some(&["sg-1"])),
        eniconfig("missing-subnet", "subnet-gone", Some(&["sg-1"])),
        eniconfig("other-vpc", "subnet-other-vpc", Some(&["sg-1"])),
        eniconfig("no-groups", "subnet-good", None),
    ];
    let list = json!({"apiVersion": "crd.k8s.amazonaws.com/v1alpha1", "kind": "ENIConfigList", "metadata": {"resourceVersion": "20"}, "items": items});
    api.json(ENICONFIGS, list.clone());
    for item in &items {
        let name = item["metadata"]["name"].as_str().unwrap();
        api.json(
            &format!("PATCH /apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs/{name}/status"),
            item.clone(),
        );
    }
    let eniconfigs: Api<ENIConfig> = Api::all(client);
    assert_eq!(
        cluster::write_all(&eniconfigs, &FakeEc2, "vpc-1")
            .await
            .unwrap(),
        4
    );
    let patches: Vec<_> = api
        .log()
        .into_iter()
        .filter(|e| e.method == "PATCH")
        .collect();
    let status = |name: &str| {
        let p = patches
            .iter()
            .find(|p| p.path.ends_with(&format!("/{name}/status")))
            .unwrap();
        assert!(p.body.get("spec").is_none(), "only the status is written");
        p.body["status"].clone()
    };
    let good = status("us-west-2a");
    assert_eq!(condition(&good, "Ready")["status"], "True");
    assert_eq!(condition(&good, "SecurityGroupsFound")["status"], "True");
    assert_eq!(good["availabilityZone"], "us-west-2a");
    assert_eq!(good["availableIpAddressCount"], 8000);
    let missing = status("missing-subnet");
    assert_eq!(condition(&missing, "SubnetFound")["status"], "False");
    assert_eq!(condition(&missing, "Ready")["reason"], "SubnetNotFound");
    let other = status("other-vpc");
    assert_eq!(condition(&other, "SameVPC")["status"], "False");
    assert_eq!(condition(&other, "Ready")["status"], "False");
    let defaulted = status("no-groups");
    assert_eq!(
        condition(&defaulted, "SecurityGroupsDefaulted")["status"],
        "True"
    );
    assert_eq!(condition(&defaulted, "Ready")["status"], "True");

    // Listed again with those statuses in place: nothing to write.
    let mut again = list.clone();
    for item in again["items"].as_array_mut().unwrap() {
        let name = item["metadata"]["name"].as_str().unwrap().to_string();
        item["status"] = status(&name);
    }
    api.json(ENICONFIGS, again);
    assert_eq!(
        cluster::write_all(&eniconfigs, &FakeEc2, "vpc-1")
            .await
            .unwrap(),
        0
    );
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";

fn election(identity: &str) -> cluster::Election {
    cluster::Election {
        namespace: "kube-system".into(),
        identity: identity.into(),
        duration: Duration::from_secs(15),
        period: Duration::from_millis(50),
    }
}

#[tokio::test]
async fn the_first_candidate_creates_the_lease_and_renews_it() {
    let (client, api) = fake_api();
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "aws-node-eniconfig-status", "namespace": "kube-system", "resourceVersion": "1"}, "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 15, "renewTime": "2026-11-27T20:00:00.000000Z"}});
    api.reply(
        &format!("GET {LEASE}/aws-node-eniconfig-status"),
        Reply::Json(
            StatusCode::NOT_FOUND,
            status(
                404,
                "NotFound",
                "leases.coordination.k8s.io \"aws-node-eniconfig-status\" not found",
            ),
        ),
    );
    api.json(&format!("POST {LEASE}"), lease.clone());
    api.json(
        &format!("GET {LEASE}/aws-node-eniconfig-status"),
        lease.clone(),
    );
    api.json(
        &format!("PUT {LEASE}/aws-node-eniconfig-status"),
        lease.clone(),
    );
    let mut leader = cluster::elect(client, election("node-a"));
    tokio::time::timeout(Duration::from_secs(5), leader.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let created = &api.wait_requests(&format!("POST {LEASE}"), 1).await[0];
    assert_eq!(created.body["spec"]["holderIdentity"], "node-a");
    assert_eq!(created.body["spec"]["leaseDurationSeconds"], 15);
    let renewed = &api
        .wait_requests(&format!("PUT {LEASE}/aws-node-eniconfig-status"), 1)
        .await[0];
    assert_eq!(
        renewed.body["metadata"]["resourceVersion"], "1",
        "renewal is a compare-and-swap"
    );
}

#[tokio::test]
async fn a_live_lease_of_another_node_or_a_lost_race_means_not_leader() {
    let (client, api) = fake_api();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let theirs = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "aws-node-eniconfig-status", "namespace": "kube-system", "resourceVersion": "7"}, "spec": {"holderIdentity": "node-b", "leaseDurationSeconds": 3600, "renewTime": now}});
    let expired = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "aws-node-eniconfig-status", "namespace": "kube-system", "resourceVersion": "8"}, "spec": {"holderIdentity": "node-b", "leaseDurationSeconds": 15, "renewTime": "2020-01-01T00:00:00.000000Z"}});
    let get = format!("GET {LEASE}/aws-node-eniconfig-status");
    api.json(&get, theirs);
    api.json(&get, expired);
    // node-c took it first: our compare-and-swap loses.
    api.reply(&format!("PUT {LEASE}/aws-node-eniconfig-status"), Reply::Json(StatusCode::CONFLICT, status(409, "Conflict", "Operation cannot be fulfilled on leases.coordination.k8s.io \"aws-node-eniconfig-status\": the object has been modified; please apply your changes to the latest version and try again")));
    let leader = cluster::elect(client, election("node-a"));
    api.wait_requests(&format!("PUT {LEASE}/aws-node-eniconfig-status"), 1)
        .await;
    api.wait_requests(&get, 3).await;
    assert!(!*leader.borrow());
    let put = &api.requests(&format!("PUT {LEASE}/aws-node-eniconfig-status"))[0];
    assert_eq!(put.body["metadata"]["resourceVersion"], "8");
    assert_eq!(put.body["spec"]["holderIdentity"], "node-a");
}

const ENICONFIG_A: &str = "/apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs/us-west-2a";

#[tokio::test]
async fn vpcctl_applies_eniconfigs_only_when_they_differ() {
    use cluster::admin::{Change, apply_eniconfig, eniconfigs};
    let (client, api) = fake_api();
    api.json(ENICONFIGS, fixture("eniconfigs.json"));
    let listed = eniconfigs(&client).await.unwrap();
    assert_eq!(listed["us-west-2b"].subnet, "subnet-0a1b2c3d4e5f60002");

    let existing = fixture("eniconfigs.json")["items"][0].clone();
    let same = eniconfig::EniConfigSpec {
        subnet: "subnet-0a1b2c3d4e5f60001".into(),
        security_groups: Some(vec!["sg-0ab1c2d3e4f567890".into()]),
        subnets: None,
    };
    api.json(&format!("GET {ENICONFIG_A}"), existing.clone());
    assert_eq!(
        apply_eniconfig(&client, "us-west-2a", &same).await.unwrap(),
        Change::Unchanged
    );
    assert!(api.requests(&format!("PATCH {ENICONFIG_A}")).is_empty());

    let other = eniconfig::EniConfigSpec {
        subnet: "subnet-0ffffffffffffffff".into(),
        security_groups: None,
        subnets: None,
    };
    api.json(&format!("GET {ENICONFIG_A}"), existing.clone());
    api.json(&format!("PATCH {ENICONFIG_A}"), existing.clone());
    assert_eq!(
        apply_eniconfig(&client, "us-west-2a", &other)
            .await
            .unwrap(),
        Change::Updated
    );
    let patch = &api.requests(&format!("PATCH {ENICONFIG_A}"))[0];
    assert!(
        patch.query.contains("fieldManager=vpcctl"),
        "{}",
        patch.query
    );
    assert_eq!(patch.body["spec"]["subnet"], "subnet-0ffffffffffffffff");
    assert_eq!(patch.body["kind"], "ENIConfig");

    let missing = "/apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs/us-west-2c";
    api.reply(
        &format!("GET {missing}"),
        Reply::Json(
            StatusCode::NOT_FOUND,
            status(
                404,
                "NotFound",
                "eniconfigs.crd.k8s.amazonaws.com \"us-west-2c\" not found",
            ),
        ),
    );
    api.json(&format!("PATCH {missing}"), existing);
    assert_eq!(
        apply_eniconfig(&client, "us-west-2c", &other)
            .await
            .unwrap(),
        Change::Created
    );
}

#[tokio::test]
async fn vpcctl_sets_the_daemonset_environment_like_kubectl_set_env() {
    use cluster::admin::{Change, set_daemonset_env};
    let (client, api) = fake_api();
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "aws-node", "namespace": "kube-system", "resourceVersion": "5"},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "aws-node"}},
            "template": {"metadata": {"labels": {"k8s-app": "aws-node"}}, "spec": {"containers": [
                {"name": "aws-node", "image": "x/amazon-k8s-cni:v0.1.0", "env": [
                    {"name": "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "value": "false"},
                    {"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
                ]}
            ]}}
        }
    });
    let path = "/apis/apps/v1/namespaces/kube-system/daemonsets/aws-node";
    let vars = std::collections::BTreeMap::from([
        (
            "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG".to_string(),
            "true".to_string(),
        ),
        (
            "ENI_CONFIG_LABEL_DEF".to_string(),
            "topology.kubernetes.io/zone".to_string(),
        ),
    ]);
    let remove = vec!["ENI_CONFIG_ANNOTATION_DEF".to_string()];
    api.json(&format!("GET {path}"), ds.clone());
    api.json(&format!("PATCH {path}"), ds.clone());
    assert_eq!(
        set_daemonset_env(
            &client,
            "kube-system",
            "aws-node",
            "aws-node",
            &vars,
            &remove
        )
        .await
        .unwrap(),
        Change::Updated
    );
    let patch = &api.requests(&format!("PATCH {path}"))[0];
    let env = &patch.body["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env["name"], "aws-node");
    assert_eq!(env["env"].as_array().unwrap().len(), 3);
    assert_eq!(
        env["env"][2],
        json!({"name": "ENI_CONFIG_ANNOTATION_DEF", "$patch": "delete"})
    );

    let mut done = ds.clone();
    done["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
        {"name": "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "value": "true"},
        {"name": "ENI_CONFIG_LABEL_DEF", "value": "topology.kubernetes.io/zone"}
    ]);
    api.json(&format!("GET {path}"), done);
    assert_eq!(
        set_daemonset_env(
            &client,
            "kube-system",
            "aws-node",
            "aws-node",
            &vars,
            &remove
        )
        .await
        .unwrap(),
        Change::Unchanged
    );
    assert_eq!(api.requests(&format!("PATCH {path}")).len(), 1);

    api.json(&format!("GET {path}"), ds);
    let err = set_daemonset_env(&client, "kube-system", "aws-node", "nope", &vars, &remove)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no container named nope"), "{err}");
}
