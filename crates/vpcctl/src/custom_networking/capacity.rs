//! Capacity in numbers, pure: how many addresses planned nodes take from each zone's pod subnets
//! under the warm settings, idle and with every pod slot used, against what the subnets have
//! free. The figures come from the pool arithmetic `ipamd` runs (`ipam::settle`), so a plan and a
//! node agree.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use instance_limits::{LimitsTable, MaxPodsOptions, max_pods};
use ipam::PoolSettings;
use ipamd_settings::IpamdSettings;

/// `--nodes m5.large=10,c5.4xlarge=3`: instance types and how many of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGroup {
    pub instance_type: String,
    pub count: usize,
}

/// Parses `<type>=<count>[,…]`; an error names the entry and what is wrong with it.
pub fn parse_nodes(text: &str) -> Result<Vec<NodeGroup>, String> {
    let mut out: Vec<NodeGroup> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (t, n) = entry
            .split_once('=')
            .ok_or_else(|| format!("--nodes entry {entry:?}: expected <instance type>=<count>"))?;
        let count: usize = n.trim().parse().map_err(|_| {
            format!("--nodes entry {entry:?}: {n:?} is not a whole number of nodes")
        })?;
        let t = t.trim();
        if t.is_empty() {
            return Err(format!(
                "--nodes entry {entry:?}: the instance type is missing"
            ));
        }
        match out.iter_mut().find(|g| g.instance_type == t) {
            Some(g) => g.count += count,
            None => out.push(NodeGroup {
                instance_type: t.to_string(),
                count,
            }),
        }
    }
    if out.is_empty() {
        return Err("--nodes is empty: expected <instance type>=<count>[,…]".to_string());
    }
    Ok(out)
}

/// What one node of a type takes from its zone's pod subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerNode {
    pub instance_type: String,
    pub max_pods: u32,
    /// With no pod: the warm pool alone (a whole spare ENI under `WARM_ENI_TARGET=1`).
    pub idle: usize,
    /// With every pod slot used (max pods, less the two host-network pods).
    pub full: usize,
}

/// The pool settings of a custom-networking node of `instance_type` under `settings`, as
/// `ipamd` computes them at start-up.
fn pool_for(settings: &IpamdSettings, instance_type: &str) -> Result<(PoolSettings, u32), String> {
    let limits = LimitsTable::builtin()
        .get(instance_type)
        .map_err(|e| e.to_string())?;
    let options = MaxPodsOptions {
        custom_networking: true,
        ..settings.max_pods_options()
    };
    let pods = max_pods(limits, &options).map_err(|e| e.to_string())?;
    let pool = settings.pool(
        limits,
        &pods,
        Duration::from_secs(60),
        Duration::from_secs(30),
    );
    Ok((pool, pods.max_pods))
}

/// Idle and full figures for one node of each type.
pub fn per_node(settings: &IpamdSettings, groups: &[NodeGroup]) -> Result<Vec<PerNode>, String> {
    groups
        .iter()
        .map(|g| {
            let (pool, max) = pool_for(settings, &g.instance_type)?;
            let idle = ipam::settle(&pool, true, 0)?;
            // The kubelet's two host-network pods (aws-node, kube-proxy) take no address.
            let full = ipam::settle(&pool, true, (max as usize).saturating_sub(2))?;
            Ok(PerNode {
                instance_type: g.instance_type.clone(),
                max_pods: max,
                idle: idle.subnet_addresses,
                full: full.subnet_addresses,
            })
        })
        .collect()
}

/// One zone: the planned nodes against its pod subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneCapacity {
    pub zone: String,
    /// Nodes of each type in this zone: the group spread evenly over the zones, rounded up.
    pub nodes: Vec<(String, usize)>,
    pub idle: usize,
    pub full: usize,
    /// Free addresses in the zone's pod subnets (new subnets: their usable addresses).
    pub free: u64,
}

impl ZoneCapacity {
    pub fn fits_idle(&self) -> bool {
        self.idle as u64 <= self.free
    }
    pub fn fits_full(&self) -> bool {
        self.full as u64 <= self.free
    }
}

/// Every zone of `free` (zone → free addresses of its pod subnets) with its share of `groups`.
pub fn zones(
    per_node: &[PerNode],
    groups: &[NodeGroup],
    free: &BTreeMap<String, u64>,
) -> Vec<ZoneCapacity> {
    let zones = free.len().max(1);
    free.iter()
        .map(|(zone, free)| {
            let mut z = ZoneCapacity {
                zone: zone.clone(),
                nodes: Vec::new(),
                idle: 0,
                full: 0,
                free: *free,
            };
            for (g, n) in groups.iter().zip(per_node) {
                let here = g.count.div_ceil(zones);
                z.nodes.push((g.instance_type.clone(), here));
                z.idle += here * n.idle;
                z.full += here * n.full;
            }
            z
        })
        .collect()
}

/// The warnings a capacity view gives: a zone whose subnets cannot hold the planned nodes.
pub fn warnings(zones: &[ZoneCapacity]) -> Vec<String> {
    zones
        .iter()
        .filter(|z| !z.fits_full())
        .map(|z| {
            let when = if z.fits_idle() {
                "with every pod slot used"
            } else {
                "even idle"
            };
            format!(
                "{}: the planned nodes would hold {} addresses {when}, the pod subnets have {} free: pods past that stay in ContainerCreating (add room with `vpcctl custom-networking expand --cidr <block>`)",
                z.zone,
                if z.fits_idle() { z.full } else { z.idle },
                z.free
            )
        })
        .collect()
}

/// The settings the figures assume, for the header line.
pub fn describe_settings(s: &IpamdSettings) -> String {
    let mut parts = Vec::new();
    if s.warm_ip_target > 0 || s.minimum_ip_target > 0 {
        parts.push(format!(
            "WARM_IP_TARGET={} MINIMUM_IP_TARGET={}",
            s.warm_ip_target, s.minimum_ip_target
        ));
    } else if s.enable_prefix_delegation {
        parts.push(format!("WARM_PREFIX_TARGET={}", s.warm_prefix_target));
    } else {
        parts.push(format!("WARM_ENI_TARGET={}", s.warm_eni_target));
    }
    if s.enable_prefix_delegation {
        parts.push("ENABLE_PREFIX_DELEGATION=true".to_string());
    }
    if let Some(m) = s.max_eni {
        parts.push(format!("MAX_ENI={m}"));
    }
    parts.join(" ")
}

/// The capacity view, as `plan` and `expand` print it.
pub struct Report {
    /// The settings the figures assume ([`describe_settings`]) and where they come from.
    pub settings: String,
    pub source: String,
    pub per_node: Vec<PerNode>,
    pub zones: Vec<ZoneCapacity>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "capacity ({}, from {}; each node group spread evenly over the zones, rounded up):",
            self.settings, self.source
        )?;
        for n in &self.per_node {
            writeln!(
                f,
                "  one {:<14} max pods {:>3}: {:>4} addresses idle, {:>4} with every pod slot used",
                n.instance_type, n.max_pods, n.idle, n.full
            )?;
        }
        for z in &self.zones {
            let nodes: Vec<String> = z.nodes.iter().map(|(t, n)| format!("{n} x {t}")).collect();
            let verdict = match (z.fits_idle(), z.fits_full()) {
                (_, true) => "fits",
                (true, false) => "FULL before max pods",
                (false, false) => "FULL even idle",
            };
            writeln!(
                f,
                "  {:<12} {:<24} {:>6} idle {:>6} full  of {:>6} free  {verdict}",
                z.zone,
                nodes.join(", "),
                z.idle,
                z.full,
                z.free
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(env: &[(&str, &str)]) -> IpamdSettings {
        let map: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        IpamdSettings::from_lookup(|k| map.get(k).cloned()).unwrap()
    }

    #[test]
    fn nodes_parse_and_name_their_errors() {
        assert_eq!(
            parse_nodes("m5.large=10, c5.4xlarge=3,m5.large=2").unwrap(),
            [
                NodeGroup {
                    instance_type: "m5.large".into(),
                    count: 12
                },
                NodeGroup {
                    instance_type: "c5.4xlarge".into(),
                    count: 3
                }
            ]
        );
        assert!(
            parse_nodes("m5.large")
                .unwrap_err()
                .contains("<instance type>=<count>")
        );
        assert!(parse_nodes("m5.large=ten").unwrap_err().contains("\"ten\""));
        assert!(
            parse_nodes("=3")
                .unwrap_err()
                .contains("instance type is missing")
        );
        assert!(parse_nodes(" , ").unwrap_err().contains("empty"));
    }

    #[test]
    fn a_spare_eni_per_node_by_default_and_a_prefix_per_eni_with_delegation() {
        let groups = parse_nodes("m5.large=1").unwrap();
        // m5.large: 3 ENIs of 10 addresses; custom networking: 2 pod ENIs, 9 pod addresses each.
        let n = &per_node(&settings(&[]), &groups).unwrap()[0];
        assert_eq!(n.max_pods, 20);
        // WARM_ENI_TARGET=1: one whole ENI (9 addresses and its own) with no pod.
        assert_eq!(n.idle, 10);
        // 18 pods fill both pod ENIs: 2 x 10.
        assert_eq!(n.full, 20);
        let pd = &per_node(&settings(&[("ENABLE_PREFIX_DELEGATION", "true")]), &groups).unwrap()[0];
        // One /28 on one ENI when idle (WARM_PREFIX_TARGET=0 still keeps one prefix).
        assert_eq!(pd.idle, 16 + 1);
        assert!(pd.full >= pd.max_pods as usize - 2, "{pd:?}");
        let ip = &per_node(
            &settings(&[("WARM_IP_TARGET", "3"), ("MINIMUM_IP_TARGET", "3")]),
            &groups,
        )
        .unwrap()[0];
        assert_eq!(ip.idle, 3 + 1);
        assert!(per_node(&settings(&[]), &parse_nodes("x9.nope=1").unwrap()).is_err());
    }

    #[test]
    fn zones_share_the_nodes_and_warn_before_they_fill() {
        let groups = parse_nodes("m5.large=3").unwrap();
        let per = per_node(&settings(&[]), &groups).unwrap();
        let free = BTreeMap::from([
            ("us-west-2a".to_string(), 8187u64),
            ("us-west-2b".to_string(), 35u64),
            ("us-west-2c".to_string(), 15u64),
        ]);
        let z = zones(&per, &groups, &free);
        // 3 nodes over 3 zones: one each; idle 10, full 20.
        assert_eq!(z[0].nodes, [("m5.large".to_string(), 1)]);
        assert!(z[0].fits_full());
        assert!(z[1].fits_full());
        assert!(z[2].fits_idle() && !z[2].fits_full());
        let w = warnings(&z);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("us-west-2c: the planned nodes would hold 20 addresses with every pod slot used, the pod subnets have 15 free"), "{}", w[0]);
        let two = zones(
            &per,
            &groups,
            &BTreeMap::from([("a".to_string(), 30u64), ("b".to_string(), 5)]),
        );
        // 3 nodes over 2 zones: 2 each (rounded up).
        assert_eq!(two[0].idle, 20);
        assert!(
            warnings(&two)[1].contains("even idle"),
            "{:?}",
            warnings(&two)
        );
    }
}
