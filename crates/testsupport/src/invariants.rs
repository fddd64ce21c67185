//! The quality spec's bookkeeping invariants of a node, checked against EC2 and the runtime's
//! pod records: no address held twice, every live pod keeps its address, nothing held for a
//! pod that is gone, the pool equal to what the node's ENIs hold in EC2, no leaked ENI.
//! Necessary, never sufficient: tests that use them also judge pods by traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use testbed::pods;

use crate::testbed::Testbed;

const INSTANCE_TAG: &str = "node.k8s.amazonaws.com/instance_id";
/// The allocation key prefix of an address ipamd kept from the host's routes (lost checkpoint).
const RECOVERED: &str = "recovered-";

/// The pods the runtime (the testbed's records) runs on `node`.
pub fn live_pods(tb: &Testbed, node: &str) -> Vec<pods::PodRecord> {
    pods::records(&tb.prefix)
        .into_iter()
        .filter(|r| r.node == node)
        .collect()
}

/// The pool as ipamd's introspection shows it: address → (ENI, holding pod).
pub struct Pool {
    pub addresses: Vec<(Ipv4Addr, String, Option<String>)>,
    pub enis: BTreeSet<String>,
}

/// An error is a reading to retry: a restarted ipamd may not serve introspection yet.
pub fn pool(tb: &Testbed, node: &str) -> Result<Pool, String> {
    let view = tb
        .introspection(node, |c| c.enis())
        .map_err(|e| format!("introspection: {e}"))?;
    let mut addresses = Vec::new();
    let mut enis = BTreeSet::new();
    for e in view.enis {
        for a in &e.addresses {
            // Kept from the host's routes: the pod is the live one with that address.
            let recovered = a
                .key
                .as_ref()
                .is_some_and(|k| k.container_id.starts_with(RECOVERED));
            let pod = if recovered {
                Some(format!("{RECOVERED}{}", a.address))
            } else {
                a.pod.clone()
            };
            addresses.push((a.address, e.id.clone(), pod));
        }
        enis.insert(e.id);
    }
    Ok(Pool { addresses, enis })
}

/// EC2's view of the node: attached ENIs with their pool addresses (secondaries and every
/// address of each prefix), and our tagged ENIs that are not attached (leaks).
/// An error is a reading to retry: the fault suite fails the test's own calls too.
pub async fn ec2_view(
    ec2: &aws_sdk_ec2::Client,
    instance: &str,
) -> Result<(BTreeMap<String, BTreeSet<Ipv4Addr>>, Vec<String>), String> {
    let attached = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("reading the node's ENIs: {e:?}"))?;
    let mut enis = BTreeMap::new();
    for e in attached.network_interfaces() {
        let mut set: BTreeSet<Ipv4Addr> = e
            .private_ip_addresses()
            .iter()
            .filter(|a| !a.primary().unwrap_or(false))
            .map(|a| a.private_ip_address().unwrap().parse().unwrap())
            .collect();
        for p in e.ipv4_prefixes() {
            let net: ipnet::Ipv4Net = p.ipv4_prefix().unwrap().parse().unwrap();
            set.extend(net.hosts().chain([net.network(), net.broadcast()]));
        }
        enis.insert(e.network_interface_id().unwrap().to_string(), set);
    }
    let tagged = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name(format!("tag:{INSTANCE_TAG}"))
                .values(instance)
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("reading the node's tagged ENIs: {e:?}"))?;
    let leaked = tagged
        .network_interfaces()
        .iter()
        .filter(|e| {
            e.attachment()
                .is_none_or(|a| a.instance_id() != Some(instance))
        })
        .map(|e| e.network_interface_id().unwrap().to_string())
        .collect();
    Ok((enis, leaked))
}

/// The quality spec's invariants; empty when they all hold.
pub async fn violations(tb: &Testbed, ec2: &aws_sdk_ec2::Client, node: &str) -> Vec<String> {
    let pool = match pool(tb, node) {
        Ok(p) => p,
        Err(e) => return vec![e],
    };
    let mut out = Vec::new();
    let live = live_pods(tb, node);
    // No address held twice, no pod holding two.
    let mut seen: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    let mut held: BTreeMap<&str, Vec<Ipv4Addr>> = BTreeMap::new();
    for (ip, _, pod) in &pool.addresses {
        *seen.entry(*ip).or_default() += 1;
        if let Some(p) = pod {
            held.entry(p.as_str()).or_default().push(*ip);
        }
    }
    out.extend(
        seen.iter()
            .filter(|(_, n)| **n > 1)
            .map(|(ip, n)| format!("{ip} is in the pool {n} times")),
    );
    out.extend(
        held.iter()
            .filter(|(_, ips)| ips.len() > 1)
            .map(|(p, ips)| format!("pod {p} holds {ips:?}")),
    );
    let mut pod_ips = BTreeMap::new();
    for r in &live {
        if let Some(other) = pod_ips.insert(r.ip.clone(), &r.name) {
            out.push(format!("pods {other} and {} both have {}", r.name, r.ip));
        }
    }
    // Every live pod keeps its address; no address is held for a pod that is gone.
    for r in &live {
        let want = format!("default/{}", r.name);
        let ip: Ipv4Addr = r.ip.parse().unwrap();
        let recovered = format!("{RECOVERED}{ip}");
        if !pool.addresses.iter().any(|(a, _, p)| {
            *a == ip && (p.as_deref() == Some(want.as_str()) || p.as_deref() == Some(&recovered))
        }) {
            out.push(format!("live pod {} lost its address {ip}", r.name));
        }
    }
    for (ip, _, pod) in &pool.addresses {
        if let Some(p) = pod
            && !live.iter().any(|r| {
                format!("default/{}", r.name) == *p || format!("{RECOVERED}{}", r.ip) == *p
            })
        {
            out.push(format!("{ip} is held for {p}, which is gone"));
        }
    }
    // Every address on the node's ENIs is in the pool (assigned or free), and only those.
    let (attached, leaked) = match ec2_view(ec2, &tb.instance(node)).await {
        Ok(view) => view,
        Err(e) => {
            out.push(e);
            return out;
        }
    };
    let on_enis: BTreeSet<Ipv4Addr> = attached.values().flatten().copied().collect();
    let pooled: BTreeSet<Ipv4Addr> = pool.addresses.iter().map(|(a, _, _)| *a).collect();
    out.extend(
        on_enis
            .difference(&pooled)
            .map(|a| format!("{a} is on an ENI but not in the pool")),
    );
    out.extend(
        pooled
            .difference(&on_enis)
            .map(|a| format!("{a} is in the pool but on no ENI")),
    );
    for id in attached.keys() {
        if !pool.enis.contains(id) {
            out.push(format!("attached ENI {id} is unknown to ipamd"));
        }
    }
    out.extend(
        leaked
            .iter()
            .map(|id| format!("ENI {id} leaked (detached)")),
    );
    out
}

/// Waits for the invariants (ipamd converges after a restart); panics with what still fails.
pub async fn assert_invariants(
    tb: &Testbed,
    ec2: &aws_sdk_ec2::Client,
    node: &str,
    limit: Duration,
    what: &str,
) {
    let start = Instant::now();
    // A failed reading says nothing: report the last real one.
    let mut last = Vec::new();
    loop {
        let v = violations(tb, ec2, node).await;
        if v.is_empty() {
            return;
        }
        if !v[0].starts_with("reading ") && !v[0].starts_with("introspection") {
            last = v;
        }
        if start.elapsed() > limit {
            let log = tb.ipamd_log(node);
            panic!(
                "{what}: after {limit:?}:\n  {}\nipamd log tail:\n{}",
                last.join("\n  "),
                &log[log.len().saturating_sub(4000)..]
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
