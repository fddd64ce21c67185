//! `vpcctl validate` against the EC2 emulator; `vpcctl status` and the ENIConfigs of
//! `custom-networking apply` against testbed nodes.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use testsupport::{Emulator, run_instance, seed_vpc};

fn write(dir: &std::path::Path, name: &str, subnet: &str, groups: &[&str]) {
    let groups = if groups.is_empty() {
        String::new()
    } else {
        format!("\n  securityGroups: [{}]", groups.join(", "))
    };
    std::fs::write(
        dir.join(format!("{name}.yaml")),
        format!("apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata:\n  name: {name}\nspec:\n  subnet: {subnet}{groups}\n"),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_flags_wrong_zone_foreign_group_and_missing_subnet() {
    let emulator = Emulator::start();
    let ec2 = emulator.client().await;
    let vpc = seed_vpc(&ec2).await;
    let other_vpc = ec2
        .create_vpc()
        .cidr_block("172.16.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let foreign = ec2
        .create_security_group()
        .vpc_id(&other_vpc)
        .group_name("elsewhere")
        .description("x")
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    let _node = run_instance(&ec2, "m5.large", &vpc.nodes_a).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |dir: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_vpcctl"))
            .args([
                "validate",
                "--eniconfig-dir",
                dir.to_str().unwrap(),
                "--vpc-id",
                &vpc.vpc_id,
                "--node-cidr",
                "10.0.0.0/16",
            ])
            .env("AWS_ENDPOINT_URL_EC2", &emulator.endpoint)
            .env("AWS_REGION", "us-west-2")
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "y")
            .output()
            .unwrap()
    };
    write(dir.path(), "us-west-2a", &vpc.pods_a, &[&vpc.pods_sg]);
    write(dir.path(), "us-west-2b", &vpc.pods_a, &[&vpc.pods_sg]);
    write(dir.path(), "foreign", &vpc.pods_b, &[&foreign]);
    write(dir.path(), "missing", "subnet-0000000000000dead", &[]);
    let o = run(dir.path());
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .to_string()
    };
    assert!(
        line("us-west-2a ").contains("valid") && !line("us-west-2a ").contains("INVALID"),
        "{text}"
    );
    assert!(line("us-west-2b").contains("INVALID"), "{text}");
    assert!(
        text.contains("is in us-west-2a, the node is in us-west-2b"),
        "{text}"
    );
    assert!(
        text.contains(&format!("security group {foreign} is in VPC {other_vpc}")),
        "{text}"
    );
    assert!(
        text.contains("subnet subnet-0000000000000dead does not exist"),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("invalid ENIConfigs: foreign, missing, us-west-2b")
    );

    // Only the valid one: exit 0, free addresses shown.
    let good = tempfile::tempdir().unwrap();
    write(good.path(), "us-west-2a", &vpc.pods_a, &[&vpc.pods_sg]);
    let o = run(good.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("8187"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn status_shows_a_nodes_enis_pool_and_eniconfig() {
    let tb = testsupport::testbed::Testbed::with_agents(None);
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &tb.netns("node-a"),
            env!("CARGO_BIN_EXE_vpcctl"),
            "status",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains(
            "ENIConfig: us-west-2a (chosen by node label topology.kubernetes.io/zone), ready"
        ),
        "{text}"
    );
    assert!(text.contains("max pods 20"), "{text}");
    assert!(text.contains("100.64.0.0/19"), "{text}");
    assert!(text.lines().any(|l| l.contains("primary,excl")), "{text}");
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &tb.netns("node-a"),
            env!("CARGO_BIN_EXE_vpcctl"),
            "status",
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["pool"]["max_pods"], 20);
}

/// The reference document's starting point on the testbed: nodes with custom networking on but
/// only the primary block and no ENIConfig, so they wait. `apply` makes the block, subnets,
/// group and ENIConfigs; once those are applied the nodes run pods in the new subnets, reach
/// each other, and a node with external SNAT reaches the internet through the NAT gateway from
/// the block associated after `up`.
#[test]
fn eniconfigs_from_apply_bring_nodes_up_with_pods_in_the_new_subnets() {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;
    use testsupport::testbed::{connect_from, listen_in, pod_address, vpc_testbed, wait_for};

    let config = r#"
region: us-west-2
vpc: {cidr: 10.0.0.0/16}
subnets:
  - {name: nodes-a, az: us-west-2a, cidr: 10.0.1.0/24}
  - {name: nodes-b, az: us-west-2b, cidr: 10.0.2.0/24}
nodes:
  - {name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {topology.kubernetes.io/zone: us-west-2a}}
  - {name: node-b, instance_type: m5.large, subnet: nodes-b, labels: {topology.kubernetes.io/zone: us-west-2b},
     ipamd_env: {AWS_VPC_K8S_CNI_EXTERNALSNAT: "true"}}
ipamd_env: {AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: "true", ENI_CONFIG_LABEL_DEF: topology.kubernetes.io/zone}
"#;
    let tb = testsupport::testbed::Testbed::with_agents(Some(config));
    let err = tb.pod_add("node-a", "early", &[]).unwrap_err();
    assert!(err.contains("not network-ready"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let vpc = tb.status["vpc_id"].as_str().unwrap().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_vpcctl"))
        .args([
            "custom-networking",
            "apply",
            "--vpc-id",
            &vpc,
            "--cidr",
            "100.64.0.0/16",
            "--subnet-prefix",
            "19",
            "--create-security-group",
            "--eniconfig-dir",
            dir.path().to_str().unwrap(),
        ])
        .env("AWS_ENDPOINT_URL_EC2", tb.endpoint())
        .env("AWS_REGION", "us-west-2")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Zones default to the node subnets' zones.
    for az in ["us-west-2a", "us-west-2b"] {
        let file = dir.path().join(format!("{az}.yaml"));
        let out = vpc_testbed(&tb.prefix, &["apply", "-f", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "apply {az}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let add = |node: &str, pod: &str| {
        let mut last = String::new();
        let mut result = None;
        wait_for(Duration::from_secs(30), || {
            match tb.pod_add(node, pod, &[]) {
                Ok(r) => {
                    result = Some(r);
                    true
                }
                Err(e) => {
                    last = e;
                    std::thread::sleep(Duration::from_millis(300));
                    false
                }
            }
        });
        pod_address(&result.unwrap_or_else(|| panic!("{node}/{pod} never started: {last}")))
    };
    let a = add("node-a", "web-a");
    let b = add("node-b", "web-b");
    let in_block = |ip: Ipv4Addr, cidr: &str| cidr.parse::<ipnet::Ipv4Net>().unwrap().contains(&ip);
    assert!(in_block(a, "100.64.0.0/19"), "node-a's pod got {a}");
    assert!(in_block(b, "100.64.32.0/19"), "node-b's pod got {b}");

    // Pod to pod across nodes: the created group admits the pods' own traffic.
    let to_b = SocketAddr::from((b, 8080));
    let _l = listen_in(&tb.pod_ns("node-b", "web-b"), to_b);
    connect_from(&tb.pod_ns("node-a", "web-a"), None, to_b).expect("pod a reaches pod b");

    // External SNAT from the new block: out through the NAT gateway, which learnt the block.
    let internet = SocketAddr::from((
        testbed::fabric::INTERNET_HOST.parse::<Ipv4Addr>().unwrap(),
        443,
    ));
    let _i = listen_in(&format!("{}-inet", tb.prefix), internet);
    connect_from(&tb.pod_ns("node-b", "web-b"), None, internet)
        .expect("node-b's pod reaches the internet through the NAT gateway");
}
