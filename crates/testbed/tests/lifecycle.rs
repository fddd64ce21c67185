//! Pods keep working through a node's life, judged by traffic: ipamd restarted (SIGTERM and
//! kill -9, with and without custom networking, with prefix delegation), upgraded while pods come
//! and go, the pod subnet filling up, late and stale DELs, CNI GC, a lost checkpoint, and EC2
//! changing behind ipamd's back. After each event: `traffic()` (every pod reaches every other
//! pod on the allowed port and the internet through SNAT, and not what security groups forbid),
//! the crash suite's bookkeeping invariants, and the node's datapath compared with the one before
//! the event where the event should not change it.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use testbed::pods::{self, Sandbox};
use testsupport::invariants;
use testsupport::testbed::*;
use testsupport::world::{ALLOWED, Listener, World, internet, reaches};

/// Two m5.large nodes in two zones; pods carry the `pods` group (tcp/8080 from the VPC), and
/// without custom networking the nodes' `nodes` group (the same rules).
fn config(node_a_env: &str, node_b_env: &str, pods_a: &str) -> String {
    format!(
        r#"
region: us-west-2
vpc: {{cidr: 10.0.0.0/16, secondary_cidrs: [100.64.0.0/16]}}
subnets:
  - {{name: nodes-a, az: us-west-2a, cidr: 10.0.1.0/24}}
  - {{name: nodes-b, az: us-west-2b, cidr: 10.0.2.0/24}}
  - {{name: pods-a,  az: us-west-2a, cidr: {pods_a}}}
  - {{name: pods-b,  az: us-west-2b, cidr: 100.64.32.0/19}}
security_groups:
  - {{name: pods, ingress: [{{protocol: tcp, ports: "8080", from: "100.64.0.0/16"}}, {{protocol: tcp, ports: "8080", from: "10.0.0.0/16"}}]}}
  - {{name: nodes, ingress: [{{protocol: tcp, ports: "8080", from: "100.64.0.0/16"}}, {{protocol: tcp, ports: "8080", from: "10.0.0.0/16"}}]}}
eniconfigs:
  - {{name: us-west-2a, subnet: pods-a, security_groups: [pods]}}
  - {{name: us-west-2b, subnet: pods-b, security_groups: [pods]}}
nodes:
  - {{name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {{topology.kubernetes.io/zone: us-west-2a}}, security_groups: [nodes], ipamd_env: {node_a_env}}}
  - {{name: node-b, instance_type: m5.large, subnet: nodes-b, labels: {{topology.kubernetes.io/zone: us-west-2b}}, security_groups: [nodes], ipamd_env: {node_b_env}}}
ipamd_env: {{AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: "true", ENI_CONFIG_LABEL_DEF: topology.kubernetes.io/zone, IP_COOLDOWN_PERIOD: "1"}}
nat_gateway: false
"#
    )
}

/// The pid of the node's running ipamd (the daemon's, or one a test started).
fn ipamd_pid(tb: &Testbed, node: &str, child: Option<&std::process::Child>) -> i32 {
    child
        .map(|c| c.id() as i32)
        .unwrap_or_else(|| tb.node(node)["ipamd_pid"].as_i64().unwrap() as i32)
}

/// Stops the node's ipamd with `signal` and waits until it is gone.
fn stop_ipamd(
    tb: &Testbed,
    node: &str,
    child: Option<std::process::Child>,
    signal: nix::sys::signal::Signal,
) {
    let pid = ipamd_pid(tb, node, child.as_ref());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
    match child {
        Some(mut c) => {
            let status = c.wait().unwrap();
            if signal == nix::sys::signal::Signal::SIGTERM {
                assert!(status.success(), "ipamd's exit on SIGTERM: {status}");
            }
        }
        None => {
            let gone = wait_for(Duration::from_secs(10), || !process_running(pid));
            assert!(gone.is_some(), "ipamd {pid} did not stop on {signal}");
        }
    }
}

/// Restarts the node's ipamd with `signal`; the datapath, the pods' traffic and the invariants
/// must be as before.
async fn restart_unchanged(
    w: &World,
    node: &str,
    child: Option<std::process::Child>,
    signal: nix::sys::signal::Signal,
) -> std::process::Child {
    let before = w.datapath(node);
    stop_ipamd(&w.tb, node, child, signal);
    let child = w.tb.start_ipamd(node);
    w.tb.wait_ready(node);
    let what = format!("{node} after {signal}");
    w.traffic(&what);
    w.invariants(node, &what).await;
    let after = w.datapath(node);
    assert!(
        before == after,
        "{what}: the datapath differs from before:\n{}",
        diff_lines(&before, &after)
    );
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_and_an_upgrade_under_churn_keep_pods_working() {
    let tb = Testbed::with_agents(Some(&config("{}", "{}", "100.64.0.0/19")));
    let mut w = World::new(tb);
    for (node, name) in [
        ("node-a", "a1"),
        ("node-a", "a2"),
        ("node-b", "b1"),
        ("node-b", "b2"),
    ] {
        w.add(node, name);
    }
    w.traffic("at the start");
    for node in ["node-a", "node-b"] {
        w.invariants(node, "at the start").await;
    }
    let child = restart_unchanged(&w, "node-a", None, nix::sys::signal::Signal::SIGTERM).await;
    let child =
        restart_unchanged(&w, "node-a", Some(child), nix::sys::signal::Signal::SIGKILL).await;
    let _b = Ipamd(Some(
        restart_unchanged(&w, "node-b", None, nix::sys::signal::Signal::SIGKILL).await,
    ));

    // Upgrade: ipamd stopped, then started again, while pods come and go on the node.
    let before = w.datapath("node-a");
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (prefix, stop) = (w.tb.prefix.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut made = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let name = format!("u{}", n % 4);
                if made.contains(&name) {
                    // DEL succeeds with ipamd down (the spec).
                    pods::del(&prefix, "node-a", &name, "default")
                        .unwrap_or_else(|e| panic!("DEL {name} during the upgrade: {e}"));
                    made.retain(|m| *m != name);
                } else if pods::add(
                    &prefix,
                    "node-a",
                    &name,
                    "default",
                    &pods::PodOptions {
                        conflist: None,
                        cni_version: None,
                    },
                )
                .is_ok()
                {
                    made.push(name);
                }
            }
            made
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    stop_ipamd(
        &w.tb,
        "node-a",
        Some(child),
        nix::sys::signal::Signal::SIGTERM,
    );
    std::thread::sleep(Duration::from_millis(700));
    let _a = Ipamd(Some(w.tb.start_ipamd("node-a")));
    w.tb.wait_ready("node-a");
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    let made = churn.join().expect("the churn");
    // What the churn left: the runtime deletes it, then runs GC for DELs ipamd missed.
    for name in made {
        pods::del(&w.tb.prefix, "node-a", &name, "default").unwrap();
    }
    pods::gc(&w.tb.prefix, "node-a").unwrap();
    w.traffic("after the upgrade");
    w.invariants("node-a", "after the upgrade").await;
    let after = w.datapath("node-a");
    assert!(
        before == after,
        "after the upgrade and its pods' deletion the datapath differs:\n{}",
        diff_lines(&before, &after)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_without_custom_networking_and_with_prefix_delegation() {
    let tb = Testbed::with_agents(Some(&config(
        r#"{AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: "false"}"#,
        r#"{ENABLE_PREFIX_DELEGATION: "true"}"#,
        "100.64.0.0/19",
    )));
    let mut w = World::new(tb);
    for (node, name) in [
        ("node-a", "a1"),
        ("node-a", "a2"),
        ("node-b", "b1"),
        ("node-b", "b2"),
    ] {
        w.add(node, name);
    }
    // node-a's pods come from its own subnet, node-b's from a /28 of the pod subnet.
    assert!(
        "10.0.1.0/24"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&w.pods["a1"].ip)
    );
    assert!(
        w.pool("node-b")["stats"]["total_prefixes"]
            .as_u64()
            .unwrap()
            >= 1
    );
    w.traffic("at the start");
    let mut agents = Vec::new();
    for node in ["node-a", "node-b"] {
        let child = restart_unchanged(&w, node, None, nix::sys::signal::Signal::SIGKILL).await;
        agents.push(Ipamd(Some(
            restart_unchanged(&w, node, Some(child), nix::sys::signal::Signal::SIGTERM).await,
        )));
    }
}

/// CPU ticks (user + system) a process has used.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pod_subnet_fails_adds_clearly_leaves_ipamd_idle_and_recovers() {
    // node-a's pod subnet is a /27 (27 usable addresses); something else holds 17 of them.
    let env = r#"{IPAMD_SUBNET_FULL_BACKOFF: "20"}"#;
    let tb = Testbed::without_agents(&config(env, "{}", "100.64.0.0/27"));
    let ec2 = tb.ec2().await;
    let subnet = ec2
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("cidr-block")
                .values("100.64.0.0/27")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .subnets()[0]
        .subnet_id()
        .unwrap()
        .to_string();
    let blocker = ec2
        .create_network_interface()
        .subnet_id(&subnet)
        .secondary_private_ip_address_count(16)
        .send()
        .await
        .unwrap()
        .network_interface()
        .unwrap()
        .network_interface_id()
        .unwrap()
        .to_string();
    let ipamd = Ipamd(Some(tb.start_ipamd("node-a")));
    let _b = Ipamd(Some(tb.start_ipamd("node-b")));
    let mut w = World::new(tb);
    // The node's one pod ENI takes the subnet's last 10 addresses: 9 pods fit.
    for i in 0..9 {
        w.add("node-a", &format!("p{i}"));
    }
    w.add("node-b", "b1");
    // The pool asked the subnet for the next ENI and was refused.
    let refused = wait_for(Duration::from_secs(20), || {
        w.tb.calls()["CreateNetworkInterface"]["error_codes"]["InsufficientFreeAddressesInSubnet"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    });
    assert!(
        refused.is_some(),
        "the full subnet was never met:\n{}",
        w.tb.ipamd_log("node-a")
    );
    // ipamd idles while it cannot act: under 2 % of a core over 30 s.
    let pid = ipamd.0.as_ref().unwrap().id() as i32;
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(30));
    let (seconds, ticks) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid) - c0);
    let share = ticks as f64 / 100.0 / seconds;
    assert!(
        share < 0.02,
        "ipamd used {:.1} % of a core while the subnet was full",
        share * 100.0
    );
    // The 10th ADD fails within the plugin's timeout, saying why.
    let started = Instant::now();
    let options = pods::PodOptions {
        conflist: None,
        cni_version: None,
    };
    let err = pods::add(&w.tb.prefix, "node-a", "p9", "default", &options)
        .expect_err("no address is left")
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the ADD took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("subnet") && err.contains("full"),
        "the CNI error does not name the cause: {err}"
    );
    let pool = w.pool("node-a");
    assert!(pool["subnet_full_backoff"][&subnet].is_u64(), "{pool}");
    let metrics = {
        let ns = netns::Netns::named(&w.tb.netns("node-a")).unwrap();
        ns.run(|| {
            testbed::emulator::http_json(61678, "GET", "/metrics", None, Duration::from_secs(5))
        })
        .unwrap()
        .unwrap()
        .1
    };
    let text = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains(&format!(
            "awscni_subnet_full_backoff{{subnet=\"{subnet}\"}} 1"
        )),
        "{text}"
    );
    w.traffic("with the subnet full");
    // Addresses come free in the subnet: the node serves new pods again, without a restart.
    ec2.delete_network_interface()
        .network_interface_id(&blocker)
        .send()
        .await
        .unwrap();
    w.add("node-a", "p9");
    w.traffic("after the subnet had room again");
    w.invariants("node-a", "after the subnet had room again")
        .await;
}

/// The CNI result `pod add` recorded for a pod (its prevResult for DEL).
fn record(tb: &Testbed, node: &str, name: &str) -> pods::PodRecord {
    pods::records(&tb.prefix)
        .into_iter()
        .find(|r| r.node == node && r.name == name)
        .expect("the pod's record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_and_stale_dels_leave_other_pods_alone() {
    let tb = Testbed::with_agents(Some(&config("{}", "{}", "100.64.0.0/19")));
    let mut w = World::new(tb);
    w.add("node-b", "b1");
    // Nine pods fill node-a's first pod ENI, so a released address is the next one given.
    for i in 0..9 {
        w.add("node-a", &format!("p{i}"));
    }
    w.traffic("at the start");

    // Late DEL: A goes, B gets A's address, then A's DEL is repeated with A's prevResult.
    let a = record(&w.tb, "node-a", "p0");
    let a_sandbox = Sandbox::of_pod(&w.tb.prefix, "node-a", "default", "p0");
    w.del("p0");
    std::thread::sleep(Duration::from_millis(1500));
    let b_ip = w.add("node-a", "b");
    assert_eq!(
        b_ip.to_string(),
        a.ip,
        "B did not get A's address: the premise failed"
    );
    let before = w.datapath("node-a");
    pods::del_sandbox(
        &w.tb.prefix,
        &a_sandbox,
        &a.conflist,
        "1.0.0",
        Some(&a.result),
    )
    .expect("a repeated DEL succeeds");
    let after = w.datapath("node-a");
    assert!(
        before == after,
        "A's late DEL changed the node:\n{}",
        diff_lines(&before, &after)
    );
    w.traffic("after A's late DEL");

    // Same pod, new sandbox: the pod is re-created before its old sandbox's DEL arrives.
    let old = record(&w.tb, "node-a", "p1");
    let old_sandbox = Sandbox::of_pod(&w.tb.prefix, "node-a", "default", "p1");
    let new_sandbox = old_sandbox.another("s2");
    drop(w.pods.remove("p1"));
    let list: Value = old.conflist.clone();
    let result = pods::add_sandbox(&w.tb.prefix, &new_sandbox, &list, "1.0.0")
        .expect("the new sandbox's ADD");
    let new_ip = pod_address(&result);
    let _l = Listener::open(&new_sandbox.netns, SocketAddr::from((new_ip, ALLOWED)));
    let before = w.datapath("node-a");
    pods::del_sandbox(
        &w.tb.prefix,
        &old_sandbox,
        &old.conflist,
        "1.0.0",
        Some(&old.result),
    )
    .expect("the old sandbox's DEL");
    // The runtime forgets the old sandbox (the new one is this test's own).
    std::fs::remove_file(
        std::path::PathBuf::from(w.tb.status["state_dir"].as_str().unwrap())
            .join("pods/node-a/default_p1.json"),
    )
    .unwrap();
    let after = w.datapath("node-a");
    // Only the old sandbox's address rules may go (its veth went with the new sandbox's ADD).
    let old_ip = &old.ip;
    for line in diff_lines(&before, &after).lines() {
        assert!(
            line.contains(old_ip.as_str()),
            "the old sandbox's DEL touched something else: {line}"
        );
    }
    assert!(
        reaches(
            &w.tb.pod_ns("node-a", "p2"),
            SocketAddr::from((new_ip, ALLOWED)),
            Duration::from_secs(2)
        ),
        "the new sandbox lost its network to the old one's DEL"
    );
    assert!(
        reaches(&new_sandbox.netns, internet(), Duration::from_secs(2)),
        "the new sandbox cannot reach the internet"
    );
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &old_sandbox.netns])
        .status();
    drop(_l);
    pods::del_sandbox(&w.tb.prefix, &new_sandbox, &list, "1.0.0", Some(&result)).unwrap();
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &new_sandbox.netns])
        .status();
    w.traffic("after both sandboxes' DELs");
    w.invariants("node-a", "after the stale DELs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_and_a_lost_checkpoint_keep_live_pods_and_free_the_dead() {
    let tb = Testbed::with_agents(Some(&config("{}", "{}", "100.64.0.0/19")));
    let mut w = World::new(tb);
    for (node, name) in [("node-a", "a1"), ("node-a", "a2"), ("node-b", "b1")] {
        w.add(node, name);
    }
    // A pod whose sandbox vanished without a DEL (a runtime that crashed).
    let dead_ip = w.add("node-a", "dead");
    let dead = w.pods.remove("dead").unwrap();
    drop(dead._listeners);
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &w.tb.pod_ns("node-a", "dead")])
        .status();
    let record_path = std::path::PathBuf::from(w.tb.status["state_dir"].as_str().unwrap())
        .join("pods/node-a/default_dead.json");
    std::fs::remove_file(record_path).unwrap();
    let held = |w: &World, ip: Ipv4Addr| {
        invariants::pool(&w.tb, "node-a")
            .unwrap()
            .addresses
            .iter()
            .any(|(a, _, pod)| *a == ip && pod.is_some())
    };
    assert!(held(&w, dead_ip));

    // GC without the valid attachments is refused and releases nothing.
    let err = pods::gc_with(&w.tb.prefix, "node-a", None).expect_err("GC without the key");
    assert!(err.to_string().contains("valid-attachments"), "{err}");
    assert!(
        held(&w, dead_ip),
        "GC without valid-attachments released an address"
    );
    for live in ["a1", "a2"] {
        assert!(held(&w, w.pods[live].ip));
    }
    // With the live list, only the dead pod's address goes.
    pods::gc(&w.tb.prefix, "node-a").unwrap();
    assert!(!held(&w, dead_ip), "GC left the dead pod's address held");
    w.traffic("after GC");
    w.invariants("node-a", "after GC").await;

    // The checkpoint is lost, then ipamd restarts: live pods keep their addresses and traffic.
    std::fs::remove_file(w.tb.node_dir("node-a").join("ipam.json")).unwrap();
    let before = w.datapath("node-a");
    stop_ipamd(&w.tb, "node-a", None, nix::sys::signal::Signal::SIGKILL);
    let _child = Ipamd(Some(w.tb.start_ipamd("node-a")));
    w.tb.wait_ready("node-a");
    w.traffic("after a restart without a checkpoint");
    w.invariants("node-a", "after a restart without a checkpoint")
        .await;
    let after = w.datapath("node-a");
    assert!(before == after, "{}", diff_lines(&before, &after));
    // A new pod gets an address no live pod has.
    let fresh = w.add("node-a", "fresh");
    assert!(
        w.pods
            .iter()
            .filter(|(n, _)| *n != "fresh")
            .all(|(_, p)| p.ip != fresh)
    );
    // A pod deleted afterwards gives its recovered address back.
    let a1 = w.pods["a1"].ip;
    w.del("a1");
    let freed = wait_for(Duration::from_secs(10), || !held(&w, a1));
    assert!(
        freed.is_some(),
        "the recovered address of a deleted pod stayed held:\n{}",
        w.tb.ipamd_log("node-a")
    );
    w.traffic("after the recovered pod's DEL");
    w.invariants("node-a", "after the recovered pod's DEL")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_changes_behind_ipamds_back_leave_the_pool() {
    let env = r#"{IPAMD_RECONCILE_INTERVAL: "1"}"#;
    let tb = Testbed::with_agents(Some(&config(env, "{}", "100.64.0.0/19")));
    let mut w = World::new(tb);
    w.add("node-a", "a1");
    w.add("node-b", "b1");
    // An ENI detached behind ipamd's back leaves the pool; the pods on the others go on.
    // The warm target makes ipamd add a second pod ENI behind the first pod.
    let empty_eni = || {
        w.tb.introspect("node-a", "/v1/enis")["enis"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["primary"] == false)
            .find(|e| {
                e["addresses"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|a| a["assigned"] == false)
            })
            .map(|e| e["id"].as_str().unwrap().to_string())
    };
    let mut spare = None;
    wait_for(Duration::from_secs(30), || {
        spare = empty_eni();
        spare.is_some()
    });
    let ec2 = w.tb.ec2().await;
    if let Some(spare) = spare {
        let attachment = ec2
            .describe_network_interfaces()
            .network_interface_ids(&spare)
            .send()
            .await
            .unwrap()
            .network_interfaces()[0]
            .attachment()
            .unwrap()
            .attachment_id()
            .unwrap()
            .to_string();
        ec2.detach_network_interface()
            .attachment_id(attachment)
            .force(true)
            .send()
            .await
            .unwrap();
        let dropped = wait_for(Duration::from_secs(15), || {
            !invariants::pool(&w.tb, "node-a")
                .unwrap()
                .enis
                .contains(&spare)
        });
        assert!(
            dropped.is_some(),
            "the detached ENI stayed in the pool:\n{}",
            w.tb.ipamd_log("node-a")
        );
        ec2.delete_network_interface()
            .network_interface_id(&spare)
            .send()
            .await
            .unwrap();
        w.traffic("after an ENI was detached behind ipamd's back");
        w.invariants("node-a", "after an ENI was detached behind ipamd's back")
            .await;
    } else {
        panic!(
            "no empty spare ENI to detach: {}",
            w.tb.introspect("node-a", "/v1/enis")
        );
    }
    let view = w.tb.introspect("node-a", "/v1/enis");
    let pod_eni = view["enis"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["primary"] == false)
        .find(|e| {
            e["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["assigned"] == true)
        })
        .unwrap()
        .clone();
    let eni_id = pod_eni["id"].as_str().unwrap().to_string();
    // A free address of the pod ENI is unassigned behind ipamd's back.
    let gone: Ipv4Addr = pod_eni["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["assigned"] == false)
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    ec2.unassign_private_ip_addresses()
        .network_interface_id(&eni_id)
        .private_ip_addresses(gone.to_string())
        .send()
        .await
        .unwrap();
    let left = wait_for(Duration::from_secs(15), || {
        !invariants::pool(&w.tb, "node-a")
            .unwrap()
            .addresses
            .iter()
            .any(|(a, _, _)| *a == gone)
    });
    assert!(
        left.is_some(),
        "the address EC2 took back stayed in the pool:\n{}",
        w.tb.ipamd_log("node-a")
    );
    // It is never handed to a pod: the ENI's other addresses fill first, then the next ENI's.
    for i in 0..10 {
        let ip = w.add("node-a", &format!("n{i}"));
        assert_ne!(ip, gone, "a pod got the address EC2 took back");
    }
    w.traffic("after an address went behind ipamd's back");
    w.invariants("node-a", "after an address went behind ipamd's back")
        .await;
}
