//! The reliability targets of the quality spec on the testbed: `kill -9` of ipamd during pod
//! churn (`VPC_CRASH_KILLS` kills, `make soak` runs 100+), and a fresh node under EC2 faults.
//! After each round the node's invariants are checked against EC2 and the pods' records.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use testbed::pods::{self, PodOptions};
use testsupport::invariants;
use testsupport::testbed::*;

const NODE: &str = "node-a";

/// One m5.large node with custom networking; `env` is its ipamd's extra environment.
fn one_node(env: &str) -> String {
    format!(
        r#"
region: us-west-2
vpc: {{cidr: 10.0.0.0/16, secondary_cidrs: [100.64.0.0/16]}}
subnets:
  - {{name: nodes-a, az: us-west-2a, cidr: 10.0.1.0/24}}
  - {{name: pods-a,  az: us-west-2a, cidr: 100.64.0.0/19}}
security_groups:
  - {{name: pods, ingress: [{{protocol: tcp, ports: "8080", from: "100.64.0.0/16"}}]}}
eniconfigs:
  - {{name: us-west-2a, subnet: pods-a, security_groups: [pods]}}
nodes:
  - {{name: {NODE}, instance_type: m5.large, subnet: nodes-a, labels: {{topology.kubernetes.io/zone: us-west-2a}}, ipamd_env: {env}}}
ipamd_env: {{AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: "true", ENI_CONFIG_LABEL_DEF: topology.kubernetes.io/zone}}
"#
    )
}

/// A small deterministic generator (splitmix64): a failing run is replayed with its seed.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("VPC_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("VPC_CRASH_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Pods the churn has asked for: made (recorded by the runtime) or whose ADD failed (a runtime
/// then deletes the sandbox, which the next round does).
#[derive(Default)]
struct Runtime {
    failed_adds: BTreeSet<String>,
}

fn live_pods(tb: &Testbed) -> Vec<pods::PodRecord> {
    invariants::live_pods(tb, NODE)
}

fn add(tb: &Testbed, name: &str) -> Result<(), String> {
    let options = PodOptions {
        conflist: None,
        cni_version: None,
    };
    pods::add(&tb.prefix, NODE, name, "default", &options)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn del(tb: &Testbed, name: &str) -> Result<(), String> {
    pods::del(&tb.prefix, NODE, name, "default").map_err(|e| e.to_string())
}

/// Adds or deletes random pods among `names` until `stop`; what it leaves to clean up.
fn churn(tb: &Testbed, names: &[String], seed: u64, stop: &AtomicBool) -> Runtime {
    let mut rng = Rng(seed);
    let mut rt = Runtime::default();
    while !stop.load(Ordering::SeqCst) {
        let name = &names[rng.below(names.len() as u64) as usize];
        let live = live_pods(tb).iter().any(|r| &r.name == name);
        if live {
            // DEL succeeds even without ipamd (the spec); a failure is a finding.
            del(tb, name).unwrap_or_else(|e| panic!("DEL {name} failed during churn: {e}"));
        } else if add(tb, name).is_err() {
            rt.failed_adds.insert(name.clone());
        } else {
            rt.failed_adds.remove(name);
        }
    }
    rt
}

fn kills() -> usize {
    std::env::var("VPC_CRASH_KILLS")
        .ok()
        .map(|v| v.parse().expect("VPC_CRASH_KILLS must be a number"))
        .unwrap_or(12)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipamd_killed_during_pod_churn_keeps_the_invariants() {
    // A warm target of two addresses: the churn makes ipamd assign and unassign addresses and
    // create and release the second pod ENI all the time, so kills land in those calls too.
    let env = "{WARM_IP_TARGET: \"2\", IP_COOLDOWN_PERIOD: \"1\", IPAMD_ENI_MIN_AGE: \"1\", \
               IPAMD_DECREASE_INTERVAL: \"1\", LEAKED_ENI_CLEANUP_INTERVAL: \"1\", LEAKED_ENI_MIN_AGE: \"3\"}";
    let tb = Arc::new(Testbed::with_agents(Some(&one_node(env))));
    let ec2 = tb.ec2().await;
    let mut rng = Rng::from_env();
    // 14 names on 18 pod addresses (two pod ENIs of 9).
    let names: Arc<Vec<String>> = Arc::new((0..14).map(|i| format!("c{i}")).collect());
    let mut ipamd = Ipamd(None);
    let rounds = kills();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (tb, names, stop) = (tb.clone(), names.clone(), stop.clone());
            let seed = rng.next();
            std::thread::spawn(move || churn(&tb, &names, seed, &stop))
        };
        tokio::time::sleep(Duration::from_millis(200 + rng.below(1500))).await;
        let child = tb.restart_ipamd(NODE, ipamd.0.take());
        ipamd.0 = Some(child);
        stop.store(true, Ordering::SeqCst);
        let rt = tokio::task::spawn_blocking(move || worker.join())
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("round {round}: the churn failed"));
        // The runtime's part: a sandbox whose ADD failed is deleted; GC releases what a DEL
        // made while ipamd was down could not.
        for name in &rt.failed_adds {
            if !live_pods(&tb).iter().any(|r| &r.name == name) {
                del(&tb, name).unwrap_or_else(|e| panic!("round {round}: DEL {name}: {e}"));
            }
        }
        let mut gc = pods::gc(&tb.prefix, NODE);
        for _ in 0..50 {
            if gc.is_ok() {
                break;
            }
            // ipamd's introspection, which GC reads, may still be starting.
            tokio::time::sleep(Duration::from_millis(100)).await;
            gc = pods::gc(&tb.prefix, NODE);
        }
        gc.unwrap_or_else(|e| panic!("round {round}: GC: {e}"));
        invariants::assert_invariants(
            &tb,
            &ec2,
            NODE,
            Duration::from_secs(30),
            &format!("round {round} of {rounds}"),
        )
        .await;
        let p = invariants::pool(&tb, NODE).unwrap();
        eprintln!(
            "round {round}: invariants hold with {} live pods, {} ENIs, {} pool addresses; {} ADDs failed",
            live_pods(&tb).len(),
            p.enis.len(),
            p.addresses.len(),
            rt.failed_adds.len()
        );
    }
    assert!(
        ipamd.0.as_mut().unwrap().try_wait().unwrap().is_none(),
        "ipamd exited by itself"
    );
}

/// The metrics page of the node's ipamd.
fn metrics(tb: &Testbed) -> String {
    let ns = netns::Netns::named(&tb.netns(NODE)).unwrap();
    ns.run(|| {
        let mut s = std::net::TcpStream::connect("127.0.0.1:61678")?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok::<_, std::io::Error>(text)
    })
    .unwrap()
    .unwrap()
}

/// The sum of a counter's samples whose labels contain `label`.
fn counter(metrics: &str, name: &str, label: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_under_ec2_faults_gets_every_pod_an_address() {
    // Warm addresses rather than ENIs, quick decreases: the pool grows and shrinks (assign,
    // unassign, create, attach, detach, delete) under the faults.
    let env = "{WARM_IP_TARGET: \"3\", IP_COOLDOWN_PERIOD: \"1\", IPAMD_ENI_MIN_AGE: \"1\", \
               IPAMD_DECREASE_INTERVAL: \"1\", LEAKED_ENI_CLEANUP_INTERVAL: \"2\", LEAKED_ENI_MIN_AGE: \"10\"}";
    let tb = Testbed::without_agents(&one_node(env));
    let control = |method: &str, path: &str, body: serde_json::Value| {
        let (status, reply) = ::testbed::emulator::http_json(
            tb.port(),
            method,
            path,
            Some(body),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(status, 200, "{method} {path}: {reply}");
    };
    // Tight buckets on the calls a filling pool makes, so throttling really happens.
    let bucket = serde_json::json!({"burst": 2, "rate": 1});
    control(
        "POST",
        "/_testbed/throttle",
        serde_json::json!({"enabled": true, "buckets": {
            "CreateNetworkInterface": bucket, "AttachNetworkInterface": bucket,
            "AssignPrivateIpAddresses": bucket, "ModifyNetworkInterfaceAttribute": bucket,
            "DescribeNetworkInterfaces": {"burst": 5, "rate": 2},
        }}),
    );
    control(
        "POST",
        "/_testbed/faults",
        serde_json::json!({"action": "*", "error_code": "InternalError", "http_status": 500,
                           "rate": 0.2, "latency_ms": 50}),
    );
    let ec2 = tb.ec2().await;
    let ipamd = Ipamd(Some(tb.start_ipamd(NODE)));
    // 12 pods need both pod ENIs; each ADD is retried as a kubelet would.
    let start = Instant::now();
    for i in 0..12 {
        let name = format!("f{i}");
        while let Err(e) = add(&tb, &name) {
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "pod {name} got no address: {e}\n{}",
                tb.ipamd_log(NODE)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    // Every pod has its own address; nothing leaked, with the faults still on.
    invariants::assert_invariants(&tb, &ec2, NODE, Duration::from_secs(60), "under faults").await;
    assert_eq!(live_pods(&tb).len(), 12);
    // Ten pods go: the second pod ENI is released, still under faults, and its first five
    // detaches fail outright (no SDK retry): ipamd must not lose the ENI it failed to release.
    control(
        "POST",
        "/_testbed/faults",
        serde_json::json!({"action": "DetachNetworkInterface", "error_code": "IncorrectState",
                           "rate": 1.0, "count": 5}),
    );
    for i in 2..12 {
        del(&tb, &format!("f{i}")).unwrap();
    }
    let shrunk = wait_for(Duration::from_secs(120), || {
        invariants::pool(&tb, NODE).is_ok_and(|p| p.enis.len() == 2)
    });
    assert!(
        shrunk.is_some(),
        "the pool did not shrink to one pod ENI\n{}",
        tb.ipamd_log(NODE)
    );
    invariants::assert_invariants(
        &tb,
        &ec2,
        NODE,
        Duration::from_secs(60),
        "after deletes under faults",
    )
    .await;
    assert_eq!(
        tb.calls()["DetachNetworkInterface"]["error_codes"]["IncorrectState"],
        5,
        "the failing detaches were not exercised"
    );
    let pid = ipamd.0.as_ref().unwrap().id() as i32;
    assert!(process_running(pid), "ipamd crashed under faults");
    let calls = tb.calls();
    let injected: u64 = calls
        .as_object()
        .unwrap()
        .values()
        .filter_map(|c| c["error"].as_u64())
        .sum();
    assert!(injected > 0, "no EC2 call failed: {calls}");
    let page = metrics(&tb);
    let seen = counter(&page, "awscni_aws_api_error_count", "")
        + counter(&page, "awscni_aws_api_attempt_error_count", "");
    assert!(
        seen > 0,
        "the emulator failed {injected} calls but ipamd's metrics show none:\n{page}"
    );
    eprintln!("{injected} EC2 calls failed (emulator), {seen} failures in ipamd's metrics");
}
