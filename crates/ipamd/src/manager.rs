//! The pool manager: keeps the warm pool by asking EC2, one decision at a time, and follows the
//! ENIConfig. ADD and DEL never wait for it; an ADD that finds the pool empty wakes it at once.
//!
//! Lifecycle: it holds nothing of its own across a restart; start-up rebuilds the pool from EC2
//! (every attached ENI, routed again with the subnet instance metadata reports) and the
//! checkpoint. While a subnet is full it sleeps until the back-off ends or something changes;
//! every `IPAMD_RECONCILE_INTERVAL` it reconciles the pool with the instance (`reconcile.rs`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ec2::{AddressRequest, CreateEni, Ec2, Ec2Error, ErrorClass, NetworkInterface, SubnetQuery};
use eniconfig::{GroupFacts, NodeFacts, SubnetFacts, select, validate};
use ipam::{Eni, PoolAction, Time};
use ipamd_settings::SgFallback;
use ipnet::Ipv4Net;
use netlink::Netlink;
use tracing::{error, info, warn};

use crate::datapath::eni::{EniRouting, wait_for_link};
use crate::node::{EniFacts, Node, NodeState, Target};

pub const INSTANCE_TAG: &str = "node.k8s.amazonaws.com/instance_id";
pub const CREATED_AT_TAG: &str = "node.k8s.amazonaws.com/createdAt";
pub const CLUSTER_TAG: &str = "cluster.k8s.amazonaws.com/name";
pub const NO_MANAGE_TAG: &str = "node.k8s.amazonaws.com/no_manage";
pub const DESCRIPTION_PREFIX: &str = "aws-K8S-";
const LINK_WAIT: Duration = Duration::from_secs(10);

pub struct Manager<C: Ec2> {
    pub node: Arc<Node>,
    pub ec2: Arc<C>,
    pub nl: Arc<Netlink>,
}

/// What one pool round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Something changed: decide again at once.
    Progress,
    /// Nothing to do, or a failure already waited for: look again after the pool interval.
    Idle,
    /// Nothing can be done before this much time has passed (a subnet's back-off); a wake-up
    /// (a release, a config change) ends the wait sooner.
    Wait(Duration),
}

/// Adds an ENI EC2 reported to the datastore, with its addresses. `subnet_cidr` is the ENI's
/// subnet as EC2 reports it (instance metadata or DescribeSubnets): the routing of the ENI's
/// table is derived from it. Returns whether the ENI is new to the datastore.
pub fn adopt(
    node: &Node,
    st: &mut NodeState,
    eni: &NetworkInterface,
    subnet_cidr: Ipv4Net,
    now: Time,
) -> bool {
    let Some(att) = &eni.attachment else {
        return false;
    };
    if att.network_card != 0 || eni.tags.get(NO_MANAGE_TAG).is_some_and(|v| v == "true") {
        if !st.unmanaged.iter().any(|(id, _)| *id == eni.id) {
            let device = (att.network_card == 0).then_some(att.device_index);
            st.unmanaged.push((eni.id.clone(), device));
        }
        return false;
    }
    let primary = att.device_index == 0;
    let created_at = eni
        .tags
        .get(CREATED_AT_TAG)
        .and_then(|t| Time::parse_rfc3339(t))
        .unwrap_or(now);
    let record = Eni {
        id: eni.id.clone(),
        device_number: att.device_index,
        network_card: att.network_card,
        primary,
        excluded: primary && node.custom_networking(),
        subnet_id: eni.subnet_id.clone(),
        subnet_cidr,
        security_groups: eni.security_groups.clone(),
        mac: eni.mac.clone(),
        primary_ip: eni.primary_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        created_at,
    };
    let fresh = st.ds.eni(&eni.id).is_none();
    if fresh {
        let _ = st.ds.add_eni(record);
    }
    st.enis.insert(
        eni.id.clone(),
        EniFacts {
            subnet_id: eni.subnet_id.clone(),
            security_groups: eni.security_groups.clone(),
        },
    );
    // The primary's existing secondaries are not handed out under custom networking.
    if primary && node.custom_networking() {
        return fresh;
    }
    let blocks = eni
        .secondary_ips
        .iter()
        .map(|ip| Ipv4Net::from(*ip))
        .chain(eni.prefixes.iter().copied());
    for b in blocks {
        let _ = st.ds.add_block(&eni.id, b);
    }
    fresh
}

impl<C: Ec2 + 'static> Manager<C> {
    /// Runs until shutdown: one pool decision per round, immediately again after a change;
    /// the reconcile with the instance every `IPAMD_RECONCILE_INTERVAL`.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut objects = self.node.objects.clone();
        let every = self.node.cli.options.reconcile_interval();
        let mut next_reconcile = Instant::now() + jittered(every);
        loop {
            if *shutdown.borrow() {
                return;
            }
            if Instant::now() >= next_reconcile {
                self.reconcile().await;
                next_reconcile = Instant::now() + jittered(every);
            }
            let round = self.round().await;
            self.node.lock().rounds += 1;
            self.node.changed.notify_one();
            let pause = match round {
                Round::Progress => Duration::ZERO,
                Round::Idle => self.node.cli.options.pool_interval(),
                Round::Wait(d) => d,
            }
            .min(next_reconcile.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.node.wake.notified() => {}
                _ = self.node.reconcile_now.notified() => next_reconcile = Instant::now(),
                _ = objects.changed() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One decision and its EC2 effect.
    pub async fn round(&self) -> Round {
        self.refresh_target().await;
        let now = Time::now();
        let (action, target) = {
            let st = self.node.lock();
            if st.shutting_down {
                return Round::Idle;
            }
            let state = self.node.pool_state(&st, now);
            self.node
                .metrics
                .observe_pool(&state.stats, st.enis.len() + st.unmanaged.len());
            (
                ipam::decide(&self.node.pool, &state, now),
                st.target.clone(),
            )
        };
        if let Some(why) = crate::compat::held_now(&self.node, &action) {
            tracing::debug!(?action, why, "pool action held back by the settings");
            return Round::Idle;
        }
        let result = match &action {
            PoolAction::Steady => return Round::Idle,
            PoolAction::AtCapacity { short } => {
                tracing::debug!(
                    short,
                    "pool below target but the node is at its ENI and address limits"
                );
                return Round::Idle;
            }
            PoolAction::AddToEni { eni_id, slots } => {
                let subnet = self.node.lock().ds.eni(eni_id).map(|e| e.subnet_id.clone());
                if let Some(wait) = subnet.and_then(|s| self.backing_off(&s, now)) {
                    return Round::Wait(wait);
                }
                self.grow_eni(eni_id, *slots).await
            }
            PoolAction::CreateEni { slots } => {
                return match target {
                    Some(Target::Ready {
                        subnets,
                        security_groups,
                        ..
                    }) => self.grow_new_eni(&subnets, &security_groups, *slots).await,
                    _ => Round::Idle,
                };
            }
            PoolAction::ReleaseBlocks { eni_id, blocks } => {
                self.release_blocks(eni_id, blocks).await
            }
            PoolAction::ReleaseEni { eni_id } => self.release_eni(eni_id).await,
        };
        match result {
            Ok(()) => {
                self.node.lock().last_ec2_error = None;
                Round::Progress
            }
            Err(e) => self.on_error(&e, &action).await,
        }
    }

    /// How long `subnet` is still left alone after it reported no free addresses.
    pub(crate) fn backing_off(&self, subnet: &str, now: Time) -> Option<Duration> {
        let mut st = self.node.lock();
        let until = *st.subnet_backoff.get(subnet)?;
        if now < until {
            return Some(until.since(now));
        }
        st.subnet_backoff.remove(subnet);
        drop(st);
        self.node
            .metrics
            .subnet_backoff
            .with_label_values(&[subnet])
            .set(0);
        info!(
            subnet,
            "the subnet's back-off is over: asking it for addresses again"
        );
        None
    }

    /// A subnet without free addresses is left alone for `IPAMD_SUBNET_FULL_BACKOFF`, said once
    /// per back-off as an event, in metrics and in introspection.
    pub(crate) fn subnet_full(&self, subnet_id: &str, e: &Ec2Error) -> Duration {
        let backoff = self.node.cli.options.subnet_full_backoff();
        let until = Time::now().plus(backoff);
        self.node
            .lock()
            .subnet_backoff
            .insert(subnet_id.to_string(), until);
        self.node
            .metrics
            .subnet_backoff
            .with_label_values(&[subnet_id])
            .set(1);
        self.node.events.warning(
            "SubnetFull",
            &format!(
                "subnet {subnet_id} is out of addresses ({e}): no pod address from it for {} s",
                backoff.as_secs()
            ),
        );
        backoff
    }

    /// Counts and keeps a failed EC2 call (metrics, introspection, the log).
    pub(crate) fn record_error(&self, e: &Ec2Error) {
        error!(error = %e, "pool manager");
        self.node
            .metrics
            .errors
            .with_label_values(&[e.action()])
            .inc();
        self.node.lock().last_ec2_error = Some(e.to_string());
    }

    pub(crate) async fn on_error(&self, e: &Ec2Error, action: &PoolAction) -> Round {
        self.record_error(e);
        match e.class() {
            ErrorClass::SubnetFull => {
                // A new ENI's refusal is handled where its subnet was chosen (subnets.rs).
                let subnet = match action {
                    PoolAction::AddToEni { eni_id, .. } => {
                        self.node.lock().ds.eni(eni_id).map(|e| e.subnet_id.clone())
                    }
                    _ => None,
                };
                match subnet {
                    Some(s) if e.no_free_prefix() && self.node.pool.prefix_delegation => {
                        self.no_free_prefix(&s, e)
                    }
                    Some(s) => Round::Wait(self.subnet_full(&s, e)),
                    None => Round::Idle,
                }
            }
            // Still throttled after the node's shared back-off (pacing.rs), or unreachable:
            // a jittered pause, so a fleet in the same state does not come back in step.
            ErrorClass::Throttled | ErrorClass::Transport => {
                tokio::time::sleep(jittered(Duration::from_secs(2))).await;
                Round::Idle
            }
            ErrorClass::LimitExceeded => {
                self.resync().await;
                Round::Idle
            }
            _ => Round::Idle,
        }
    }

    /// Re-reads the instance's ENIs from EC2 (after a limit error: our picture was wrong).
    pub async fn resync(&self) {
        self.node
            .metrics
            .reconcile
            .with_label_values(&["resync"])
            .inc();
        match self
            .ec2
            .instance_enis(&self.node.identity.instance_id)
            .await
        {
            Ok(enis) => self.adopt_enis(&enis).await,
            Err(e) => warn!(error = %e, "re-reading the instance's ENIs"),
        }
    }

    /// The subnet CIDR of an attached ENI, as EC2 reports it: instance metadata first (it costs
    /// no EC2 API token), then DescribeSubnets.
    async fn subnet_cidr(&self, eni: &NetworkInterface) -> Option<Ipv4Net> {
        if eni.id == self.node.identity.primary_eni_id {
            return Some(self.node.identity.subnet_cidr);
        }
        let known = self
            .node
            .lock()
            .ds
            .enis()
            .find(|e| e.subnet_id == eni.subnet_id)
            .map(|e| e.subnet_cidr);
        if known.is_some() {
            return known;
        }
        let described = self
            .node
            .lock()
            .subnets
            .facts
            .get(&eni.subnet_id)
            .map(|f| f.cidr);
        if described.is_some() {
            return described;
        }
        match self.node.metadata.interface(&eni.mac).await {
            Ok(m) if m.interface_id == eni.id => return Some(m.subnet_cidr),
            Ok(m) => warn!(
                eni = eni.id,
                mac = eni.mac,
                metadata = m.interface_id,
                "instance metadata names another interface for this MAC"
            ),
            Err(e) => warn!(eni = eni.id, error = %e, "the ENI's subnet from instance metadata"),
        }
        match self.ec2.subnet(&eni.subnet_id).await {
            Ok(Some(s)) => Some(s.cidr),
            Ok(None) => {
                error!(
                    eni = eni.id,
                    subnet = eni.subnet_id,
                    "EC2 does not know the ENI's subnet"
                );
                None
            }
            Err(e) => {
                error!(eni = eni.id, error = %e, "the ENI's subnet from EC2");
                None
            }
        }
    }

    /// Adds every attached ENI EC2 reported to the pool, and routes those new to it. An ENI whose
    /// subnet cannot be learnt, or whose interface cannot be routed, serves no pod (excluded)
    /// until a later reconcile manages it: a pod must never get an address that is not routed.
    pub async fn adopt_enis(&self, enis: &[NetworkInterface]) {
        for eni in enis.iter().filter(|e| e.attachment.is_some()) {
            let known = self.node.lock().ds.eni(&eni.id).is_some();
            let cidr = if known {
                self.node.lock().ds.eni(&eni.id).map(|e| e.subnet_cidr)
            } else {
                self.subnet_cidr(eni).await
            };
            let Some(cidr) = cidr else {
                continue;
            };
            let fresh = {
                let mut st = self.node.lock();
                adopt(&self.node, &mut st, eni, cidr, Time::now())
            };
            if fresh {
                self.route(&eni.id).await;
            }
        }
    }

    /// Routes a pooled non-primary ENI (idempotent); on failure it serves no pod until routed.
    pub async fn route(&self, eni_id: &str) {
        let Some(record) = self.node.lock().ds.eni(eni_id).cloned() else {
            return;
        };
        if record.primary || record.network_card != 0 {
            return;
        }
        let routing = EniRouting::of(&record, self.node.cli.settings.eni_mtu);
        let routed = async {
            let link = wait_for_link(&self.nl, &record.mac, LINK_WAIT).await?;
            routing.apply(&self.nl, &link).await
        }
        .await;
        let mut st = self.node.lock();
        match routed {
            Ok(()) => {
                if st.unrouted.remove(eni_id) {
                    let _ = st.ds.set_excluded(eni_id, false);
                    info!(eni = eni_id, "the ENI is routed now and serves pods");
                }
            }
            Err(e) => {
                error!(eni = eni_id, error = %e, "the ENI cannot be routed: it serves no pod until it is");
                let _ = st.ds.set_excluded(eni_id, true);
                st.unrouted.insert(eni_id.to_string());
            }
        }
    }

    pub(crate) async fn add_to_eni(
        &self,
        eni_id: &str,
        request: AddressRequest,
    ) -> Result<(), Ec2Error> {
        let blocks = self.ec2.assign_addresses(eni_id, request).await?;
        let mut st = self.node.lock();
        for b in blocks {
            if let Err(e) = st.ds.add_block(eni_id, b) {
                warn!(error = %e, "adding an assigned block");
            }
        }
        info!(eni = eni_id, ?request, "assigned addresses");
        Ok(())
    }

    /// The lowest device index on card 0 that no interface, managed or not, occupies; `also`:
    /// indices taken by interfaces the pool does not know (yet).
    fn free_device_index(&self, st: &NodeState, also: &[u32]) -> u32 {
        let used: Vec<u32> = st
            .ds
            .enis()
            .map(|e| e.device_number)
            .chain(st.unmanaged.iter().filter_map(|(_, d)| *d))
            .chain(also.iter().copied())
            .collect();
        (1..).find(|i| !used.contains(i)).unwrap_or(1)
    }

    /// A free device index for a new ENI. Interfaces someone else attached take indices too:
    /// instance metadata lists them all without an EC2 API token (when it cannot be read, the
    /// indices ipamd knows).
    async fn device_index(&self) -> u32 {
        match self.node.metadata.device_numbers().await {
            Ok(taken) => self.free_device_index(&self.node.lock(), &taken),
            Err(e) => {
                // What ipamd knows (its ENIs, and the others start-up found) is right unless an
                // interface came since; then the attach is refused and `create_eni` asks EC2.
                // No describe here: under a fleet's start, metadata is slow for everyone.
                warn!(error = %e, "the instance's interfaces from metadata: using the device indices ipamd knows");
                self.free_device_index(&self.node.lock(), &[])
            }
        }
    }

    /// Create with addresses and tags in one call, attach, delete-on-termination, wait for the
    /// link, route it. Any failure after the create removes the ENI again (detached first when
    /// it was, or may have been, attached).
    pub(crate) async fn create_eni(
        &self,
        subnet_id: &str,
        groups: &[String],
        addresses: AddressRequest,
    ) -> Result<(), Ec2Error> {
        let instance = &self.node.identity.instance_id;
        let now = Time::now();
        let mut tags = BTreeMap::from([
            (INSTANCE_TAG.to_string(), instance.clone()),
            (CREATED_AT_TAG.to_string(), now.to_rfc3339()),
        ]);
        if let Some(c) = &self.node.cli.settings.cluster_name {
            tags.insert(CLUSTER_TAG.to_string(), c.clone());
        }
        for (k, v) in &self.node.cli.settings.additional_eni_tags.tags {
            tags.insert(k.clone(), v.clone());
        }
        let request = CreateEni {
            subnet_id: subnet_id.to_string(),
            security_groups: groups.to_vec(),
            description: format!("{DESCRIPTION_PREFIX}{instance}"),
            tags,
            addresses,
        };
        // The free device index does not depend on the new ENI: read alongside the create.
        let (eni, mut device) = tokio::join!(self.ec2.create_eni(&request), self.device_index());
        let eni = eni?;
        let mut attached = self.ec2.attach_eni(&eni.id, instance, device).await;
        if let Err(e) = &attached
            && e.class() == ErrorClass::Invalid
        {
            // The index was taken after all (metadata lags EC2 by a moment): once more with
            // what EC2 says is attached.
            warn!(eni = eni.id, device, error = %e, "attaching: asking EC2 which device indices are free");
            self.resync().await;
            device = self.free_device_index(&self.node.lock(), &[device]);
            attached = self.ec2.attach_eni(&eni.id, instance, device).await;
        }
        let attachment = match attached {
            Ok(a) => a,
            Err(e) => {
                // A timed-out attach may have happened: look for the attachment then.
                self.discard_eni(&eni.id, None, e.outcome_unknown()).await;
                return Err(e);
            }
        };
        // Delete-on-termination and the hypervisor plugging the interface in, at once.
        let (terminate, link) = tokio::join!(
            self.ec2.set_delete_on_termination(&eni.id, &attachment),
            wait_for_link(&self.nl, &eni.mac, LINK_WAIT),
        );
        if let Err(e) = terminate {
            self.discard_eni(&eni.id, Some(&attachment), false).await;
            return Err(e);
        }
        let subnet_cidr = match self.subnet_cidr(&eni).await {
            Some(c) => c,
            None => {
                self.discard_eni(&eni.id, Some(&attachment), false).await;
                return Err(Ec2Error::Incomplete {
                    action: "DescribeSubnets",
                    what: "the new ENI's subnet",
                });
            }
        };
        let record = Eni {
            id: eni.id.clone(),
            device_number: device,
            network_card: 0,
            primary: false,
            excluded: false,
            subnet_id: subnet_id.to_string(),
            subnet_cidr,
            security_groups: eni.security_groups.clone(),
            mac: eni.mac.clone(),
            primary_ip: eni.primary_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            created_at: now,
        };
        let routing = EniRouting::of(&record, self.node.cli.settings.eni_mtu);
        let plumbed = match link {
            Ok(link) => routing.apply(&self.nl, &link).await,
            Err(e) => Err(e),
        };
        if let Err(e) = plumbed {
            error!(eni = eni.id, error = %e, "the new ENI could not be set up on the node: removing it");
            for e in routing.remove(&self.nl, None).await {
                warn!(eni = eni.id, error = %e, "removing the new ENI's routing");
            }
            self.discard_eni(&eni.id, Some(&attachment), false).await;
            return Err(Ec2Error::Transport {
                action: "AttachNetworkInterface",
                message: e.to_string(),
            });
        }
        let mut st = self.node.lock();
        let _ = st.ds.add_eni(record);
        st.enis.insert(
            eni.id.clone(),
            EniFacts {
                subnet_id: subnet_id.to_string(),
                security_groups: eni.security_groups.clone(),
            },
        );
        for b in eni
            .secondary_ips
            .iter()
            .map(|ip| Ipv4Net::from(*ip))
            .chain(eni.prefixes.iter().copied())
        {
            let _ = st.ds.add_block(&eni.id, b);
        }
        info!(eni = eni.id, device, subnet = subnet_id, groups = ?eni.security_groups, ?addresses, "created and attached a pod ENI");
        Ok(())
    }

    /// Best effort: nothing may leak after a failed create. `look_up`: the attach may have
    /// happened without our knowing its id, so EC2 is asked for it.
    async fn discard_eni(&self, eni_id: &str, attachment: Option<&str>, look_up: bool) {
        let attachment = match attachment {
            Some(a) => Some(a.to_string()),
            None if look_up => self.attachment_of(eni_id).await.ok().flatten(),
            None => None,
        };
        if let Some(a) = &attachment
            && let Err(e) = self.ec2.detach_eni(a, true).await
        {
            warn!(eni = eni_id, error = %e, "detaching a discarded ENI");
        }
        let mut pause = Duration::from_millis(200);
        for attempt in 0..6u32 {
            match self.ec2.delete_eni(eni_id).await {
                Ok(()) => {
                    info!(eni = eni_id, "discarded the ENI of a failed create");
                    return;
                }
                Err(e) => {
                    warn!(eni = eni_id, attempt, error = %e, "deleting a discarded ENI");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(3));
                }
            }
        }
        error!(
            eni = eni_id,
            "could not delete a discarded ENI; the leaked-ENI clean-up will remove it"
        );
    }

    /// The ENI's attachment to this instance, if any, as EC2 says now.
    async fn attachment_of(&self, eni_id: &str) -> Result<Option<String>, Ec2Error> {
        Ok(self
            .ec2
            .instance_enis(&self.node.identity.instance_id)
            .await?
            .into_iter()
            .find(|e| e.id == eni_id)
            .and_then(|e| e.attachment.map(|a| a.id)))
    }

    /// The blocks EC2 says the ENI holds now; None when EC2 cannot be read or the ENI is not
    /// attached to this instance.
    async fn blocks_on(&self, eni_id: &str) -> Option<Vec<Ipv4Net>> {
        let enis = self
            .ec2
            .instance_enis(&self.node.identity.instance_id)
            .await
            .map_err(|e| warn!(eni = eni_id, error = %e, "re-reading the ENI's addresses"))
            .ok()?;
        let eni = enis.into_iter().find(|e| e.id == eni_id)?;
        Some(
            eni.secondary_ips
                .iter()
                .map(|ip| Ipv4Net::from(*ip))
                .chain(eni.prefixes)
                .collect(),
        )
    }

    async fn release_blocks(&self, eni_id: &str, blocks: &[Ipv4Net]) -> Result<(), Ec2Error> {
        // Out of the datastore first, so no ADD can take an address on its way out.
        let removed: Vec<Ipv4Net> = {
            let mut st = self.node.lock();
            let now = Time::now();
            blocks
                .iter()
                .filter(|b| st.ds.remove_block(eni_id, **b, false, now).is_ok())
                .copied()
                .collect()
        };
        if removed.is_empty() {
            return Ok(());
        }
        let result = self.ec2.unassign_addresses(eni_id, &removed).await;
        self.node.lock().last_decrease = Some(Time::now());
        if result.is_err() {
            // A call that failed may still have been done (its answer timed out, or a retry
            // found the work done): only what EC2 still has goes back. Unreadable, nothing goes
            // back; the next reconcile restores what the ENI still holds.
            let still = self.blocks_on(eni_id).await.unwrap_or_default();
            let mut st = self.node.lock();
            for b in removed.iter().filter(|b| still.contains(b)) {
                let _ = st.ds.add_block(eni_id, *b);
            }
        }
        result
    }

    async fn release_eni(&self, eni_id: &str) -> Result<(), Ec2Error> {
        let (record, blocks) = {
            let mut st = self.node.lock();
            let Some(record) = st.ds.eni(eni_id).cloned() else {
                return Ok(());
            };
            let blocks = st
                .ds
                .eni_views(Time::now())
                .into_iter()
                .find(|v| v.id == eni_id)
                .map(|v| v.blocks)
                .unwrap_or_default();
            if st.ds.remove_eni(eni_id, false, Time::now()).is_err() {
                return Ok(());
            }
            st.enis.remove(eni_id);
            st.last_decrease = Some(Time::now());
            (record, blocks)
        };
        let routing = EniRouting::of(&record, self.node.cli.settings.eni_mtu);
        let mac = netlink::parse_mac(&record.mac).unwrap_or([0; 6]);
        let link = self.nl.link_by_mac(&mac).await.ok().flatten();
        for e in routing.remove(&self.nl, link.as_ref()).await {
            warn!(eni = eni_id, error = %e, "removing the ENI's routing");
        }
        if let Err(e) = self.detach(eni_id).await {
            // Still attached: take the ENI back, addresses and routing, rather than lose it.
            {
                let mut st = self.node.lock();
                if st.ds.add_eni(record.clone()).is_ok() {
                    for b in &blocks {
                        let _ = st.ds.add_block(eni_id, *b);
                    }
                }
                st.enis.insert(
                    eni_id.to_string(),
                    EniFacts {
                        subnet_id: record.subnet_id.clone(),
                        security_groups: record.security_groups.clone(),
                    },
                );
            }
            if let Some(link) = &link
                && let Err(e) = routing.apply(&self.nl, link).await
            {
                warn!(eni = eni_id, error = %e, "routing an ENI that could not be released");
            }
            warn!(eni = eni_id, error = %e, "the ENI could not be detached; it stays in the pool");
            return Err(e);
        }
        let mut pause = Duration::from_millis(500);
        for attempt in 0..8 {
            match self.ec2.delete_eni(eni_id).await {
                Ok(()) => break,
                Err(e) if attempt == 7 => return Err(e),
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
        info!(eni = eni_id, "released an ENI");
        Ok(())
    }

    /// Detaches the ENI if it is attached, retrying a few times.
    async fn detach(&self, eni_id: &str) -> Result<(), Ec2Error> {
        let Some(a) = self.attachment_of(eni_id).await? else {
            return Ok(());
        };
        let mut pause = Duration::from_millis(200);
        for attempt in 0..5 {
            match self.ec2.detach_eni(&a, false).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt == 4 => return Err(e),
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        Ok(())
    }

    /// Works out where new ENIs go: the ENIConfig in force (validated against EC2, cached per
    /// spec) or, without custom networking, the node's own subnet and groups.
    pub async fn refresh_target(&self) {
        let id = &self.node.identity;
        if let Some(reason) = crate::compat::refusal(crate::compat::findings()) {
            self.set_blocked(crate::compat::REFUSED_EVENT, reason);
            return;
        }
        if !self.node.custom_networking() {
            let target = Target::Ready {
                eniconfig: None,
                subnets: self.node_subnets(),
                security_groups: id.security_groups.clone(),
            };
            self.set_ready(target);
            return;
        }
        let objects = self.node.objects.borrow().clone();
        let Some(node) = &objects.node else {
            let reason =
                "no Node object for this node: cannot tell which ENIConfig applies".to_string();
            self.set_blocked("NodeNotFound", reason);
            return;
        };
        let selection = select(
            &node.labels,
            &node.annotations,
            &self.node.cli.settings.selection_keys(),
        );
        let Some(spec) = objects.eniconfigs.get(&selection.name).cloned() else {
            let reason = format!(
                "ENIConfig {:?} (chosen by {}) does not exist: no pod ENI is created until it does",
                selection.name, selection.rule
            );
            {
                let mut st = self.node.lock();
                st.selection = Some(selection);
                st.spec = None;
            }
            self.set_blocked("ENIConfigNotFound", reason);
            return;
        };
        let cached = {
            let st = self.node.lock();
            st.validation
                .as_ref()
                .filter(|(n, s, _)| *n == selection.name && *s == spec)
                .map(|(_, _, v)| v.clone())
        };
        let validation = match cached {
            Some(v) => v,
            None => match self.validate(&selection.name, &spec).await {
                Ok(v) => {
                    for w in &v.warnings {
                        warn!(eniconfig = selection.name, "{w}");
                    }
                    for e in &v.errors {
                        error!(eniconfig = selection.name, "{e}");
                    }
                    self.node.lock().validation =
                        Some((selection.name.clone(), spec.clone(), v.clone()));
                    v
                }
                Err(e) => {
                    self.set_blocked(
                        "ENIConfigUnchecked",
                        format!(
                            "ENIConfig {} cannot be checked against EC2: {e}",
                            selection.name
                        ),
                    );
                    return;
                }
            },
        };
        {
            let mut st = self.node.lock();
            st.selection = Some(selection.clone());
            st.spec = Some(spec.clone());
        }
        self.node.metrics.eniconfig_state.reset();
        let state = if validation.valid() {
            "valid"
        } else {
            "invalid"
        };
        self.node
            .metrics
            .eniconfig_state
            .with_label_values(&[&selection.name, state])
            .set(1);
        if !validation.valid() {
            self.set_blocked("ENIConfigInvalid", validation.errors.join("; "));
            return;
        }
        let groups = match (
            spec.groups().is_empty(),
            self.node.cli.settings.eni_config_sg_fallback,
        ) {
            (false, _) => spec.groups().to_vec(),
            (true, SgFallback::VpcDefault) => Vec::new(),
            (true, SgFallback::PrimaryEni) => id.security_groups.clone(),
        };
        self.set_ready(Target::Ready {
            eniconfig: Some(selection.name.clone()),
            subnets: spec.all_subnets(),
            security_groups: groups,
        });
    }

    fn set_ready(&self, target: Target) {
        let previous = {
            let mut st = self.node.lock();
            let previous = match &st.target {
                Some(Target::Ready { subnets, .. }) => Some(subnets.clone()),
                _ => None,
            };
            st.target = Some(target.clone());
            previous
        };
        if let Target::Ready { subnets, .. } = &target {
            self.publish_candidates(previous.as_deref(), subnets);
        }
    }

    /// `event` names the situation for the Node's Events (`ENIConfigNotFound`, …); it is raised
    /// when the reason changes, not on every look.
    fn set_blocked(&self, event: &str, reason: String) {
        let changed = {
            let mut st = self.node.lock();
            let changed =
                !matches!(&st.target, Some(Target::Blocked { reason: r }) if *r == reason);
            st.target = Some(Target::Blocked {
                reason: reason.clone(),
            });
            changed
        };
        if changed {
            self.node.events.warning(event, &reason);
        }
    }

    async fn validate(
        &self,
        name: &str,
        spec: &eniconfig::EniConfigSpec,
    ) -> Result<eniconfig::Validation, Ec2Error> {
        let id = &self.node.identity;
        // Both reads at once: they are independent, and a fresh node waits for them.
        let query = SubnetQuery::Ids(spec.all_subnets());
        let (subnets, groups) = tokio::join!(
            self.ec2.subnets(&query),
            self.ec2.security_groups(spec.groups())
        );
        let subnets: Vec<eniconfig::SubnetFacts> = subnets?.iter().map(SubnetFacts::from).collect();
        self.remember_subnets(&subnets);
        let groups = groups?;
        let vpc_cidrs = self.node.vpc_cidrs();
        let primary_block = vpc_cidrs
            .iter()
            .find(|c| c.contains(&id.subnet_cidr))
            .copied();
        let facts = NodeFacts {
            vpc_id: id.vpc_id.clone(),
            availability_zone: id.availability_zone.clone(),
            primary_block,
            vpc_cidrs,
        };
        let groups: Vec<GroupFacts> = groups.iter().map(GroupFacts::from).collect();
        Ok(validate(name, spec, &facts, &subnets, &groups))
    }

    /// Deletes leaked ENIs: detached ENIs of ours (description `aws-K8S-`, our instance tag)
    /// older than `LEAKED_ENI_MIN_AGE` by their createdAt tag, tagged for this node, or for an
    /// instance that no longer exists (a node that died mid-creation); with `CLUSTER_NAME`, only
    /// those tagged for this cluster.
    pub async fn clean_leaked(&self) {
        let id = &self.node.identity;
        let cluster = self.node.cli.settings.cluster_name.clone();
        let tags: Vec<(&str, &str)> = cluster
            .as_deref()
            .map(|c| vec![(CLUSTER_TAG, c)])
            .unwrap_or_default();
        let enis = match self
            .ec2
            .detached_enis_tagged(&id.vpc_id, INSTANCE_TAG, &tags)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "looking for leaked ENIs");
                return;
            }
        };
        let min_age = self.node.cli.options.leaked_min_age();
        let now = Time::now();
        let old: Vec<_> = enis
            .into_iter()
            .filter(|e| e.description.starts_with(DESCRIPTION_PREFIX))
            .filter(|e| {
                e.tags
                    .get(CREATED_AT_TAG)
                    .and_then(|t| Time::parse_rfc3339(t))
                    .is_some_and(|c| now.since(c) >= min_age)
            })
            .collect();
        let others: Vec<String> = old
            .iter()
            .filter_map(|e| e.tags.get(INSTANCE_TAG))
            .filter(|i| **i != id.instance_id)
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let live = match self.ec2.live_instances(&others).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "checking which instances of leaked-ENI candidates exist");
                // Only this node's own are certain to be leaks.
                others.clone()
            }
        };
        for eni in old {
            let owner = eni.tags.get(INSTANCE_TAG).cloned().unwrap_or_default();
            if owner != id.instance_id && live.contains(&owner) {
                // Another node's, possibly being created right now: that node cleans it up.
                continue;
            }
            match self.ec2.delete_eni(&eni.id).await {
                Ok(()) => info!(eni = eni.id, instance = owner, "deleted a leaked ENI"),
                Err(e) => warn!(eni = eni.id, error = %e, "deleting a leaked ENI"),
            }
        }
    }
}

/// `every` plus up to 10 % jitter, so that a fleet started together does not act in step.
pub fn jittered(every: Duration) -> Duration {
    every + every.mul_f64(fastrand::f64() / 10.0)
}

/// `every` on average, drawn uniformly between half and one and a half of it: a fleet started
/// together spreads a slow periodic EC2 call (the leaked-ENI scan) over the whole interval
/// instead of making it within the same few minutes.
pub fn spread(every: Duration) -> Duration {
    every.mul_f64(0.5 + fastrand::f64())
}
