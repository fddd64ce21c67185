//! `testbed.yaml`: the VPC, subnets, security groups, nodes and ENIConfigs of a testbed.
//! Subnets and groups are referred to by name; every error names the entry it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ipnet::Ipv4Net;
use serde::Deserialize;

pub const DEFAULT_CONFIG: &str = include_str!("../testbed.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub region: String,
    pub vpc: VpcConfig,
    pub subnets: Vec<SubnetConfig>,
    #[serde(default)]
    pub security_groups: Vec<GroupConfig>,
    /// The nodes named one by one; a `fleet` adds its nodes after them.
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
    /// Many identical nodes at once (`make fleet`).
    #[serde(default)]
    pub fleet: Option<FleetConfig>,
    #[serde(default)]
    pub eniconfigs: Vec<EniConfigEntry>,
    /// Environment of every node's ipamd; a node's own `ipamd_env` overrides it.
    #[serde(default)]
    pub ipamd_env: BTreeMap<String, String>,
    /// A NAT namespace for pods whose node uses external SNAT.
    #[serde(default = "yes")]
    pub nat_gateway: bool,
    /// EC2's throttling (per-action token buckets at EC2's published sizes, see
    /// docs/spec/testbed.md) turned on once the testbed has seeded EC2 and before any ipamd
    /// starts, so the nodes meet full buckets and the seeding spends none of their tokens.
    #[serde(default)]
    pub throttle: bool,
}

/// `count` nodes of one instance type, named `<name>-<n>` (n from 1, zero-padded to the
/// width of `count`), spread round-robin over `zones`, each in its zone's node subnet and
/// labelled `topology.kubernetes.io/zone=<zone>` (the default testbed's ENIConfig selection).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    pub count: usize,
    pub instance_type: String,
    pub zones: Vec<String>,
    /// Zone → the subnet (by name) its nodes go in. A zone left out uses its one subnet that
    /// no ENIConfig names.
    #[serde(default)]
    pub subnets: BTreeMap<String, String>,
    #[serde(default = "fleet_name")]
    pub name: String,
    /// Environment of the fleet's ipamd on top of the config's `ipamd_env`.
    #[serde(default)]
    pub ipamd_env: BTreeMap<String, String>,
}

fn fleet_name() -> String {
    "fleet".to_string()
}

/// More nodes than this would not fit the router's link names and is far beyond what one
/// machine runs.
pub const MAX_FLEET: usize = 1000;

/// The zone label every fleet node carries.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcConfig {
    pub cidr: Ipv4Net,
    #[serde(default)]
    pub secondary_cidrs: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetConfig {
    pub name: String,
    pub az: String,
    pub cidr: Ipv4Net,
    /// Tags applied when the subnet is created (e.g. `kubernetes.io/role/cni: "1"` for subnet
    /// discovery).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    #[serde(default)]
    pub ingress: Vec<IngressRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressRule {
    /// tcp, udp, icmp or all
    pub protocol: String,
    /// "80", "1000-2000" or "all"
    pub ports: String,
    /// a CIDR or a security group name
    pub from: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    pub instance_type: String,
    pub subnet: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub ipamd_env: BTreeMap<String, String>,
    /// The primary ENI's groups by name; none means the VPC's default group.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Runs ipamd as the shipped DaemonSet's unprivileged container does: `/proc/sys` read-only,
    /// so ipamd cannot change a sysctl itself.
    #[serde(default)]
    pub read_only_sysctls: bool,
    /// A container runtime of the node's own, started and stopped with it.
    #[serde(default)]
    pub runtime: NodeRuntime,
}

/// What makes pods on a node besides `vpc-testbed pod add` (which runs the conflist itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRuntime {
    #[default]
    None,
    /// Debian's containerd in the node's namespace, with its CRI service (as on an EKS node).
    Containerd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EniConfigEntry {
    pub name: String,
    pub subnet: String,
    #[serde(default)]
    pub security_groups: Option<Vec<String>>,
    /// `spec.subnets`: more subnets by name, beside `subnet`.
    #[serde(default)]
    pub subnets: Option<Vec<String>>,
}

/// A protocol and port range, parsed from an ingress rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    All,
    Range(u16, u16),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("testbed config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("testbed config: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("testbed config, {entry}: {problem}")]
    Invalid { entry: String, problem: String },
}

fn invalid(entry: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        entry: entry.into(),
        problem: problem.into(),
    }
}

/// Node names become namespace names next to these.
const RESERVED_NODE_NAMES: [&str; 3] = ["router", "inet", "nat"];

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            None => DEFAULT_CONFIG.to_string(),
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
        };
        Self::parse(&text)
    }

    /// Parses and validates; a `fleet` is expanded into `nodes` (after the named ones).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = serde_yaml::from_str(text)?;
        if let Some(fleet) = &config.fleet {
            let nodes = fleet.nodes(&config)?;
            config.nodes.extend(nodes);
        }
        config.validate()?;
        Ok(config)
    }

    pub fn vpc_cidrs(&self) -> Vec<Ipv4Net> {
        std::iter::once(self.vpc.cidr)
            .chain(self.vpc.secondary_cidrs.iter().copied())
            .collect()
    }

    pub fn subnet(&self, name: &str) -> Option<&SubnetConfig> {
        self.subnets.iter().find(|s| s.name == name)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let vpc_cidrs = self.vpc_cidrs();
        let mut names = BTreeSet::new();
        for (i, s) in self.subnets.iter().enumerate() {
            let entry = format!("subnets[{i}] ({})", s.name);
            if !names.insert(s.name.as_str()) {
                return Err(invalid(entry, "the name is used twice"));
            }
            if !vpc_cidrs.iter().any(|v| v.contains(&s.cidr)) {
                return Err(invalid(
                    entry,
                    format!("{} is in none of the VPC's blocks {vpc_cidrs:?}", s.cidr),
                ));
            }
            if s.cidr.prefix_len() > 28 {
                return Err(invalid(
                    entry,
                    format!("{} is smaller than EC2's smallest subnet, a /28", s.cidr),
                ));
            }
            if !s.az.starts_with(&self.region) {
                return Err(invalid(
                    entry,
                    format!("zone {} is not in region {}", s.az, self.region),
                ));
            }
        }
        let groups: BTreeSet<&str> = self
            .security_groups
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        if groups.len() != self.security_groups.len() {
            return Err(invalid("security_groups", "a group name is used twice"));
        }
        for (i, g) in self.security_groups.iter().enumerate() {
            for (j, rule) in g.ingress.iter().enumerate() {
                let entry = format!("security_groups[{i}] ({}).ingress[{j}]", g.name);
                rule.parse_ports().map_err(|p| invalid(&entry, p))?;
                if rule.from.parse::<Ipv4Net>().is_err() && !groups.contains(rule.from.as_str()) {
                    return Err(invalid(
                        entry,
                        format!("from {:?} is neither a CIDR nor a group name", rule.from),
                    ));
                }
            }
        }
        let known_group = |entry: &str, name: &str| {
            if groups.contains(name) {
                Ok(())
            } else {
                Err(invalid(
                    entry,
                    format!("security group {name:?} is not defined in security_groups"),
                ))
            }
        };
        let known_subnet = |entry: &str, name: &str| {
            if self.subnet(name).is_some() {
                Ok(())
            } else {
                Err(invalid(
                    entry,
                    format!("subnet {name:?} is not defined in subnets"),
                ))
            }
        };
        if self.nodes.is_empty() {
            return Err(invalid(
                "nodes",
                "at least one node is needed (in nodes or a fleet)",
            ));
        }
        let mut node_names = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let entry = format!("nodes[{i}] ({})", n.name);
            let valid_name = !n.name.is_empty()
                && n.name.len() <= 20
                && n.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_name || RESERVED_NODE_NAMES.contains(&n.name.as_str()) {
                return Err(invalid(
                    entry,
                    "a node name is 1-20 of a-z, 0-9 and -, and not router, inet or nat",
                ));
            }
            if !node_names.insert(n.name.as_str()) {
                return Err(invalid(entry, "the name is used twice"));
            }
            known_subnet(&entry, &n.subnet)?;
            for g in &n.security_groups {
                known_group(&entry, g)?;
            }
        }
        for (i, e) in self.eniconfigs.iter().enumerate() {
            let entry = format!("eniconfigs[{i}] ({})", e.name);
            known_subnet(&entry, &e.subnet)?;
            for name in e.subnets.iter().flatten() {
                known_subnet(&entry, name)?;
            }
            for g in e.security_groups.iter().flatten() {
                known_group(&entry, g)?;
            }
        }
        Ok(())
    }
}

impl FleetConfig {
    /// The fleet's nodes; every error names `fleet` and what is wrong.
    fn nodes(&self, config: &Config) -> Result<Vec<NodeConfig>, ConfigError> {
        if self.count == 0 || self.count > MAX_FLEET {
            return Err(invalid(
                "fleet.count",
                format!("{} is not between 1 and {MAX_FLEET}", self.count),
            ));
        }
        let width = self.count.to_string().len();
        let valid_name = !self.name.is_empty()
            && self.name.len() + 1 + width <= 20
            && self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_name {
            return Err(invalid(
                "fleet.name",
                format!(
                    "{:?} must start with a-z, hold only a-z, 0-9 and -, and leave room for \
                     \"-\" and {width} digits in a node name of at most 20 characters",
                    self.name
                ),
            ));
        }
        if self.instance_type.is_empty() {
            return Err(invalid("fleet.instance_type", "is empty"));
        }
        if self.zones.is_empty() {
            return Err(invalid("fleet.zones", "at least one zone is needed"));
        }
        let mut subnets = Vec::new();
        for (i, zone) in self.zones.iter().enumerate() {
            let entry = format!("fleet.zones[{i}] ({zone})");
            if self.zones[..i].contains(zone) {
                return Err(invalid(entry, "the zone is listed twice"));
            }
            subnets.push(self.subnet_of(config, zone, &entry)?);
        }
        if let Some(zone) = self.subnets.keys().find(|z| !self.zones.contains(z)) {
            return Err(invalid(
                format!("fleet.subnets.{zone}"),
                "the zone is not in fleet.zones",
            ));
        }
        for (zone, subnet) in self.zones.iter().zip(&subnets) {
            let nodes = self.count.div_ceil(self.zones.len());
            // EC2 keeps five addresses of every subnet; named nodes may be there too.
            let usable = (1usize << (32 - subnet.cidr.prefix_len())).saturating_sub(5);
            if nodes > usable {
                return Err(invalid(
                    format!("fleet.zones ({zone})"),
                    format!(
                        "up to {nodes} nodes go in subnet {} ({}), which has {usable} usable addresses",
                        subnet.name, subnet.cidr
                    ),
                ));
            }
        }
        Ok((1..=self.count)
            .map(|n| {
                let zone = &self.zones[(n - 1) % self.zones.len()];
                let subnet = &subnets[(n - 1) % subnets.len()];
                NodeConfig {
                    name: format!("{}-{n:0width$}", self.name),
                    instance_type: self.instance_type.clone(),
                    subnet: subnet.name.clone(),
                    labels: BTreeMap::from([(ZONE_LABEL.to_string(), zone.clone())]),
                    annotations: BTreeMap::new(),
                    ipamd_env: self.ipamd_env.clone(),
                    security_groups: Vec::new(),
                    read_only_sysctls: false,
                    runtime: NodeRuntime::None,
                }
            })
            .collect())
    }

    /// The zone's node subnet: the one `subnets` names, else the zone's only subnet no
    /// ENIConfig uses.
    fn subnet_of<'a>(
        &self,
        config: &'a Config,
        zone: &str,
        entry: &str,
    ) -> Result<&'a SubnetConfig, ConfigError> {
        if let Some(name) = self.subnets.get(zone) {
            let subnet = config.subnet(name).ok_or_else(|| {
                invalid(
                    format!("fleet.subnets.{zone}"),
                    format!("subnet {name:?} is not defined in subnets"),
                )
            })?;
            if subnet.az != zone {
                return Err(invalid(
                    format!("fleet.subnets.{zone}"),
                    format!("subnet {name:?} is in zone {}, not {zone}", subnet.az),
                ));
            }
            return Ok(subnet);
        }
        let candidates: Vec<&SubnetConfig> = config
            .subnets
            .iter()
            .filter(|s| s.az == zone)
            .filter(|s| !config.eniconfigs.iter().any(|e| e.subnet == s.name))
            .collect();
        match candidates.as_slice() {
            [one] => Ok(one),
            [] => Err(invalid(
                entry,
                "no subnet of this zone is free of ENIConfigs to hold the nodes: add one to \
                 subnets, or name one in fleet.subnets",
            )),
            many => Err(invalid(
                entry,
                format!(
                    "subnets {} could all hold the nodes: name one in fleet.subnets",
                    many.iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
}

impl IngressRule {
    /// (protocol as EC2 spells it, ports)
    pub fn parse_ports(&self) -> Result<(String, Ports), String> {
        let protocol = match self.protocol.as_str() {
            "tcp" | "udp" | "icmp" => self.protocol.clone(),
            "all" | "-1" => "-1".to_string(),
            other => return Err(format!("protocol {other:?} is not tcp, udp, icmp or all")),
        };
        let ports = match self.ports.as_str() {
            "all" => Ports::All,
            p => {
                let (a, b) = p.split_once('-').unwrap_or((p, p));
                let parse = |v: &str| {
                    v.trim()
                        .parse::<u16>()
                        .map_err(|_| format!("ports {p:?} is not \"80\", \"1000-2000\" or \"all\""))
                };
                let (a, b) = (parse(a)?, parse(b)?);
                if a > b {
                    return Err(format!("ports {p:?}: the range is reversed"));
                }
                Ports::Range(a, b)
            }
        };
        if (protocol == "-1" || protocol == "icmp") && ports != Ports::All {
            return Err(format!("protocol {} takes ports \"all\"", self.protocol));
        }
        Ok((protocol, ports))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_models_the_reference_document() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.vpc_cidrs().len(), 2);
        assert_eq!(c.nodes.len(), 2);
        assert!(c.nodes.iter().all(|n| n.instance_type == "m5.large"));
        assert_eq!(
            c.eniconfigs
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["us-west-2a", "us-west-2b"]
        );
        assert_eq!(c.ipamd_env["AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"], "true");
        assert_eq!(
            c.ipamd_env["ENI_CONFIG_LABEL_DEF"],
            "topology.kubernetes.io/zone"
        );
    }

    fn err(yaml_change: (&str, &str)) -> String {
        let text = DEFAULT_CONFIG.replace(yaml_change.0, yaml_change.1);
        assert_ne!(text, DEFAULT_CONFIG, "the replacement did not apply");
        Config::parse(&text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_entry() {
        let e = err(("subnet: nodes-b,", "subnet: nodes-c,"));
        assert!(
            e.contains("nodes[1] (node-b)") && e.contains("\"nodes-c\""),
            "{e}"
        );
        let e = err((
            "{name: us-west-2b, subnet: pods-b, security_groups: [pods]}",
            "{name: us-west-2b, subnet: pods-b, security_groups: [web]}",
        ));
        assert!(
            e.contains("eniconfigs[1] (us-west-2b)") && e.contains("\"web\""),
            "{e}"
        );
        let e = err((
            "ports: \"8080\", from: \"10.0.0.0/8\"",
            "ports: \"80-70\", from: \"10.0.0.0/8\"",
        ));
        assert!(
            e.contains("security_groups[0] (pods).ingress[0]") && e.contains("reversed"),
            "{e}"
        );
        let e = err(("cidr: 100.64.32.0/19", "cidr: 172.16.0.0/19"));
        assert!(e.contains("subnets[3] (pods-b)"), "{e}");
        let e = err(("from: \"100.64.0.0/16\"}", "from: \"nowhere\"}"));
        assert!(e.contains("neither a CIDR nor a group name"), "{e}");
        let e = err(("region: us-west-2", "region: us-west-2\nbogus: 1"));
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn the_containerd_example_is_the_default_testbed_with_containerd_on_every_node() {
        let text = include_str!("../testbed-containerd.yaml");
        let body = |t: &str| {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.replace(" runtime: containerd,", ""))
                .collect::<Vec<_>>()
        };
        assert_eq!(body(text), body(DEFAULT_CONFIG), "the example drifted");
        let c = Config::parse(text).unwrap();
        assert!(c.nodes.iter().all(|n| n.runtime == NodeRuntime::Containerd));
    }

    #[test]
    fn a_node_runs_containerd_only_when_asked() {
        let c = Config::load(None).unwrap();
        assert!(c.nodes.iter().all(|n| n.runtime == NodeRuntime::None));
        let text =
            DEFAULT_CONFIG.replace("subnet: nodes-a,", "subnet: nodes-a, runtime: containerd,");
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.nodes[0].runtime, NodeRuntime::Containerd);
        assert_eq!(c.nodes[1].runtime, NodeRuntime::None);
        let e = err(("subnet: nodes-a,", "subnet: nodes-a, runtime: docker,"));
        assert!(e.contains("docker") && e.contains("containerd"), "{e}");
    }

    const FLEET: &str =
        "fleet: {count: 100, instance_type: m5.large, zones: [us-west-2a, us-west-2b]}\n";

    /// The default testbed with its two named nodes replaced by `fleet`.
    fn fleet_config(fleet: &str) -> Result<Config, ConfigError> {
        let start = DEFAULT_CONFIG.find("nodes:").unwrap();
        let end = DEFAULT_CONFIG.find("eniconfigs:").unwrap();
        let text = format!(
            "{}{fleet}{}",
            &DEFAULT_CONFIG[..start],
            &DEFAULT_CONFIG[end..]
        );
        Config::parse(&text)
    }

    #[test]
    fn a_fleet_spreads_its_nodes_over_the_zones_node_subnets() {
        let c = fleet_config(FLEET).unwrap();
        assert_eq!(c.nodes.len(), 100);
        assert_eq!(c.nodes[0].name, "fleet-001");
        assert_eq!(c.nodes[99].name, "fleet-100");
        assert_eq!(
            (c.nodes[0].subnet.as_str(), c.nodes[1].subnet.as_str()),
            ("nodes-a", "nodes-b"),
            "ENIConfigs use pods-a and pods-b: the nodes go in the other subnet of each zone"
        );
        assert_eq!(c.nodes[2].labels[ZONE_LABEL], "us-west-2a");
        assert_eq!(c.nodes[3].labels[ZONE_LABEL], "us-west-2b");
        assert!(c.nodes.iter().all(|n| n.instance_type == "m5.large"));
        assert_eq!(
            c.nodes
                .iter()
                .filter(|n| n.labels[ZONE_LABEL] == "us-west-2a")
                .count(),
            50
        );
        let c = fleet_config(
            "fleet: {count: 3, instance_type: c5.xlarge, zones: [us-west-2b], name: f, \
             subnets: {us-west-2b: nodes-b}, ipamd_env: {WARM_IP_TARGET: \"1\"}}\n",
        )
        .unwrap();
        let names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["f-1", "f-2", "f-3"]);
        assert_eq!(c.nodes[2].ipamd_env["WARM_IP_TARGET"], "1");
    }

    #[test]
    fn named_nodes_and_a_fleet_coexist() {
        let text = DEFAULT_CONFIG.replace(
            "eniconfigs:",
            "fleet: {count: 2, instance_type: m5.large, zones: [us-west-2a]}\neniconfigs:",
        );
        let c = Config::parse(&text).unwrap();
        let names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["node-a", "node-b", "fleet-1", "fleet-2"]);
        let clash = DEFAULT_CONFIG.replace(
            "eniconfigs:",
            "fleet: {count: 2, instance_type: m5.large, zones: [us-west-2a], name: node}\n\
             eniconfigs:",
        );
        assert!(Config::parse(&clash).is_ok(), "node-1 is not node-a");
    }

    #[test]
    fn a_bad_fleet_is_refused_naming_the_problem() {
        let e = |fleet: &str| fleet_config(fleet).unwrap_err().to_string();
        let m = e("fleet: {count: 0, instance_type: m5.large, zones: [us-west-2a]}\n");
        assert!(
            m.contains("fleet.count") && m.contains("between 1 and"),
            "{m}"
        );
        let m = e("fleet: {count: 5000, instance_type: m5.large, zones: [us-west-2a]}\n");
        assert!(m.contains("fleet.count"), "{m}");
        let m = e("fleet: {count: 2, instance_type: m5.large, zones: []}\n");
        assert!(
            m.contains("fleet.zones") && m.contains("at least one"),
            "{m}"
        );
        let m = e("fleet: {count: 2, instance_type: m5.large, zones: [us-west-2c]}\n");
        assert!(
            m.contains("fleet.zones[0] (us-west-2c)") && m.contains("no subnet"),
            "{m}"
        );
        let m = e("fleet: {count: 2, instance_type: m5.large, zones: [us-west-2a, us-west-2a]}\n");
        assert!(m.contains("fleet.zones[1]") && m.contains("twice"), "{m}");
        let m = e(
            "fleet: {count: 2, instance_type: m5.large, zones: [us-west-2a], \
             subnets: {us-west-2a: pods-b}}\n",
        );
        assert!(
            m.contains("fleet.subnets.us-west-2a") && m.contains("us-west-2b"),
            "{m}"
        );
        let m = e(
            "fleet: {count: 2, instance_type: m5.large, zones: [us-west-2a], \
             subnets: {us-west-2b: nodes-b}}\n",
        );
        assert!(m.contains("not in fleet.zones"), "{m}");
        let m = e("fleet: {count: 300, instance_type: m5.large, zones: [us-west-2a]}\n");
        assert!(m.contains("251 usable addresses"), "{m}");
        let m = e("fleet: {count: 2, instance_type: m5.large, zones: [us-west-2a], name: Fleet}\n");
        assert!(m.contains("fleet.name"), "{m}");
        let m = e(
            "fleet: {count: 100, instance_type: m5.large, zones: [us-west-2a], \
             name: a-very-long-fleet-name}\n",
        );
        assert!(m.contains("fleet.name") && m.contains("3 digits"), "{m}");
        let m = e("fleet: {count: 2, instance_type: m5.large, zones: [us-west-2a], size: 3}\n");
        assert!(m.contains("size"), "{m}");
        let m = e("fleet: {count: 2, zones: [us-west-2a]}\n");
        assert!(m.contains("instance_type"), "{m}");
        // Two subnets of the zone free of ENIConfigs: which one is not guessed.
        let text = DEFAULT_CONFIG
            .replace(
                "  - {name: pods-a,",
                "  - {name: more-a, az: us-west-2a, cidr: 10.0.3.0/24}\n  - {name: pods-a,",
            )
            .replace(
                "eniconfigs:",
                "fleet: {count: 2, instance_type: m5.large, zones: [us-west-2a]}\neniconfigs:",
            );
        let m = Config::parse(&text).unwrap_err().to_string();
        assert!(m.contains("nodes-a, more-a"), "{m}");
        let m = fleet_config("").unwrap_err().to_string();
        assert!(m.contains("at least one node"), "{m}");
    }

    #[test]
    fn throttling_is_off_unless_asked() {
        assert!(!Config::load(None).unwrap().throttle);
        let text = DEFAULT_CONFIG.replace("nat_gateway: true", "nat_gateway: true\nthrottle: true");
        assert!(Config::parse(&text).unwrap().throttle);
    }

    #[test]
    fn ports() {
        let rule = |p: &str, ports: &str| IngressRule {
            protocol: p.into(),
            ports: ports.into(),
            from: "0.0.0.0/0".into(),
        };
        assert_eq!(
            rule("tcp", "80").parse_ports().unwrap().1,
            Ports::Range(80, 80)
        );
        assert_eq!(
            rule("udp", "1000-2000").parse_ports().unwrap().1,
            Ports::Range(1000, 2000)
        );
        assert_eq!(
            rule("all", "all").parse_ports().unwrap(),
            ("-1".to_string(), Ports::All)
        );
        assert!(rule("tcp", "eighty").parse_ports().is_err());
        assert!(rule("icmp", "80").parse_ports().is_err());
        assert!(rule("sctp", "all").parse_ports().is_err());
    }
}
