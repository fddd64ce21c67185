//! `vpcctl validate` against the EC2 emulator and `vpcctl status` against a testbed node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
