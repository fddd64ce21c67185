//! The testbed's network, checked by traffic: attach/detach seen by the node, the router's
//! routes, source/destination check, security groups, metadata and EC2 from inside a node, and
//! the root namespace left alone.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use testsupport::testbed::*;

/// `ip route get` in `ns`, or its error: a VPC address no ENI holds hits the router's blackhole,
/// which `route get` answers with an error.
fn route_get(ns: &str, addr: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "route", "get", addr])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn subnet_id(ec2: &aws_sdk_ec2::Client, cidr: &str) -> String {
    let out = ec2
        .describe_subnets()
        .filters(Filter::builder().name("cidr-block").values(cidr).build())
        .send()
        .await
        .unwrap();
    out.subnets()[0].subnet_id().unwrap().to_string()
}

async fn group_id(ec2: &aws_sdk_ec2::Client, name: &str) -> String {
    let out = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(name).build())
        .send()
        .await
        .unwrap();
    out.security_groups()[0].group_id().unwrap().to_string()
}

/// Creates an ENI with `secondaries` addresses and attaches it at `device`.
async fn attach_eni(
    ec2: &aws_sdk_ec2::Client,
    instance: &str,
    subnet: &str,
    groups: Vec<String>,
    secondaries: i32,
    device: i32,
) -> (String, String, String, Vec<Ipv4Addr>) {
    let eni = ec2
        .create_network_interface()
        .subnet_id(subnet)
        .set_groups(Some(groups).filter(|g| !g.is_empty()))
        .secondary_private_ip_address_count(secondaries)
        .send()
        .await
        .unwrap();
    let eni = eni.network_interface().unwrap();
    let id = eni.network_interface_id().unwrap().to_string();
    let mac = eni.mac_address().unwrap().to_string();
    let ips = eni
        .private_ip_addresses()
        .iter()
        .map(|a| a.private_ip_address().unwrap().parse().unwrap())
        .collect();
    let attachment = ec2
        .attach_network_interface()
        .network_interface_id(&id)
        .instance_id(instance)
        .device_index(device)
        .send()
        .await
        .unwrap()
        .attachment_id()
        .unwrap()
        .to_string();
    (id, mac, attachment, ips)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_makes_a_link_appear_within_a_second_and_detach_removes_it() {
    let tb = Testbed::up(&[]);
    let ec2 = tb.ec2().await;
    let node_ns = tb.netns("node-a");
    let pods_a = subnet_id(&ec2, "100.64.0.0/19").await;
    let (_, mac, attachment, ips) =
        attach_eni(&ec2, &tb.instance("node-a"), &pods_a, vec![], 2, 1).await;
    let took = wait_for(Duration::from_secs(5), || {
        link_with_mac(&node_ns, &mac).is_some()
    })
    .expect("no link with the ENI's MAC appeared in the node");
    assert!(took < Duration::from_secs(1), "the link took {took:?}");
    assert_eq!(link_with_mac(&node_ns, &mac).unwrap(), "eth1");
    // Every address of the ENI is routed to its link in the router.
    for ip_addr in &ips {
        let routed = || route_get(&tb.router(), &ip_addr.to_string()).contains("dev n1d1");
        wait_for(Duration::from_secs(2), routed).unwrap_or_else(|| {
            panic!(
                "{ip_addr}: {}",
                route_get(&tb.router(), &ip_addr.to_string())
            )
        });
    }
    // An address assigned later is routed too.
    let eni_id = ec2
        .describe_network_interfaces()
        .filters(Filter::builder().name("mac-address").values(&mac).build())
        .send()
        .await
        .unwrap()
        .network_interfaces()[0]
        .network_interface_id()
        .unwrap()
        .to_string();
    let added = ec2
        .assign_private_ip_addresses()
        .network_interface_id(&eni_id)
        .secondary_private_ip_address_count(1)
        .send()
        .await
        .unwrap();
    let new_ip = added.assigned_private_ip_addresses()[0]
        .private_ip_address()
        .unwrap()
        .to_string();
    wait_for(Duration::from_secs(2), || {
        route_get(&tb.router(), &new_ip).contains("dev n1d1")
    })
    .expect("a newly assigned address was not routed to its ENI");

    ec2.detach_network_interface()
        .attachment_id(&attachment)
        .send()
        .await
        .unwrap();
    let took = wait_for(Duration::from_secs(5), || {
        link_with_mac(&node_ns, &mac).is_none()
    })
    .expect("the link stayed after detach");
    assert!(took < Duration::from_secs(1), "detach took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_destination_check_and_security_groups_are_enforced_by_traffic() {
    let tb = Testbed::up(&[]);
    let ec2 = tb.ec2().await;
    let (a_ns, b_ns) = (tb.netns("node-a"), tb.netns("node-b"));

    // node-b gets a pod ENI in pods-b carrying the `pods` group (tcp/8080 from 10/8 only).
    let pods_b = subnet_id(&ec2, "100.64.32.0/19").await;
    let pods_sg = group_id(&ec2, "pods").await;
    let (_, mac, _, ips) =
        attach_eni(&ec2, &tb.instance("node-b"), &pods_b, vec![pods_sg], 0, 1).await;
    let x = ips[0];
    wait_for(Duration::from_secs(5), || {
        link_with_mac(&b_ns, &mac).is_some()
    })
    .unwrap();
    // What ipamd will do: the address on eth1, replies from it leave through eth1.
    ip(&b_ns, &["link", "set", "eth1", "up"]);
    ip(&b_ns, &["addr", "add", &format!("{x}/19"), "dev", "eth1"]);
    ip(
        &b_ns,
        &["route", "add", "100.64.32.1", "dev", "eth1", "table", "2"],
    );
    ip(
        &b_ns,
        &[
            "route",
            "add",
            "default",
            "via",
            "100.64.32.1",
            "dev",
            "eth1",
            "table",
            "2",
        ],
    );
    ip(
        &b_ns,
        &["rule", "add", "from", &x.to_string(), "lookup", "2"],
    );
    let _l8080 = listen_in(&b_ns, SocketAddr::from((x, 8080)));
    let _l9090 = listen_in(&b_ns, SocketAddr::from((x, 9090)));

    // node-a's primary ENI gets a secondary address Z from EC2; Y is one EC2 never gave it.
    let eni0 = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(tb.instance("node-a"))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .network_interfaces()[0]
        .clone();
    let z: Ipv4Addr = ec2
        .assign_private_ip_addresses()
        .network_interface_id(eni0.network_interface_id().unwrap())
        .secondary_private_ip_address_count(1)
        .send()
        .await
        .unwrap()
        .assigned_private_ip_addresses()[0]
        .private_ip_address()
        .unwrap()
        .parse()
        .unwrap();
    let y = Ipv4Addr::new(10, 0, 1, 250);
    assert_ne!(y, z);
    for addr in [z, y] {
        ip(
            &a_ns,
            &["addr", "add", &format!("{addr}/32"), "dev", "eth0"],
        );
    }
    wait_for(Duration::from_secs(2), || {
        route_get(&tb.router(), &z.to_string()).contains("dev n1d0")
    })
    .unwrap();

    // Security group: 8080 allowed, 9090 not.
    let primary_a: Ipv4Addr = tb.node("node-a")["primary_ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    connect_from(&a_ns, Some(primary_a), SocketAddr::from((x, 8080)))
        .expect("tcp/8080 is allowed by the pods group");
    assert!(
        connect_from(&a_ns, Some(primary_a), SocketAddr::from((x, 9090))).is_err(),
        "tcp/9090 got through"
    );
    // Source/destination check: the held secondary passes, the unassigned address is dropped.
    connect_from(&a_ns, Some(z), SocketAddr::from((x, 8080)))
        .expect("a source the ENI holds is delivered");
    assert!(
        connect_from(&a_ns, Some(y), SocketAddr::from((x, 8080))).is_err(),
        "a spoofed source got through"
    );
    let drops = iptables_packets(&tb.router(), "raw", "SRC-n1d0", "DROP");
    assert!(drops > 0, "the source check dropped nothing");
}

/// The state of `addr`'s neighbour entry on `dev` in `ns` after a connection attempt made the
/// node ask for it, once ARP has settled (REACHABLE/STALE/DELAY: answered; FAILED: not).
fn neighbour_after_asking(ns: &str, dev: &str, from: Ipv4Addr, addr: Ipv4Addr) -> String {
    ip(ns, &["route", "replace", &format!("{addr}/32"), "dev", dev]);
    let _ = connect_from(ns, Some(from), SocketAddr::from((addr, 9)));
    let mut state = String::new();
    wait_for(Duration::from_secs(6), || {
        state = ip(ns, &["neigh", "show", &addr.to_string(), "dev", dev]);
        ["REACHABLE", "STALE", "DELAY", "FAILED"]
            .iter()
            .any(|s| state.contains(s))
    });
    ip(ns, &["route", "del", &format!("{addr}/32"), "dev", dev]);
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_answers_arp_only_for_the_gateway_and_assigned_addresses() {
    // Two nodes in one subnet.
    let tb = Testbed::without_agents(
        r#"
region: us-west-2
vpc: {cidr: 10.0.0.0/16}
subnets:
  - {name: nodes-a, az: us-west-2a, cidr: 10.0.1.0/24}
nodes:
  - {name: node-a, instance_type: m5.large, subnet: nodes-a}
  - {name: node-c, instance_type: m5.large, subnet: nodes-a}
eniconfigs: []
nat_gateway: false
"#,
    );
    let a_ns = tb.netns("node-a");
    let address = |node: &str| -> Ipv4Addr {
        tb.node(node)["primary_ip"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (primary_a, assigned) = (address("node-a"), address("node-c"));
    let unassigned = (200..250)
        .map(|i| Ipv4Addr::new(10, 0, 1, i))
        .find(|a| *a != primary_a && *a != assigned)
        .unwrap();
    let gateway = Ipv4Addr::new(10, 0, 1, 1);
    for (addr, answered) in [(gateway, true), (assigned, true), (unassigned, false)] {
        let state = neighbour_after_asking(&a_ns, "eth0", primary_a, addr);
        assert_eq!(
            !state.contains("FAILED") && !state.is_empty(),
            answered,
            "ARP for {addr}: {state:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_its_own_metadata_and_ec2_through_relays() {
    let tb = Testbed::up(&[]);
    let python = testbed::emulator::project_root().join(".venv/bin/python");
    let script = r#"
import urllib.request as u
t = u.urlopen(u.Request('http://169.254.169.254/latest/api/token', method='PUT',
    headers={'X-aws-ec2-metadata-token-ttl-seconds': '60'}), timeout=5).read().decode()
iid = u.urlopen(u.Request('http://169.254.169.254/latest/meta-data/instance-id',
    headers={'X-aws-ec2-metadata-token': t}), timeout=5).read().decode()
auth = 'AWS4-HMAC-SHA256 Credential=x/20260101/us-west-2/ec2/aws4_request, SignedHeaders=host, Signature=0'
body = b'Action=DescribeInstances&Version=2016-11-15'
ec2 = u.urlopen(u.Request('http://127.0.0.1:4566/', data=body, headers={'Authorization': auth,
    'Content-Type': 'application/x-www-form-urlencoded'}), timeout=5).read().decode()
print(iid)
print(ec2)
"#;
    for node in ["node-a", "node-b"] {
        let out = vpc_testbed(
            &tb.prefix,
            &["exec", node, "--", python.to_str().unwrap(), "-c", script],
        );
        assert!(
            out.status.success(),
            "{node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            tb.instance(node),
            "{node} saw another instance's metadata"
        );
        let ec2 = lines.collect::<String>();
        assert!(
            ec2.contains(&tb.instance("node-a")) && ec2.contains(&tb.instance("node-b")),
            "{ec2}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internet_only_from_primary_addresses() {
    let tb = Testbed::up(&[]);
    let ec2 = tb.ec2().await;
    let a_ns = tb.netns("node-a");
    let inet = format!("{}-inet", tb.prefix);
    let host = SocketAddr::from((
        testbed::fabric::INTERNET_HOST.parse::<Ipv4Addr>().unwrap(),
        443,
    ));
    let _l = listen_in(&inet, host);
    connect_from(&a_ns, None, host).expect("a node's primary address reaches the internet");
    // A pod-subnet address (what a pod without SNAT has) goes through the NAT gateway instead.
    let pods_a = subnet_id(&ec2, "100.64.0.0/19").await;
    let (_, mac, _, ips) = attach_eni(&ec2, &tb.instance("node-a"), &pods_a, vec![], 0, 1).await;
    wait_for(Duration::from_secs(5), || {
        link_with_mac(&a_ns, &mac).is_some()
    })
    .unwrap();
    ip(&a_ns, &["link", "set", "eth1", "up"]);
    ip(
        &a_ns,
        &["addr", "add", &format!("{}/19", ips[0]), "dev", "eth1"],
    );
    ip(
        &a_ns,
        &[
            "route",
            "add",
            "default",
            "via",
            "100.64.0.1",
            "dev",
            "eth1",
            "table",
            "2",
        ],
    );
    ip(
        &a_ns,
        &["rule", "add", "from", &ips[0].to_string(), "lookup", "2"],
    );
    connect_from(&a_ns, Some(ips[0]), host)
        .expect("a pod-subnet address reaches the internet through NAT");
    let translated = iptables_packets(
        &format!("{}-nat", tb.prefix),
        "nat",
        "POSTROUTING",
        "MASQUERADE",
    );
    assert!(translated > 0, "nothing went through the NAT gateway");
}

#[test]
fn the_root_namespace_is_untouched_and_down_leaves_nothing() {
    let before = root_snapshot();
    let tb = Testbed::up(&[]);
    let during = root_snapshot();
    let prefix = tb.prefix.clone();
    let state = tb.status["state_dir"].as_str().unwrap().to_string();
    let daemon: i32 = tb.status["daemon_pid"].as_i64().unwrap() as i32;
    let emulator: i32 = tb.status["emulator_pid"].as_i64().unwrap() as i32;
    drop(tb);
    let after = root_snapshot();
    assert_eq!(before, during, "the testbed changed the root namespace");
    assert_eq!(before, after, "down changed the root namespace");
    let namespaces = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !namespaces
            .lines()
            .any(|l| l.starts_with(&format!("{prefix}-"))),
        "namespaces left: {namespaces}"
    );
    assert!(
        !std::path::Path::new(&state).exists(),
        "state directory (relay sockets) left: {state}"
    );
    for pid in [daemon, emulator] {
        assert!(!process_running(pid), "process {pid} left");
    }
}

#[test]
fn a_second_up_after_a_killed_run_sweeps_the_leftovers() {
    let tb = Testbed::up(&[]);
    let daemon = tb.status["daemon_pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(Duration::from_secs(5), || !process_running(daemon)).unwrap();
    // Its namespaces and emulator are still there; a new up with the same prefix clears them.
    let out = vpc_testbed(&tb.prefix, &["up", "--no-agents"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value =
        serde_json::from_slice(&vpc_testbed(&tb.prefix, &["status", "--json"]).stdout).unwrap();
    assert_ne!(status["daemon_pid"], tb.status["daemon_pid"]);
    let emulator_before = tb.status["emulator_pid"].as_i64().unwrap();
    assert!(
        !process_running(emulator_before as i32),
        "the old emulator survived"
    );
    // A second up while this one runs is refused, naming the running daemon.
    let again = vpc_testbed(&tb.prefix, &["up", "--no-agents"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already up"));
}

#[test]
fn a_bad_config_is_refused_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("testbed.yaml");
    let text = testbed::config::DEFAULT_CONFIG.replace("subnet: nodes-b,", "subnet: nodes-z,");
    std::fs::write(&path, text).unwrap();
    let out = vpc_testbed("tbadcfg", &["up", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nodes[1] (node-b)") && err.contains("nodes-z"),
        "{err}"
    );
    let ns = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !ns.contains("tbadcfg-"),
        "namespaces were made for a bad config"
    );
}
