//! `vpcctl max-pods` run as a person runs it.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

/// vpcctl with an EC2 endpoint that refuses connections: a type missing from the table fails
/// fast instead of asking a real EC2.
fn vpcctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vpcctl"))
        .args(args)
        .env("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:9")
        .env("AWS_REGION", "us-west-2")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("vpcctl runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn reference_document_example() {
    let o = vpcctl(&["max-pods", "m5.large", "--custom-networking"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "20\n");
    assert_eq!(stdout(&vpcctl(&["max-pods", "m5.large"])), "29\n");
    assert_eq!(
        stdout(&vpcctl(&["max-pods", "m5.large", "--cni-max-eni", "2"])),
        "20\n"
    );
    assert_eq!(
        stdout(&vpcctl(&["max-pods", "m5.large", "--prefix-delegation"])),
        "110\n"
    );
}

#[test]
fn unknown_type_exits_2_naming_it() {
    let o = vpcctl(&["max-pods", "m5.enormous"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("m5.enormous"), "{err}");
    assert!(err.contains("DescribeInstanceTypes"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn prefix_delegation_on_xen_exits_2() {
    let o = vpcctl(&["max-pods", "m4.large", "--prefix-delegation"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("m4.large"));
}

#[test]
fn json_output() {
    let o = vpcctl(&["max-pods", "m5.large", "--custom-networking", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["instance_type"], "m5.large");
    assert_eq!(v["max_pods"], 20);
    assert_eq!(v["pod_enis"], 2);
}

#[test]
fn all_show_max_allowed_matches_the_existing_table() {
    let o = vpcctl(&["max-pods", "--all", "--show-max-allowed"]);
    assert!(o.status.success());
    let ours: std::collections::BTreeMap<String, u32> = stdout(&o)
        .lines()
        .map(|l| {
            let (t, n) = l.split_once(' ').unwrap();
            (t.to_string(), n.parse().unwrap())
        })
        .collect();
    assert!(ours.len() > 1300, "only {} types listed", ours.len());
    let reference = include_str!("../../instance-limits/tests/data/eni-max-pods.txt");
    let mut compared = 0;
    for line in reference.lines().filter(|l| !l.starts_with('#')) {
        let (t, n) = line.split_once(' ').unwrap();
        if let Some(got) = ours.get(t) {
            assert_eq!(*got, n.parse::<u32>().unwrap(), "{t}");
            compared += 1;
        }
    }
    assert!(compared >= 860, "{compared}");
}

#[test]
fn install_cni_copies_atomically_and_executable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("aws-cni");
    std::fs::write(&src, b"#!/bin/sh\necho plugin\n").unwrap();
    let dst = dir.path().join("host/opt/cni/bin/aws-cni");
    let o = vpcctl(&[
        "install-cni",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&dst).unwrap(), std::fs::read(&src).unwrap());
    assert_eq!(
        std::fs::metadata(&dst).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let leftovers: Vec<_> = std::fs::read_dir(dst.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    let o = vpcctl(&[
        "install-cni",
        "--from",
        "/nonexistent/aws-cni",
        "--to",
        dst.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/aws-cni"));
}

#[test]
fn health_reports_an_absent_ipamd() {
    let o = vpcctl(&[
        "health",
        "--socket",
        "/nonexistent/ipamd.sock",
        "--timeout",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not reachable"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn health_of_a_running_ipamd() {
    let tb = testsupport::testbed::Testbed::with_agents(None);
    let socket = tb.node_dir("node-a").join("ipamd.sock");
    for service in ["", "rpc.CNIBackend"] {
        let o = vpcctl(&[
            "health",
            "--socket",
            socket.to_str().unwrap(),
            "--service",
            service,
        ]);
        assert!(
            o.status.success(),
            "{service:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(stdout(&o), "SERVING\n");
    }
}
