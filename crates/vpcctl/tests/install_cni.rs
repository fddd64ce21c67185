//! `vpcctl install-cni` as the DaemonSet's init container runs it, on a testbed node: the plugin
//! installed atomically and, with `--primary-rp-filter`, the primary interface's rp_filter made
//! loose (the interface found through instance metadata's MAC).

#![allow(clippy::unwrap_used)]

use std::process::Command;

use testsupport::testbed::{Testbed, workspace_bin};

fn rp_filter(ns: &str, interface: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-n"])
        .arg(format!("net.ipv4.conf.{interface}.rp_filter"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_init_step_installs_the_plugin_and_loosens_the_primary_rp_filter() {
    let tb = Testbed::up(&[]);
    let ns = tb.netns("node-a");
    let set = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-w",
            "net.ipv4.conf.eth0.rp_filter=1",
        ])
        .output()
        .unwrap();
    assert!(set.status.success());
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("bin/aws-cni");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(workspace_bin("vpcctl"))
        .args(["install-cni", "--from"])
        .arg(workspace_bin("aws-cni"))
        .arg("--to")
        .arg(&target)
        .arg("--primary-rp-filter")
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            "http://169.254.169.254",
        )
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv4")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(workspace_bin("aws-cni")).unwrap()
    );
    assert_eq!(rp_filter(&ns, "eth0"), "2", "{stdout}");
    assert!(
        stdout.contains("net.ipv4.conf.eth0.rp_filter = 2"),
        "{stdout}"
    );
}
