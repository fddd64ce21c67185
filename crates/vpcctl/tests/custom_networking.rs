//! `vpcctl custom-networking plan|apply` against the EC2 emulator, from a VPC with only its
//! primary block, as the reference document starts.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use aws_sdk_ec2::types::Filter;
use serde_json::json;
use testsupport::{Emulator, run_instance};

fn vpcctl(emulator: &Emulator, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vpcctl"))
        .args(args)
        .env("AWS_ENDPOINT_URL_EC2", &emulator.endpoint)
        .env("AWS_REGION", "us-west-2")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A VPC with only 10.0.0.0/16 and a node subnet per zone; one node in us-west-2a.
async fn primary_only(ec2: &aws_sdk_ec2::Client) -> String {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let mut node_subnet = String::new();
    for (cidr, az) in [("10.0.1.0/24", "us-west-2a"), ("10.0.2.0/24", "us-west-2b")] {
        let id = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(cidr)
            .availability_zone(az)
            .send()
            .await
            .unwrap()
            .subnet()
            .unwrap()
            .subnet_id()
            .unwrap()
            .to_string();
        if node_subnet.is_empty() {
            node_subnet = id;
        }
    }
    run_instance(ec2, "m5.large", &node_subnet).await;
    vpc
}

fn setup_args<'a>(verb: &'a str, vpc: &'a str, cidr: &'a str, dir: &'a Path) -> Vec<&'a str> {
    vec![
        "custom-networking",
        verb,
        "--vpc-id",
        vpc,
        "--cidr",
        cidr,
        "--azs",
        "us-west-2a,us-west-2b",
        "--subnet-prefix",
        "19",
        "--create-security-group",
        "--eniconfig-dir",
        dir.to_str().unwrap(),
        "--instance-types",
        "m5.large",
    ]
}

async fn pod_subnets(ec2: &aws_sdk_ec2::Client, vpc: &str) -> Vec<(String, String, String)> {
    let out = ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .unwrap();
    let mut v: Vec<(String, String, String)> = out
        .subnets()
        .iter()
        .filter(|s| s.cidr_block().unwrap().starts_with("100.64."))
        .map(|s| {
            (
                s.availability_zone().unwrap().to_string(),
                s.cidr_block().unwrap().to_string(),
                s.subnet_id().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn blocks(ec2: &aws_sdk_ec2::Client, vpc: &str) -> Vec<String> {
    let out = ec2.describe_vpcs().vpc_ids(vpc).send().await.unwrap();
    out.vpcs()[0]
        .cidr_block_association_set()
        .iter()
        .filter(|a| {
            a.cidr_block_state()
                .and_then(|s| s.state())
                .map(|s| s.as_str())
                == Some("associated")
        })
        .map(|a| a.cidr_block().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_changes_nothing_apply_does_it_all_and_plan_is_then_empty() {
    let emulator = Emulator::start();
    let ec2 = emulator.client().await;
    let vpc = primary_only(&ec2).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eniconfigs");

    let o = vpcctl(&emulator, &setup_args("plan", &vpc, "100.64.0.0/16", &out));
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    for line in [
        " 1. associate 100.64.0.0/16 with the VPC",
        " 2. create subnet 100.64.0.0/19 in us-west-2a (8187 usable addresses)",
        " 3. create subnet 100.64.32.0/19 in us-west-2b (8187 usable addresses)",
        " 4. create security group custom-networking-pods for the pods",
        " 6. write ENIConfig us-west-2a: subnet <new subnet in us-west-2a>",
        "kubectl set env daemonset aws-node -n kube-system AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true ENI_CONFIG_LABEL_DEF=topology.kubernetes.io/zone",
        "m5.large         20",
        "nodes to replace: none",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // Nothing changed.
    assert_eq!(blocks(&ec2, &vpc).await, ["10.0.0.0/16"]);
    assert!(pod_subnets(&ec2, &vpc).await.is_empty());
    assert!(!out.exists());

    let o = vpcctl(&emulator, &setup_args("apply", &vpc, "100.64.0.0/16", &out));
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("applied 7 change(s)"), "{stdout}");
    assert_eq!(blocks(&ec2, &vpc).await, ["10.0.0.0/16", "100.64.0.0/16"]);
    let subnets = pod_subnets(&ec2, &vpc).await;
    let zones_cidrs: Vec<(&str, &str)> = subnets
        .iter()
        .map(|(az, c, _)| (az.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        zones_cidrs,
        [
            ("us-west-2a", "100.64.0.0/19"),
            ("us-west-2b", "100.64.32.0/19")
        ]
    );
    let tagged = ec2
        .describe_subnets()
        .subnet_ids(&subnets[0].2)
        .send()
        .await
        .unwrap();
    let tags: Vec<(String, String)> = tagged.subnets()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    assert!(
        tags.contains(&("vpc-cni.k8s.aws/eniconfig".into(), "us-west-2a".into())),
        "{tags:?}"
    );
    let group = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .filters(
            Filter::builder()
                .name("group-name")
                .values("custom-networking-pods")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .security_groups()[0]
        .group_id()
        .unwrap()
        .to_string();
    for (az, _, id) in &subnets {
        let yaml = std::fs::read_to_string(out.join(format!("{az}.yaml"))).unwrap();
        let objects = eniconfig::parse_manifests(&yaml).unwrap();
        let eniconfig::Object::EniConfig(c) = &objects[0] else {
            panic!("{yaml}")
        };
        assert_eq!(&c.name, az);
        assert_eq!(&c.spec.subnet, id, "{yaml}");
        assert_eq!(c.spec.groups(), std::slice::from_ref(&group), "{yaml}");
    }

    // Idempotent: plan and apply find nothing to do.
    for verb in ["plan", "apply"] {
        let o = vpcctl(&emulator, &setup_args(verb, &vpc, "100.64.0.0/16", &out));
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("nothing to do: every change is in place"),
            "{verb}: {stdout}"
        );
    }

    // What apply wrote passes validate, without a CIDR-block warning.
    let o = vpcctl(
        &emulator,
        &[
            "validate",
            "--eniconfig-dir",
            out.to_str().unwrap(),
            "--vpc-id",
            &vpc,
        ],
    );
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("INVALID") && !stdout.contains("warning"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_cidr_is_refused_with_a_reason_and_nothing_changes() {
    let emulator = Emulator::start();
    let ec2 = emulator.client().await;
    let vpc = primary_only(&ec2).await;
    let dir = tempfile::tempdir().unwrap();
    for verb in ["plan", "apply"] {
        let o = vpcctl(
            &emulator,
            &setup_args(verb, &vpc, "10.0.128.0/17", dir.path()),
        );
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(
            stderr.contains("refused: --cidr 10.0.128.0/17 overlaps the VPC's block 10.0.0.0/16"),
            "{stderr}"
        );
    }
    let o = vpcctl(
        &emulator,
        &setup_args("plan", &vpc, "100.64.0.0/27", dir.path()),
    );
    let (_, stderr) = text(&o);
    assert!(
        stderr.contains("--cidr 100.64.0.0/27 is too small")
            || stderr.contains("--subnet-prefix 19 does not fit --cidr 100.64.0.0/27"),
        "{stderr}"
    );
    assert_eq!(blocks(&ec2, &vpc).await, ["10.0.0.0/16"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_says_what_was_done_and_a_rerun_finishes() {
    let emulator = Emulator::start();
    let ec2 = emulator.client().await;
    let vpc = primary_only(&ec2).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eniconfigs");
    let (status, _) = emulator.control(
        "POST",
        "/_testbed/faults",
        Some(json!({"action": "CreateSecurityGroup", "error_code": "UnauthorizedOperation", "count": 1})),
    );
    assert_eq!(status, 200);
    let o = vpcctl(&emulator, &setup_args("apply", &vpc, "100.64.0.0/16", &out));
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("done  3. create subnet 100.64.32.0/19"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAILED  4. create security group custom-networking-pods"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not done:\n   5. allow all traffic"),
        "{stdout}"
    );
    assert!(
        stderr.contains("apply stopped at change 4 of 7") && stderr.contains("3 done, 4 not done"),
        "{stderr}"
    );
    assert!(!out.exists());

    let o = vpcctl(&emulator, &setup_args("apply", &vpc, "100.64.0.0/16", &out));
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    // Only what was left: the CIDR and subnets are found in place.
    assert!(stdout.contains("applied 4 change(s)"), "{stdout}");
    assert!(
        stdout.contains("100.64.0.0/16 is already associated"),
        "{stdout}"
    );
    assert_eq!(pod_subnets(&ec2, &vpc).await.len(), 2);
    assert!(out.join("us-west-2a.yaml").exists() && out.join("us-west-2b.yaml").exists());
    let o = vpcctl(&emulator, &setup_args("plan", &vpc, "100.64.0.0/16", &out));
    assert!(text(&o).0.contains("nothing to do"), "{}", text(&o).0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_that_leads_nowhere_is_a_clear_error() {
    let emulator = Emulator::start();
    let plan = |kubeconfig: &str| {
        vpcctl(
            &emulator,
            &[
                "custom-networking",
                "plan",
                "--vpc-id",
                "vpc-1",
                "--cidr",
                "100.64.0.0/16",
                "--kubeconfig",
                kubeconfig,
            ],
        )
    };
    let o = plan("/nonexistent/kubeconfig");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("/nonexistent/kubeconfig"),
        "{}",
        text(&o).1
    );

    // A cluster whose API server does not answer: a bounded wait, then the server named.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:9'}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
    )
    .unwrap();
    let o = plan(kubeconfig.to_str().unwrap());
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o).1;
    assert!(
        err.contains("127.0.0.1:9") && err.contains("3 attempts"),
        "{err}"
    );
}
