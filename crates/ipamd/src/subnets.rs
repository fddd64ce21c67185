//! Where each new pod ENI goes, among several subnets: the ENIConfig's `spec.subnet` and
//! `spec.subnets` (custom networking), or the node's own subnet and, with subnet discovery
//! (`ENABLE_SUBNET_DISCOVERY`, the default), the subnets of its zone tagged
//! `kubernetes.io/role/cni`. The choice itself is pure (`eniconfig::subnets`); this module asks
//! EC2, remembers its answers, and acts on refusals:
//!
//! - a full subnet (`InsufficientFreeAddressesInSubnet`, EC2's "insufficient free addresses"
//!   `InvalidParameterValue`) rests for `IPAMD_SUBNET_FULL_BACKOFF` and the next ENI goes to the
//!   next candidate;
//! - under prefix delegation a subnet without a free aligned /28 (`InsufficientCidrBlocks`)
//!   rests for prefixes only; when no candidate has one, the ENI gets secondary addresses
//!   instead (`IPAMD_PREFIX_FALLBACK`, on by default), said by an event and a metric.
//!
//! EC2 is asked sparingly (a fleet shares the account's API buckets): DescribeSubnets only when
//! an ENI is about to be created and the last answer is older than `IPAMD_VPC_REFRESH_INTERVAL`
//! (jittered), so a node at rest never asks, and a growing node at most once per interval.
//! Between answers the free counts are lowered by what this node took.
//!
//! Lifecycle: nothing here is persisted. After a restart the first ENI re-reads the subnets; ENIs
//! already attached keep their subnet (adopted from EC2 as they are). A subnet added to the
//! ENIConfig, or tagged for discovery, while ipamd runs is used by the next ENI after the next
//! read: no restart, no re-annotation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ec2::{AddressRequest, Ec2, Ec2Error, ErrorClass, SubnetQuery};
use eniconfig::SubnetFacts;
use eniconfig::subnets::{DiscoveryScope, Exclusion, choose, discover};
use ipam::{PoolAction, Time};
use tracing::{info, warn};

use crate::manager::{Manager, Round, jittered};
use crate::node::{Node, NodeState};

/// Addresses in a delegated prefix.
const PREFIX_ADDRESSES: u32 = 16;

/// What EC2 last said about the subnets pod ENIs may go to.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Subnets {
    /// By id: every subnet read (ENIConfig subnets, or the whole zone with discovery), free
    /// counts lowered by what this node took since.
    pub facts: BTreeMap<String, SubnetFacts>,
    /// Subnet discovery's candidates, most free first, once it has run.
    pub discovered: Option<Vec<String>>,
    /// Subnets of the zone discovery leaves alone, with the reason.
    pub excluded: Vec<(String, Exclusion)>,
    /// When EC2 was last asked, and when its answer goes stale.
    pub read_at: Option<Time>,
    pub stale_at: Option<Time>,
    /// Subnets that had no free aligned /28, until when prefixes are not asked of them.
    pub no_prefix: BTreeMap<String, Time>,
    /// What was last said about discovery, so it is said again only when it changes.
    #[serde(skip)]
    said: Option<String>,
}

impl Subnets {
    /// The facts of `ids` in their order; a subnet EC2 has not described yet counts as having
    /// no free address, so it is tried after those known to have room.
    pub fn candidates(&self, ids: &[String]) -> Vec<SubnetFacts> {
        ids.iter()
            .map(|id| {
                self.facts.get(id).cloned().unwrap_or(SubnetFacts {
                    id: id.clone(),
                    vpc_id: String::new(),
                    availability_zone: String::new(),
                    cidr: ipnet::Ipv4Net::default(),
                    available_addresses: 0,
                    tags: BTreeMap::new(),
                })
            })
            .collect()
    }

    fn no_prefix_now(&self, now: Time) -> BTreeSet<String> {
        self.no_prefix
            .iter()
            .filter(|(_, until)| now < **until)
            .map(|(s, _)| s.clone())
            .collect()
    }
}

/// Subnets that refused addresses and rest now.
fn full_now(st: &NodeState, now: Time) -> BTreeSet<String> {
    st.subnet_backoff
        .iter()
        .filter(|(_, until)| now < **until)
        .map(|(s, _)| s.clone())
        .collect()
}

/// ENIs that cannot take more addresses now: their subnet is full, or (prefix delegation
/// without the fallback) has no free /28. The pool then grows with a new ENI elsewhere.
pub fn cannot_grow(node: &Node, st: &NodeState, now: Time) -> Vec<String> {
    let mut resting = full_now(st, now);
    if node.pool.prefix_delegation && !node.cli.options.prefix_fallback {
        resting.extend(st.subnets.no_prefix_now(now));
    }
    st.ds
        .enis()
        .filter(|e| resting.contains(&e.subnet_id))
        .map(|e| e.id.clone())
        .collect()
}

impl<C: Ec2 + 'static> Manager<C> {
    /// Where ENIs go without custom networking: the node's own subnet, or what subnet
    /// discovery found (which may exclude the node's own, tagged `kubernetes.io/role/cni=0`).
    pub(crate) fn node_subnets(&self) -> Vec<String> {
        let own = self.node.identity.subnet_id.clone();
        if !self.node.cli.settings.enable_subnet_discovery {
            return vec![own];
        }
        match &self.node.lock().subnets.discovered {
            Some(found) => found.clone(),
            None => vec![own],
        }
    }

    /// Publishes where new ENIs may go (`awscni_subnet_candidate`) when that changes.
    pub(crate) fn publish_candidates(&self, previous: Option<&[String]>, subnets: &[String]) {
        if previous == Some(subnets) {
            return;
        }
        let m = &self.node.metrics.subnet_candidate;
        m.reset();
        for s in subnets {
            let source = if self.node.custom_networking() {
                "eniconfig"
            } else if *s == self.node.identity.subnet_id {
                "node"
            } else {
                "discovered"
            };
            m.with_label_values(&[s, source]).set(1);
        }
    }

    fn discovering(&self) -> bool {
        !self.node.custom_networking() && self.node.cli.settings.enable_subnet_discovery
    }

    /// Keeps what EC2 said about subnets (ENIConfig validation reads them too).
    pub(crate) fn remember_subnets(&self, facts: &[SubnetFacts]) {
        let now = Time::now();
        let every = self.node.cli.options.vpc_refresh_interval();
        let mut st = self.node.lock();
        for f in facts {
            self.node
                .metrics
                .subnet_free
                .with_label_values(&[&f.id])
                .set(i64::from(f.available_addresses));
            st.subnets.facts.insert(f.id.clone(), f.clone());
        }
        st.subnets.read_at = Some(now);
        st.subnets.stale_at = Some(now.plus(jittered(every)));
    }

    /// Re-reads the candidate subnets from EC2 when the last answer is stale (or there is none);
    /// a failed read keeps the last answer and is retried at the next ENI.
    pub(crate) async fn refresh_subnets(&self, subnets: &[String]) {
        let now = Time::now();
        let fresh = self.node.lock().subnets.stale_at.is_some_and(|at| now < at);
        if fresh {
            return;
        }
        let id = &self.node.identity;
        if self.discovering() {
            let query = SubnetQuery::Zone {
                vpc_id: id.vpc_id.clone(),
                availability_zone: id.availability_zone.clone(),
            };
            match self.ec2.subnets(&query).await {
                Ok(found) => {
                    let facts: Vec<SubnetFacts> = found.iter().map(SubnetFacts::from).collect();
                    self.remember_subnets(&facts);
                    self.discovered(&facts);
                }
                Err(e) => warn!(error = %e, "subnet discovery: DescribeSubnets"),
            }
        } else if self.node.custom_networking() {
            match self.ec2.subnets(&SubnetQuery::Ids(subnets.to_vec())).await {
                Ok(found) => {
                    let facts: Vec<SubnetFacts> = found.iter().map(SubnetFacts::from).collect();
                    self.remember_subnets(&facts);
                }
                Err(e) => warn!(error = %e, "re-reading the ENIConfig's subnets"),
            }
        }
    }

    /// Applies discovery's rules to the zone's subnets; says what changed (a log line, and an
    /// event when the node's own subnet is excluded or no subnet is left).
    fn discovered(&self, facts: &[SubnetFacts]) {
        let id = &self.node.identity;
        let scope = DiscoveryScope {
            vpc_id: &id.vpc_id,
            availability_zone: &id.availability_zone,
            node_subnet: &id.subnet_id,
            cluster_name: self.node.cli.settings.cluster_name.as_deref(),
        };
        let found = discover(&scope, facts);
        let eligible = found.eligible_ids();
        let summary = format!(
            "candidates {eligible:?}; excluded {:?}",
            found
                .excluded
                .iter()
                .map(|(s, e)| format!("{}: {e}", s.id))
                .collect::<Vec<_>>()
        );
        let own_excluded = found.node_subnet_excluded(&id.subnet_id).cloned();
        let changed = {
            let mut st = self.node.lock();
            let changed = st.subnets.said.as_deref() != Some(summary.as_str());
            st.subnets.discovered = Some(eligible.clone());
            st.subnets.excluded = found
                .excluded
                .iter()
                .map(|(s, e)| (s.id.clone(), e.clone()))
                .collect();
            st.subnets.said = Some(summary);
            changed
        };
        if !changed {
            return;
        }
        info!(
            zone = id.availability_zone,
            candidates = ?eligible,
            excluded = ?found.excluded.iter().map(|(s, e)| format!("{}: {e}", s.id)).collect::<Vec<_>>(),
            "subnet discovery"
        );
        if let Some(why) = own_excluded {
            self.node.events.warning(
                "SubnetExcluded",
                &format!(
                    "the node's own subnet {} is {why}: no pod ENI is created in it{}",
                    id.subnet_id,
                    if eligible.is_empty() {
                        "; no other subnet of the zone is tagged kubernetes.io/role/cni, so no pod ENI can be created at all"
                    } else {
                        ""
                    }
                ),
            );
        }
    }

    /// The next step's addresses for an ENI in `subnet`: prefixes under prefix delegation,
    /// unless the subnet had no free /28 and the fallback is on; then `16 × slots` single
    /// addresses, at most `room`.
    fn addresses_for(&self, subnet: &str, slots: usize, room: usize, now: Time) -> AddressRequest {
        let n = u32::try_from(slots).unwrap_or(u32::MAX);
        if !self.node.pool.prefix_delegation {
            return AddressRequest::Secondary(n);
        }
        let fragmented = self.node.lock().subnets.no_prefix_now(now).contains(subnet);
        if fragmented && self.node.cli.options.prefix_fallback {
            let singles = n.saturating_mul(PREFIX_ADDRESSES);
            AddressRequest::Secondary(singles.min(u32::try_from(room).unwrap_or(u32::MAX)))
        } else {
            AddressRequest::Prefixes(n)
        }
    }

    /// Says that an ENI in `subnet` gets single addresses for want of a /28.
    fn fallen_back(&self, subnet: &str, request: AddressRequest, what: &str) {
        let AddressRequest::Secondary(n) = request else {
            return;
        };
        if !self.node.pool.prefix_delegation {
            return;
        }
        self.node
            .metrics
            .prefix_fallback
            .with_label_values(&[subnet])
            .inc();
        self.node.events.warning(
            "PrefixFallback",
            &format!(
                "no candidate subnet has a free /28 (InsufficientCidrBlocks): {what} in subnet {subnet} gets {n} secondary addresses instead of prefixes (IPAMD_PREFIX_FALLBACK=false turns this off)"
            ),
        );
    }

    /// Assigns addresses to an existing ENI, as single addresses when its subnet has no /28
    /// left and the fallback is on.
    pub(crate) async fn grow_eni(&self, eni_id: &str, slots: usize) -> Result<(), Ec2Error> {
        let now = Time::now();
        let (subnet, used) = {
            let st = self.node.lock();
            match st.ds.eni_views(now).into_iter().find(|v| v.id == eni_id) {
                Some(v) => (
                    st.ds
                        .eni(eni_id)
                        .map(|e| e.subnet_id.clone())
                        .unwrap_or_default(),
                    v.blocks.len(),
                ),
                None => return Ok(()),
            }
        };
        let room = self.node.pool.slots_per_eni.saturating_sub(used);
        let request = self.addresses_for(&subnet, slots, room, now);
        self.fallen_back(&subnet, request, &format!("ENI {eni_id}"));
        self.add_to_eni(eni_id, request).await?;
        self.took(&subnet, request);
        Ok(())
    }

    /// Lowers the remembered free count of `subnet` by what an ENI there just took.
    fn took(&self, subnet: &str, request: AddressRequest) {
        let taken = match request {
            AddressRequest::Secondary(n) => n,
            AddressRequest::Prefixes(n) => n.saturating_mul(PREFIX_ADDRESSES),
        };
        if let Some(f) = self.node.lock().subnets.facts.get_mut(subnet) {
            f.available_addresses = f.available_addresses.saturating_sub(taken);
        }
    }

    /// A subnet without a free aligned /28: prefixes are not asked of it for the back-off;
    /// with the fallback on, its next ENI or assign takes single addresses at once.
    pub(crate) fn no_free_prefix(&self, subnet: &str, e: &Ec2Error) -> Round {
        let backoff = self.node.cli.options.subnet_full_backoff();
        let fallback = self.node.cli.options.prefix_fallback;
        self.node
            .lock()
            .subnets
            .no_prefix
            .insert(subnet.to_string(), Time::now().plus(backoff));
        let then = if fallback {
            "single addresses are used instead"
        } else {
            "IPAMD_PREFIX_FALLBACK=false: no prefix from it"
        };
        self.node.events.warning(
            "SubnetFragmented",
            &format!(
                "subnet {subnet} has no free aligned /28 ({e}): {then} for {} s",
                backoff.as_secs()
            ),
        );
        if fallback {
            Round::Progress
        } else {
            Round::Wait(backoff)
        }
    }

    /// How long until the first of `subnets` stops resting.
    fn shortest_rest(&self, subnets: &[String], now: Time) -> Duration {
        let st = self.node.lock();
        subnets
            .iter()
            .filter_map(|s| {
                let full = st.subnet_backoff.get(s).copied();
                let fragmented = st.subnets.no_prefix.get(s).copied();
                full.into_iter()
                    .chain(fragmented)
                    .filter(|u| now < *u)
                    .max()
            })
            .min()
            .map(|until| until.since(now))
            .unwrap_or_else(|| self.node.cli.options.pool_interval())
    }

    /// Creates one ENI with `slots` slots in the best candidate of `subnets`; a refusal rests
    /// that subnet and the next round tries the next one.
    pub(crate) async fn grow_new_eni(
        &self,
        subnets: &[String],
        groups: &[String],
        slots: usize,
    ) -> Round {
        self.refresh_subnets(subnets).await;
        // Discovery may just have found (or lost) candidates.
        let subnets = &if self.discovering() {
            self.node_subnets()
        } else {
            subnets.to_vec()
        };
        let now = Time::now();
        // Expired back-offs end here (said once, metric reset).
        let full: BTreeSet<String> = subnets
            .iter()
            .filter(|s| self.backing_off(s, now).is_some())
            .cloned()
            .collect();
        let (candidates, fragmented) = {
            let st = self.node.lock();
            (
                st.subnets.candidates(subnets),
                st.subnets.no_prefix_now(now),
            )
        };
        let first = subnets.first().cloned().unwrap_or_default();
        let n = u32::try_from(slots).unwrap_or(u32::MAX);
        let per_eni = self.node.pool.slots_per_eni;
        let pd = self.node.pool.prefix_delegation;
        let placed = if pd {
            let resting: BTreeSet<String> = full.union(&fragmented).cloned().collect();
            match choose(&candidates, &resting, 1 + n * PREFIX_ADDRESSES, &first) {
                Some(s) => Some((s.id.clone(), AddressRequest::Prefixes(n))),
                None if self.node.cli.options.prefix_fallback => {
                    choose(&candidates, &full, 1, &first)
                        .map(|s| (s.id.clone(), self.addresses_for(&s.id, slots, per_eni, now)))
                }
                None => None,
            }
        } else {
            choose(&candidates, &full, 1 + n, &first)
                .map(|s| (s.id.clone(), AddressRequest::Secondary(n)))
        };
        let Some((subnet, request)) = placed else {
            let wait = self.shortest_rest(subnets, now);
            tracing::debug!(?subnets, ?wait, "every candidate subnet rests");
            return Round::Wait(wait);
        };
        if pd {
            self.fallen_back(&subnet, request, "the new ENI");
        }
        match self.create_eni(&subnet, groups, request).await {
            Ok(()) => {
                self.took(&subnet, AddressRequest::Secondary(1));
                self.took(&subnet, request);
                self.node.lock().last_ec2_error = None;
                Round::Progress
            }
            Err(e) if e.class() == ErrorClass::SubnetFull => {
                self.record_error(&e);
                if pd && matches!(request, AddressRequest::Prefixes(_)) && e.no_free_prefix() {
                    self.no_free_prefix(&subnet, &e);
                } else {
                    self.subnet_full(&subnet, &e);
                }
                // The next round picks the next candidate, or waits when none is left.
                Round::Progress
            }
            Err(e) => self.on_error(&e, &PoolAction::CreateEni { slots }).await,
        }
    }
}
