//! End to end on the testbed, the way a platform engineer checks a cluster: pods made by the
//! real plugin through the node's conflist, traffic by real connections, EC2 read back.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use testsupport::testbed::workspace_bin;
use testsupport::testbed::*;

const HEAD: &str = r#"
region: us-west-2
vpc: {cidr: 10.0.0.0/16, secondary_cidrs: [100.64.0.0/16]}
subnets:
  - {name: nodes-a, az: us-west-2a, cidr: 10.0.1.0/24}
  - {name: pods-a,  az: us-west-2a, cidr: 100.64.0.0/19}
security_groups:
  - {name: pods, ingress: [{protocol: tcp, ports: "8080", from: "100.64.0.0/16"}]}
eniconfigs:
  - {name: us-west-2a, subnet: pods-a, security_groups: [pods]}
"#;

fn config(node_env: &str, extra: &str) -> String {
    format!(
        "{HEAD}{extra}nodes:\n  - {{name: node-a, instance_type: m5.large, subnet: nodes-a, labels: {{topology.kubernetes.io/zone: us-west-2a}}, ipamd_env: {node_env}}}\n\
         ipamd_env: {{AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: \"true\", ENI_CONFIG_LABEL_DEF: topology.kubernetes.io/zone}}\n"
    )
}

/// (ENIs attached, secondary addresses, prefixes) of a node, from EC2.
async fn shape(tb: &Testbed, node: &str) -> (usize, usize, usize) {
    let ec2 = tb.ec2().await;
    let out = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(tb.instance(node))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let enis = out.network_interfaces();
    let secondaries = enis
        .iter()
        .map(|e| {
            e.private_ip_addresses()
                .iter()
                .filter(|a| !a.primary().unwrap_or(false))
                .count()
        })
        .sum();
    let prefixes = enis.iter().map(|e| e.ipv4_prefixes().len()).sum();
    (enis.len(), secondaries, prefixes)
}

async fn wait_shape(tb: &Testbed, node: &str, want: (usize, usize, usize), limit: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if shape(tb, node).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{node}: EC2 shows {:?}, expected {want:?}\n{}",
        shape(tb, node).await,
        tb.ipamd_log(node)
    );
}

fn internet() -> SocketAddr {
    SocketAddr::from((
        testbed::fabric::INTERNET_HOST.parse::<Ipv4Addr>().unwrap(),
        443,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_the_internet_through_snat_or_only_through_the_nat_gateway() {
    // Node SNAT (default): out with the node's primary address, the NAT gateway unused.
    let tb = Testbed::with_agents(Some(&config("{}", "")));
    let _l = listen_in(&format!("{}-inet", tb.prefix), internet());
    tb.pod_add("node-a", "web", &[]).unwrap();
    connect_from(&tb.pod_ns("node-a", "web"), None, internet())
        .expect("a pod reaches the internet through the node's SNAT");
    assert_eq!(
        iptables_packets(
            &format!("{}-nat", tb.prefix),
            "nat",
            "POSTROUTING",
            "MASQUERADE"
        ),
        0
    );
    assert!(
        iptables_packets(&tb.netns("node-a"), "nat", "AWS-SNAT-CHAIN-0", "SNAT") > 0,
        "the node's SNAT rule saw nothing"
    );
    drop(tb);

    // External SNAT: no SNAT rules on the node; the pod's own address goes to the NAT gateway.
    let tb = Testbed::with_agents(Some(&config(
        "{AWS_VPC_K8S_CNI_EXTERNALSNAT: \"true\"}",
        "",
    )));
    let _l = listen_in(&format!("{}-inet", tb.prefix), internet());
    tb.pod_add("node-a", "web", &[]).unwrap();
    let rules = String::from_utf8(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &tb.netns("node-a"),
                "iptables-save",
                "-t",
                "nat",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !rules.contains("AWS-SNAT-CHAIN-0"),
        "external SNAT left SNAT rules:\n{rules}"
    );
    connect_from(&tb.pod_ns("node-a", "web"), None, internet()).expect("through the NAT gateway");
    assert!(
        iptables_packets(
            &format!("{}-nat", tb.prefix),
            "nat",
            "POSTROUTING",
            "MASQUERADE"
        ) > 0,
        "the NAT gateway saw nothing"
    );
    drop(tb);

    // External SNAT and no NAT gateway: no way out.
    let tb = Testbed::with_agents(Some(&config(
        "{AWS_VPC_K8S_CNI_EXTERNALSNAT: \"true\"}",
        "nat_gateway: false\n",
    )));
    let _l = listen_in(&format!("{}-inet", tb.prefix), internet());
    tb.pod_add("node-a", "web", &[]).unwrap();
    assert!(
        connect_from(&tb.pod_ns("node-a", "web"), None, internet()).is_err(),
        "a private pod address reached the internet directly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_its_eniconfig_never_runs_pods() {
    let text = config("{}", "").replace(
        "  - {name: us-west-2a, subnet: pods-a, security_groups: [pods]}\n",
        "  []\n",
    );
    let tb = Testbed::with_agents(Some(&text));
    let err = tb.pod_add("node-a", "web", &[]).unwrap_err();
    assert!(
        err.contains("not network-ready") && err.contains("no CNI config"),
        "{err}"
    );
    assert_eq!(shape(&tb, "node-a").await, (1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_targets_and_prefix_delegation_shape_the_pool() {
    // WARM_ENI_TARGET=3 with MAX_ENI=2: the cap wins (the primary and one pod ENI).
    let tb = Testbed::with_agents(Some(&config(
        "{WARM_ENI_TARGET: \"3\", MAX_ENI: \"2\"}",
        "",
    )));
    wait_shape(&tb, "node-a", (2, 9, 0), Duration::from_secs(10)).await;
    drop(tb);
    // WARM_IP_TARGET=5 and MINIMUM_IP_TARGET=12: max(warm, min) addresses.
    let tb = Testbed::with_agents(Some(&config(
        "{WARM_IP_TARGET: \"5\", MINIMUM_IP_TARGET: \"12\"}",
        "",
    )));
    wait_shape(&tb, "node-a", (3, 12, 0), Duration::from_secs(10)).await;
    drop(tb);
    // Prefix delegation with WARM_PREFIX_TARGET=1: one /28, and pods get addresses from it.
    let tb = Testbed::with_agents(Some(&config(
        "{ENABLE_PREFIX_DELEGATION: \"true\", WARM_PREFIX_TARGET: \"1\"}",
        "",
    )));
    wait_shape(&tb, "node-a", (2, 0, 1), Duration::from_secs(10)).await;
    let ip = pod_address(&tb.pod_add("node-a", "web", &[]).unwrap());
    let pool = tb.introspect("node-a", "/v1/enis");
    let prefix: ipnet::Ipv4Net = pool["enis"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["addresses"].as_array().unwrap().iter())
        .find(|a| a["address"] == ip.to_string())
        .map(|_| "100.64.0.0/19".parse().unwrap())
        .expect("the pod's address is not in the pool");
    assert!(prefix.contains(&ip));
    // One address of the prefix is used: free prefixes drop to 0, so a second prefix comes.
    wait_shape(&tb, "node-a", (2, 0, 2), Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_up_to_max_pods_then_deleted_leave_the_pool_at_its_baseline() {
    let env =
        "{IP_COOLDOWN_PERIOD: \"1\", IPAMD_ENI_MIN_AGE: \"1\", IPAMD_DECREASE_INTERVAL: \"1\"}";
    let tb = Testbed::with_agents(Some(&config(env, "")));
    wait_shape(&tb, "node-a", (2, 9, 0), Duration::from_secs(10)).await;
    let baseline = shape(&tb, "node-a").await;
    // m5.large with custom networking: max pods 20, of which 18 pod addresses.
    let mut made = Vec::new();
    for i in 0..18 {
        let name = format!("p{i}");
        let mut last = String::new();
        let ok = (0..100).any(|_| match tb.pod_add("node-a", &name, &[]) {
            Ok(_) => true,
            Err(e) => {
                last = e;
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        });
        assert!(ok, "pod {i}: {last}");
        made.push(name);
    }
    assert_eq!(shape(&tb, "node-a").await, (3, 18, 0));
    // The 19th pod address does not exist: the node is full.
    assert!(tb.pod_add("node-a", "p18", &[]).is_err());
    for name in &made {
        let out = vpc_testbed(&tb.prefix, &["pod", "del", "node-a", name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_shape(&tb, "node-a", baseline, Duration::from_secs(30)).await;
    // Every ENI ipamd made is deleted with its instance (DeleteOnTermination).
    let ec2 = tb.ec2().await;
    ec2.terminate_instances()
        .instance_ids(tb.instance("node-a"))
        .send()
        .await
        .unwrap();
    let left = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("tag-key")
                .values("node.k8s.amazonaws.com/instance_id")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        left.network_interfaces().is_empty(),
        "ENIs outlived their instance: {:?}",
        left.network_interfaces()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_eni_is_removed_by_the_leaked_eni_clean_up() {
    let env = "{LEAKED_ENI_CLEANUP_INTERVAL: \"1\", LEAKED_ENI_MIN_AGE: \"0\"}";
    let tb = Testbed::with_agents(Some(&config(env, "")));
    let ec2 = tb.ec2().await;
    let subnet = ec2
        .describe_subnets()
        .filters(
            Filter::builder()
                .name("cidr-block")
                .values("100.64.0.0/19")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .subnets()[0]
        .subnet_id()
        .unwrap()
        .to_string();
    let instance = tb.instance("node-a");
    let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
    let make = |description: String| {
        let ec2 = ec2.clone();
        let subnet = subnet.clone();
        let instance = instance.clone();
        async move {
            ec2.create_network_interface()
                .subnet_id(subnet)
                .description(description)
                .tag_specifications(
                    aws_sdk_ec2::types::TagSpecification::builder()
                        .resource_type(aws_sdk_ec2::types::ResourceType::NetworkInterface)
                        .tags(tag("node.k8s.amazonaws.com/instance_id", &instance))
                        .tags(tag(
                            "node.k8s.amazonaws.com/createdAt",
                            "2026-01-01T00:00:00Z",
                        ))
                        .build(),
                )
                .send()
                .await
                .unwrap()
                .network_interface()
                .unwrap()
                .network_interface_id()
                .unwrap()
                .to_string()
        }
    };
    let orphan = make(format!("aws-K8S-{instance}")).await;
    let someone_elses = make("not ours".to_string()).await;
    let gone = |id: String| {
        let ec2 = ec2.clone();
        async move {
            ec2.describe_network_interfaces()
                .network_interface_ids(id)
                .send()
                .await
                .is_err()
        }
    };
    let mut removed = false;
    for _ in 0..50 {
        if gone(orphan.clone()).await {
            removed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        removed,
        "the orphaned ENI was not cleaned up\n{}",
        tb.ipamd_log("node-a")
    );
    assert!(
        !gone(someone_elses).await,
        "an ENI without our description was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_networking_follows_veth_prefix_and_mtus() {
    let env = "{AWS_VPC_K8S_CNI_VETHPREFIX: abc, AWS_VPC_ENI_MTU: \"1500\", POD_MTU: \"1400\"}";
    let tb = Testbed::with_agents(Some(&config(env, "")));
    let result = tb.pod_add("node-a", "web", &[]).unwrap();
    let host_if = result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(host_if.starts_with("abc"), "{host_if}");
    let node = tb.netns("node-a");
    assert!(ip(&node, &["link", "show", &host_if]).contains("mtu 1400"));
    assert!(ip(&tb.pod_ns("node-a", "web"), &["link", "show", "eth0"]).contains("mtu 1400"));
    assert!(
        ip(&node, &["link", "show", "eth1"]).contains("mtu 1500"),
        "{}",
        ip(&node, &["link"])
    );
    let pod_ip = pod_address(&result);
    let rules = ip(&node, &["rule"]);
    assert_eq!(
        rules.matches(&format!("to {pod_ip} lookup main")).count(),
        1,
        "{rules}"
    );
    assert!(
        rules.contains(&format!("from {pod_ip} lookup 2")),
        "{rules}"
    );
    let table = ip(&node, &["route", "show", "table", "2"]);
    assert!(table.contains("default via 100.64.0.1 dev eth1"), "{table}");
    let out = vpc_testbed(&tb.prefix, &["pod", "del", "node-a", "web"]);
    assert!(out.status.success());
    assert!(!ip(&node, &["rule"]).contains(&pod_ip.to_string()));
    assert!(!ip(&node, &["link"]).contains(&host_if));
}

/// podman (Debian's 4.3, CNI backend, runc) runs a container on a node with our conflist.
/// It runs under `nsenter --net` rather than `ip netns exec`, which remounts /sys and hides the
/// cgroup mounts runc needs.
#[test]
fn podman_runs_a_container_with_our_plugin() {
    let tb = Testbed::with_agents(None);
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs/bin");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("busybox"))
        .expect("busybox-static is missing: run scripts/setup");
    for applet in ["sh", "sleep", "nc", "ip", "echo"] {
        std::os::unix::fs::symlink("busybox", rootfs.join(applet)).unwrap();
    }
    let tar = work.path().join("busybox.tar");
    assert!(
        Command::new("tar")
            .arg("-C")
            .arg(work.path().join("rootfs"))
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    let plugins = workspace_bin("aws-cni").parent().unwrap().to_path_buf();
    let conf = work.path().join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\nnetwork_config_dir = \"{}\"\n[engine]\nruntime = \"runc\"\n",
            plugins.display(),
            tb.node_dir("node-a").join("net.d").display()
        ),
    )
    .unwrap();
    let (storage, run) = (work.path().join("storage"), work.path().join("run"));
    let podman = |args: &[&str]| {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", tb.netns("node-a")))
            .arg("podman")
            .arg("--root")
            .arg(&storage)
            .arg("--runroot")
            .arg(&run)
            .args(args)
            .env("CONTAINERS_CONF", &conf)
            .output()
            .expect("podman is missing: run scripts/setup");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = podman(&["import", tar.to_str().unwrap(), "localhost/testbed-busybox"]);
    assert!(ok, "podman import: {err}");
    let before = tb.introspect("node-a", "/v1/pool")["stats"]["assigned"]
        .as_u64()
        .unwrap();
    let (ok, _, err) = podman(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "aws-cni",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
        "localhost/testbed-busybox",
        "/bin/sleep",
        "300",
    ]);
    assert!(ok, "podman run: {err}");
    let (ok, addr, err) = podman(&["exec", "c1", "/bin/ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(ok, "{err}");
    let container_ip: Ipv4Addr = addr
        .split_whitespace()
        .nth(3)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        "100.64.0.0/19"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&container_ip),
        "{addr}"
    );
    assert_eq!(
        tb.introspect("node-a", "/v1/pool")["stats"]["assigned"]
            .as_u64()
            .unwrap(),
        before + 1
    );

    // The container reaches a pod on the other node (allowed port of the pods group).
    let db = pod_address(&tb.pod_add("node-b", "db", &[]).unwrap());
    let _l = listen_in(&tb.pod_ns("node-b", "db"), SocketAddr::from((db, 8080)));
    let (ok, _, err) = podman(&[
        "exec",
        "c1",
        "/bin/sh",
        "-c",
        &format!("echo hi | /bin/nc -w 2 {db} 8080"),
    ]);
    assert!(ok, "the container cannot reach db on node-b: {err}");

    let (ok, _, err) = podman(&["rm", "-f", "-t", "0", "c1"]);
    assert!(ok, "podman rm: {err}");
    assert_eq!(
        tb.introspect("node-a", "/v1/pool")["stats"]["assigned"]
            .as_u64()
            .unwrap(),
        before,
        "podman rm did not release the address"
    );
    assert!(
        !ip(&tb.netns("node-a"), &["rule"]).contains(&format!("to {container_ip} ")),
        "a rule of the container is left"
    );
}
