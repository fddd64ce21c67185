//! Reconciling the pool with the instance, every `IPAMD_RECONCILE_INTERVAL` (60 s by default)
//! and when asked (`Node::reconcile_now`):
//!
//! - EC2 drift: the ENIs and addresses instance metadata reports are compared with the pool
//!   (no EC2 API token spent); a difference is confirmed with one DescribeNetworkInterfaces
//!   before anything changes. An address or ENI EC2 no longer has leaves the pool (pods holding
//!   it are reported: their traffic cannot work any more), one it has that the pool lacks joins
//!   it (an assign or attach whose answer was lost).
//! - ENIs that could not be routed are routed again.
//! - Addresses recovered from the host's routes after a lost checkpoint (`recovered-<ip>` keys)
//!   are kept while their pod's host route and veth exist, and released once the pod is gone.
//!
//! Lifecycle: nothing here is persisted; a restart reconciles from scratch at start-up.

use std::net::Ipv4Addr;

use ec2::{Ec2, MetadataEni, NetworkInterface};
use ipam::{AllocKey, PodMetadata, Time};
use ipnet::Ipv4Net;
use netlink::{MAIN_TABLE, Netlink};
use tracing::{error, info, warn};

use crate::datapath::eni::EniRouting;
use crate::datapath::snat;
use crate::drift::{Drift, Known, Observed, drift};
use crate::manager::Manager;
use crate::node::Node;

/// The allocation key of an address kept from the host's routes: `recovered-<ip>`.
pub const RECOVERED_PREFIX: &str = "recovered-";

fn observed_from_metadata(m: &MetadataEni) -> Observed {
    Observed {
        id: m.interface_id.clone(),
        blocks: m
            .addresses
            .iter()
            .skip(1)
            .map(|ip| Ipv4Net::from(*ip))
            .chain(m.prefixes.iter().copied())
            .collect(),
    }
}

fn observed_from_ec2(e: &NetworkInterface) -> Observed {
    Observed {
        id: e.id.clone(),
        blocks: e
            .secondary_ips
            .iter()
            .map(|ip| Ipv4Net::from(*ip))
            .chain(e.prefixes.iter().copied())
            .collect(),
    }
}

impl<C: Ec2 + 'static> Manager<C> {
    /// The pool as drift compares it, and the interfaces ipamd leaves alone.
    fn known(&self) -> (Vec<Known>, Vec<String>) {
        let st = self.node.lock();
        let views = st.ds.eni_views(Time::now());
        let known = st
            .ds
            .enis()
            .map(|e| Known {
                id: e.id.clone(),
                blocks_ignored: e.primary && self.node.custom_networking(),
                blocks: views
                    .iter()
                    .find(|v| v.id == e.id)
                    .map(|v| v.blocks.iter().copied().collect())
                    .unwrap_or_default(),
            })
            .collect();
        let unmanaged = st.unmanaged.iter().map(|(id, _)| id.clone()).collect();
        (known, unmanaged)
    }

    pub async fn reconcile(&self) {
        self.node
            .metrics
            .reconcile
            .with_label_values(&["metadata"])
            .inc();
        match self.node.metadata.interfaces().await {
            Ok(interfaces) => {
                let (known, unmanaged) = self.known();
                let observed: Vec<Observed> =
                    interfaces.iter().map(observed_from_metadata).collect();
                let seen = drift(&known, &unmanaged, &observed);
                if !seen.is_empty() {
                    self.confirm_and_apply(&seen).await;
                }
            }
            Err(e) => warn!(error = %e, "reading the instance's interfaces from metadata"),
        }
        let unrouted: Vec<String> = self.node.lock().unrouted.iter().cloned().collect();
        for id in unrouted {
            self.route(&id).await;
        }
        reconcile_recovered(&self.node, &self.nl).await;
    }

    /// Acts on the part of `seen` (from metadata) that EC2 confirms.
    async fn confirm_and_apply(&self, seen: &Drift) {
        self.node
            .metrics
            .reconcile
            .with_label_values(&["ec2"])
            .inc();
        let enis = match self
            .ec2
            .instance_enis(&self.node.identity.instance_id)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, drift = ?seen, "confirming a difference with EC2");
                return;
            }
        };
        let attached: Vec<&NetworkInterface> =
            enis.iter().filter(|e| e.attachment.is_some()).collect();
        let (known, unmanaged) = self.known();
        let observed: Vec<Observed> = attached.iter().map(|e| observed_from_ec2(e)).collect();
        let confirmed = seen.confirmed_by(&drift(&known, &unmanaged, &observed));
        if confirmed.is_empty() {
            return;
        }
        warn!(drift = ?confirmed, "the instance's ENIs changed behind ipamd's back");
        for id in &confirmed.gone_enis {
            self.forget_eni(id).await;
        }
        let new: Vec<NetworkInterface> = attached
            .iter()
            .filter(|e| confirmed.new_enis.contains(&e.id))
            .map(|e| (*e).clone())
            .collect();
        self.adopt_enis(&new).await;
        let mut dropped = Vec::new();
        {
            let mut st = self.node.lock();
            let now = Time::now();
            for (eni, block) in &confirmed.gone_blocks {
                if let Ok(d) = st.ds.remove_block(eni, *block, true, now) {
                    self.node
                        .metrics
                        .force_removed_ips
                        .inc_by(1u64 << (32 - block.prefix_len()));
                    dropped.extend(d);
                }
            }
            for (eni, block) in &confirmed.new_blocks {
                if let Err(e) = st.ds.add_block(eni, *block) {
                    warn!(eni, %block, error = %e, "an address EC2 assigned behind ipamd's back");
                }
            }
        }
        self.report_dropped("AddressRemovedOutside", &dropped);
    }

    /// An ENI that is no longer attached leaves the pool with its routing.
    async fn forget_eni(&self, id: &str) {
        let removed = {
            let mut st = self.node.lock();
            let record = st.ds.eni(id).cloned();
            let dropped = st.ds.remove_eni(id, true, Time::now()).unwrap_or_default();
            st.enis.remove(id);
            st.unrouted.remove(id);
            record.map(|r| (r, dropped))
        };
        let Some((record, dropped)) = removed else {
            return;
        };
        self.node.metrics.force_removed_enis.inc();
        // The interface went with the detach; its rule and table routes may not have.
        for e in EniRouting::of(&record, self.node.cli.settings.eni_mtu)
            .remove(&self.nl, None)
            .await
        {
            warn!(eni = id, error = %e, "removing a detached ENI's routing");
        }
        warn!(
            eni = id,
            "an ENI was detached behind ipamd's back: it left the pool"
        );
        self.report_dropped("ENIRemovedOutside", &dropped);
    }

    /// Pods whose address went with the drift: said by name, and the checkpoint updated.
    fn report_dropped(&self, event: &str, dropped: &[(AllocKey, ipam::Allocation)]) {
        if dropped.is_empty() {
            return;
        }
        let pods: Vec<String> = dropped
            .iter()
            .map(|(_, a)| format!("{}/{} ({})", a.metadata.namespace, a.metadata.name, a.ip))
            .collect();
        self.node.events.warning(
            event,
            &format!(
                "EC2 no longer has the address of pods {}: their traffic cannot work; delete them",
                pods.join(", ")
            ),
        );
        let st = self.node.lock();
        if let Err(e) = crate::persist::save(&self.node, &st) {
            error!(error = %e, "writing the checkpoint");
        }
    }
}

/// Pods the checkpoint does not know (it was lost or unusable) still have their host routes
/// (`IP/32 dev <vethPrefix>…`): their addresses are kept as assigned under `recovered-<ip>` so
/// no new pod gets them, until [`reconcile_recovered`] finds the pod gone.
pub async fn recover_from_host_routes(node: &Node, nl: &Netlink) {
    let Some(routes) = pod_routes(node, nl).await else {
        return;
    };
    let mut st = node.lock();
    let held: Vec<Ipv4Addr> = st.ds.allocations().map(|(_, a)| a.ip).collect();
    let mut recovered = 0;
    for ip in routes.into_iter().filter(|ip| !held.contains(ip)) {
        let key = AllocKey::new("aws-cni", &format!("{RECOVERED_PREFIX}{ip}"), "eth0");
        let meta = PodMetadata {
            namespace: String::new(),
            name: "recovered from the host's routes".into(),
        };
        match st.ds.restore(&key, ip, meta, Time::now()) {
            Ok(_) => recovered += 1,
            Err(e) => {
                warn!(%ip, error = %e, "a pod route whose address is not on this node's ENIs")
            }
        }
    }
    if recovered > 0 {
        warn!(
            recovered,
            "addresses of running pods the checkpoint did not know were kept from the host's routes"
        );
        if let Err(e) = crate::persist::save(node, &st) {
            error!(error = %e, "writing the checkpoint");
        }
    }
}

/// At start: checkpointed allocations whose pod has no host route (`IP/32 dev <vethPrefix>…`,
/// the last thing the plugin's ADD makes and the first its DEL removes) belong to pods that are
/// gone — an ADD whose reply a crash lost, or a DEL that ran while ipamd was down and cleaned up
/// from prevResult. Runtimes without CNI GC (containerd 1.6/1.7) never say so again, so they
/// are released here, into cooldown.
pub async fn release_unrouted(node: &Node, nl: &Netlink) {
    let Some(live) = pod_routes(node, nl).await else {
        return;
    };
    let mut st = node.lock();
    let gone: Vec<(AllocKey, Ipv4Addr, String)> = st
        .ds
        .allocations()
        .filter(|(_, a)| !live.contains(&a.ip))
        .map(|(k, a)| {
            let pod = format!("{}/{}", a.metadata.namespace, a.metadata.name);
            (k.clone(), a.ip, pod)
        })
        .collect();
    for (key, ip, pod) in &gone {
        st.ds.release(key, Time::now());
        warn!(%key, %ip, %pod, "released: the pod has no route on the node (gone while ipamd was down)");
    }
    if !gone.is_empty()
        && let Err(e) = crate::persist::save(node, &st)
    {
        error!(error = %e, "writing the checkpoint");
    }
}

/// Releases the recovered addresses whose pod is gone: no host route to it through a pod veth.
pub async fn reconcile_recovered(node: &Node, nl: &Netlink) {
    let recovered: Vec<(AllocKey, Ipv4Addr)> = node
        .lock()
        .ds
        .allocations()
        .filter(|(k, _)| k.container_id.starts_with(RECOVERED_PREFIX))
        .map(|(k, a)| (k.clone(), a.ip))
        .collect();
    if recovered.is_empty() {
        return;
    }
    let Some(live) = pod_routes(node, nl).await else {
        return;
    };
    let mut st = node.lock();
    let mut released = 0;
    for (key, ip) in recovered.iter().filter(|(_, ip)| !live.contains(ip)) {
        if st.ds.release(key, Time::now()).is_some() {
            info!(%ip, key = %key, "the pod of a recovered address is gone: address released");
            released += 1;
        }
    }
    if released > 0
        && let Err(e) = crate::persist::save(node, &st)
    {
        error!(error = %e, "writing the checkpoint");
    }
}

/// Addresses with a host route `IP/32 dev <vethPrefix>…` in main: the node's live pods.
async fn pod_routes(node: &Node, nl: &Netlink) -> Option<Vec<Ipv4Addr>> {
    let prefix = &node.cli.settings.veth_prefix;
    let (routes, links) = match (nl.routes(MAIN_TABLE).await, nl.links().await) {
        (Ok(r), Ok(l)) => (r, l),
        (Err(e), _) | (_, Err(e)) => {
            error!(error = %e, "reading the node's pod routes");
            return None;
        }
    };
    Some(
        routes
            .iter()
            .filter(|r| r.dst.prefix_len() == 32 && r.gateway.is_none())
            .filter(|r| {
                r.oif
                    .and_then(|i| links.iter().find(|l| l.index == i))
                    .is_some_and(|l| l.name.starts_with(prefix.as_str()))
            })
            .map(|r| r.dst.addr())
            .collect(),
    )
}

/// Re-reads the VPC's blocks from instance metadata (no EC2 API call) every
/// `IPAMD_VPC_REFRESH_INTERVAL`: a block associated after start-up (custom networking's secondary
/// block) joins the SNAT exclusions without a restart.
pub async fn follow_vpc_blocks(
    node: std::sync::Arc<Node>,
    nl: std::sync::Arc<Netlink>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = std::time::Duration::from_secs(node.cli.options.vpc_refresh_interval);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::manager::jittered(every)) => {}
            _ = stop.changed() => return,
        }
        vpc_blocks_changed(&node, &nl).await;
    }
}

/// The VPC's blocks from instance metadata; a change re-applies the SNAT exclusions.
async fn vpc_blocks_changed(node: &Node, nl: &Netlink) {
    let id = &node.identity;
    let blocks = match node.metadata.vpc_cidrs(&id.primary_mac).await {
        Ok(b) if !b.is_empty() => b,
        Ok(_) => return,
        Err(e) => {
            warn!(error = %e, "re-reading the VPC's blocks");
            return;
        }
    };
    let (mut sorted, mut known) = (blocks.clone(), node.vpc_cidrs());
    sorted.sort();
    known.sort();
    if sorted == known {
        return;
    }
    info!(vpc = id.vpc_id, blocks = ?blocks, "the VPC's CIDR blocks changed");
    let mac = netlink::parse_mac(&id.primary_mac).unwrap_or([0; 6]);
    let primary_if = match nl.link_by_mac(&mac).await {
        Ok(Some(l)) => l.name,
        Ok(None) => {
            error!(
                mac = id.primary_mac,
                "no primary interface for the SNAT rules"
            );
            return;
        }
        Err(e) => {
            error!(error = %e, "the primary interface for the SNAT rules");
            return;
        }
    };
    if let Err(e) = snat::reconcile(&node.cli.settings, &primary_if, id.primary_ip, &blocks) {
        error!(error = %e, "SNAT rules for the VPC's new blocks");
        return;
    }
    if let Ok(mut b) = node.vpc_blocks.write() {
        *b = blocks;
    }
}
