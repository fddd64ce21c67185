//! `vpcctl max-pods` run as a person runs it.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn vpcctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vpcctl"))
        .args(args)
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
    assert!(String::from_utf8_lossy(&o.stderr).contains("m5.enormous"));
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
