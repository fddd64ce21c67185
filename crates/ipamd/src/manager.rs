//! The pool manager: keeps the warm pool by asking EC2, one decision at a time, and follows the
//! ENIConfig. ADD and DEL never wait for it; an ADD that finds the pool empty wakes it at once.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ec2::{AddressRequest, CreateEni, Ec2, Ec2Error, ErrorClass, NetworkInterface};
use eniconfig::{GroupFacts, NodeFacts, select, validate};
use ipam::{Eni, PoolAction, Time};
use ipamd_settings::SgFallback;
use ipnet::Ipv4Net;
use netlink::Netlink;
use tracing::{error, info, warn};

use crate::datapath::eni::{EniRouting, wait_for_link};
use crate::facts::{group_facts, subnet_facts};
use crate::node::{EniFacts, Node, NodeState, Target};

pub const INSTANCE_TAG: &str = "node.k8s.amazonaws.com/instance_id";
pub const CREATED_AT_TAG: &str = "node.k8s.amazonaws.com/createdAt";
pub const CLUSTER_TAG: &str = "cluster.k8s.amazonaws.com/name";
pub const NO_MANAGE_TAG: &str = "node.k8s.amazonaws.com/no_manage";
pub const DESCRIPTION_PREFIX: &str = "aws-K8S-";
/// How long a full subnet is left alone.
const SUBNET_BACKOFF: Duration = Duration::from_secs(120);
const LINK_WAIT: Duration = Duration::from_secs(10);

pub struct Manager<C: Ec2> {
    pub node: Arc<Node>,
    pub ec2: Arc<C>,
    pub nl: Arc<Netlink>,
}

/// Adds an ENI EC2 reported to the datastore, with its addresses.
pub fn adopt(node: &Node, st: &mut NodeState, eni: &NetworkInterface, now: Time) {
    let Some(att) = &eni.attachment else { return };
    if att.network_card != 0 || eni.tags.get(NO_MANAGE_TAG).is_some_and(|v| v == "true") {
        if !st.unmanaged.iter().any(|(id, _)| *id == eni.id) {
            let device = (att.network_card == 0).then_some(att.device_index);
            st.unmanaged.push((eni.id.clone(), device));
        }
        return;
    }
    let primary = att.device_index == 0;
    let subnet_cidr = if primary {
        node.identity.subnet_cidr
    } else {
        st.ds
            .enis()
            .find(|e| e.subnet_id == eni.subnet_id)
            .map(|e| e.subnet_cidr)
            .unwrap_or_else(|| Ipv4Net::from(eni.primary_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)))
    };
    let created_at = eni
        .tags
        .get(CREATED_AT_TAG)
        .and_then(|t| parse_rfc3339_secs(t))
        .map(Time::from_secs)
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
    if st.ds.eni(&eni.id).is_none() {
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
        return;
    }
    let blocks = eni
        .secondary_ips
        .iter()
        .map(|ip| Ipv4Net::from(*ip))
        .chain(eni.prefixes.iter().copied());
    for b in blocks {
        let _ = st.ds.add_block(&eni.id, b);
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time like `2026-11-27T16:31:05Z`.
pub fn parse_rfc3339_secs(t: &str) -> Option<u64> {
    let t = t.trim_end_matches('Z');
    let (date, time) = t.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut h = time
        .split(':')
        .map(|p| p.split('.').next().unwrap_or("0").parse::<i64>());
    let (hh, mm, ss) = (h.next()?.ok()?, h.next()?.ok()?, h.next()?.ok()?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

pub fn format_rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

impl<C: Ec2 + 'static> Manager<C> {
    /// Runs until shutdown: one pool decision per round, immediately again after a change.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut objects = self.node.objects.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let progressed = self.round().await;
            let pause = if progressed {
                Duration::ZERO
            } else {
                self.node.cli.options.pool_interval()
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.node.wake.notified() => {}
                _ = objects.changed() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One decision and its EC2 effect; true when something changed.
    pub async fn round(&self) -> bool {
        self.refresh_target().await;
        let now = Time::now();
        let (action, target) = {
            let st = self.node.lock();
            if st.shutting_down {
                return false;
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
            return false;
        }
        let result = match &action {
            PoolAction::Steady => return false,
            PoolAction::AtCapacity { short } => {
                tracing::debug!(
                    short,
                    "pool below target but the node is at its ENI and address limits"
                );
                return false;
            }
            PoolAction::AddToEni { eni_id, slots } => self.add_to_eni(eni_id, *slots).await,
            PoolAction::CreateEni { slots } => match target {
                Some(Target::Ready {
                    subnet_id,
                    security_groups,
                    ..
                }) => self.create_eni(&subnet_id, &security_groups, *slots).await,
                _ => return false,
            },
            PoolAction::ReleaseBlocks { eni_id, blocks } => {
                self.release_blocks(eni_id, blocks).await
            }
            PoolAction::ReleaseEni { eni_id } => self.release_eni(eni_id).await,
        };
        match result {
            Ok(()) => {
                self.node.lock().last_ec2_error = None;
                true
            }
            Err(e) => {
                self.on_error(&e).await;
                false
            }
        }
    }

    async fn on_error(&self, e: &Ec2Error) {
        error!(error = %e, "pool manager");
        self.node
            .metrics
            .errors
            .with_label_values(&[e.action()])
            .inc();
        self.node.lock().last_ec2_error = Some(e.to_string());
        match e.class() {
            ErrorClass::Throttled | ErrorClass::Transport => {
                tokio::time::sleep(Duration::from_secs(2)).await
            }
            ErrorClass::LimitExceeded => self.resync().await,
            _ => {}
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
            Ok(enis) => {
                let mut st = self.node.lock();
                for eni in &enis {
                    adopt(&self.node, &mut st, eni, Time::now());
                }
            }
            Err(e) => warn!(error = %e, "re-reading the instance's ENIs"),
        }
    }

    fn request(&self, slots: usize) -> AddressRequest {
        let n = u32::try_from(slots).unwrap_or(u32::MAX);
        if self.node.pool.prefix_delegation {
            AddressRequest::Prefixes(n)
        } else {
            AddressRequest::Secondary(n)
        }
    }

    async fn add_to_eni(&self, eni_id: &str, slots: usize) -> Result<(), Ec2Error> {
        let blocks = self
            .ec2
            .assign_addresses(eni_id, self.request(slots))
            .await?;
        let mut st = self.node.lock();
        for b in blocks {
            if let Err(e) = st.ds.add_block(eni_id, b) {
                warn!(error = %e, "adding an assigned block");
            }
        }
        info!(eni = eni_id, slots, "assigned addresses");
        Ok(())
    }

    /// The lowest device index on card 0 that no interface, managed or not, occupies.
    fn free_device_index(&self, st: &NodeState) -> u32 {
        let used: Vec<u32> = st
            .ds
            .enis()
            .map(|e| e.device_number)
            .chain(st.unmanaged.iter().filter_map(|(_, d)| *d))
            .collect();
        (1..).find(|i| !used.contains(i)).unwrap_or(1)
    }

    /// Create with addresses and tags in one call, attach, delete-on-termination, wait for the
    /// link, route it. Any failure after the create removes the ENI again.
    async fn create_eni(
        &self,
        subnet_id: &str,
        groups: &[String],
        slots: usize,
    ) -> Result<(), Ec2Error> {
        if let Some(until) = self.node.lock().subnet_backoff.get(subnet_id)
            && Time::now() < *until
        {
            return Ok(());
        }
        let instance = &self.node.identity.instance_id;
        let now = Time::now();
        let mut tags = BTreeMap::from([
            (INSTANCE_TAG.to_string(), instance.clone()),
            (
                CREATED_AT_TAG.to_string(),
                format_rfc3339(now.unix_nanos() / 1_000_000_000),
            ),
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
            addresses: self.request(slots),
        };
        let eni = match self.ec2.create_eni(&request).await {
            Ok(e) => e,
            Err(e) if e.class() == ErrorClass::SubnetFull => {
                self.node.events.warning(
                    "SubnetFull",
                    &format!("subnet {subnet_id} is out of addresses ({e}): no pod ENI from it for 2 minutes"),
                );
                self.node
                    .lock()
                    .subnet_backoff
                    .insert(subnet_id.to_string(), Time::now().plus(SUBNET_BACKOFF));
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        // Re-read what is attached: an interface someone else attached takes its index too.
        self.resync().await;
        let device = self.free_device_index(&self.node.lock());
        let attached = async {
            let attachment = self.ec2.attach_eni(&eni.id, instance, device).await?;
            self.ec2
                .set_delete_on_termination(&eni.id, &attachment)
                .await?;
            Ok::<_, Ec2Error>(attachment)
        }
        .await;
        let attachment = match attached {
            Ok(a) => a,
            Err(e) => {
                self.discard_eni(&eni.id, None).await;
                return Err(e);
            }
        };
        let subnet_cidr = match self.ec2.subnet(subnet_id).await {
            Ok(Some(s)) => s.cidr,
            Ok(None) | Err(_) => {
                self.discard_eni(&eni.id, Some(&attachment)).await;
                return Err(Ec2Error::Incomplete {
                    action: "DescribeSubnets",
                    what: "the new ENI's subnet",
                });
            }
        };
        let routing = EniRouting {
            primary_ip: eni.primary_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            subnet: subnet_cidr,
            table: ipam::route_table_id(device, 0),
            mtu: self.node.cli.settings.eni_mtu,
        };
        let plumbed = async {
            let link = wait_for_link(&self.nl, &eni.mac, LINK_WAIT).await?;
            routing.apply(&self.nl, &link).await
        }
        .await;
        if let Err(e) = plumbed {
            error!(eni = eni.id, error = %e, "the new ENI could not be set up on the node: removing it");
            self.discard_eni(&eni.id, Some(&attachment)).await;
            return Err(Ec2Error::Transport {
                action: "AttachNetworkInterface",
                message: e.to_string(),
            });
        }
        let mut st = self.node.lock();
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
            primary_ip: routing.primary_ip,
            created_at: now,
        };
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
        info!(eni = eni.id, device, subnet = subnet_id, groups = ?eni.security_groups, slots, "created and attached a pod ENI");
        Ok(())
    }

    /// Best effort: nothing may leak after a failed create.
    async fn discard_eni(&self, eni_id: &str, attachment: Option<&str>) {
        if let Some(a) = attachment {
            let _ = self.ec2.detach_eni(a, true).await;
        }
        for attempt in 0..5u32 {
            match self.ec2.delete_eni(eni_id).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(eni = eni_id, attempt, error = %e, "deleting a discarded ENI");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
                }
            }
        }
        error!(
            eni = eni_id,
            "could not delete a discarded ENI; the leaked-ENI clean-up will remove it"
        );
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
        let mut st = self.node.lock();
        st.last_decrease = Some(Time::now());
        if result.is_err() {
            for b in &removed {
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
        let routing = EniRouting {
            primary_ip: record.primary_ip,
            subnet: record.subnet_cidr,
            table: record.route_table(),
            mtu: self.node.cli.settings.eni_mtu,
        };
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
        let attachment = self
            .ec2
            .instance_enis(&self.node.identity.instance_id)
            .await?
            .into_iter()
            .find(|e| e.id == eni_id)
            .and_then(|e| e.attachment.map(|a| a.id));
        let Some(a) = attachment else { return Ok(()) };
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
    async fn refresh_target(&self) {
        let id = &self.node.identity;
        if let Some(reason) = crate::compat::refusal(crate::compat::findings()) {
            self.set_blocked(crate::compat::REFUSED_EVENT, reason);
            return;
        }
        if !self.node.custom_networking() {
            let target = Target::Ready {
                eniconfig: None,
                subnet_id: id.subnet_id.clone(),
                security_groups: id.security_groups.clone(),
            };
            self.node.lock().target = Some(target);
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
        self.node.lock().target = Some(Target::Ready {
            eniconfig: Some(selection.name.clone()),
            subnet_id: spec.subnet.clone(),
            security_groups: groups,
        });
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
        let subnet = self.ec2.subnet(&spec.subnet).await?;
        if let Some(s) = &subnet {
            self.node
                .metrics
                .subnet_free
                .with_label_values(&[&s.id])
                .set(i64::from(s.available_addresses));
        }
        let groups = self.ec2.security_groups(spec.groups()).await?;
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
        let subnet = subnet.map(subnet_facts);
        let groups: Vec<GroupFacts> = groups.into_iter().map(group_facts).collect();
        Ok(validate(name, spec, &facts, subnet.as_ref(), &groups))
    }

    /// Deletes detached ENIs tagged for this instance whose createdAt is older than the limit.
    pub async fn clean_leaked(&self) {
        let id = &self.node.identity.instance_id;
        let min_age = self.node.cli.options.leaked_min_age();
        let enis = match self.ec2.detached_enis_tagged_for(INSTANCE_TAG, id).await {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "looking for leaked ENIs");
                return;
            }
        };
        let now = Time::now().unix_nanos() / 1_000_000_000;
        for eni in enis {
            if !eni.description.starts_with(DESCRIPTION_PREFIX) {
                continue;
            }
            let created = eni
                .tags
                .get(CREATED_AT_TAG)
                .and_then(|t| parse_rfc3339_secs(t));
            let old_enough = created.is_some_and(|c| now.saturating_sub(c) >= min_age.as_secs());
            if !old_enough {
                continue;
            }
            match self.ec2.delete_eni(&eni.id).await {
                Ok(()) => info!(eni = eni.id, "deleted a leaked ENI"),
                Err(e) => warn!(eni = eni.id, error = %e, "deleting a leaked ENI"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for secs in [
            0u64,
            951_782_400,
            1_700_000_000,
            1_795_000_000,
            4_102_444_800,
        ] {
            assert_eq!(
                parse_rfc3339_secs(&format_rfc3339(secs)),
                Some(secs),
                "{}",
                format_rfc3339(secs)
            );
        }
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(
            parse_rfc3339_secs("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339_secs("yesterday"), None);
    }
}
