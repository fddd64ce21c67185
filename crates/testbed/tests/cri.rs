//! The production path: pods asked of containerd's CRI service the way a kubelet on an EKS
//! node asks for them; containerd (Debian's, in the node's namespace) runs the conflist itself,
//! concurrently, with its own DELs on failure, on stop and after its restart. Judged by
//! traffic, by what containerd reports and by what ipamd holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use k8s_cri::v1::PodSandboxState;
use nix::sys::signal::Signal;
use testbed::containerd::ContainerdDir;
use testbed::cri::{Cri, PodSpec};
use testbed::pods::{self, LISTENER_PORT};
use testsupport::testbed::*;

const POD_SUBNET_A: &str = "100.64.0.0/19";
const PEER_HOST_PORT: u16 = 9080;

/// Nodes in two zones, each running containerd; custom networking with an ENIConfig per zone.
/// `nodes` are the node lines, `env` the extra ipamd environment of every node.
fn config(nodes: &str, env: &str) -> String {
    format!(
        r#"
region: us-west-2
vpc: {{cidr: 10.0.0.0/16, secondary_cidrs: [100.64.0.0/16]}}
subnets:
  - {{name: nodes-a, az: us-west-2a, cidr: 10.0.1.0/24}}
  - {{name: nodes-b, az: us-west-2b, cidr: 10.0.2.0/24}}
  - {{name: pods-a,  az: us-west-2a, cidr: {POD_SUBNET_A}}}
  - {{name: pods-b,  az: us-west-2b, cidr: 100.64.32.0/19}}
security_groups:
  - {{name: pods, ingress: [{{protocol: tcp, ports: "8080", from: "100.64.0.0/16"}}, {{protocol: tcp, ports: "8080", from: "10.0.0.0/16"}}]}}
eniconfigs:
  - {{name: us-west-2a, subnet: pods-a, security_groups: [pods]}}
  - {{name: us-west-2b, subnet: pods-b, security_groups: [pods]}}
nodes:
{nodes}
ipamd_env: {{AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: "true", ENI_CONFIG_LABEL_DEF: topology.kubernetes.io/zone{env}}}
"#
    )
}

fn node_a(instance_type: &str) -> String {
    format!(
        "  - {{name: node-a, instance_type: {instance_type}, subnet: nodes-a, runtime: containerd, labels: {{topology.kubernetes.io/zone: us-west-2a}}}}"
    )
}

const NODE_B: &str = "  - {name: node-b, instance_type: m5.large, subnet: nodes-b, runtime: containerd, labels: {topology.kubernetes.io/zone: us-west-2b}}";

/// A pod the kubelet got running: its sandbox, listener container and what containerd reports.
#[derive(Debug, Clone)]
struct RunningPod {
    name: String,
    sandbox: String,
    container: String,
    ip: Ipv4Addr,
    netns: PathBuf,
    /// RunPodSandbox calls that failed before one worked.
    failures: Vec<String>,
}

impl RunningPod {
    fn listener(&self) -> SocketAddr {
        SocketAddr::from((self.ip, LISTENER_PORT))
    }
}

/// What the kubelet does for a new pod: RunPodSandbox, and on failure (after stopping and
/// removing any sandbox of the pod the runtime kept, not ready) again with the next attempt;
/// then the listener container and PodSandboxStatus.
async fn kubelet_run(
    mut cri: Cri,
    prefix: String,
    dir: ContainerdDir,
    node_netns: PathBuf,
    name: String,
    host_ports: Vec<(u16, u16)>,
    limit: Duration,
) -> Result<RunningPod, String> {
    let base = PodSpec {
        host_ports,
        ..pods::cri_pod_spec(&prefix, &dir, "default", &name, 0)
    };
    std::fs::create_dir_all(&base.log_directory).unwrap();
    let started = Instant::now();
    let mut failures = Vec::new();
    for attempt in 0.. {
        let pod = PodSpec {
            attempt,
            ..base.clone()
        };
        match cri.run_pod_sandbox(&pod).await {
            Ok(sandbox) => {
                let container = cri
                    .start_container(&sandbox, &pod, &pods::listener("default", &name))
                    .await
                    .map_err(|e| format!("{name}: listener: {e}"))?;
                let st = cri
                    .sandbox_status(&sandbox)
                    .await
                    .map_err(|e| e.to_string())?;
                if !st.ready {
                    return Err(format!("{name}: sandbox {sandbox} is not ready: {st:?}"));
                }
                let (Some(ip), Some(netns)) = (st.ip, st.netns.clone()) else {
                    return Err(format!("{name}: no address or namespace reported: {st:?}"));
                };
                // The kubelet's readiness probe (tcpSocket, from the node): the listener is up.
                let to = SocketAddr::from((ip, LISTENER_PORT));
                let probe = node_netns.clone();
                let ready = tokio::task::spawn_blocking(move || {
                    wait_for(Duration::from_secs(10), || {
                        connect_from_path(&probe, to).is_ok()
                    })
                })
                .await
                .unwrap();
                if ready.is_none() {
                    return Err(format!("{name}: nothing listens on {to} after 10 s"));
                }
                return Ok(RunningPod {
                    name,
                    sandbox,
                    container,
                    ip,
                    netns,
                    failures,
                });
            }
            Err(e) => {
                failures.push(e.to_string());
                remove_not_ready(&mut cri, &name).await;
                if started.elapsed() > limit {
                    return Err(format!(
                        "{name}: no sandbox after {limit:?}; failures: {failures:#?}"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    unreachable!()
}

/// The kubelet's clean-up of a pod's dead sandboxes.
async fn remove_not_ready(cri: &mut Cri, name: &str) {
    for s in cri.list_pod_sandboxes().await.unwrap_or_default() {
        if s.metadata.as_ref().is_some_and(|m| m.name == name)
            && s.state == PodSandboxState::SandboxNotready as i32
        {
            let _ = cri.stop_pod_sandbox(&s.id).await;
            let _ = cri.remove_pod_sandbox(&s.id).await;
        }
    }
}

/// Runs `names` on a node at once, each as the kubelet would (with these hostPorts); every one
/// must come up.
async fn run_pods(
    tb: &Testbed,
    node: &str,
    names: &[String],
    host_ports: &[(u16, u16)],
) -> Vec<RunningPod> {
    let cri = tb.cri(node).await;
    let dir = tb.containerd_dir(node);
    let mut set = tokio::task::JoinSet::new();
    for name in names {
        set.spawn(kubelet_run(
            cri.clone(),
            tb.prefix.clone(),
            dir.clone(),
            PathBuf::from(format!("/run/netns/{}", tb.netns(node))),
            name.clone(),
            host_ports.to_vec(),
            Duration::from_secs(90),
        ));
    }
    let mut pods = Vec::new();
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(p) => pods.push(p),
            Err(e) => panic!(
                "{e}\n--- ipamd ---\n{}\n--- containerd ---\n{}",
                tail(&tb.ipamd_log(node)),
                tb.containerd_log(node)
            ),
        }
    }
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    pods
}

fn tail(text: &str) -> &str {
    &text[text.len().saturating_sub(3000)..]
}

/// What ipamd holds: container id → (address, pod namespace/name).
fn ipamd_holds(tb: &Testbed, node: &str) -> BTreeMap<String, (Ipv4Addr, String)> {
    let enis = tb.introspect(node, "/v1/enis");
    let mut out = BTreeMap::new();
    for eni in enis["enis"].as_array().unwrap() {
        for a in eni["addresses"].as_array().unwrap() {
            if a["assigned"] == true {
                out.insert(
                    a["key"]["container_id"].as_str().unwrap().to_string(),
                    (
                        a["address"].as_str().unwrap().parse().unwrap(),
                        a["pod"].as_str().unwrap_or_default().to_string(),
                    ),
                );
            }
        }
    }
    out
}

/// Every pod's reported address is in the subnet, unique, and exactly what ipamd holds for its
/// sandbox and namespace/name; ipamd holds nothing else.
fn assert_ipamd_agrees(tb: &Testbed, node: &str, pods: &[RunningPod], subnet: &str) {
    let subnet: Ipv4Net = subnet.parse().unwrap();
    let holds = ipamd_holds(tb, node);
    let mut seen = BTreeSet::new();
    for p in pods {
        assert!(
            subnet.contains(&p.ip),
            "{}: {} is not in the ENIConfig's subnet {subnet}",
            p.name,
            p.ip
        );
        assert!(seen.insert(p.ip), "{} is given to two pods", p.ip);
        assert_eq!(
            holds.get(&p.sandbox),
            Some(&(p.ip, format!("default/{}", p.name))),
            "{}: containerd reports {} for sandbox {}, ipamd holds {holds:#?}",
            p.name,
            p.ip,
            p.sandbox
        );
    }
    let live: BTreeSet<&String> = pods.iter().map(|p| &p.sandbox).collect();
    let stray: Vec<_> = holds.iter().filter(|(k, _)| !live.contains(k)).collect();
    if !stray.is_empty() {
        // What the plugin and ipamd did with them.
        let logs = [
            std::fs::read_to_string(tb.node_dir(node).join("plugin.log")).unwrap_or_default(),
            tb.ipamd_log(node),
            std::fs::read_to_string(tb.containerd_dir(node).log()).unwrap_or_default(),
        ];
        let history: Vec<&str> = logs
            .iter()
            .flat_map(|l| l.lines())
            .filter(|l| {
                stray.iter().any(|(id, _)| l.contains(id.as_str()))
                    || l.contains("\"level\":\"error\"")
                    || l.contains("\"level\":\"ERROR\"")
                    || l.contains("checkpoint")
            })
            .collect();
        panic!(
            "ipamd holds addresses for sandboxes that do not exist: {stray:#?}\n{}",
            history.join("\n")
        );
    }
}

/// The node routes exactly the pods' addresses to pod veths and has no other pod veth: failed
/// sandboxes left nothing behind.
fn assert_node_routes_only(tb: &Testbed, node: &str, pods: &[RunningPod]) {
    let ns = tb.netns(node);
    let routed: BTreeSet<Ipv4Addr> = ip(&ns, &["route", "show"])
        .lines()
        .filter(|l| l.contains(" dev eni"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let want: BTreeSet<Ipv4Addr> = pods.iter().map(|p| p.ip).collect();
    assert_eq!(routed, want, "the node's pod routes are not the live pods'");
    let veths = ip(&ns, &["-o", "link"])
        .lines()
        .filter(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|n| n.trim().starts_with("eni"))
        })
        .count();
    assert_eq!(
        veths,
        pods.len(),
        "pod veths on {node} besides the live pods'"
    );
}

/// The host veth of the route to `ip` on the node.
fn host_veth(tb: &Testbed, node: &str, addr: Ipv4Addr) -> String {
    let route = ip(&tb.netns(node), &["route", "show", &format!("{addr}/32")]);
    route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or_else(|| panic!("no route to {addr} on {node}"))
        .to_string()
}

/// Nothing of the pod's networking is left on the node: no route, rule or veth.
fn assert_nothing_left(tb: &Testbed, node: &str, addr: Ipv4Addr, veth: &str) {
    let ns = tb.netns(node);
    let routes = ip(&ns, &["route", "show", "table", "all"]);
    assert!(
        !routes.contains(&format!("{addr} ")),
        "a route to {addr} is left:\n{routes}"
    );
    let rules = ip(&ns, &["rule"]);
    assert!(
        !rules.contains(&format!("{addr} ")),
        "a rule for {addr} is left:\n{rules}"
    );
    let links = ip(&ns, &["-o", "link"]);
    assert!(
        !links.contains(&format!(" {veth}@")),
        "the veth {veth} is left:\n{links}"
    );
}

/// StopPodSandbox and RemovePodSandbox of each pod, as for a deleted pod: its route, rules and
/// veth go.
async fn stop_and_remove(tb: &Testbed, cri: &mut Cri, pods: &[RunningPod]) {
    for p in pods {
        let veth = host_veth(tb, "node-a", p.ip);
        cri.stop_pod_sandbox(&p.sandbox).await.unwrap();
        cri.remove_pod_sandbox(&p.sandbox).await.unwrap();
        assert_nothing_left(tb, "node-a", p.ip, &veth);
    }
}

fn internet() -> SocketAddr {
    SocketAddr::from((
        testbed::fabric::INTERNET_HOST.parse::<Ipv4Addr>().unwrap(),
        443,
    ))
}

/// Pod to pod by HTTP: the answer names the pod that answered.
fn assert_reaches(from: &RunningPod, to: &RunningPod) {
    let body = http_get_from(&from.netns, to.listener())
        .unwrap_or_else(|e| panic!("{} cannot reach {} at {}: {e}", from.name, to.name, to.ip));
    assert_eq!(
        body,
        format!("default/{}", to.name),
        "{} reached {} but another pod answered",
        from.name,
        to.ip
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_pods_through_the_cri_at_once_get_custom_networking_addresses_and_traffic() {
    let tb = Testbed::with_agents(Some(&config(
        &format!("{}\n{NODE_B}", node_a("m5.xlarge")),
        "",
    )));
    let names: Vec<String> = (0..20).map(|i| format!("web-{i:02}")).collect();
    let peer_name = ["peer".to_string()];
    let (pods_a, peer) = tokio::join!(
        run_pods(&tb, "node-a", &names, &[]),
        run_pods(
            &tb,
            "node-b",
            &peer_name,
            &[(LISTENER_PORT, PEER_HOST_PORT)]
        )
    );
    let peer = peer.into_iter().next().unwrap();
    assert_eq!(pods_a.len(), 20);
    assert_ipamd_agrees(&tb, "node-a", &pods_a, POD_SUBNET_A);
    assert_node_routes_only(&tb, "node-a", &pods_a);
    assert_ipamd_agrees(&tb, "node-b", std::slice::from_ref(&peer), "100.64.32.0/19");

    // containerd ran the whole conflist: portmap, chained after aws-cni, serves the peer's
    // hostPort on its node.
    let node_b = tb.node("node-b")["primary_ip"]
        .as_str()
        .unwrap()
        .parse::<Ipv4Addr>()
        .unwrap();
    let body = http_get_from(
        &PathBuf::from(format!("/run/netns/{}", tb.netns("node-b"))),
        SocketAddr::from((node_b, PEER_HOST_PORT)),
    )
    .unwrap_or_else(|e| panic!("hostPort {PEER_HOST_PORT} on node-b: {e}"));
    assert_eq!(body, "default/peer");

    // Traffic: every pod from the pod on the other node and back, and out to the internet.
    let _inet = listen_in(&format!("{}-inet", tb.prefix), internet());
    for p in &pods_a {
        assert_reaches(&peer, p);
        assert_reaches(p, &peer);
        connect_from_path(&p.netns, internet())
            .unwrap_or_else(|e| panic!("{} cannot reach the internet: {e}", p.name));
    }
    assert_reaches(&pods_a[0], &pods_a[19]);
    // From inside a container, as its own process does (busybox nc: its wget crashes here).
    let mut cri = tb.cri("node-a").await;
    let request = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {} {LISTENER_PORT}",
        peer.ip
    );
    let out = cri
        .exec_sync(
            &pods_a[3].container,
            &["sh", "-c", &request],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(
        out.exit_code == 0 && out.stdout.trim_end().ends_with("default/peer"),
        "nc in {}: exit {}: {}{}",
        pods_a[3].name,
        out.exit_code,
        out.stdout,
        out.stderr
    );
    let retried: usize = pods_a.iter().map(|p| p.failures.len()).sum();
    eprintln!("20 pods up; {retried} RunPodSandbox call(s) failed and were retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_sandboxes_release_their_address_and_removed_ones_leave_nothing() {
    // One pod ENI of 9 addresses (MAX_ENI=2), and a short cooldown.
    let cooldown = Duration::from_secs(5);
    let tb = Testbed::with_agents(Some(&config(
        &node_a("m5.large"),
        ", MAX_ENI: \"2\", IP_COOLDOWN_PERIOD: \"5\"",
    )));
    let names: Vec<String> = (0..9).map(|i| format!("p{i}")).collect();
    let pods = run_pods(&tb, "node-a", &names, &[]).await;
    assert_ipamd_agrees(&tb, "node-a", &pods, POD_SUBNET_A);
    let mut cri = tb.cri("node-a").await;

    // Stop: containerd runs DEL; ipamd releases the address, the node's routing goes.
    let gone = &pods[0];
    let veth = host_veth(&tb, "node-a", gone.ip);
    cri.stop_pod_sandbox(&gone.sandbox).await.unwrap();
    let stopped_at = Instant::now();
    assert_ipamd_agrees(&tb, "node-a", &pods[1..], POD_SUBNET_A);
    assert_nothing_left(&tb, "node-a", gone.ip, &veth);
    cri.remove_pod_sandbox(&gone.sandbox).await.unwrap();
    assert_nothing_left(&tb, "node-a", gone.ip, &veth);
    assert!(
        !cri.list_pod_sandboxes()
            .await
            .unwrap()
            .iter()
            .any(|s| s.id == gone.sandbox),
        "the removed sandbox is still listed"
    );
    assert!(!gone.netns.exists(), "the sandbox's namespace is left");

    // The only free address cools down: a new pod fails cleanly, then gets it once it may.
    let next = run_pods(&tb, "node-a", &["p9".to_string()], &[])
        .await
        .remove(0);
    assert!(
        !next.failures.is_empty(),
        "p9 got {} although the only free address was cooling down",
        next.ip
    );
    assert!(stopped_at.elapsed() >= cooldown);
    assert_eq!(next.ip, gone.ip, "the released address was not reused");
    let mut live = pods[1..].to_vec();
    live.push(next);
    assert_ipamd_agrees(&tb, "node-a", &live, POD_SUBNET_A);
    assert_reaches(&live[0], &live[8]);

    // Everything stopped and removed: nothing held, nothing left on the node.
    stop_and_remove(&tb, &mut cri, &live).await;
    assert_ipamd_agrees(&tb, "node-a", &[], POD_SUBNET_A);
    assert!(cri.list_pod_sandboxes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_keep_their_addresses_and_traffic_across_containerd_restarts() {
    let tb = Testbed::with_agents(Some(&config(&node_a("m5.large"), "")));
    let names: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
    let pods = run_pods(&tb, "node-a", &names, &[]).await;
    let _inet = listen_in(&format!("{}-inet", tb.prefix), internet());
    let check = |pods: &[RunningPod]| {
        assert_ipamd_agrees(&tb, "node-a", pods, POD_SUBNET_A);
        for (a, b) in pods.iter().zip(pods.iter().cycle().skip(1)) {
            assert_reaches(a, b);
        }
        connect_from_path(&pods[0].netns, internet()).expect("to the internet");
    };
    check(&pods);

    let mut children = Vec::new();
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        children.push(tb.restart_containerd("node-a", signal));
        let mut cri = tb.cri("node-a").await;
        for p in &pods {
            let st = cri.sandbox_status(&p.sandbox).await.unwrap();
            assert!(st.ready, "{} is not ready after a {signal} restart", p.name);
            assert_eq!(
                st.ip,
                Some(p.ip),
                "{}: containerd reports another address after a {signal} restart",
                p.name
            );
        }
        check(&pods);
    }

    // The restarted containerd makes new pods and stops the old ones: everything released.
    let mut all = pods.clone();
    all.extend(run_pods(&tb, "node-a", &["p4".to_string()], &[]).await);
    check(&all);
    stop_and_remove(&tb, &mut tb.cri("node-a").await, &all).await;
    assert_ipamd_agrees(&tb, "node-a", &[], POD_SUBNET_A);
    drop(children);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipamd_restarted_while_containerd_creates_pods_leaves_no_address_behind() {
    let tb = Testbed::with_agents(Some(&config(&node_a("m5.xlarge"), "")));
    let names: Vec<String> = (0..16).map(|i| format!("p{i:02}")).collect();
    // ipamd is killed twice while the pods are being made, and started again each time.
    let restarts = async {
        let mut child = None;
        for delay in [150, 900] {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            child = Some(tb.restart_ipamd("node-a", child));
        }
        child
    };
    let (pods, child) = tokio::join!(run_pods(&tb, "node-a", &names, &[]), restarts);
    let retried: usize = pods.iter().map(|p| p.failures.len()).sum();
    let reclaimed = tb
        .ipamd_log("node-a")
        .matches("the pod has no route")
        .count();
    eprintln!(
        "16 pods up; {retried} RunPodSandbox call(s) failed and were retried; ipamd reclaimed {reclaimed} address(es) of sandboxes whose ADD failed in a crash"
    );

    // Once things settle, ipamd holds exactly the live sandboxes' addresses.
    let live: BTreeSet<String> = pods.iter().map(|p| p.sandbox.clone()).collect();
    wait_for(Duration::from_secs(10), || {
        ipamd_holds(&tb, "node-a")
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
            == live
    });
    assert_ipamd_agrees(&tb, "node-a", &pods, POD_SUBNET_A);
    assert_node_routes_only(&tb, "node-a", &pods);
    for (a, b) in pods.iter().zip(pods.iter().cycle().skip(1)) {
        assert_reaches(a, b);
    }
    let mut cri = tb.cri("node-a").await;
    assert_eq!(
        cri.list_pod_sandboxes().await.unwrap().len(),
        pods.len(),
        "containerd keeps sandboxes the kubelet did not ask for"
    );

    // A pod stopped while ipamd is down: containerd's DEL cleans the node up and succeeds, and
    // nothing will tell ipamd again (containerd runs no CNI GC); ipamd releases the address
    // when it comes back, because the pod's route is gone.
    let mut child = child.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let (gone, rest) = pods.split_at(1);
    stop_and_remove(&tb, &mut cri, gone).await;
    let mut child = tb.start_ipamd("node-a");
    assert_ipamd_agrees(&tb, "node-a", rest, POD_SUBNET_A);
    stop_and_remove(&tb, &mut cri, rest).await;
    assert_ipamd_agrees(&tb, "node-a", &[], POD_SUBNET_A);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `vpc-testbed pod add|del --runtime cri`, as a person tries it.
#[test]
fn the_cli_makes_and_deletes_a_pod_through_the_cri() {
    let plain_b = NODE_B.replace(" runtime: containerd,", "");
    let tb = Testbed::with_agents(Some(&config(
        &format!("{}\n{plain_b}", node_a("m5.large")),
        "",
    )));
    // A node without containerd says so.
    let out = vpc_testbed(
        &tb.prefix,
        &["pod", "add", "node-b", "web", "--runtime", "cri"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("node-b runs no containerd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = vpc_testbed(
        &tb.prefix,
        &["pod", "add", "node-a", "web", "--runtime", "cri"],
    );
    assert!(
        out.status.success(),
        "pod add --runtime cri: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tb.containerd_log("node-a")
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["pod"], "default/web");
    assert!(
        made["runtime"].as_str().unwrap().starts_with("containerd"),
        "{made}"
    );
    let ip: Ipv4Addr = made["ip"].as_str().unwrap().parse().unwrap();
    assert!(POD_SUBNET_A.parse::<Ipv4Net>().unwrap().contains(&ip));
    let netns = PathBuf::from(made["netns"].as_str().unwrap());
    // The node reaches the pod's listener; `exec` runs in the pod's namespace.
    let body = http_get_from(
        &PathBuf::from(format!("/run/netns/{}", tb.netns("node-a"))),
        SocketAddr::from((ip, LISTENER_PORT)),
    )
    .unwrap();
    assert_eq!(body, "default/web");
    let out = vpc_testbed(
        &tb.prefix,
        &["exec", "node-a/web", "--", "ip", "-4", "-o", "addr"],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{ip}/32")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = vpc_testbed(&tb.prefix, &["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("default/web"));
    // A second add of the same pod is refused; --conflist does not apply to the CRI.
    let again = vpc_testbed(
        &tb.prefix,
        &["pod", "add", "node-a", "web", "--runtime", "cri"],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = vpc_testbed(
        &tb.prefix,
        &[
            "pod",
            "add",
            "node-a",
            "x",
            "--runtime",
            "cri",
            "--conflist",
            "/dev/null",
        ],
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("apply to --runtime cni"));

    let veth = host_veth(&tb, "node-a", ip);
    let out = vpc_testbed(&tb.prefix, &["pod", "del", "node-a", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_nothing_left(&tb, "node-a", ip, &veth);
    assert!(!netns.exists());
    assert!(ipamd_holds(&tb, "node-a").is_empty());
    let out = vpc_testbed(
        &tb.prefix,
        &["pod", "del", "node-a", "web", "--runtime", "cri"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sandbox for pod default/web"));
}
