//! `vpcctl max-pods` as a drop-in for the EKS AMI's `max-pods-calculator.sh`: its flags give the
//! numbers ours give, a type missing from the built-in table comes from EC2 DescribeInstanceTypes
//! (the emulator here) with stderr saying so; `install-cni` honours HOST_CNI_BIN_PATH.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use testsupport::{Emulator, run_instance, seed_vpc};

fn vpcctl(args: &[&str], endpoint: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vpcctl"))
        .args(args)
        .env("AWS_ENDPOINT_URL_EC2", endpoint)
        .env("AWS_REGION", "us-west-2")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap()
}

fn number(o: &Output) -> u32 {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// An endpoint nothing listens on: the built-in table must answer alone.
const NOWHERE: &str = "http://127.0.0.1:9";

#[test]
fn the_calculators_flags_give_our_numbers() {
    let types = [
        "m5.large",
        "t3.small",
        "c5.4xlarge",
        "m5.24xlarge",
        "m6i.metal",
        "m4.large",
    ];
    for t in types {
        for (theirs, ours) in [
            (vec![], vec![]),
            (
                vec!["--cni-custom-networking-enabled"],
                vec!["--custom-networking"],
            ),
            (
                vec!["--cni-prefix-delegation-enabled"],
                vec!["--prefix-delegation"],
            ),
            (
                vec![
                    "--cni-custom-networking-enabled",
                    "--cni-prefix-delegation-enabled",
                    "--show-max-allowed",
                ],
                vec![
                    "--custom-networking",
                    "--prefix-delegation",
                    "--show-max-allowed",
                ],
            ),
            (vec!["--cni-max-eni", "2"], vec!["--cni-max-eni", "2"]),
            (
                vec!["--cni-custom-networking-enabled", "--cni-max-eni", "2"],
                vec!["--custom-networking", "--cni-max-eni", "2"],
            ),
        ] {
            let mut a = vec![
                "max-pods",
                "--instance-type",
                t,
                "--cni-version",
                "1.18.3-eksbuild.1",
            ];
            a.extend(&theirs);
            let mut b = vec!["max-pods", t];
            b.extend(&ours);
            let (x, y) = (vpcctl(&a, NOWHERE), vpcctl(&b, NOWHERE));
            assert_eq!(
                (x.status.code(), x.stdout.clone()),
                (y.status.code(), y.stdout.clone()),
                "{a:?} vs {b:?}: {} / {}",
                String::from_utf8_lossy(&x.stderr),
                String::from_utf8_lossy(&y.stderr)
            );
        }
    }
    // The reference document's m5.large: 20 with custom networking, 29 without.
    let cn = [
        "max-pods",
        "--instance-type",
        "m5.large",
        "--cni-version",
        "1.9.0",
        "--cni-custom-networking-enabled",
    ];
    assert_eq!(number(&vpcctl(&cn, NOWHERE)), 20);
    // Prefix delegation with a CNI before 1.9: refused, saying why.
    let old = vpcctl(
        &[
            "max-pods",
            "--instance-type",
            "m5.large",
            "--cni-version",
            "1.8.0",
            "--cni-prefix-delegation-enabled",
        ],
        NOWHERE,
    );
    assert_eq!(old.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&old.stderr).contains("1.9.0 or later"));
}

#[test]
fn a_type_missing_from_the_table_comes_from_describe_instance_types() {
    let emulator = Emulator::start();
    // r9g.large: in the emulator's (moto's) instance types, not in data/instance-limits.csv.
    let o = vpcctl(
        &[
            "max-pods",
            "--instance-type",
            "r9g.large",
            "--cni-version",
            "1.18.3",
            "--cni-custom-networking-enabled",
        ],
        &emulator.endpoint,
    );
    // 3 ENIs x 20 addresses: (3 - 1) x 19 + 2.
    assert_eq!(number(&o), 40);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("r9g.large: limits from EC2 DescribeInstanceTypes (us-west-2)")
            && err.contains("3 ENIs, 20 addresses each"),
        "{err}"
    );
    let json = vpcctl(&["max-pods", "r9g.large", "--json"], &emulator.endpoint);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["max_pods"], 59);
    assert_eq!(v["source"], "EC2 DescribeInstanceTypes (us-west-2)");
    // In the table: no EC2 call, and the source says so.
    let known = vpcctl(&["max-pods", "m5.large", "--json"], NOWHERE);
    let v: serde_json::Value = serde_json::from_slice(&known.stdout).unwrap();
    assert_eq!(v["source"], "built-in table");
    // Neither: exit 2 naming the type and what EC2 said.
    let o = vpcctl(&["max-pods", "x9.nonexistent"], &emulator.endpoint);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("x9.nonexistent") && err.contains("InvalidInstanceType"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_type_and_region_from_instance_metadata() {
    let emulator = Emulator::start();
    let ec2 = emulator.client().await;
    let vpc = seed_vpc(&ec2).await;
    let instance = run_instance(&ec2, "r9g.large", &vpc.nodes_a).await;
    let (status, imds) = emulator.control(
        "POST",
        "/_testbed/imds",
        Some(serde_json::json!({"instance_id": instance})),
    );
    assert_eq!(status, 200, "{imds}");
    // No AWS_REGION: the lookup takes the instance's region, as the calculator does.
    let o = Command::new(env!("CARGO_BIN_EXE_vpcctl"))
        .args([
            "max-pods",
            "--instance-type-from-imds",
            "--cni-version",
            "1.18.3",
            "--cni-custom-networking-enabled",
        ])
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            imds["endpoint"].as_str().unwrap(),
        )
        .env("AWS_ENDPOINT_URL_EC2", &emulator.endpoint)
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .output()
        .unwrap();
    assert_eq!(number(&o), 40);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("r9g.large: limits from EC2 DescribeInstanceTypes (us-west-2)"),
        "{err}"
    );
}

#[test]
fn install_cni_puts_the_plugin_in_host_cni_bin_path() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("aws-cni");
    std::fs::write(&src, b"#!/bin/sh\necho plugin\n").unwrap();
    let bin = dir.path().join("elsewhere/bin");
    let o = Command::new(env!("CARGO_BIN_EXE_vpcctl"))
        .args(["install-cni", "--from", src.to_str().unwrap()])
        .env("HOST_CNI_BIN_PATH", &bin)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(bin.join("aws-cni")).unwrap(),
        std::fs::read(&src).unwrap()
    );
}
