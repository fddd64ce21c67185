//! ipamd on the testbed: one agent per node in its namespace, EC2 from the emulator, a gRPC
//! client standing in for the plugin.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use testsupport::testbed::{Testbed, pod_address, wait_for};

const HEAD: &str = r#"
region: us-west-2
vpc: {cidr: 10.0.0.0/16, secondary_cidrs: [100.64.0.0/16]}
subnets:
  - {name: nodes-a, az: us-west-2a, cidr: 10.0.1.0/24}
  - {name: pods-a,  az: us-west-2a, cidr: 100.64.0.0/19}
  - {name: pods-a2, az: us-west-2a, cidr: 100.64.64.0/19}
  - {name: pods-a3, az: us-west-2a, cidr: 100.64.96.0/19}
  - {name: pods-b,  az: us-west-2b, cidr: 100.64.32.0/19}
security_groups:
  - {name: pods, ingress: [{protocol: tcp, ports: "8080", from: "10.0.0.0/8"}]}
  - {name: nodes, ingress: [{protocol: all, ports: all, from: "10.0.0.0/8"}]}
"#;

fn config(nodes: &str, eniconfigs: &str, env: &str) -> String {
    format!("{HEAD}nodes:\n{nodes}eniconfigs:\n{eniconfigs}ipamd_env: {env}\n")
}

const CUSTOM: &str = r#"{AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: "true", ENI_CONFIG_LABEL_DEF: topology.kubernetes.io/zone}"#;

struct Eni {
    id: String,
    device: i32,
    subnet: String,
    groups: Vec<String>,
    secondaries: usize,
}

async fn enis(tb: &Testbed, node: &str) -> Vec<Eni> {
    let ec2 = tb.ec2().await;
    let out = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(tb.instance(node))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut list: Vec<Eni> = out
        .network_interfaces()
        .iter()
        .map(|e| Eni {
            id: e.network_interface_id().unwrap().to_string(),
            device: e.attachment().unwrap().device_index().unwrap(),
            subnet: e.subnet_id().unwrap().to_string(),
            groups: e
                .groups()
                .iter()
                .map(|g| g.group_id().unwrap().to_string())
                .collect(),
            secondaries: e
                .private_ip_addresses()
                .iter()
                .filter(|a| !a.primary().unwrap_or(false))
                .count(),
        })
        .collect();
    list.sort_by_key(|e| e.device);
    list
}

async fn ids(tb: &Testbed) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let ec2 = tb.ec2().await;
    let subnets = ec2.describe_subnets().send().await.unwrap();
    let subnets = subnets
        .subnets()
        .iter()
        .map(|s| {
            (
                s.cidr_block().unwrap().to_string(),
                s.subnet_id().unwrap().to_string(),
            )
        })
        .collect();
    let groups = ec2.describe_security_groups().send().await.unwrap();
    let groups = groups
        .security_groups()
        .iter()
        .filter(|g| {
            g.vpc_id()
                .is_some_and(|v| v == tb.status["vpc_id"].as_str().unwrap())
        })
        .map(|g| {
            (
                g.group_name().unwrap().to_string(),
                g.group_id().unwrap().to_string(),
            )
        })
        .collect();
    (subnets, groups)
}

async fn add(tb: &Testbed, node: &str, container: &str) -> Result<String, tonic::Status> {
    let mut client = rpc::connect(&tb.socket(node), Duration::from_secs(2))
        .await
        .unwrap();
    let reply = client
        .add_network(rpc::AddNetworkRequest {
            client_version: "test".into(),
            k8s_pod_name: container.into(),
            k8s_pod_namespace: "default".into(),
            container_id: container.into(),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            netns: "/var/run/netns/none".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(reply.success);
    Ok(reply.ip_allocation_metadata[0].i_pv4_addr.clone())
}

async fn del(tb: &Testbed, node: &str, container: &str) -> rpc::DelNetworkReply {
    let mut client = rpc::connect(&tb.socket(node), Duration::from_secs(2))
        .await
        .unwrap();
    client
        .del_network(rpc::DelNetworkRequest {
            container_id: container.into(),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            reason: "PodDeleted".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Waits until the pool manager has completed two more rounds: whatever it would do about the
/// state as it is now, it has done (so "nothing happened" can be asserted).
fn settled(tb: &Testbed, node: &str) {
    let rounds = || tb.introspect(node, "/v1/pool")["rounds"].as_u64().unwrap();
    let start = rounds();
    assert!(
        wait_for(Duration::from_secs(30), || rounds() >= start + 2).is_some(),
        "{node}'s pool manager stopped making rounds:\n{}",
        tb.ipamd_log(node)
    );
}

fn conflist(tb: &Testbed, node: &str) -> std::path::PathBuf {
    tb.node_dir(node).join("net.d/10-aws.conflist")
}

async fn wait_enis(tb: &Testbed, node: &str, count: usize, secondaries: usize) -> Vec<Eni> {
    for _ in 0..150 {
        let list = enis(tb, node).await;
        if list.len() == count && list.iter().map(|e| e.secondaries).sum::<usize>() == secondaries {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = enis(tb, node).await;
    let shape: Vec<(i32, usize)> = list.iter().map(|e| (e.device, e.secondaries)).collect();
    panic!(
        "{node}: expected {count} ENIs with {secondaries} secondaries, have {shape:?}\n{}",
        tb.ipamd_log(node)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_networking_puts_pod_enis_in_the_eniconfig_subnet_with_its_groups() {
    let tb = Testbed::with_agents(None);
    let (subnets, groups) = ids(&tb).await;
    for (node, pods_cidr) in [("node-a", "100.64.0.0/19"), ("node-b", "100.64.32.0/19")] {
        assert!(
            conflist(&tb, node).exists(),
            "{node} is not network-ready:\n{}",
            tb.ipamd_log(node)
        );
        let list = wait_enis(&tb, node, 2, 9).await;
        assert_eq!(
            list[0].secondaries, 0,
            "{node}: the primary ENI holds pod addresses"
        );
        assert_eq!(
            list[1].subnet, subnets[pods_cidr],
            "{node}: pod ENI outside the ENIConfig's subnet"
        );
        assert_eq!(list[1].groups, vec![groups["pods"].clone()]);
        let view = tb.introspect(node, "/v1/enis");
        let pod_eni = view["enis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == list[1].id.as_str())
            .unwrap();
        assert_eq!(pod_eni["subnet_cidr"], pods_cidr);
        assert_eq!(pod_eni["stale"], false);
        let primary = view["enis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["primary"] == true)
            .unwrap();
        assert_eq!(primary["excluded"], true);
        let configs = tb.introspect(node, "/v1/eni-configs");
        assert_eq!(configs["rule"], "node label topology.kubernetes.io/zone");
    }
    // First pod address: from the pod subnet of the node's zone.
    let ip: std::net::Ipv4Addr = add(&tb, "node-a", "c1").await.unwrap().parse().unwrap();
    assert!(
        "100.64.0.0/19"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&ip)
    );
}

/// A fresh custom-networking node asks EC2 only what metadata cannot tell it: the ENIConfig's
/// subnet and groups, then create, attach and delete-on-termination. No DescribeNetworkInterfaces
/// (metadata lists the primary alone and there is no checkpoint) and no describe for the new ENI's
/// device index (metadata has it). Restarted, the node is no longer fresh: it asks EC2 which ENIs
/// are its own, and its pods keep their addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_reaches_its_warm_target_with_five_ec2_calls_a_restarted_one_describes() {
    let tb = Testbed::with_agents(None);
    wait_enis(&tb, "node-a", 2, 9).await;
    settled(&tb, "node-a");
    let expected: BTreeMap<String, u64> = [
        "DescribeSubnets",
        "DescribeSecurityGroups",
        "CreateNetworkInterface",
        "AttachNetworkInterface",
        "ModifyNetworkInterfaceAttribute",
    ]
    .into_iter()
    .map(|a| (a.to_string(), 1))
    .collect();
    assert_eq!(
        tb.calls_of("node-a"),
        expected,
        "a fresh node's EC2 calls to its warm target\n{}",
        tb.ipamd_log("node-a")
    );
    let ip = pod_address(&tb.pod_add("node-a", "c1", &[]).unwrap()).to_string();
    let child = tb.restart_ipamd("node-a", None);
    tb.wait_ready("node-a");
    let calls = tb.calls_of("node-a");
    assert!(
        calls.get("DescribeNetworkInterfaces").copied().unwrap_or(0) >= 1,
        "a restarted node took its ENIs from metadata alone: {calls:?}"
    );
    let enis = tb.introspect("node-a", "/v1/enis");
    let holder = enis["enis"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["addresses"].as_array().unwrap())
        .find(|a| a["address"] == ip.as_str())
        .map(|a| a["pod"].clone());
    assert_eq!(
        holder,
        Some(serde_json::json!("default/c1")),
        "c1 lost {ip} across the restart"
    );
    terminate(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eniconfig_is_chosen_by_external_label_annotation_label_then_default() {
    let nodes = r#"  - {name: by-label, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}}
  - {name: by-annot, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}, annotations: {k8s.amazonaws.com/eniConfig: second}}
  - {name: by-ext, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a, vpc.amazonaws.com/externalEniConfig: third}, annotations: {k8s.amazonaws.com/eniConfig: second}}
  - {name: by-default, instance_type: m5.large, subnet: nodes-a}
"#;
    let eniconfigs = r#"  - {name: us-west-2a, subnet: pods-a, security_groups: [pods]}
  - {name: second, subnet: pods-a2, security_groups: [pods]}
  - {name: third, subnet: pods-a3, security_groups: [pods]}
  - {name: default, subnet: pods-a, security_groups: [pods]}
"#;
    let tb = Testbed::with_agents(Some(&config(nodes, eniconfigs, CUSTOM)));
    let (subnets, _) = ids(&tb).await;
    for (node, name, rule, cidr) in [
        (
            "by-label",
            "us-west-2a",
            "node label topology.kubernetes.io/zone",
            "100.64.0.0/19",
        ),
        (
            "by-annot",
            "second",
            "node annotation k8s.amazonaws.com/eniConfig",
            "100.64.64.0/19",
        ),
        (
            "by-ext",
            "third",
            "node label vpc.amazonaws.com/externalEniConfig",
            "100.64.96.0/19",
        ),
        (
            "by-default",
            "default",
            "no label or annotation names one: the ENIConfig named default",
            "100.64.0.0/19",
        ),
    ] {
        let configs = tb.introspect(node, "/v1/eni-configs");
        assert_eq!(
            (
                configs["name"].as_str().unwrap(),
                configs["rule"].as_str().unwrap()
            ),
            (name, rule),
            "{node}"
        );
        let list = wait_enis(&tb, node, 2, 9).await;
        assert_eq!(list[1].subnet, subnets[cidr], "{node}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_eniconfig_keeps_the_node_not_ready_until_it_appears() {
    let nodes = "  - {name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}}\n";
    let tb = Testbed::with_agents(Some(&config(nodes, "  []\n", CUSTOM)));
    settled(&tb, "node-a");
    assert_eq!(
        enis(&tb, "node-a").await.len(),
        1,
        "an ENI was created without an ENIConfig"
    );
    assert!(
        !conflist(&tb, "node-a").exists(),
        "CNI config written without an ENIConfig"
    );
    let err = add(&tb, "node-a", "c1").await.unwrap_err();
    assert!(
        err.message().contains("us-west-2a") && err.message().contains("does not exist"),
        "{err}"
    );
    let configs = tb.introspect("node-a", "/v1/eni-configs");
    assert_eq!(configs["target"]["state"], "blocked");

    let (subnets, groups) = ids(&tb).await;
    tb.apply_eniconfig("us-west-2a", &subnets["100.64.0.0/19"], &[&groups["pods"]]);
    let took = wait_for(Duration::from_secs(15), || conflist(&tb, "node-a").exists())
        .unwrap_or_else(|| {
            panic!(
                "no CNI config after the ENIConfig appeared:\n{}",
                tb.ipamd_log("node-a")
            )
        });
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let list = wait_enis(&tb, "node-a", 2, 9).await;
    assert_eq!(list[1].subnet, subnets["100.64.0.0/19"]);
    assert!(add(&tb, "node-a", "c1").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eniconfig_without_groups_gets_the_vpc_default_or_the_primarys() {
    let nodes = r#"  - {name: vpc-default, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}, security_groups: [nodes]}
  - {name: primary-eni, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}, security_groups: [nodes], ipamd_env: {ENI_CONFIG_SG_FALLBACK: primary-eni}}
"#;
    let tb = Testbed::with_agents(Some(&config(
        nodes,
        "  - {name: us-west-2a, subnet: pods-a}\n",
        CUSTOM,
    )));
    let ec2 = tb.ec2().await;
    let default_sg = testbed::seed::default_group(&ec2, tb.status["vpc_id"].as_str().unwrap())
        .await
        .unwrap();
    let (_, groups) = ids(&tb).await;
    let a = wait_enis(&tb, "vpc-default", 2, 9).await;
    assert_eq!(a[1].groups, vec![default_sg]);
    let b = wait_enis(&tb, "primary-eni", 2, 9).await;
    assert_eq!(b[1].groups, vec![groups["nodes"].clone()]);
    let configs = tb.introspect("vpc-default", "/v1/eni-configs");
    assert_eq!(configs["validation"]["groups_defaulted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eniconfig_subnet_in_another_zone_creates_no_eni_and_says_why() {
    let nodes = "  - {name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}}\n";
    let tb = Testbed::with_agents(Some(&config(
        nodes,
        "  - {name: us-west-2a, subnet: pods-b, security_groups: [pods]}\n",
        CUSTOM,
    )));
    settled(&tb, "node-a");
    assert_eq!(enis(&tb, "node-a").await.len(), 1);
    let calls = tb.calls();
    assert_eq!(
        calls["CreateNetworkInterface"]["ok"].as_u64().unwrap_or(0),
        0,
        "{calls}"
    );
    assert!(!conflist(&tb, "node-a").exists());
    let configs = tb.introspect("node-a", "/v1/eni-configs");
    let errors = configs["validation"]["errors"].to_string();
    assert!(
        errors.contains("us-west-2b") && errors.contains("us-west-2a"),
        "{errors}"
    );
    assert!(
        tb.ipamd_log("node-a")
            .contains("cannot attach across zones")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pool_reference_rows_without_custom_networking() {
    let nodes = r#"  - {name: warm-eni, instance_type: t3.small, subnet: nodes-a, ipamd_env: {WARM_ENI_TARGET: "1"}}
  - {name: warm-ip, instance_type: t3.small, subnet: nodes-a, ipamd_env: {WARM_IP_TARGET: "1", MINIMUM_IP_TARGET: "1"}}
"#;
    let tb = Testbed::with_agents(Some(&config(nodes, "  []\n", "{}")));
    assert_eq!(wait_enis(&tb, "warm-eni", 1, 3).await.len(), 1);
    assert_eq!(wait_enis(&tb, "warm-ip", 1, 1).await.len(), 1);
    for node in ["warm-eni", "warm-ip"] {
        for n in 0..5 {
            // Each ADD is served from the pool; a momentarily empty pool answers "try again".
            let mut ok = false;
            for _ in 0..100 {
                if add(&tb, node, &format!("pod-{n}")).await.is_ok() {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                ok,
                "{node}: pod {n} never got an address\n{}",
                tb.ipamd_log(node)
            );
        }
    }
    wait_enis(&tb, "warm-eni", 3, 9).await;
    wait_enis(&tb, "warm-ip", 2, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_is_idempotent_del_of_unknown_succeeds_and_neither_calls_ec2() {
    let nodes = "  - {name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}, ipamd_env: {MINIMUM_IP_TARGET: \"9\"}}\n";
    let tb = Testbed::with_agents(Some(&config(
        nodes,
        "  - {name: us-west-2a, subnet: pods-a, security_groups: [pods]}\n",
        CUSTOM,
    )));
    wait_enis(&tb, "node-a", 2, 9).await;
    // EC2 shows the ENI before ipamd has routed it and pooled its addresses.
    wait_for(Duration::from_secs(10), || {
        tb.introspect("node-a", "/v1/pool")["stats"]["total"] == 9
    })
    .expect("the pool never filled");
    settled(&tb, "node-a");
    let before = tb.calls();
    let first = add(&tb, "node-a", "c1").await.unwrap();
    assert_eq!(
        add(&tb, "node-a", "c1").await.unwrap(),
        first,
        "a repeated ADD moved the address"
    );
    let second = add(&tb, "node-a", "c2").await.unwrap();
    assert_ne!(first, second);
    let reply = del(&tb, "node-a", "never-added").await;
    assert!(reply.success && reply.ip_allocation_metadata.is_empty());
    let reply = del(&tb, "node-a", "c1").await;
    assert_eq!(reply.ip_allocation_metadata[0].i_pv4_addr, first);
    settled(&tb, "node-a");
    assert_eq!(tb.calls(), before, "ADD/DEL made EC2 calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_allocations_and_a_corrupt_checkpoint_is_moved_aside() {
    let tb = Testbed::with_agents(None);
    // Pods the plugin made (their host routes exist) keep their addresses across a restart; an
    // allocation whose pod never got its route (an ADD whose reply a crash lost) is released.
    let mut held = BTreeMap::new();
    for c in ["c1", "c2", "c3"] {
        let result = tb.pod_add("node-a", c, &[]).unwrap();
        held.insert(c, pod_address(&result).to_string());
    }
    let ghost = add(&tb, "node-a", "ghost").await.unwrap();
    let child = tb.restart_ipamd("node-a", None);
    let enis = tb.introspect("node-a", "/v1/enis");
    let holder = |ip: &str| {
        enis["enis"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["addresses"].as_array().unwrap())
            .find(|a| a["address"] == ip)
            .map(|a| a["pod"].clone())
            .unwrap_or_default()
    };
    for (c, ip) in &held {
        assert_eq!(
            holder(ip),
            format!("default/{c}"),
            "{c} lost its address {ip} across a restart"
        );
    }
    assert!(
        holder(&ghost).is_null(),
        "an address without a pod route is still held: {}",
        holder(&ghost)
    );
    assert!(tb.ipamd_log("node-a").contains("the pod has no route"));
    let fresh = add(&tb, "node-a", "c4").await.unwrap();
    assert!(
        !held.values().any(|ip| *ip == fresh) && fresh != ghost,
        "a held or cooling address was handed out again"
    );

    std::fs::write(
        tb.node_dir("node-a").join("ipam.json"),
        b"{\"version\":\"vpc-cni-ipam/1\",\"allo",
    )
    .unwrap();
    let mut child = tb.restart_ipamd("node-a", Some(child));
    let aside: Vec<_> = std::fs::read_dir(tb.node_dir("node-a"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("ipam.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt checkpoint was not kept aside");
    let pool = tb.introspect("node-a", "/v1/pool");
    assert!(pool["stats"]["total"].as_u64().unwrap() >= 9, "{pool}");
    // Three starts of ipamd, one set of SNAT and connmark rules.
    let rules = std::process::Command::new("ip")
        .args(["netns", "exec", &tb.netns("node-a"), "iptables-save"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert_eq!(
        rules
            .lines()
            .filter(|l| l.starts_with("-A POSTROUTING") && l.contains("AWS-SNAT-CHAIN-0"))
            .count(),
        1,
        "{rules}"
    );
    assert_eq!(
        rules
            .lines()
            .filter(|l| l.starts_with("-A AWS-SNAT-CHAIN-0") && l.contains("-j SNAT"))
            .count(),
        1,
        "{rules}"
    );
    assert_eq!(
        rules
            .lines()
            .filter(|l| l.starts_with("-A PREROUTING") && l.contains("AWS-CONNMARK-CHAIN-0"))
            .count(),
        1,
        "{rules}"
    );
    assert!(tb.ipamd_log("node-a").contains("moved aside"));
    child.kill().ok();
    child.wait().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_eniconfig_marks_existing_enis_stale_and_metrics_use_the_existing_names() {
    let tb = Testbed::with_agents(Some(&config(
        "  - {name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}}\n",
        "  - {name: us-west-2a, subnet: pods-a, security_groups: [pods]}\n",
        CUSTOM,
    )));
    let list = wait_enis(&tb, "node-a", 2, 9).await;
    let (subnets, groups) = ids(&tb).await;
    tb.apply_eniconfig("us-west-2a", &subnets["100.64.64.0/19"], &[&groups["pods"]]);
    let stale = wait_for(Duration::from_secs(10), || {
        tb.introspect("node-a", "/v1/enis")["enis"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == list[1].id.as_str() && e["stale"] == true)
    });
    assert!(
        stale.is_some(),
        "the ENI in the old subnet was not marked stale"
    );
    // Existing ENIs keep their subnet.
    assert_eq!(
        enis(&tb, "node-a").await[1].subnet,
        subnets["100.64.0.0/19"]
    );

    let ns = netns::Netns::named(&tb.netns("node-a")).unwrap();
    let (_, body) = ns
        .run(|| {
            testbed::emulator::http_json(61678, "GET", "/metrics", None, Duration::from_secs(5))
        })
        .unwrap()
        .unwrap();
    let text = body.as_str().unwrap_or_default().to_string();
    for name in [
        "awscni_eni_max 3",
        "awscni_ip_max 20",
        "awscni_total_ip_addresses",
        "awscni_assigned_ip_addresses",
        "awscni_ec2api_req_count{fn=\"CreateNetworkInterface\"} 1",
        "awscni_aws_api_latency_ms_bucket",
        "awscni_build_info",
    ] {
        assert!(text.contains(name), "metrics lack {name}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attach_leaves_no_eni_behind() {
    let nodes = "  - {name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}}\n";
    let tb = Testbed::with_agents(Some(&config(nodes, "  []\n", CUSTOM)));
    let (status, _) = testbed::emulator::http_json(
        tb.port(),
        "POST",
        "/_testbed/faults",
        Some(serde_json::json!({"action": "AttachNetworkInterface", "error_code": "InternalError", "rate": 1.0})),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(status, 200);
    let (subnets, groups) = ids(&tb).await;
    tb.apply_eniconfig("us-west-2a", &subnets["100.64.0.0/19"], &[&groups["pods"]]);
    let tried = wait_for(Duration::from_secs(15), || {
        tb.calls()["AttachNetworkInterface"]["error"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    });
    assert!(
        tried.is_some(),
        "ipamd never tried to attach:\n{}",
        tb.ipamd_log("node-a")
    );
    settled(&tb, "node-a");
    let calls = tb.calls();
    let created = calls["CreateNetworkInterface"]["ok"].as_u64().unwrap_or(0);
    let deleted = calls["DeleteNetworkInterface"]["ok"].as_u64().unwrap_or(0);
    let ec2 = tb.ec2().await;
    let detached = ec2
        .describe_network_interfaces()
        .filters(Filter::builder().name("status").values("available").build())
        .filters(
            Filter::builder()
                .name("tag:node.k8s.amazonaws.com/instance_id")
                .values(tb.instance("node-a"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    // One create may be between its create and its clean-up right now.
    assert!(
        detached.network_interfaces().len() <= 1,
        "ENIs leaked: {:?}",
        detached.network_interfaces().len()
    );
    assert!(
        deleted + 1 >= created,
        "created {created}, deleted {deleted}"
    );
    assert!(!conflist(&tb, "node-a").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmanaged_eni_keeps_its_device_index_and_serves_no_pods() {
    let nodes = "  - {name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}}\n";
    let tb = Testbed::with_agents(Some(&config(nodes, "  []\n", CUSTOM)));
    let (subnets, groups) = ids(&tb).await;
    let ec2 = tb.ec2().await;
    // Someone else's interface, tagged so ipamd leaves it alone, at device index 1.
    let eni = ec2
        .create_network_interface()
        .subnet_id(&subnets["100.64.96.0/19"])
        .secondary_private_ip_address_count(2)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::NetworkInterface)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("node.k8s.amazonaws.com/no_manage")
                        .value("true")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let eni_id = eni
        .network_interface()
        .unwrap()
        .network_interface_id()
        .unwrap()
        .to_string();
    ec2.attach_network_interface()
        .network_interface_id(&eni_id)
        .instance_id(tb.instance("node-a"))
        .device_index(1)
        .send()
        .await
        .unwrap();
    tb.apply_eniconfig("us-west-2a", &subnets["100.64.0.0/19"], &[&groups["pods"]]);
    let list = wait_enis(&tb, "node-a", 3, 11).await;
    assert_eq!(list[1].id, eni_id);
    assert_eq!(
        list[2].device, 2,
        "ipamd's ENI did not take the next free index"
    );
    assert_eq!(list[2].subnet, subnets["100.64.0.0/19"]);
    // EC2 shows the attach before ipamd has routed the ENI and added its addresses.
    let pooled = wait_for(Duration::from_secs(10), || {
        tb.introspect("node-a", "/v1/pool")["stats"]["total"] == 9
    });
    assert!(
        pooled.is_some(),
        "pool: {}",
        tb.introspect("node-a", "/v1/pool")
    );
    let view = tb.introspect("node-a", "/v1/enis");
    assert!(
        !view["enis"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == eni_id.as_str()),
        "the unmanaged ENI is in the pool"
    );
    // Still 9 after the pool manager looked again: the unmanaged ENI's addresses never join.
    settled(&tb, "node-a");
    assert_eq!(tb.introspect("node-a", "/v1/pool")["stats"]["total"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eniconfig_deleted_in_use_stops_new_enis_and_raises_an_event() {
    let tb = Testbed::with_agents(None);
    let before = wait_enis(&tb, "node-a", 2, 9).await;
    let out = testsupport::testbed::vpc_testbed(&tb.prefix, &["delete", "eniconfig", "us-west-2a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(10), || {
        tb.introspect("node-a", "/v1/eni-configs")["target"]["state"] == "blocked"
    })
    .unwrap_or_else(|| {
        panic!(
            "the node still uses the deleted ENIConfig:\n{}",
            tb.ipamd_log("node-a")
        )
    });
    // The ENI already attached keeps serving: its nine addresses go to pods.
    for i in 0..9 {
        add(&tb, "node-a", &format!("c{i}")).await.unwrap();
    }
    // The tenth pod needs a new ENI, which must not be created without its ENIConfig.
    let err = add(&tb, "node-a", "c9").await.unwrap_err();
    assert!(
        err.message().contains("us-west-2a") && err.message().contains("does not exist"),
        "{err}"
    );
    settled(&tb, "node-a");
    let after = enis(&tb, "node-a").await;
    assert_eq!(
        after.len(),
        before.len(),
        "an ENI was created after its ENIConfig was deleted"
    );
    let log = tb.ipamd_log("node-a");
    let events = log.matches("ENIConfigNotFound").count();
    assert_eq!(
        events, 1,
        "one event for the situation, not one per look:\n{log}"
    );
}

fn conntrack_entries(ns: &str, ip: &str) -> usize {
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "conntrack",
            "-L",
            "-f",
            "ipv4",
            "--orig-src",
            ip,
        ])
        .output()
        .expect("conntrack (scripts/setup installs it)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(ip))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_address_loses_its_conntrack_entries() {
    let tb = Testbed::with_agents(None);
    let ip = add(&tb, "node-a", "c1").await.unwrap();
    let ns = tb.netns("node-a");
    let status = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "conntrack",
            "-I",
            "-s",
            &ip,
            "-d",
            "198.51.100.7",
            "-p",
            "tcp",
            "--sport",
            "40000",
            "--dport",
            "443",
            "--state",
            "SYN_SENT",
            "-t",
            "120",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "conntrack -I in {ns}");
    assert_eq!(conntrack_entries(&ns, &ip), 1);
    assert!(del(&tb, "node-a", "c1").await.success);
    wait_for(Duration::from_secs(10), || conntrack_entries(&ns, &ip) == 0).unwrap_or_else(|| {
        panic!(
            "the released address {ip} kept its conntrack entry:\n{}",
            tb.ipamd_log("node-a")
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vpc_block_associated_later_joins_the_snat_exclusions() {
    let nodes = "  - {name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}}\n";
    let tb = Testbed::with_agents(Some(&config(
        nodes,
        "  []\n",
        r#"{IPAMD_VPC_REFRESH_INTERVAL: "1"}"#,
    )));
    let snat = || {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &tb.netns("node-a"),
                "iptables",
                "-w",
                "-t",
                "nat",
                "-S",
                "AWS-SNAT-CHAIN-0",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(!snat().contains("198.19.0.0/16"), "{}", snat());
    let ec2 = tb.ec2().await;
    // The testbed's VPC (moto also has a default one).
    let vpc = ec2
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("cidr")
                .values("10.0.0.0/16")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_string();
    ec2.associate_vpc_cidr_block()
        .vpc_id(&vpc)
        .cidr_block("198.19.0.0/16")
        .send()
        .await
        .unwrap();
    wait_for(Duration::from_secs(15), || snat().contains("198.19.0.0/16")).unwrap_or_else(|| {
        panic!(
            "the new block is not excluded from SNAT:\n{}\n{}",
            snat(),
            tb.ipamd_log("node-a")
        )
    });
}

fn terminate(mut child: std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "ipamd's SIGTERM exit: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_leaves_the_datapath_as_a_fresh_start_made_it() {
    use testsupport::testbed::{diff_lines, node_datapath};
    let tb = Testbed::with_agents(None);
    let list = wait_enis(&tb, "node-a", 2, 9).await;
    let ns = tb.netns("node-a");
    let fresh = node_datapath(&ns);
    // The pod ENI (custom networking: its subnet is not the node's) routes through its own
    // subnet's gateway and holds its one address with the subnet's prefix.
    let view = tb.introspect("node-a", "/v1/enis");
    let pod_eni = view["enis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == list[1].id.as_str())
        .unwrap()
        .clone();
    let primary_ip = pod_eni["primary_ip"].as_str().unwrap();
    assert!(
        fresh.contains("default via 100.64.0.1 dev eth1 table 2"),
        "{fresh}"
    );
    assert!(fresh.contains(&format!("inet {primary_ip}/19")), "{fresh}");
    // kill -9, then a clean SIGTERM restart: each start finds and leaves the same datapath.
    let child = tb.restart_ipamd("node-a", None);
    tb.wait_ready("node-a");
    let after_kill = node_datapath(&ns);
    assert!(
        fresh == after_kill,
        "kill -9 and restart changed the datapath:\n{}",
        diff_lines(&fresh, &after_kill)
    );
    terminate(child);
    let child = tb.start_ipamd("node-a");
    tb.wait_ready("node-a");
    let after_term = node_datapath(&ns);
    assert!(
        fresh == after_term,
        "SIGTERM and restart changed the datapath:\n{}",
        diff_lines(&fresh, &after_term)
    );
    let view = tb.introspect("node-a", "/v1/enis");
    assert!(
        view["enis"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == list[1].id.as_str() && e["subnet_cidr"] == "100.64.0.0/19"),
        "{view}"
    );
    terminate(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_attach_detaches_and_deletes_the_new_eni() {
    let nodes = "  - {name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}}\n";
    let tb = Testbed::with_agents(Some(&config(nodes, "  []\n", CUSTOM)));
    // The create and the attach work; setting delete-on-termination fails twice, with an
    // error the SDK does not retry.
    fault(
        &tb,
        serde_json::json!({"action": "ModifyNetworkInterfaceAttribute",
                           "error_code": "InvalidParameterValue", "count": 2}),
    );
    let (subnets, groups) = ids(&tb).await;
    tb.apply_eniconfig("us-west-2a", &subnets["100.64.0.0/19"], &[&groups["pods"]]);
    // The third try succeeds (ipamd says so: EC2 shows an attached ENI before ipamd is done).
    let done = wait_for(Duration::from_secs(30), || {
        let calls = tb.calls();
        calls["ModifyNetworkInterfaceAttribute"]["error"].as_u64() == Some(2)
            && calls["ModifyNetworkInterfaceAttribute"]["ok"].as_u64() == Some(1)
            && tb.introspect("node-a", "/v1/pool")["network_ready"] == true
    });
    assert!(
        done.is_some(),
        "no pod ENI after two failed attempts: {}\n{}",
        tb.calls(),
        tb.ipamd_log("node-a")
    );
    // One pod ENI; the two that failed are gone from EC2 entirely.
    let list = wait_enis(&tb, "node-a", 2, 9).await;
    let ec2 = tb.ec2().await;
    let ours = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("tag:node.k8s.amazonaws.com/instance_id")
                .values(tb.instance("node-a"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = ours
        .network_interfaces()
        .iter()
        .map(|e| e.network_interface_id().unwrap())
        .collect();
    assert_eq!(ids, vec![list[1].id.as_str()], "ENIs left behind: {ids:?}");
    // The pod ENI that stayed is the one ipamd routes.
    let view = tb.introspect("node-a", "/v1/enis");
    assert_eq!(view["enis"].as_array().unwrap().len(), 2, "{view}");
    assert!(
        testsupport::testbed::node_datapath(&tb.netns("node-a"))
            .contains("default via 100.64.0.1 dev eth1 table 2")
    );
}

const NODE_A: &str = "  - {name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}}\n";
const ENICONFIG_A: &str = "  - {name: us-west-2a, subnet: pods-a, security_groups: [pods]}\n";

fn fault(tb: &Testbed, rule: serde_json::Value) {
    let (status, reply) = testbed::emulator::http_json(
        tb.port(),
        "POST",
        "/_testbed/faults",
        Some(rule),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(status, 200, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_ec2_call_does_not_freeze_the_pool_manager() {
    let env = r#"{AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: "true", ENI_CONFIG_LABEL_DEF: topology.kubernetes.io/zone, IPAMD_EC2_ATTEMPT_TIMEOUT: "1", IPAMD_EC2_OPERATION_TIMEOUT: "2"}"#;
    let tb = Testbed::with_agents(Some(&config(NODE_A, "  []\n", env)));
    // EC2 stops answering CreateNetworkInterface (ten minutes of silence per call).
    fault(
        &tb,
        serde_json::json!({"action": "CreateNetworkInterface", "latency_ms": 600_000}),
    );
    let (subnets, groups) = ids(&tb).await;
    tb.apply_eniconfig("us-west-2a", &subnets["100.64.0.0/19"], &[&groups["pods"]]);
    // The call is given up on and reported, and the manager goes on.
    let reported = wait_for(Duration::from_secs(20), || {
        tb.introspect("node-a", "/v1/pool")["last_ec2_error"]
            .as_str()
            .is_some_and(|e| e.contains("CreateNetworkInterface"))
    });
    assert!(
        reported.is_some(),
        "a stalled call was not given up on:\n{}",
        tb.ipamd_log("node-a")
    );
    // EC2 answers again: the next try fills the pool, without a restart.
    testbed::emulator::http_json(
        tb.port(),
        "DELETE",
        "/_testbed/faults",
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    wait_enis(&tb, "node-a", 2, 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_enis_of_instances_that_are_gone_are_deleted_and_others_kept() {
    let env = r#"{AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: "true", ENI_CONFIG_LABEL_DEF: topology.kubernetes.io/zone, CLUSTER_NAME: blue, LEAKED_ENI_CLEANUP_INTERVAL: "1", LEAKED_ENI_MIN_AGE: "60"}"#;
    let nodes = format!(
        "{NODE_A}  - {{name: node-b, instance_type: m5.large, subnet: nodes-a, labels: {{topology.kubernetes.io/zone: us-west-2a}}}}\n"
    );
    let tb = Testbed::without_agents(&config(&nodes, ENICONFIG_A, env));
    let (subnets, _) = ids(&tb).await;
    let ec2 = tb.ec2().await;
    let leak = async |instance: &str, cluster: &str, created: &str| {
        let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
        ec2.create_network_interface()
            .subnet_id(&subnets["100.64.0.0/19"])
            .description(format!("aws-K8S-{instance}"))
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::NetworkInterface)
                    .tags(tag("node.k8s.amazonaws.com/instance_id", instance))
                    .tags(tag("node.k8s.amazonaws.com/createdAt", created))
                    .tags(tag("cluster.k8s.amazonaws.com/name", cluster))
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .network_interface()
            .unwrap()
            .network_interface_id()
            .unwrap()
            .to_string()
    };
    let old = "2020-01-01T00:00:00Z";
    let dead = leak("i-0123456789abcdef0", "blue", old).await;
    let live_other = leak(&tb.instance("node-b"), "blue", old).await;
    let other_cluster = leak("i-0fedcba9876543210", "green", old).await;
    let young = leak(
        "i-0aaaaaaaaaaaaaaaa",
        "blue",
        &ipam::Time::now().to_rfc3339(),
    )
    .await;
    let _ipamd = testsupport::testbed::Ipamd(Some(tb.start_ipamd("node-a")));
    let exists = async |id: &str| {
        ec2.describe_network_interfaces()
            .filters(
                Filter::builder()
                    .name("network-interface-id")
                    .values(id)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .network_interfaces()
            .len()
            == 1
    };
    let mut gone = false;
    for _ in 0..100 {
        if !exists(&dead).await {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "the ENI of a gone instance stayed:\n{}",
        tb.ipamd_log("node-a")
    );
    // Two more clean-up passes have run since (each asks which instances live): the others are
    // kept for good reasons.
    let passes = || tb.calls()["DescribeInstances"]["ok"].as_u64().unwrap_or(0);
    let start = passes();
    assert!(
        wait_for(Duration::from_secs(15), || passes() >= start + 2).is_some(),
        "the leaked-ENI clean-up stopped running:\n{}",
        tb.ipamd_log("node-a")
    );
    for (id, why) in [
        (
            &live_other,
            "its instance runs (that node cleans up its own)",
        ),
        (&other_cluster, "it belongs to another cluster"),
        (&young, "it is younger than LEAKED_ENI_MIN_AGE"),
    ] {
        assert!(exists(id).await, "{id} was deleted although {why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_rp_filter_ipamd_cannot_loosen_keeps_the_node_not_ready() {
    let nodes = "  - {name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}, read_only_sysctls: true}\n";
    let tb = Testbed::without_agents(&config(nodes, ENICONFIG_A, CUSTOM));
    let ns = tb.netns("node-a");
    let sysctl = |value: Option<&str>| {
        let mut args = vec!["netns", "exec", &ns, "sysctl", "-n"];
        let set;
        if let Some(v) = value {
            set = format!("net.ipv4.conf.eth0.rp_filter={v}");
            args.extend(["-w", &set]);
        } else {
            args.push("net.ipv4.conf.eth0.rp_filter");
        }
        let out = std::process::Command::new("ip")
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    sysctl(Some("1"));
    let _ipamd = testsupport::testbed::Ipamd(Some(tb.start_ipamd("node-a")));
    // EC2 works and the pool fills, but the node says why it cannot serve pods.
    wait_enis(&tb, "node-a", 2, 9).await;
    let pool = tb.introspect("node-a", "/v1/pool");
    assert!(
        pool["datapath_problem"]
            .as_str()
            .is_some_and(|p| p.contains("rp_filter is strict")),
        "{pool}"
    );
    assert!(
        pool["can_serve"]["no"]
            .as_str()
            .unwrap()
            .contains("rp_filter"),
        "{pool}"
    );
    assert_eq!(
        sysctl(None),
        "1",
        "ipamd was expected not to be able to write it"
    );
    settled(&tb, "node-a");
    assert!(
        !conflist(&tb, "node-a").exists(),
        "the node became network-ready with a strict rp_filter"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_checkpoint_stops_start_up_and_is_not_overwritten() {
    let tb = Testbed::without_agents(&config(NODE_A, ENICONFIG_A, CUSTOM));
    // Reading a directory fails with an I/O error, as an unreadable file would.
    let path = tb.node_dir("node-a").join("ipam.json");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("marker"), b"kept").unwrap();
    let mut child = tb.spawn_ipamd("node-a");
    let exited = wait_for(Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    });
    if exited.is_none() {
        child.kill().ok();
        child.wait().ok();
        panic!(
            "ipamd ran on with an unreadable checkpoint:\n{}",
            tb.ipamd_log("node-a")
        );
    }
    assert!(!child.wait().unwrap().success());
    let stderr = std::fs::read_to_string(tb.node_dir("node-a").join("ipamd.stderr")).unwrap();
    assert!(
        stderr.contains("will not overwrite a checkpoint it cannot read")
            && stderr.contains("ipam.json"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(path.join("marker")).unwrap(), b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_and_the_log_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tb = Testbed::with_agents(Some(&config(NODE_A, ENICONFIG_A, CUSTOM)));
    add(&tb, "node-a", "c1").await.unwrap();
    for file in ["ipam.json", "ipamd.log"] {
        let mode = std::fs::metadata(tb.node_dir("node-a").join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_timed_out_after_ec2_did_it_is_not_put_back() {
    // Two warm addresses: pods come and go, and the surplus is released at once.
    let env = r#"{AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: "true", ENI_CONFIG_LABEL_DEF: topology.kubernetes.io/zone, WARM_IP_TARGET: "2", IP_COOLDOWN_PERIOD: "1", IPAMD_DECREASE_INTERVAL: "1", IPAMD_EC2_ATTEMPT_TIMEOUT: "1", IPAMD_EC2_OPERATION_TIMEOUT: "1", IPAMD_RECONCILE_INTERVAL: "300"}"#;
    let tb = Testbed::with_agents(Some(&config(NODE_A, ENICONFIG_A, env)));
    let held: Vec<String> = {
        let mut v = Vec::new();
        for c in ["c1", "c2", "c3", "c4"] {
            loop {
                match add(&tb, "node-a", c).await {
                    Ok(ip) => break v.push(ip),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        v
    };
    // Every address in the pool is on the node's ENIs in EC2, now and after the pool settles.
    let ec2 = tb.ec2().await;
    let pool_on_enis = async || {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let out = ec2
                .describe_network_interfaces()
                .filters(
                    Filter::builder()
                        .name("attachment.instance-id")
                        .values(tb.instance("node-a"))
                        .build(),
                )
                .send()
                .await
                .unwrap();
            let on_enis: Vec<String> = out
                .network_interfaces()
                .iter()
                .flat_map(|e| e.private_ip_addresses())
                .filter(|a| !a.primary().unwrap_or(false))
                .map(|a| a.private_ip_address().unwrap().to_string())
                .collect();
            let pool = tb.introspect("node-a", "/v1/enis");
            for e in pool["enis"].as_array().unwrap() {
                for a in e["addresses"].as_array().unwrap() {
                    let ip = a["address"].as_str().unwrap();
                    assert!(
                        on_enis.iter().any(|x| x == ip),
                        "{ip} is in the pool but EC2 took it back:\n{}",
                        tb.ipamd_log("node-a")
                    );
                }
            }
        }
    };
    let released = |n: u64| {
        wait_for(Duration::from_secs(20), || {
            let calls = tb.calls();
            calls["UnassignPrivateIpAddresses"]["ok"]
                .as_u64()
                .unwrap_or(0)
                + calls["UnassignPrivateIpAddresses"]["error"]
                    .as_u64()
                    .unwrap_or(0)
                >= n
        })
        .is_some()
    };
    // EC2 unassigns and answers with an error (the answer lost on the way back).
    fault(
        &tb,
        serde_json::json!({"action": "UnassignPrivateIpAddresses", "error_code": "InvalidParameterValue",
                           "done": true, "count": 1}),
    );
    for c in ["c1", "c2"] {
        del(&tb, "node-a", c).await;
    }
    assert!(
        released(1),
        "no release happened:\n{}",
        tb.ipamd_log("node-a")
    );
    pool_on_enis().await;
    // EC2 unassigns, then answers late: the SDK's timeout fires on a call that took effect.
    fault(
        &tb,
        serde_json::json!({"action": "UnassignPrivateIpAddresses", "after_ms": 3000, "count": 1}),
    );
    del(&tb, "node-a", "c3").await;
    assert!(
        released(2),
        "no second release:\n{}",
        tb.ipamd_log("node-a")
    );
    pool_on_enis().await;
    assert!(held.len() == 4);
}
