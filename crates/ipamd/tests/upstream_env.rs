//! A node configured as the existing implementation's users configure it: an upstream-style
//! environment with Go's boolean spellings, the "unset" spellings, a variable we do not support
//! (ENABLE_POD_ENI=true) and a typo. It must start, say each difference by name (log, /v1/compat,
//! metric), serve pods (addresses from its ENIConfig's subnet, real connections), and honour the
//! variables we support in addition (no NodePort rules and strict rp_filter, external service
//! rules); a kubelet max pods above what its ENIs serve is reported with the --max-pods to set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use testsupport::testbed::{Testbed, connect_from, listen_in, pod_address, vpc_testbed, wait_for};

const UPSTREAM_ENV: &str = r#"{AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: "True", ENABLE_POD_ENI: "true", WARM_IP_TAGRET: "5", MAX_ENI: "-1", MINIMUM_IP_TARGET: "0", WARM_PREFIX_TARGET: "-1", AWS_VPC_CNI_NODE_PORT_SUPPORT: "false", AWS_EXTERNAL_SERVICE_CIDRS: "203.0.113.0/24", NETWORK_POLICY_ENFORCING_MODE: standard, VPC_CNI_VERSION: v1.21.1, ENABLE_IPv4: "true"}"#;

fn in_ns(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The node's interface holding its primary address.
fn primary_interface(tb: &Testbed, node: &str) -> String {
    let ip = tb.node(node)["primary_ip"].as_str().unwrap().to_string();
    let addrs = in_ns(&tb.netns(node), &["ip", "-o", "-4", "addr", "show"]);
    addrs
        .lines()
        .find(|l| l.contains(&format!(" {ip}/")))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no interface with {ip}:\n{addrs}"))
        .to_string()
}

fn metrics(tb: &Testbed, node: &str) -> String {
    let ns = netns::Netns::named(&tb.netns(node)).unwrap();
    let (_, body) = ns
        .run(|| {
            testbed::emulator::http_json(61678, "GET", "/metrics", None, Duration::from_secs(5))
        })
        .unwrap()
        .unwrap();
    body.as_str().unwrap_or_default().to_string()
}

#[test]
fn a_node_with_an_upstream_environment_starts_warns_by_name_and_serves_pods() {
    // EC2 only through upstream's AWS_EC2_ENDPOINT: the SDK's own variable points nowhere.
    let env = UPSTREAM_ENV.replace(
        "}",
        &format!(
            r#", AWS_ENDPOINT_URL_EC2: "http://127.0.0.1:9", AWS_EC2_ENDPOINT: "http://127.0.0.1:{}"}}"#,
            testbed::fabric::EC2_RELAY_PORT
        ),
    );
    let config = testbed::config::DEFAULT_CONFIG.replacen(
        "ipamd_env: {}}",
        &format!("ipamd_env: {env}}}"),
        1,
    );
    assert_ne!(config, testbed::config::DEFAULT_CONFIG);
    let tb = Testbed::with_agents(Some(&config));
    let conflist = tb.node_dir("node-a").join("net.d/10-aws.conflist");
    assert!(
        wait_for(Duration::from_secs(30), || conflist.exists()).is_some(),
        "node-a is not network-ready:\n{}",
        tb.ipamd_log("node-a")
    );

    // Each difference said by name, once.
    let log = tb.ipamd_log("node-a");
    for (name, said) in [
        ("ENABLE_POD_ENI", "ENABLE_POD_ENI=true is not supported"),
        ("WARM_IP_TAGRET", "did you mean WARM_IP_TARGET?"),
        (
            "NETWORK_POLICY_ENFORCING_MODE",
            "network policies are not enforced",
        ),
        ("VPC_CNI_VERSION", "has no effect"),
        (
            "AWS_EC2_ENDPOINT",
            "AWS_ENDPOINT_URL_EC2=http://127.0.0.1:9 is not",
        ),
    ] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(said)).collect();
        assert_eq!(
            lines.len(),
            1,
            "{name}: {said:?} said {} times:\n{log}",
            lines.len()
        );
        assert!(lines[0].contains(name), "{}", lines[0]);
    }
    assert!(log.contains("\"level\":\"WARN\"") && log.contains("ENABLE_POD_ENI"));
    let compat = tb.introspect("node-a", "/v1/compat");
    let kinds: Vec<(String, String)> = compat["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["variable"].as_str().unwrap().to_string(),
                f["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("ENABLE_POD_ENI", "unsupported"),
        ("WARM_IP_TAGRET", "unknown"),
    ] {
        assert!(
            kinds.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {kinds:?}"
        );
    }
    assert!(compat["refused"].is_null(), "{compat}");
    let m = metrics(&tb, "node-a");
    assert!(
        m.contains(r#"awscni_unsupported_env{kind="unsupported",variable="ENABLE_POD_ENI"} 1"#)
            && m.contains(r#"awscni_unsupported_env{kind="unknown",variable="WARM_IP_TAGRET"} 1"#),
        "{m}"
    );

    // The settings read as upstream reads them.
    let env = tb.introspect("node-a", "/v1/ipamd-env-settings");
    let s = &env["settings"];
    assert_eq!(s["custom_network_cfg"], true, "{s}");
    assert_eq!(s["max_eni"], serde_json::Value::Null, "{s}");
    assert_eq!(
        (&s["minimum_ip_target"], &s["warm_prefix_target"]),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "{s}"
    );

    // AWS_VPC_CNI_NODE_PORT_SUPPORT=false: strict rp_filter, no NodePort mark rule on the primary
    // interface, the SNAT path intact; AWS_EXTERNAL_SERVICE_CIDRS: its rule before the pods' ones.
    let ns = tb.netns("node-a");
    let primary = primary_interface(&tb, "node-a");
    let rp = in_ns(
        &ns,
        &[
            "cat",
            &format!("/proc/sys/net/ipv4/conf/{primary}/rp_filter"),
        ],
    );
    assert_eq!(rp.trim(), "1", "rp_filter of {primary}");
    let mangle = in_ns(&ns, &["iptables-save", "-t", "mangle"]);
    assert!(
        !mangle.contains(&format!("-i {primary} ")),
        "NodePort mark rule still there:\n{mangle}"
    );
    assert!(mangle.contains("-i eni+"), "{mangle}");
    let rules = in_ns(&ns, &["ip", "rule", "show"]);
    assert!(
        rules.contains("1535:\tfrom all to 203.0.113.0/24 lookup main"),
        "{rules}"
    );
    // node-b (default environment) keeps upstream's defaults: loose rp_filter.
    let rp_b = in_ns(
        &tb.netns("node-b"),
        &[
            "cat",
            &format!(
                "/proc/sys/net/ipv4/conf/{}/rp_filter",
                primary_interface(&tb, "node-b")
            ),
        ],
    );
    assert_eq!(rp_b.trim(), "2");

    // Serves pods: an address from the ENIConfig's subnet, reached by a pod on the other node.
    let web = tb.pod_add("node-a", "web", &[]).unwrap();
    let ip = pod_address(&web);
    assert!(
        "100.64.0.0/19"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&ip),
        "{ip} is not from us-west-2a's pod subnet"
    );
    let client = tb.pod_add("node-b", "client", &[]).unwrap();
    let _listener = listen_in(&tb.pod_ns("node-a", "web"), SocketAddr::from((ip, 8080)));
    connect_from(
        &tb.pod_ns("node-b", "client"),
        Some(pod_address(&client)),
        SocketAddr::from((ip, 8080)),
    )
    .unwrap_or_else(|e| panic!("client -> web {ip}:8080: {e}"));

    // The kubelet's max pods: the node group kept m5.large's 29; custom networking serves 20.
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node.yaml");
    std::fs::write(
        &node,
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\n  labels: {topology.kubernetes.io/zone: us-west-2a}\nstatus:\n  capacity: {pods: \"29\"}\n",
    )
    .unwrap();
    let out = vpc_testbed(&tb.prefix, &["apply", "-f", node.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = "kubelet max pods is 29 but this node can serve 20 pods";
    assert!(
        wait_for(Duration::from_secs(10), || tb
            .ipamd_log("node-a")
            .contains(said))
        .is_some(),
        "no max-pods warning:\n{}",
        tb.ipamd_log("node-a")
    );
    assert!(tb.ipamd_log("node-a").contains("--max-pods=20"));
    let pool = tb.introspect("node-a", "/v1/pool");
    let check = &pool["kubelet_max_pods"];
    assert_eq!(
        (
            &check["kubelet_max_pods"],
            &check["servable"],
            &check["too_high"]
        ),
        (
            &serde_json::json!(29),
            &serde_json::json!(20),
            &serde_json::json!(true)
        ),
        "{pool}"
    );
    let m = metrics(&tb, "node-a");
    assert!(
        m.contains("awscni_max_pods_too_high 1")
            && m.contains(r#"awscni_max_pods{source="kubelet"} 29"#)
            && m.contains(r#"awscni_max_pods{source="node"} 20"#),
        "{m}"
    );
}

#[test]
fn enable_ipv6_is_refused_the_node_stays_not_ready_saying_why() {
    // node-a refuses IPv6; node-b may not write to EC2, so it holds its pool at what is attached.
    let config = testbed::config::DEFAULT_CONFIG
        .replacen(
            "ipamd_env: {}}",
            r#"ipamd_env: {AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: "false", ENABLE_IPv6: "true"}}"#,
            1,
        )
        .replacen(
            "ipamd_env: {}}",
            r#"ipamd_env: {DISABLE_NETWORK_RESOURCE_PROVISIONING: "true"}}"#,
            1,
        );
    let tb = Testbed::with_agents(Some(&config));
    let held = "DISABLE_NETWORK_RESOURCE_PROVISIONING=true: no EC2 writes";
    assert!(
        wait_for(Duration::from_secs(30), || tb
            .ipamd_log("node-b")
            .contains(held))
        .is_some(),
        "node-b did not hold its pool:\n{}",
        tb.ipamd_log("node-b")
    );
    std::thread::sleep(Duration::from_secs(2));
    let ready = |node: &str| tb.node_dir(node).join("net.d/10-aws.conflist").exists();
    assert!(
        !ready("node-a"),
        "node-a became ready with ENABLE_IPv6=true"
    );
    // Neither node got an ENI beyond its primary.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ec2 = runtime.block_on(tb.ec2());
    for node in ["node-a", "node-b"] {
        let enis = runtime
            .block_on(
                ec2.describe_network_interfaces()
                    .filters(
                        aws_sdk_ec2::types::Filter::builder()
                            .name("attachment.instance-id")
                            .values(tb.instance(node))
                            .build(),
                    )
                    .send(),
            )
            .unwrap();
        assert_eq!(enis.network_interfaces().len(), 1, "{node} got ENIs");
    }
    let target = &tb.introspect("node-a", "/v1/eni-configs")["target"];
    assert_eq!(target["state"], "blocked", "{target}");
    assert!(
        target["reason"]
            .as_str()
            .unwrap()
            .contains("ENABLE_IPv6=true is not supported and refused"),
        "{target}"
    );
    let compat = tb.introspect("node-a", "/v1/compat");
    assert!(
        compat["refused"].as_str().unwrap().contains("ENABLE_IPv6"),
        "{compat}"
    );
    assert!(
        metrics(&tb, "node-a")
            .contains(r#"awscni_unsupported_env{kind="refused",variable="ENABLE_IPv6"} 1"#)
    );
    let log = tb.ipamd_log("node-a");
    assert!(
        log.contains(r#""level":"ERROR""#) && log.contains(r#""event":"UnsupportedSetting""#),
        "{log}"
    );
}
