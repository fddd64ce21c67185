//! Pod ENIs across several subnets, judged by traffic: subnet discovery (tagged subnets of the
//! node's zone, `kubernetes.io/role/cni=0` and other clusters' subnets left alone, a subnet
//! tagged while ipamd runs), an ENIConfig with several subnets (a full one moves the next ENI
//! to the next, no restart), `vpcctl custom-networking expand` on a running testbed, and prefix
//! delegation on a fragmented subnet falling back to single addresses.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use testsupport::testbed::*;
use testsupport::world::World;

/// Subnet ids by CIDR.
async fn subnets_by_cidr(tb: &Testbed) -> BTreeMap<String, String> {
    let ec2 = tb.ec2().await;
    ec2.describe_subnets()
        .send()
        .await
        .unwrap()
        .subnets()
        .iter()
        .map(|s| {
            (
                s.cidr_block().unwrap().to_string(),
                s.subnet_id().unwrap().to_string(),
            )
        })
        .collect()
}

/// The node's pod ENIs (not the primary), by device number: (id, subnet, groups).
fn pod_enis(tb: &Testbed, node: &str) -> Vec<(String, String, Vec<String>)> {
    let view = tb.introspect(node, "/v1/enis");
    let mut enis: Vec<(u64, String, String, Vec<String>)> = view["enis"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["primary"] == false)
        .map(|e| {
            (
                e["device_number"].as_u64().unwrap(),
                e["id"].as_str().unwrap().to_string(),
                e["subnet_id"].as_str().unwrap().to_string(),
                e["security_groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    enis.sort();
    enis.into_iter().map(|(_, id, s, g)| (id, s, g)).collect()
}

fn primary_groups(tb: &Testbed, node: &str) -> Vec<String> {
    tb.introspect(node, "/v1/enis")["enis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["primary"] == true)
        .unwrap()["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect()
}

/// Waits until the node has `n` pod ENIs; fails with the node's log.
fn wait_pod_enis(tb: &Testbed, node: &str, n: usize) -> Vec<(String, String, Vec<String>)> {
    let mut last = Vec::new();
    let reached = wait_for(Duration::from_secs(45), || {
        last = pod_enis(tb, node);
        last.len() >= n
    });
    assert!(
        reached.is_some(),
        "{node} has {} pod ENIs, expected {n}: {last:?}\n{}",
        last.len(),
        tail(&tb.ipamd_log(node))
    );
    last
}

fn tail(log: &str) -> &str {
    &log[log.len().saturating_sub(6000)..]
}

fn metrics(tb: &Testbed, node: &str) -> String {
    let ns = netns::Netns::named(&tb.netns(node)).unwrap();
    ns.run(|| testbed::emulator::http_json(61678, "GET", "/metrics", None, Duration::from_secs(5)))
        .unwrap()
        .unwrap()
        .1
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn vpcctl(tb: &Testbed, args: &[&str]) -> Output {
    Command::new(workspace_bin("vpcctl"))
        .args(args)
        .env("AWS_ENDPOINT_URL_EC2", tb.endpoint())
        .env("AWS_REGION", "us-west-2")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "vpcctl failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const DISCOVERY: &str = r#"
region: us-west-2
vpc: {cidr: 10.0.0.0/16}
subnets:
  - {name: nodes-a, az: us-west-2a, cidr: 10.0.1.0/27}
  - {name: tagged-a, az: us-west-2a, cidr: 10.0.8.0/24, tags: {kubernetes.io/role/cni: "1"}}
  - {name: optout-a, az: us-west-2a, cidr: 10.0.10.0/23, tags: {kubernetes.io/role/cni: "0"}}
  - {name: theirs-a, az: us-west-2a, cidr: 10.0.12.0/22, tags: {kubernetes.io/role/cni: "1", kubernetes.io/cluster/green: shared}}
  - {name: late-a, az: us-west-2a, cidr: 10.0.16.0/21}
  - {name: tagged-c, az: us-west-2c, cidr: 10.0.32.0/20, tags: {kubernetes.io/role/cni: "1"}}
  - {name: nodes-b, az: us-west-2b, cidr: 10.0.2.0/24, tags: {kubernetes.io/role/cni: "0"}}
  - {name: nodes-c, az: us-west-2a, cidr: 10.0.3.0/24}
security_groups:
  - {name: nodes, ingress: [{protocol: tcp, ports: "8080", from: "10.0.0.0/16"}]}
nodes:
  - {name: node-a, instance_type: m5.large, subnet: nodes-a, security_groups: [nodes]}
  - {name: node-b, instance_type: m5.large, subnet: nodes-b, security_groups: [nodes]}
  - {name: node-c, instance_type: m5.large, subnet: nodes-c, security_groups: [nodes],
     ipamd_env: {ENABLE_SUBNET_DISCOVERY: "false"}}
ipamd_env: {CLUSTER_NAME: blue, IPAMD_VPC_REFRESH_INTERVAL: "2", IP_COOLDOWN_PERIOD: "1"}
nat_gateway: false
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnet_discovery_uses_tagged_subnets_of_the_zone_and_no_other() {
    let tb = Testbed::with_agents(Some(DISCOVERY));
    let ids = subnets_by_cidr(&tb).await;
    let id = |cidr: &str| ids[cidr].clone();
    let mut w = World::new(tb);
    // The primary ENI takes 9 of the node subnet's 27 addresses; a pod makes the pool want a
    // spare ENI, which the node subnet (17 left) could still hold: the tagged subnet has more.
    w.add("node-a", "a0");
    let enis = wait_pod_enis(&w.tb, "node-a", 1);
    assert_eq!(enis[0].1, id("10.0.8.0/24"), "the first pod ENI's subnet");
    assert_eq!(
        enis[0].2,
        primary_groups(&w.tb, "node-a"),
        "a discovered subnet's ENI carries the primary ENI's groups"
    );
    let view = w.tb.introspect("node-a", "/v1/subnets");
    let excluded: BTreeMap<String, String> = view["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap().to_string(),
                x["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        excluded[&id("10.0.10.0/23")],
        "tagged kubernetes.io/role/cni=0"
    );
    assert!(
        excluded[&id("10.0.12.0/22")].contains("green, not for this cluster blue"),
        "{excluded:?}"
    );
    assert!(excluded[&id("10.0.16.0/21")].contains("not tagged"));
    assert!(
        !view.to_string().contains(&id("10.0.32.0/20")),
        "a subnet of another zone was considered: {view}"
    );

    // Tagged while ipamd runs: the next ENI goes there (the most free addresses), no restart.
    let ec2 = w.tb.ec2().await;
    ec2.create_tags()
        .resources(id("10.0.16.0/21"))
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("kubernetes.io/role/cni")
                .value("1")
                .build(),
        )
        .send()
        .await
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // Pods 1..9 fill the primary and the first pod ENI to the warm threshold; more pods land
    // on the second pod ENI.
    for i in 1..19 {
        w.add("node-a", &format!("a{i}"));
    }
    let enis = wait_pod_enis(&w.tb, "node-a", 2);
    assert_eq!(
        enis[1].1,
        id("10.0.16.0/21"),
        "the ENI after the tag:\n{}",
        tail(&w.tb.ipamd_log("node-a"))
    );
    assert_eq!(enis[1].2, primary_groups(&w.tb, "node-a"));
    // Never an ENI in the opted-out or the other cluster's subnet, on any node.
    let used: Vec<String> = ec2
        .describe_network_interfaces()
        .send()
        .await
        .unwrap()
        .network_interfaces()
        .iter()
        .map(|e| e.subnet_id().unwrap().to_string())
        .collect();
    for cidr in ["10.0.10.0/23", "10.0.12.0/22", "10.0.32.0/20"] {
        assert!(!used.contains(&id(cidr)), "an ENI in {cidr}");
    }
    let on_late = w
        .pods
        .values()
        .filter(|p| {
            "10.0.16.0/21"
                .parse::<ipnet::Ipv4Net>()
                .unwrap()
                .contains(&p.ip)
        })
        .count();
    let on_tagged = w
        .pods
        .values()
        .filter(|p| {
            "10.0.8.0/24"
                .parse::<ipnet::Ipv4Net>()
                .unwrap()
                .contains(&p.ip)
        })
        .count();
    assert!(
        on_late >= 1 && on_tagged >= 1,
        "pods in both subnets: {on_late}, {on_tagged}"
    );

    // node-b's own subnet opted out and nothing else in its zone is tagged: its primary still
    // serves, no pod ENI is made, and it says why, naming the tag.
    w.add("node-b", "b0");
    let said = wait_for(Duration::from_secs(20), || {
        w.tb.ipamd_log("node-b").contains("SubnetExcluded")
    });
    let log = w.tb.ipamd_log("node-b");
    assert!(said.is_some(), "{}", tail(&log));
    assert!(
        log.contains("kubernetes.io/role/cni=0")
            && log.contains("no pod ENI can be created at all"),
        "{}",
        tail(&log)
    );
    assert!(pod_enis(&w.tb, "node-b").is_empty());
    w.traffic("pods in the node's, a tagged and a later-tagged subnet");
    // ENABLE_SUBNET_DISCOVERY=false: the node's own subnet only, though tagged ones have more.
    // (Its pods stay out of the traffic matrix: the point is where its ENI goes.)
    for i in 0..2 {
        w.tb.pod_add("node-c", &format!("c{i}"), &[]).unwrap();
    }
    let enis = wait_pod_enis(&w.tb, "node-c", 1);
    assert_eq!(enis[0].1, id("10.0.3.0/24"), "discovery off");
    w.invariants("node-a", "subnet discovery").await;
}

/// Two nodes in two zones, custom networking; `pods` adds subnets, `eniconfig_a` is us-west-2a's
/// ENIConfig, `env` more of every ipamd's environment, `nodes` more nodes.
fn custom(pods: &str, eniconfig_a: &str, env: &str, nodes: &str) -> String {
    format!(
        r#"
region: us-west-2
vpc: {{cidr: 10.0.0.0/16, secondary_cidrs: [100.64.0.0/16]}}
subnets:
  - {{name: nodes-a, az: us-west-2a, cidr: 10.0.1.0/24}}
  - {{name: nodes-b, az: us-west-2b, cidr: 10.0.2.0/24}}
  - {{name: pods-b, az: us-west-2b, cidr: 100.64.32.0/19}}
{pods}
security_groups:
  - {{name: pods, ingress: [{{protocol: tcp, ports: "8080", from: "100.64.0.0/10"}}, {{protocol: tcp, ports: "8080", from: "10.0.0.0/16"}}]}}
eniconfigs:
  - {eniconfig_a}
  - {{name: us-west-2b, subnet: pods-b, security_groups: [pods]}}
nodes:
  - {{name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {{topology.kubernetes.io/zone: us-west-2a}}}}
  - {{name: node-b, instance_type: m5.large, subnet: nodes-b, labels: {{topology.kubernetes.io/zone: us-west-2b}}}}
{nodes}
ipamd_env: {{AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: "true", ENI_CONFIG_LABEL_DEF: topology.kubernetes.io/zone, IP_COOLDOWN_PERIOD: "1", IPAMD_VPC_REFRESH_INTERVAL: "2", IPAMD_SUBNET_FULL_BACKOFF: "3"{env}}}
nat_gateway: false
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eniconfig_with_two_subnets_moves_on_when_one_is_full() {
    let tb = Testbed::without_agents(&custom(
        "  - {name: pods-a, az: us-west-2a, cidr: 100.64.0.0/28}\n  - {name: pods-a2, az: us-west-2a, cidr: 100.64.1.0/28}",
        "{name: us-west-2a, subnet: pods-a, subnets: [pods-a2], security_groups: [pods]}",
        "",
        "",
    ));
    let ids = subnets_by_cidr(&tb).await;
    let (a, a2) = (ids["100.64.0.0/28"].clone(), ids["100.64.1.0/28"].clone());
    // EC2's "insufficient free addresses" under its generic code, once: a full subnet, not bad
    // input. Both /28s have 11 free; the tie goes to spec.subnet, which refuses.
    let (status, _) = testbed::emulator::http_json(
        tb.port(),
        "POST",
        "/_testbed/faults",
        Some(json!({"action": "CreateNetworkInterface", "error_code": "InvalidParameterValue",
                    "message": "There aren't sufficient free Ipv4 addresses or prefixes", "count": 1})),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(status, 200);
    let _a = Ipamd(Some(tb.start_ipamd("node-a")));
    let enis = wait_pod_enis(&tb, "node-a", 1);
    assert_eq!(enis[0].1, a2, "after spec.subnet refused, the next subnet");
    let refused =
        tb.calls()["CreateNetworkInterface"]["error_codes"]["InvalidParameterValue"].as_u64();
    assert_eq!(refused, Some(1));
    let log = tb.ipamd_log("node-a");
    assert!(
        log.contains("SubnetFull") && log.contains(&a),
        "the refusal is said naming the subnet:\n{}",
        tail(&log)
    );
    let _b = Ipamd(Some(tb.start_ipamd("node-b")));
    let mut w = World::new(tb);
    // The second subnet is full now (1 left); pods past the first ENI's 9 need a second ENI,
    // which goes back to spec.subnet once its short back-off is over: no restart.
    for i in 0..10 {
        w.add("node-a", &format!("a{i}"));
    }
    let enis = wait_pod_enis(&w.tb, "node-a", 2);
    assert_eq!(enis[1].1, a, "the second ENI");
    w.add("node-b", "b0");
    let in_a = w
        .pods
        .values()
        .filter(|p| {
            "100.64.0.0/28"
                .parse::<ipnet::Ipv4Net>()
                .unwrap()
                .contains(&p.ip)
        })
        .count();
    assert!(in_a >= 1, "a pod in each subnet");
    w.traffic("pods in both subnets of one ENIConfig");
    w.invariants("node-a", "two subnets").await;

    // The ENIConfig's status shows both subnets with zone and free addresses.
    let vpc = w.tb.status["vpc_id"].as_str().unwrap().to_string();
    let dir = w.tb.node_dir("node-a").join("manifests");
    let out = stdout(&vpcctl(
        &w.tb,
        &[
            "validate",
            "--eniconfig-dir",
            dir.to_str().unwrap(),
            "--vpc-id",
            &vpc,
        ],
    ));
    let line = |id: &str| {
        out.lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("{id} missing:\n{out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let first = line(&a);
    assert_eq!(
        &first[..4],
        ["us-west-2a", a.as_str(), "us-west-2a", "1"],
        "{out}"
    );
    let second = line(&a2);
    assert_eq!(&second[..3], [a2.as_str(), "us-west-2a", "1"], "{out}");
    let subnets = w.tb.introspect("node-a", "/v1/subnets");
    let rows = subnets["subnets"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{subnets}");
    assert!(
        rows.iter()
            .all(|r| r["candidate"] == true && r["held"] == 9)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_grows_a_running_testbeds_pod_space_without_restarts() {
    let tb = Testbed::with_agents(Some(&custom(
        "  - {name: pods-a, az: us-west-2a, cidr: 100.64.0.0/28}",
        "{name: us-west-2a, subnet: pods-a, security_groups: [pods]}",
        "",
        "",
    )));
    let vpc = tb.status["vpc_id"].as_str().unwrap().to_string();
    let ids = subnets_by_cidr(&tb).await;
    let mut w = World::new(tb);
    w.add("node-a", "a0");
    w.add("node-b", "b0");
    assert_eq!(wait_pod_enis(&w.tb, "node-a", 1)[0].1, ids["100.64.0.0/28"]);
    // The ENIConfigs as an operator keeps them: one file each.
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(w.tb.node_dir("node-a").join("manifests")).unwrap() {
        let f = f.unwrap().path();
        if f.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("eniconfig-")
        {
            std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
    }
    let d = dir.path().to_str().unwrap();
    let groups = primary_groups(&w.tb, "node-a");
    let pods_sg = pod_enis(&w.tb, "node-a")[0].2[0].clone();
    assert!(!groups.contains(&pods_sg));

    // Before: the plan's capacity view warns that us-west-2a's /28 cannot hold two nodes.
    let before = stdout(&vpcctl(
        &w.tb,
        &[
            "custom-networking",
            "plan",
            "--vpc-id",
            &vpc,
            "--cidr",
            "100.64.0.0/16",
            "--security-group",
            &pods_sg,
            "--eniconfig-dir",
            d,
            "--nodes",
            "m5.large=4",
        ],
    ));
    assert!(before.contains("capacity (WARM_ENI_TARGET=1"), "{before}");
    assert!(
        before.contains("warning: us-west-2a: the planned nodes would hold 20 addresses even idle, the pod subnets have 1 free"),
        "{before}"
    );
    let expand = |apply: bool| {
        let mut args = vec![
            "custom-networking",
            "expand",
            "--vpc-id",
            &vpc,
            "--cidr",
            "100.65.0.0/16",
            "--subnet-prefix",
            "24",
            "--eniconfig-dir",
            d,
            "--nodes",
            "m5.large=4",
        ];
        if apply {
            args.push("--apply");
        }
        stdout(&vpcctl(&w.tb, &args))
    };
    let plan = expand(false);
    for change in [
        "1. associate 100.65.0.0/16 with the VPC",
        "2. create subnet 100.65.0.0/24 in us-west-2a (251 usable addresses)",
        "3. create subnet 100.65.1.0/24 in us-west-2b (251 usable addresses)",
        "4. add <new subnet in us-west-2a> to ENIConfig us-west-2a's spec.subnets",
        "5. add <new subnet in us-west-2b> to ENIConfig us-west-2b's spec.subnets",
    ] {
        assert!(plan.contains(change), "{change:?} missing:\n{plan}");
    }
    assert!(!plan.contains("warning: us-west-2a"), "{plan}");
    assert_eq!(
        subnets_by_cidr(&w.tb).await.len(),
        ids.len(),
        "plan changed EC2"
    );
    let applied = expand(true);
    assert!(applied.contains("applied 5 change(s)"), "{applied}");
    let again = expand(true);
    assert!(again.contains("nothing to do"), "{again}");
    let new_a = subnets_by_cidr(&w.tb).await["100.65.0.0/24"].clone();
    let manifest = std::fs::read_to_string(dir.path().join("eniconfig-us-west-2a.yaml")).unwrap();
    assert!(
        manifest.contains(&format!("subnets:\n    - {new_a}")),
        "{manifest}"
    );

    // kubectl apply, as it were: running nodes take the new subnets for their next ENIs.
    for name in ["eniconfig-us-west-2a.yaml", "eniconfig-us-west-2b.yaml"] {
        let out = vpc_testbed(
            &w.tb.prefix,
            &["apply", "-f", dir.path().join(name).to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for i in 1..11 {
        w.add("node-a", &format!("a{i}"));
    }
    let enis = wait_pod_enis(&w.tb, "node-a", 2);
    assert_eq!(enis[1].1, new_a, "the ENI after expand");
    let block: ipnet::Ipv4Net = "100.65.0.0/16".parse().unwrap();
    assert!(
        w.pods.values().any(|p| block.contains(&p.ip)),
        "a pod from the new block"
    );
    w.traffic("pods of the old and the new block");
    w.invariants("node-a", "after expand").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_delegation_on_a_fragmented_subnet_falls_back_to_single_addresses() {
    let tb = Testbed::without_agents(&custom(
        "  - {name: pods-a, az: us-west-2a, cidr: 100.64.0.0/26}",
        "{name: us-west-2a, subnet: pods-a, security_groups: [pods]}",
        r#", ENABLE_PREFIX_DELEGATION: "true""#,
        r#"  - {name: node-c, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}, ipamd_env: {IPAMD_PREFIX_FALLBACK: "false"}}"#,
    ));
    let ids = subnets_by_cidr(&tb).await;
    let subnet = ids["100.64.0.0/26"].clone();
    // One address in each of the two /28s that could be delegated: 57 free, no /28.
    let ec2 = tb.ec2().await;
    for ip in ["100.64.0.20", "100.64.0.40"] {
        ec2.create_network_interface()
            .subnet_id(&subnet)
            .private_ip_address(ip)
            .send()
            .await
            .unwrap();
    }
    let _a = Ipamd(Some(tb.start_ipamd("node-a")));
    let _b = Ipamd(Some(tb.start_ipamd("node-b")));
    let mut w = World::new(tb);
    for i in 0..10 {
        w.add("node-a", &format!("a{i}"));
    }
    w.add("node-b", "b0");
    let pool = w.pool("node-a");
    assert_eq!(pool["stats"]["total_prefixes"], 0, "{pool}");
    assert!(pool["stats"]["total"].as_u64().unwrap() >= 10, "{pool}");
    let log = w.tb.ipamd_log("node-a");
    assert!(
        log.contains("SubnetFragmented") && log.contains("InsufficientCidrBlocks"),
        "{}",
        tail(&log)
    );
    assert!(log.contains("PrefixFallback"), "{}", tail(&log));
    let m = metrics(&w.tb, "node-a");
    let counted = m
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "awscni_prefix_fallback_total{{subnet=\"{subnet}\"}}"
            ))
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(counted.is_some_and(|n| n >= 1), "{m}");
    // node-b's subnet has room for /28s: prefixes as asked.
    assert!(
        w.pool("node-b")["stats"]["total_prefixes"]
            .as_u64()
            .unwrap()
            >= 1
    );
    w.traffic("pods on single addresses beside pods on prefixes");
    w.invariants("node-a", "prefix fallback").await;
}
