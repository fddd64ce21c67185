//! Which subnet a new pod ENI goes to. Pure: EC2's answers and the node's facts in, a ranking
//! out.
//!
//! - Subnet discovery (`ENABLE_SUBNET_DISCOVERY`, without custom networking): [`discover`] sorts
//!   the subnets of the node's VPC and zone into candidates and exclusions by their tags, as the
//!   existing implementation does (the node's own subnet needs no tag; others need
//!   `kubernetes.io/role/cni`; `kubernetes.io/role/cni=0` excludes any subnet, the node's own
//!   included; a subnet tagged `kubernetes.io/cluster/<name>` serves that cluster only).
//! - An ENIConfig with several subnets: every listed subnet is a candidate (validation already
//!   refused an ENIConfig whose subnets are not all in the node's VPC and zone).
//! - Either way [`choose`] picks, for each new ENI, the candidate with the most free addresses
//!   that is not backing off after a refusal, preferring those that can hold the whole ENI.

use std::collections::{BTreeMap, BTreeSet};

use crate::SubnetFacts;

/// The tag that opts a subnet into subnet discovery (any value but `0`) or out of it (`0`).
pub const CNI_ROLE_TAG: &str = "kubernetes.io/role/cni";
/// Prefix of the tags that give a subnet to named clusters (`kubernetes.io/cluster/<name>`).
pub const CLUSTER_TAG_PREFIX: &str = "kubernetes.io/cluster/";

/// Why a subnet of the node's zone takes no pod ENI.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Exclusion {
    /// Tagged `kubernetes.io/role/cni=0`.
    OptedOut,
    /// Not the node's own subnet, and not tagged `kubernetes.io/role/cni`.
    Untagged,
    /// Tagged `kubernetes.io/cluster/<name>` for other clusters only; `ours` is `CLUSTER_NAME`
    /// (None: unset, so no cluster tag can be ours).
    OtherCluster {
        clusters: Vec<String>,
        ours: Option<String>,
    },
    /// Not in the node's VPC and zone.
    Elsewhere,
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exclusion::OptedOut => write!(f, "tagged {CNI_ROLE_TAG}=0"),
            Exclusion::Untagged => write!(f, "not the node's subnet and not tagged {CNI_ROLE_TAG}"),
            Exclusion::OtherCluster {
                clusters,
                ours: Some(ours),
            } => write!(
                f,
                "tagged {CLUSTER_TAG_PREFIX}<name> for {}, not for this cluster {ours} (CLUSTER_NAME)",
                clusters.join(", ")
            ),
            Exclusion::OtherCluster {
                clusters,
                ours: None,
            } => write!(
                f,
                "tagged {CLUSTER_TAG_PREFIX}<name> for {} and CLUSTER_NAME is unset",
                clusters.join(", ")
            ),
            Exclusion::Elsewhere => f.write_str("not in the node's VPC and zone"),
        }
    }
}

/// What the node knows when it discovers subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryScope<'a> {
    pub vpc_id: &'a str,
    pub availability_zone: &'a str,
    /// The primary ENI's subnet.
    pub node_subnet: &'a str,
    /// `CLUSTER_NAME`.
    pub cluster_name: Option<&'a str>,
}

/// Subnets sorted into candidates for pod ENIs and the rest with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Discovery {
    /// Most free addresses first (ties: the node's own subnet, then by id).
    pub eligible: Vec<SubnetFacts>,
    pub excluded: Vec<(SubnetFacts, Exclusion)>,
}

impl Discovery {
    pub fn eligible_ids(&self) -> Vec<String> {
        self.eligible.iter().map(|s| s.id.clone()).collect()
    }

    /// Why the node's own subnet is excluded, if it is.
    pub fn node_subnet_excluded(&self, node_subnet: &str) -> Option<&Exclusion> {
        self.excluded
            .iter()
            .find(|(s, _)| s.id == node_subnet)
            .map(|(_, e)| e)
    }
}

/// The clusters a subnet's `kubernetes.io/cluster/<name>` tags name.
fn tagged_clusters(tags: &BTreeMap<String, String>) -> Vec<String> {
    tags.keys()
        .filter_map(|k| k.strip_prefix(CLUSTER_TAG_PREFIX))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

fn exclusion(scope: &DiscoveryScope<'_>, s: &SubnetFacts) -> Option<Exclusion> {
    if s.vpc_id != scope.vpc_id || s.availability_zone != scope.availability_zone {
        return Some(Exclusion::Elsewhere);
    }
    match s.tags.get(CNI_ROLE_TAG).map(|v| v.trim()) {
        Some("0") => return Some(Exclusion::OptedOut),
        None if s.id != scope.node_subnet => return Some(Exclusion::Untagged),
        _ => {}
    }
    // The node already lives in its own subnet: cluster tags there decide nothing.
    if s.id == scope.node_subnet {
        return None;
    }
    let clusters = tagged_clusters(&s.tags);
    let ours = scope.cluster_name.filter(|c| !c.is_empty());
    if !clusters.is_empty() && !ours.is_some_and(|o| clusters.iter().any(|c| c == o)) {
        return Some(Exclusion::OtherCluster {
            clusters,
            ours: ours.map(str::to_string),
        });
    }
    None
}

/// Most free addresses first; ties go to `first` (the node's own subnet), then to the lower id,
/// so the same answers always give the same order.
fn rank(subnets: &mut [SubnetFacts], first: &str) {
    subnets.sort_by(|a, b| {
        b.available_addresses
            .cmp(&a.available_addresses)
            .then_with(|| (b.id == first).cmp(&(a.id == first)))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// Sorts DescribeSubnets' answer for the node's VPC and zone into candidates and exclusions.
/// A subnet listed twice counts once.
pub fn discover(scope: &DiscoveryScope<'_>, subnets: &[SubnetFacts]) -> Discovery {
    let mut seen = BTreeSet::new();
    let mut out = Discovery::default();
    for s in subnets.iter().filter(|s| seen.insert(s.id.clone())) {
        match exclusion(scope, s) {
            None => out.eligible.push(s.clone()),
            Some(e) => out.excluded.push((s.clone(), e)),
        }
    }
    rank(&mut out.eligible, scope.node_subnet);
    out.excluded.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    out
}

/// The subnet for the next ENI among `candidates`: not in `resting` (backing off after EC2
/// refused it), with room for `needed` addresses by the last count if any has, the most free
/// addresses first (a count may be stale, so a subnet short by it is still tried, last).
/// `first` wins ties (the ENIConfig's `spec.subnet`, or the node's own subnet).
pub fn choose<'a>(
    candidates: &'a [SubnetFacts],
    resting: &BTreeSet<String>,
    needed: u32,
    first: &str,
) -> Option<&'a SubnetFacts> {
    let mut ranked: Vec<&SubnetFacts> = candidates
        .iter()
        .filter(|s| !resting.contains(&s.id))
        .collect();
    ranked.sort_by(|a, b| {
        (b.available_addresses >= needed)
            .cmp(&(a.available_addresses >= needed))
            .then_with(|| b.available_addresses.cmp(&a.available_addresses))
            .then_with(|| (b.id == first).cmp(&(a.id == first)))
            .then_with(|| a.id.cmp(&b.id))
    });
    ranked.first().copied()
}

#[cfg(test)]
mod tests;
