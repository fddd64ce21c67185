//! The custom-networking procedure as a pure function: what is wanted ([`Request`]) against what
//! EC2 and the ENIConfig destination show ([`Observed`]) gives the ordered changes ([`Plan`]) or a
//! refusal with its reason ([`Refusal`]). Nothing here talks to EC2; `apply` executes the changes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ec2::{
    IngressRule, IngressSource, Instance, SecurityGroup, SecurityGroupDetail, Subnet, VpcDetail,
};
use eniconfig::EniConfigSpec;
use instance_limits::{LimitsTable, MaxPodsOptions};
use ipnet::Ipv4Net;

/// EC2 keeps the first four addresses and the last of every subnet.
pub const RESERVED_PER_SUBNET: u64 = 5;
/// EC2's smallest subnet and its association size limits.
pub const SMALLEST_PREFIX: u8 = 28;
pub const LARGEST_BLOCK_PREFIX: u8 = 16;
/// EC2's default quota of IPv4 blocks per VPC.
pub const MAX_BLOCKS_PER_VPC: usize = 5;
/// The tag naming the ENIConfig a subnet serves (its zone).
pub const ENICONFIG_TAG: &str = "vpc-cni.k8s.aws/eniconfig";
/// The group `--create-security-group` creates (found again by this name).
pub const POD_GROUP_NAME: &str = "custom-networking-pods";
pub const POD_GROUP_DESCRIPTION: &str = "Pods on custom networking ENIs (created by vpcctl)";

/// The aws-node environment custom networking with zone-named ENIConfigs needs.
pub fn aws_node_env() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG".to_string(),
            "true".to_string(),
        ),
        (
            "ENI_CONFIG_LABEL_DEF".to_string(),
            "topology.kubernetes.io/zone".to_string(),
        ),
    ])
}
/// Overrides `ENI_CONFIG_LABEL_DEF` when set (the reference document's warning).
pub const ANNOTATION_ENV: &str = "ENI_CONFIG_ANNOTATION_DEF";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChoice {
    /// ENIConfigs list no groups: pod ENIs get the VPC's default group.
    None,
    Given(String),
    Create,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub vpc_id: String,
    pub cidr: Ipv4Net,
    /// None: the zones of the VPC's other subnets, else every zone of the region.
    pub azs: Option<Vec<String>>,
    /// None: the largest size that gives every zone one subnet.
    pub subnet_prefix: Option<u8>,
    pub security_group: GroupChoice,
    pub instance_types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub vpc: VpcDetail,
    /// The region's available zones.
    pub zones: Vec<String>,
    pub subnets: Vec<Subnet>,
    pub groups: Vec<SecurityGroupDetail>,
    /// `Given` group when it is not in the VPC: EC2's answer for it elsewhere (None: unknown).
    pub foreign_group: Option<SecurityGroup>,
    pub instances: Vec<Instance>,
    /// None: no destination for ENIConfigs was given.
    pub eniconfigs: Option<BTreeMap<String, EniConfigSpec>>,
    /// None: the aws-node DaemonSet is out of reach (no cluster).
    pub aws_node_env: Option<BTreeMap<String, String>>,
}

/// A subnet that exists, or the one an earlier change creates in a zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SubnetRef {
    Existing(String),
    New { az: String },
}

/// A group that exists, or the one an earlier change creates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupRef {
    Existing(String),
    New,
}

/// An ingress rule whose source may be the group being created.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlannedSource {
    Group(GroupRef),
    Cidr(Ipv4Net),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    AssociateCidr {
        cidr: Ipv4Net,
    },
    CreateSubnet {
        az: String,
        cidr: Ipv4Net,
        tags: BTreeMap<String, String>,
    },
    TagSubnet {
        subnet_id: String,
        az: String,
        tags: BTreeMap<String, String>,
    },
    CreateSecurityGroup {
        name: String,
        description: String,
    },
    /// All traffic from each source.
    AuthorizeIngress {
        group: GroupRef,
        sources: Vec<PlannedSource>,
    },
    WriteEniConfig {
        name: String,
        subnet: SubnetRef,
        groups: Option<Vec<GroupRef>>,
        replaces: Option<EniConfigSpec>,
    },
    SetAwsNodeEnv {
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
    /// `expand`: one more subnet in an ENIConfig's `spec.subnets`.
    AddEniConfigSubnet {
        name: String,
        subnet: SubnetRef,
        current: EniConfigSpec,
    },
}

/// One zone's custom subnet: kept or to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSubnet {
    pub az: String,
    pub cidr: Ipv4Net,
    /// None: created by this plan.
    pub existing: Option<String>,
}

impl ZoneSubnet {
    pub fn usable_addresses(&self) -> u64 {
        usable(self.cidr)
    }

    pub(crate) fn reference(&self) -> SubnetRef {
        match &self.existing {
            Some(id) => SubnetRef::Existing(id.clone()),
            None => SubnetRef::New {
                az: self.az.clone(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeToReplace {
    pub instance_id: String,
    pub instance_type: String,
    pub az: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// What is already in place (said so the user sees it was checked).
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
    pub subnets: Vec<ZoneSubnet>,
    /// Steps outside this command's reach, as commands to run.
    pub manual: Vec<String>,
    pub max_pods: Vec<(String, u32)>,
    /// None: not a question for this plan (`expand` leaves running nodes as they are).
    pub nodes_to_replace: Option<Vec<NodeToReplace>>,
}

impl Plan {
    /// Nothing yet; `nodes_to_replace` None: the question does not arise for this plan.
    pub fn new(nodes_to_replace: Option<Vec<NodeToReplace>>) -> Plan {
        Plan {
            changes: Vec::new(),
            notes: Vec::new(),
            warnings: Vec::new(),
            subnets: Vec::new(),
            manual: Vec::new(),
            max_pods: Vec::new(),
            nodes_to_replace,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("VPC {0} does not exist")]
    VpcMissing(String),
    #[error(
        "--cidr {0} is the VPC's primary block, the nodes' own: custom networking subnets must come from a secondary block"
    )]
    PrimaryBlock(Ipv4Net),
    #[error("--cidr {given} is not a network address: the block it names is {canonical}")]
    NotNetworkAddress { given: Ipv4Net, canonical: Ipv4Net },
    #[error(
        "--cidr {0} cannot be associated: EC2 takes blocks from /{LARGEST_BLOCK_PREFIX} to /{SMALLEST_PREFIX}"
    )]
    BlockSize(Ipv4Net),
    #[error(
        "--cidr {cidr} overlaps the VPC's block {block}: a secondary block must be disjoint from the VPC's blocks"
    )]
    Overlaps { cidr: Ipv4Net, block: Ipv4Net },
    #[error(
        "--cidr {cidr} cannot be associated: it is in the private range {range} and the VPC's primary block {primary} is in the private range {primary_range}; EC2 does not mix RFC 1918 ranges (100.64.0.0/10 is the usual choice)"
    )]
    Rfc1918Mismatch {
        cidr: Ipv4Net,
        range: Ipv4Net,
        primary: Ipv4Net,
        primary_range: Ipv4Net,
    },
    #[error(
        "--cidr {cidr} cannot be associated: the VPC already has {count} IPv4 blocks ({blocks}), EC2's default limit is {MAX_BLOCKS_PER_VPC}"
    )]
    TooManyBlocks {
        cidr: Ipv4Net,
        count: usize,
        blocks: String,
    },
    #[error("--subnet-prefix {prefix} does not fit --cidr {cidr}: it must be between /{} and /{SMALLEST_PREFIX}", cidr.prefix_len())]
    SubnetPrefix { prefix: u8, cidr: Ipv4Net },
    #[error(
        "--cidr {cidr} is too small: {zones} zones ({names}) need a /{prefix} each and only {free} free /{prefix} remain in it"
    )]
    TooSmall {
        cidr: Ipv4Net,
        prefix: u8,
        zones: usize,
        names: String,
        free: usize,
    },
    #[error("zone {zone} is not an available zone of the region (available: {available})")]
    UnknownZone { zone: String, available: String },
    #[error("no zone to put subnets in: give --azs")]
    NoZones,
    #[error("security group {0} does not exist")]
    GroupMissing(String),
    #[error("security group {group} is in VPC {group_vpc}, not in VPC {vpc}")]
    GroupInOtherVpc {
        group: String,
        group_vpc: String,
        vpc: String,
    },
    #[error("{0}")]
    InstanceType(String),
    #[error(
        "no ENIConfig to expand: expand adds subnets to existing ENIConfigs (run `custom-networking apply` first, or give the --eniconfig-dir or --kubeconfig that holds them)"
    )]
    NoEniConfigs,
    #[error("no ENIConfig serves {zone} (ENIConfigs serve {zones})")]
    NoEniConfigInZone { zone: String, zones: String },
}

pub(crate) fn usable(cidr: Ipv4Net) -> u64 {
    (1u64 << (32 - cidr.prefix_len())).saturating_sub(RESERVED_PER_SUBNET)
}

fn ceil_log2(n: usize) -> u8 {
    let mut bits = 0u8;
    while (1usize << bits) < n {
        bits += 1;
    }
    bits
}

/// Blocks an association is judged against: those associated or on their way.
fn live_blocks(vpc: &VpcDetail) -> Vec<Ipv4Net> {
    let mut out = vec![vpc.primary_cidr];
    for b in &vpc.blocks {
        if matches!(b.state.as_str(), "associated" | "associating") && !out.contains(&b.cidr) {
            out.push(b.cidr);
        }
    }
    out
}

fn rfc1918_range(net: Ipv4Net) -> Option<Ipv4Net> {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .iter()
        .filter_map(|r| r.parse::<Ipv4Net>().ok())
        .find(|r| r.contains(&net))
}

/// Why EC2 would refuse to associate `cidr` with the VPC, if it would.
pub fn check_associable(cidr: Ipv4Net, vpc: &VpcDetail) -> Result<(), Refusal> {
    if cidr.trunc() != cidr {
        return Err(Refusal::NotNetworkAddress {
            given: cidr,
            canonical: cidr.trunc(),
        });
    }
    if !(LARGEST_BLOCK_PREFIX..=SMALLEST_PREFIX).contains(&cidr.prefix_len()) {
        return Err(Refusal::BlockSize(cidr));
    }
    let blocks = live_blocks(vpc);
    if let Some(block) = blocks
        .iter()
        .find(|b| b.contains(&cidr) || cidr.contains(*b))
    {
        return Err(Refusal::Overlaps {
            cidr,
            block: *block,
        });
    }
    if let (Some(range), Some(primary_range)) =
        (rfc1918_range(cidr), rfc1918_range(vpc.primary_cidr))
        && range != primary_range
    {
        return Err(Refusal::Rfc1918Mismatch {
            cidr,
            range,
            primary: vpc.primary_cidr,
            primary_range,
        });
    }
    if blocks.len() >= MAX_BLOCKS_PER_VPC {
        return Err(Refusal::TooManyBlocks {
            cidr,
            count: blocks.len(),
            blocks: join(blocks.iter()),
        });
    }
    Ok(())
}

pub(crate) fn join<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// Picks `/prefix` blocks of `cidr` for `zones`, lowest first, skipping any that overlap `taken`.
pub fn carve(
    cidr: Ipv4Net,
    prefix: u8,
    zones: &[String],
    taken: &[Ipv4Net],
) -> Result<Vec<(String, Ipv4Net)>, Refusal> {
    if prefix < cidr.prefix_len() || prefix > SMALLEST_PREFIX {
        return Err(Refusal::SubnetPrefix { prefix, cidr });
    }
    let free = cidr
        .subnets(prefix)
        .map_err(|_| Refusal::SubnetPrefix { prefix, cidr })?
        .filter(|c| !taken.iter().any(|t| t.contains(c) || c.contains(t)));
    let picked: Vec<Ipv4Net> = free.clone().take(zones.len()).collect();
    if picked.len() < zones.len() {
        return Err(Refusal::TooSmall {
            cidr,
            prefix,
            zones: zones.len(),
            names: zones.join(", "),
            free: free.count(),
        });
    }
    Ok(zones.iter().cloned().zip(picked).collect())
}

/// The subnet prefix when none is given: the largest subnets that give each zone one.
pub fn default_prefix(cidr: Ipv4Net, zones: usize) -> u8 {
    cidr.prefix_len()
        .saturating_add(ceil_log2(zones.max(1)))
        .min(SMALLEST_PREFIX)
}

pub(crate) fn subnet_tags(az: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("Name".to_string(), format!("custom-networking-{az}")),
        (ENICONFIG_TAG.to_string(), az.to_string()),
    ])
}

fn choose_zones(req: &Request, obs: &Observed) -> Result<(Vec<String>, Option<String>), Refusal> {
    if let Some(azs) = &req.azs {
        for z in azs {
            if !obs.zones.contains(z) {
                return Err(Refusal::UnknownZone {
                    zone: z.clone(),
                    available: obs.zones.join(", "),
                });
            }
        }
        let set: BTreeSet<String> = azs.iter().cloned().collect();
        return Ok((set.into_iter().collect(), None));
    }
    let node_zones: BTreeSet<String> = obs
        .subnets
        .iter()
        .filter(|s| !req.cidr.contains(&s.cidr))
        .map(|s| s.availability_zone.clone())
        .collect();
    if !node_zones.is_empty() {
        let zones: Vec<String> = node_zones.into_iter().collect();
        let note = format!(
            "zones: {} (those of the VPC's existing subnets; --azs to choose)",
            zones.join(", ")
        );
        return Ok((zones, Some(note)));
    }
    if obs.zones.is_empty() {
        return Err(Refusal::NoZones);
    }
    let note = format!(
        "zones: {} (every zone of the region; --azs to choose)",
        obs.zones.join(", ")
    );
    Ok((obs.zones.clone(), Some(note)))
}

/// The pod group, and the changes that make it exist with the rules it needs.
fn plan_group(req: &Request, obs: &Observed, plan: &mut Plan) -> Result<Option<GroupRef>, Refusal> {
    match &req.security_group {
        GroupChoice::None => {
            plan.warnings.push("no --security-group or --create-security-group: the ENIConfigs list no securityGroups, so pod ENIs get the VPC's default security group".to_string());
            Ok(None)
        }
        GroupChoice::Given(id) => {
            if obs.groups.iter().any(|g| &g.group.id == id) {
                plan.notes.push(format!(
                    "security group {id} (given) is in the VPC; its rules are left as they are"
                ));
                return Ok(Some(GroupRef::Existing(id.clone())));
            }
            Err(match &obs.foreign_group {
                Some(g) if &g.id == id => Refusal::GroupInOtherVpc {
                    group: id.clone(),
                    group_vpc: g.vpc_id.clone(),
                    vpc: req.vpc_id.clone(),
                },
                _ => Refusal::GroupMissing(id.clone()),
            })
        }
        GroupChoice::Create => {
            let existing = obs.groups.iter().find(|g| g.group.name == POD_GROUP_NAME);
            let me = match existing {
                Some(g) => {
                    plan.notes.push(format!(
                        "security group {POD_GROUP_NAME} exists: {}",
                        g.group.id
                    ));
                    GroupRef::Existing(g.group.id.clone())
                }
                None => {
                    plan.changes.push(Change::CreateSecurityGroup {
                        name: POD_GROUP_NAME.to_string(),
                        description: POD_GROUP_DESCRIPTION.to_string(),
                    });
                    GroupRef::New
                }
            };
            // The nodes' groups (those of their primary ENIs) and the pods themselves; with no
            // node in the VPC yet, the VPC's primary block stands for the nodes.
            let node_groups: BTreeSet<String> = obs
                .instances
                .iter()
                .flat_map(|i| i.enis.iter().filter(|e| e.device_index == 0))
                .flat_map(|e| e.security_groups.iter().cloned())
                .filter(|g| GroupRef::Existing(g.clone()) != me)
                .collect();
            let mut wanted: Vec<PlannedSource> = node_groups
                .into_iter()
                .map(|g| PlannedSource::Group(GroupRef::Existing(g)))
                .collect();
            if wanted.is_empty() {
                wanted.push(PlannedSource::Cidr(obs.vpc.primary_cidr));
            }
            wanted.push(PlannedSource::Group(me.clone()));
            let have: Vec<&IngressRule> = existing
                .map(|g| g.ingress.iter().filter(|r| r.protocol == "-1").collect())
                .unwrap_or_default();
            let missing: Vec<PlannedSource> = wanted
                .into_iter()
                .filter(|w| {
                    let source = match w {
                        PlannedSource::Group(GroupRef::Existing(id)) => {
                            IngressSource::Group(id.clone())
                        }
                        PlannedSource::Group(GroupRef::New) => return true,
                        PlannedSource::Cidr(c) => IngressSource::Cidr(*c),
                    };
                    !have.iter().any(|r| r.source == source)
                })
                .collect();
            if !missing.is_empty() {
                plan.changes.push(Change::AuthorizeIngress {
                    group: me.clone(),
                    sources: missing,
                });
            }
            Ok(Some(me))
        }
    }
}

fn plan_max_pods(req: &Request) -> Result<Vec<(String, u32)>, Refusal> {
    let options = MaxPodsOptions {
        custom_networking: true,
        ..MaxPodsOptions::default()
    };
    req.instance_types
        .iter()
        .map(|t| {
            let limits = LimitsTable::builtin()
                .get(t)
                .map_err(|e| Refusal::InstanceType(e.to_string()))?;
            let m = instance_limits::max_pods(limits, &options)
                .map_err(|e| Refusal::InstanceType(e.to_string()))?;
            Ok((t.clone(), m.max_pods))
        })
        .collect()
}

/// Instances whose pods hold addresses outside the custom subnets: they predate the change.
fn nodes_to_replace(obs: &Observed, custom: &BTreeSet<String>) -> Vec<NodeToReplace> {
    let mut out = Vec::new();
    for i in &obs.instances {
        let offending = i
            .enis
            .iter()
            .find(|e| e.pod_address_blocks > 0 && !custom.contains(&e.subnet_id));
        if let Some(e) = offending {
            out.push(NodeToReplace {
                instance_id: i.id.clone(),
                instance_type: i.instance_type.clone(),
                az: i.availability_zone.clone(),
                reason: format!(
                    "{} (device {}) holds {} pod address(es) in {}, not a custom subnet",
                    e.id, e.device_index, e.pod_address_blocks, e.subnet_id
                ),
            });
        }
    }
    out
}

fn env_change(obs: &Observed, plan: &mut Plan) {
    let wanted = aws_node_env();
    match &obs.aws_node_env {
        Some(env) => {
            let set: BTreeMap<String, String> = wanted
                .into_iter()
                .filter(|(k, v)| env.get(k) != Some(v))
                .collect();
            let remove: Vec<String> = env
                .keys()
                .filter(|k| k.as_str() == ANNOTATION_ENV)
                .cloned()
                .collect();
            if set.is_empty() && remove.is_empty() {
                plan.notes
                    .push("aws-node already has the custom networking environment".to_string());
            } else {
                plan.changes.push(Change::SetAwsNodeEnv { set, remove });
            }
        }
        None => {
            let vars = join(wanted.iter().map(|(k, v)| format!("{k}={v}")));
            plan.manual.push(format!(
                "kubectl set env daemonset aws-node -n kube-system {}",
                vars.replace(", ", " ")
            ));
            plan.manual.push(format!("kubectl set env daemonset aws-node -n kube-system {ANNOTATION_ENV}-   # an annotation key overrides ENI_CONFIG_LABEL_DEF"));
        }
    }
}

/// The association of `cidr` with the VPC, unless it is there or on its way.
pub(crate) fn associate(cidr: Ipv4Net, obs: &Observed, plan: &mut Plan) -> Result<(), Refusal> {
    if cidr == obs.vpc.primary_cidr {
        return Err(Refusal::PrimaryBlock(cidr));
    }
    match obs.vpc.blocks.iter().find(|b| b.cidr == cidr) {
        Some(b) if b.state == "associated" => {
            plan.notes
                .push(format!("{cidr} is already associated with {}", obs.vpc.id));
        }
        Some(b) if b.state == "associating" => plan.notes.push(format!(
            "{cidr} is being associated with {} ({})",
            obs.vpc.id, b.association_id
        )),
        _ => {
            check_associable(cidr, &obs.vpc)?;
            plan.changes.push(Change::AssociateCidr { cidr });
        }
    }
    Ok(())
}

/// One subnet of `cidr` per zone in `plan.subnets`: one already there is kept (the lowest, if
/// several; tagged when it lacks our tags), the others carved at `subnet_prefix` (default: the
/// largest that fits every zone).
pub(crate) fn zone_subnets(
    cidr: Ipv4Net,
    zones: &[String],
    subnet_prefix: Option<u8>,
    obs: &Observed,
    plan: &mut Plan,
) -> Result<(), Refusal> {
    let mut kept: BTreeMap<String, &Subnet> = BTreeMap::new();
    let mut inside: Vec<&Subnet> = obs
        .subnets
        .iter()
        .filter(|s| cidr.contains(&s.cidr))
        .collect();
    inside.sort_by_key(|s| s.cidr);
    for s in inside {
        if zones.contains(&s.availability_zone) {
            kept.entry(s.availability_zone.clone()).or_insert(s);
        }
    }
    let missing: Vec<String> = zones
        .iter()
        .filter(|z| !kept.contains_key(*z))
        .cloned()
        .collect();
    let prefix = subnet_prefix.unwrap_or_else(|| default_prefix(cidr, zones.len()));
    let taken: Vec<Ipv4Net> = obs.subnets.iter().map(|s| s.cidr).collect();
    let carved = carve(cidr, prefix, &missing, &taken)?;
    for z in zones {
        if let Some(s) = kept.get(z) {
            plan.notes.push(format!(
                "subnet {} ({}, {} usable addresses) serves {z}",
                s.id,
                s.cidr,
                usable(s.cidr)
            ));
            if s.cidr.prefix_len() != prefix && subnet_prefix.is_some() {
                plan.warnings.push(format!(
                    "subnet {} in {z} is a /{}, not the /{prefix} asked for; it is kept",
                    s.id,
                    s.cidr.prefix_len()
                ));
            }
            plan.subnets.push(ZoneSubnet {
                az: z.clone(),
                cidr: s.cidr,
                existing: Some(s.id.clone()),
            });
        }
    }
    for (az, c) in &carved {
        plan.changes.push(Change::CreateSubnet {
            az: az.clone(),
            cidr: *c,
            tags: subnet_tags(az),
        });
        plan.subnets.push(ZoneSubnet {
            az: az.clone(),
            cidr: *c,
            existing: None,
        });
    }
    plan.subnets.sort_by(|a, b| a.az.cmp(&b.az));
    for (az, s) in &kept {
        let mut tags = subnet_tags(az);
        if s.tags.contains_key("Name") {
            tags.remove("Name");
        }
        tags.retain(|k, v| s.tags.get(k) != Some(v));
        if !tags.is_empty() {
            plan.changes.push(Change::TagSubnet {
                subnet_id: s.id.clone(),
                az: az.clone(),
                tags,
            });
        }
    }
    Ok(())
}

pub fn plan(req: &Request, obs: &Observed) -> Result<Plan, Refusal> {
    let mut plan = Plan {
        max_pods: plan_max_pods(req)?,
        ..Plan::new(Some(Vec::new()))
    };
    let cidr = req.cidr;
    associate(cidr, obs, &mut plan)?;
    let (zones, zone_note) = choose_zones(req, obs)?;
    plan.notes.extend(zone_note);
    zone_subnets(cidr, &zones, req.subnet_prefix, obs, &mut plan)?;

    let group = plan_group(req, obs, &mut plan)?;

    for zs in plan.subnets.clone() {
        let subnet = zs.reference();
        let groups = group.clone().map(|g| vec![g]);
        let current = obs.eniconfigs.as_ref().and_then(|c| c.get(&zs.az)).cloned();
        let concrete = match (&subnet, &groups) {
            (SubnetRef::Existing(id), None) => Some(EniConfigSpec {
                subnet: id.clone(),
                security_groups: None,
                subnets: None,
            }),
            (SubnetRef::Existing(id), Some(gs)) => gs
                .iter()
                .map(|g| match g {
                    GroupRef::Existing(id) => Some(id.clone()),
                    GroupRef::New => None,
                })
                .collect::<Option<Vec<String>>>()
                .map(|gs| EniConfigSpec {
                    subnet: id.clone(),
                    security_groups: Some(gs),
                    subnets: None,
                }),
            _ => None,
        };
        let up_to_date = match (&concrete, &current) {
            (Some(want), Some(have)) => {
                want.subnet == have.subnet && want.groups() == have.groups()
            }
            _ => false,
        };
        if up_to_date {
            plan.notes
                .push(format!("ENIConfig {} is up to date", zs.az));
        } else {
            plan.changes.push(Change::WriteEniConfig {
                name: zs.az.clone(),
                subnet,
                groups,
                replaces: current,
            });
        }
    }
    if obs.eniconfigs.is_none() {
        plan.warnings.push(
            "no --eniconfig-dir: the ENIConfigs are shown, apply needs somewhere to put them"
                .to_string(),
        );
    }

    env_change(obs, &mut plan);
    let custom: BTreeSet<String> = plan
        .subnets
        .iter()
        .filter_map(|s| s.existing.clone())
        .collect();
    plan.nodes_to_replace = Some(nodes_to_replace(obs, &custom));
    Ok(plan)
}

impl fmt::Display for SubnetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubnetRef::Existing(id) => f.write_str(id),
            SubnetRef::New { az } => write!(f, "<new subnet in {az}>"),
        }
    }
}

impl fmt::Display for GroupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupRef::Existing(id) => f.write_str(id),
            GroupRef::New => write!(f, "<new group {POD_GROUP_NAME}>"),
        }
    }
}

impl fmt::Display for PlannedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlannedSource::Group(g) => g.fmt(f),
            PlannedSource::Cidr(c) => c.fmt(f),
        }
    }
}

fn tags_text(tags: &BTreeMap<String, String>) -> String {
    join(tags.iter().map(|(k, v)| format!("{k}={v}")))
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AssociateCidr { cidr } => {
                write!(f, "associate {cidr} with the VPC")
            }
            Change::CreateSubnet { az, cidr, tags } => write!(
                f,
                "create subnet {cidr} in {az} ({} usable addresses), tagged {}",
                usable(*cidr),
                tags_text(tags)
            ),
            Change::TagSubnet {
                subnet_id,
                az,
                tags,
            } => write!(f, "tag subnet {subnet_id} ({az}) {}", tags_text(tags)),
            Change::CreateSecurityGroup { name, .. } => {
                write!(f, "create security group {name} for the pods")
            }
            Change::AuthorizeIngress { group, sources } => write!(
                f,
                "allow all traffic into {group} from {}",
                join(sources.iter())
            ),
            Change::WriteEniConfig {
                name,
                subnet,
                groups,
                replaces,
            } => {
                let groups = groups
                    .as_ref()
                    .map(|g| format!("[{}]", join(g.iter())))
                    .unwrap_or_else(|| "none (the VPC's default)".to_string());
                let verb = if replaces.is_some() {
                    "update"
                } else {
                    "write"
                };
                write!(
                    f,
                    "{verb} ENIConfig {name}: subnet {subnet}, securityGroups {groups}"
                )?;
                if let Some(old) = replaces {
                    write!(
                        f,
                        " (was subnet {}, securityGroups [{}])",
                        old.subnet,
                        old.groups().join(", ")
                    )?;
                }
                Ok(())
            }
            Change::AddEniConfigSubnet {
                name,
                subnet,
                current,
            } => {
                let mut now: Vec<String> = current.all_subnets();
                now.push(subnet.to_string());
                write!(
                    f,
                    "add {subnet} to ENIConfig {name}'s spec.subnets (new ENIs then go to any of {})",
                    now.join(", ")
                )
            }
            Change::SetAwsNodeEnv { set, remove } => {
                write!(f, "set aws-node environment {}", tags_text(set))?;
                if !remove.is_empty() {
                    write!(f, "; remove {}", remove.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
