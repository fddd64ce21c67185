//! The VPC fabric in namespaces: a router namespace standing for the VPC, an internet namespace
//! and a NAT namespace, and one namespace per node. The hypervisor part makes a link with the
//! ENI's MAC appear in the node (`ethN`) when EC2 attaches an ENI; the router part routes every
//! address EC2 assigned to the link of its ENI and enforces source/destination check and
//! security groups.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::cmd::{self, CmdError};
use crate::network::{EniView, Snapshot};

/// Router ↔ internet link, and the internet's own addresses.
pub const ROUTER_INET: &str = "192.0.2.1";
pub const INET_ROUTER: &str = "192.0.2.2";
pub const ROUTER_NAT: &str = "192.0.2.5";
pub const NAT_ROUTER: &str = "192.0.2.6";
/// The NAT gateway's public address, as the internet sees it.
pub const NAT_PUBLIC: &str = "192.0.2.9";
pub const INET_NAT: &str = "192.0.2.10";
/// A server on the internet.
pub const INTERNET_HOST: &str = "198.51.100.10";
/// Instance metadata, on each node's loopback.
pub const METADATA_ADDR: &str = "169.254.169.254";
/// The EC2 endpoint relay on each node's loopback.
pub const EC2_RELAY_PORT: u16 = 4566;
const NAT_TABLE: &str = "100";
const NAT_MARK: &str = "0x1";
/// EC2's jumbo frames.
const ENI_MTU: &str = "9001";

/// Names of a run's namespaces: every one carries the run's prefix.
#[derive(Debug, Clone)]
pub struct Names {
    pub prefix: String,
}

impl Names {
    pub fn node(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }
    pub fn router(&self) -> String {
        format!("{}-router", self.prefix)
    }
    pub fn inet(&self) -> String {
        format!("{}-inet", self.prefix)
    }
    pub fn nat(&self) -> String {
        format!("{}-nat", self.prefix)
    }
    pub fn pod(&self, node: &str, pod: &str) -> String {
        format!("{}-{node}-{pod}", self.prefix)
    }
}

#[derive(Debug, Clone)]
struct Link {
    rlink: String,
    mac: String,
    blocks: BTreeSet<Ipv4Net>,
}

#[derive(Debug, Clone)]
pub struct NodeSlot {
    pub name: String,
    pub netns: String,
    index: usize,
}

/// What the fabric has built, so each snapshot is applied as a difference.
pub struct Fabric {
    names: Names,
    vpc_id: String,
    /// Followed from EC2: a block associated after `up` is routed like the first ones.
    vpc_cidrs: Vec<Ipv4Net>,
    nat_gateway: bool,
    /// instance id → node
    nodes: BTreeMap<String, NodeSlot>,
    /// ENI id → its link in the router
    links: BTreeMap<String, Link>,
    rules: String,
}

fn subnet_gateway(cidr: Ipv4Net) -> Ipv4Addr {
    node_contract::subnet_router(cidr.network())
}

impl Fabric {
    pub fn new(names: Names, vpc_id: &str, vpc_cidrs: Vec<Ipv4Net>, nat_gateway: bool) -> Self {
        Fabric {
            names,
            vpc_id: vpc_id.to_string(),
            vpc_cidrs,
            nat_gateway,
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            rules: String::new(),
        }
    }

    /// Router, internet and NAT namespaces and the links between them.
    pub fn build_base(&self) -> Result<(), CmdError> {
        let (router, inet) = (self.names.router(), self.names.inet());
        for ns in [&router, &inet] {
            add_namespace(ns)?;
        }
        for key in ["ip_forward", "conf.all.rp_filter", "conf.default.rp_filter"] {
            let value = if key == "ip_forward" { "1" } else { "0" };
            cmd::sysctl(&router, &format!("net.ipv4.{key}"), value)?;
        }
        cmd::sysctl(&router, "net.ipv4.conf.all.send_redirects", "0")?;
        cmd::sysctl(&router, "net.ipv4.conf.default.send_redirects", "0")?;
        // The VPC answers ARP for each subnet's .1 (the router's own address on that ENI's link;
        // arp_ignore=1: only the link's own) and, by proxy, for the addresses EC2 assigned (each
        // routed to its ENI's link). Every other VPC address is a blackhole, so a route through
        // any other next hop fails here as it does on EC2.
        cmd::sysctl(&router, "net.ipv4.conf.all.proxy_arp", "1")?;
        cmd::sysctl(&router, "net.ipv4.conf.all.arp_ignore", "1")?;
        cmd::sysctl(&router, "net.ipv4.conf.default.arp_ignore", "1")?;
        for cidr in &self.vpc_cidrs {
            blackhole(&router, "add", *cidr)?;
        }
        veth(
            &router,
            "to-inet",
            ROUTER_INET,
            &inet,
            "to-vpc",
            INET_ROUTER,
        )?;
        cmd::ip(
            &inet,
            &["addr", "add", &format!("{INTERNET_HOST}/32"), "dev", "lo"],
        )?;
        cmd::ip(&inet, &["route", "add", "default", "via", ROUTER_INET])?;
        cmd::ip(&router, &["route", "add", "default", "via", INET_ROUTER])?;
        if self.nat_gateway {
            let nat = self.names.nat();
            add_namespace(&nat)?;
            cmd::sysctl(&nat, "net.ipv4.ip_forward", "1")?;
            veth(&router, "to-nat", ROUTER_NAT, &nat, "to-vpc", NAT_ROUTER)?;
            veth(&nat, "to-inet", NAT_PUBLIC, &inet, "to-nat", INET_NAT)?;
            cmd::ip(&nat, &["route", "add", "default", "via", INET_NAT])?;
            for cidr in &self.vpc_cidrs {
                nat_route(&nat, "add", *cidr)?;
            }
            cmd::run_with_input(
                &["ip", "netns", "exec", &nat, "iptables-restore"],
                Some(
                    "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o to-inet -j MASQUERADE\nCOMMIT\n",
                ),
            )?;
            cmd::ip(
                &router,
                &[
                    "route", "add", "default", "via", NAT_ROUTER, "table", NAT_TABLE,
                ],
            )?;
            cmd::ip(
                &router,
                &[
                    "rule", "add", "fwmark", NAT_MARK, "lookup", NAT_TABLE, "pref", "100",
                ],
            )?;
        }
        Ok(())
    }

    /// A node's namespace, with metadata's address on its loopback.
    pub fn add_node(&mut self, name: &str, instance_id: &str) -> Result<NodeSlot, CmdError> {
        let netns = self.names.node(name);
        add_namespace(&netns)?;
        cmd::ip(
            &netns,
            &["addr", "add", &format!("{METADATA_ADDR}/32"), "dev", "lo"],
        )?;
        cmd::sysctl(&netns, "net.ipv4.ip_forward", "1")?;
        let slot = NodeSlot {
            name: name.to_string(),
            netns,
            index: self.nodes.len() + 1,
        };
        self.nodes.insert(instance_id.to_string(), slot.clone());
        Ok(slot)
    }

    /// The NAT gateway's way back to blocks associated (or gone) since the last snapshot.
    fn follow_vpc_cidrs(&mut self, snap: &Snapshot) -> Result<(), CmdError> {
        let Some(vpc) = snap.vpcs.iter().find(|v| v.id == self.vpc_id) else {
            return Ok(());
        };
        if vpc.cidrs == self.vpc_cidrs {
            return Ok(());
        }
        let router = self.names.router();
        for gone in self.vpc_cidrs.iter().filter(|c| !vpc.cidrs.contains(c)) {
            blackhole(&router, "del", *gone)?;
        }
        for new in vpc.cidrs.iter().filter(|c| !self.vpc_cidrs.contains(c)) {
            blackhole(&router, "replace", *new)?;
        }
        if self.nat_gateway {
            let nat = self.names.nat();
            for gone in self.vpc_cidrs.iter().filter(|c| !vpc.cidrs.contains(c)) {
                nat_route(&nat, "del", *gone)?;
            }
            for new in vpc.cidrs.iter().filter(|c| !self.vpc_cidrs.contains(c)) {
                nat_route(&nat, "replace", *new)?;
            }
        }
        self.vpc_cidrs = vpc.cidrs.clone();
        Ok(())
    }

    /// Brings links, routes, neighbours and firewall rules in line with EC2.
    pub fn reconcile(&mut self, snap: &Snapshot) -> Result<(), CmdError> {
        self.follow_vpc_cidrs(snap)?;
        let router = self.names.router();
        let mut wanted: BTreeMap<String, (&NodeSlot, u32, &EniView)> = BTreeMap::new();
        for (instance_id, slot) in &self.nodes {
            let Some(instance) = snap.instance(instance_id).filter(|i| i.state == "running") else {
                continue;
            };
            for eni in &instance.enis {
                if let Some(device) = eni.device_index {
                    wanted.insert(eni.id.clone(), (slot, device, eni));
                }
            }
        }
        let gone: Vec<String> = self
            .links
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .cloned()
            .collect();
        let mut batch = String::new();
        for id in gone {
            if let Some(link) = self.links.remove(&id) {
                // The peer in the node goes with it, as a detached ENI leaves the instance.
                let _ = cmd::ip(&router, &["link", "del", &link.rlink]);
            }
        }
        for (id, (slot, device, eni)) in &wanted {
            if !self.links.contains_key(id) {
                let rlink = format!("n{}d{device}", slot.index);
                let subnet = snap.subnet(&eni.subnet_id).map(|s| s.cidr);
                plug(&router, &rlink, slot, *device, eni, subnet)?;
                self.links.insert(
                    id.clone(),
                    Link {
                        rlink,
                        mac: eni.mac.clone(),
                        blocks: BTreeSet::new(),
                    },
                );
            }
            let link = self.links.get_mut(id).ok_or_else(|| CmdError {
                command: "reconcile".into(),
                message: format!("link of {id} vanished"),
            })?;
            let want: BTreeSet<Ipv4Net> = eni.blocks().into_iter().collect();
            for old in link.blocks.difference(&want) {
                let _ = writeln!(batch, "route del {old} dev {}", link.rlink);
                for a in old.hosts_all() {
                    let _ = writeln!(batch, "neigh del {a} dev {}", link.rlink);
                }
            }
            for new in want.difference(&link.blocks) {
                let _ = writeln!(batch, "route replace {new} dev {}", link.rlink);
                for a in new.hosts_all() {
                    let _ = writeln!(
                        batch,
                        "neigh replace {a} lladdr {} dev {} nud permanent",
                        link.mac, link.rlink
                    );
                }
            }
            link.blocks = want;
        }
        if !batch.is_empty() {
            cmd::run_with_input(
                &["ip", "-n", &router, "-force", "-batch", "-"],
                Some(&batch),
            )?;
        }
        let rules = self.router_rules(snap, &wanted);
        if rules != self.rules {
            cmd::run_with_input(
                &["ip", "netns", "exec", &router, "iptables-restore"],
                Some(&rules),
            )?;
            self.rules = rules;
        }
        Ok(())
    }

    /// raw: source/destination check per ENI link. mangle: what goes through the NAT gateway.
    /// filter: security groups (stateful) on the way into an ENI, and the internet gateway.
    fn router_rules(
        &self,
        snap: &Snapshot,
        wanted: &BTreeMap<String, (&NodeSlot, u32, &EniView)>,
    ) -> String {
        let members = group_members(snap);
        let primaries: Vec<Ipv4Addr> = wanted
            .values()
            .filter(|(_, device, _)| *device == 0)
            .map(|(_, _, eni)| eni.primary_ip)
            .collect();
        let mut raw = String::from("*raw\n:PREROUTING ACCEPT [0:0]\n");
        let mut filter = String::from(
            "*filter\n:FORWARD ACCEPT [0:0]\n:TO-INET - [0:0]\n-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n-A FORWARD -o to-inet -j TO-INET\n",
        );
        let mut chains = String::new();
        for (id, (_, _, eni)) in wanted {
            let Some(link) = self.links.get(id) else {
                continue;
            };
            let (src, sg) = (format!("SRC-{}", link.rlink), format!("SG-{}", link.rlink));
            let _ = writeln!(
                raw,
                ":{src} - [0:0]\n-A PREROUTING -i {} -j {src}",
                link.rlink
            );
            for b in &link.blocks {
                let _ = writeln!(chains, "-A {src} -s {b} -j RETURN");
            }
            let _ = writeln!(chains, "-A {src} -j DROP");
            let _ = writeln!(
                filter,
                ":{sg} - [0:0]\n-A FORWARD -o {} -j {sg}",
                link.rlink
            );
            for group in &eni.groups {
                let Some(g) = snap.security_groups.iter().find(|g| &g.id == group) else {
                    continue;
                };
                for rule in &g.ingress {
                    let proto = match rule.protocol.as_str() {
                        "-1" => String::new(),
                        p @ ("tcp" | "udp") => match (rule.from_port, rule.to_port) {
                            (Some(a), Some(b)) if a >= 0 => {
                                format!(" -p {p} -m {p} --dport {a}:{b}")
                            }
                            _ => format!(" -p {p}"),
                        },
                        p => format!(" -p {p}"),
                    };
                    let sources = rule.cidrs.iter().copied().chain(
                        rule.groups
                            .iter()
                            .flat_map(|g| members.get(g).cloned().unwrap_or_default()),
                    );
                    for s in sources {
                        let _ = writeln!(filter, "-A {sg}{proto} -s {s} -j ACCEPT");
                    }
                }
            }
            let _ = writeln!(filter, "-A {sg} -j DROP");
        }
        raw.push_str(&chains);
        raw.push_str("COMMIT\n");
        for p in &primaries {
            let _ = writeln!(filter, "-A TO-INET -s {p}/32 -j ACCEPT");
        }
        filter.push_str("-A TO-INET -j DROP\nCOMMIT\n");
        let mut mangle = String::from("*mangle\n:PREROUTING ACCEPT [0:0]\n:NATGW - [0:0]\n");
        if self.nat_gateway {
            mangle.push_str("-A PREROUTING -i n+ -j NATGW\n");
            for c in &self.vpc_cidrs {
                let _ = writeln!(mangle, "-A NATGW -d {c} -j RETURN");
            }
            for p in &primaries {
                let _ = writeln!(mangle, "-A NATGW -s {p}/32 -j RETURN");
            }
            for c in &self.vpc_cidrs {
                let _ = writeln!(mangle, "-A NATGW -s {c} -j MARK --set-mark {NAT_MARK}");
            }
        }
        mangle.push_str("COMMIT\n");
        format!("{raw}{mangle}{filter}")
    }
}

/// Addresses of every ENI in each security group, for rules that name a group as source.
fn group_members(snap: &Snapshot) -> BTreeMap<String, Vec<Ipv4Net>> {
    let mut out: BTreeMap<String, Vec<Ipv4Net>> = BTreeMap::new();
    for i in &snap.instances {
        for eni in &i.enis {
            for g in &eni.groups {
                out.entry(g.clone()).or_default().extend(eni.blocks());
            }
        }
    }
    out
}

trait HostsAll {
    fn hosts_all(&self) -> Vec<Ipv4Addr>;
}

impl HostsAll for Ipv4Net {
    /// Every address of the block, first and last included (a prefix's addresses all serve).
    fn hosts_all(&self) -> Vec<Ipv4Addr> {
        let first = u32::from(self.network());
        (0..(1u32 << (32 - self.prefix_len())))
            .map(|i| Ipv4Addr::from(first + i))
            .collect()
    }
}

/// A VPC block in the router: what no ENI holds goes nowhere (and gets no ARP answer).
fn blackhole(router: &str, verb: &str, cidr: Ipv4Net) -> Result<(), CmdError> {
    cmd::ip(router, &["route", verb, "blackhole", &cidr.to_string()]).map(|_| ())
}

/// The NAT gateway reaches a VPC block through the router.
fn nat_route(nat: &str, verb: &str, cidr: Ipv4Net) -> Result<(), CmdError> {
    cmd::ip(nat, &["route", verb, &cidr.to_string(), "via", ROUTER_NAT]).map(|_| ())
}

fn add_namespace(ns: &str) -> Result<(), CmdError> {
    cmd::run(&["ip", "netns", "add", ns])?;
    cmd::ip(ns, &["link", "set", "lo", "up"]).map(|_| ())
}

/// A veth pair created inside `a` with its peer moved straight into `b` (never in the root
/// namespace), addressed /30 and up.
fn veth(
    a: &str,
    a_name: &str,
    a_addr: &str,
    b: &str,
    b_name: &str,
    b_addr: &str,
) -> Result<(), CmdError> {
    cmd::ip(
        a,
        &[
            "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", b,
        ],
    )?;
    cmd::ip(a, &["addr", "add", &format!("{a_addr}/30"), "dev", a_name])?;
    cmd::ip(b, &["addr", "add", &format!("{b_addr}/30"), "dev", b_name])?;
    cmd::ip(a, &["link", "set", a_name, "up"])?;
    cmd::ip(b, &["link", "set", b_name, "up"]).map(|_| ())
}

/// The hypervisor's part of an attach: `ethN` with the ENI's MAC in the node, its peer in the
/// router. The primary ENI is configured as the instance's DHCP would; others come up bare.
fn plug(
    router: &str,
    rlink: &str,
    node: &NodeSlot,
    device: u32,
    eni: &EniView,
    subnet: Option<Ipv4Net>,
) -> Result<(), CmdError> {
    let eth = format!("eth{device}");
    cmd::ip(
        router,
        &[
            "link",
            "add",
            rlink,
            "mtu",
            ENI_MTU,
            "type",
            "veth",
            "peer",
            "name",
            &eth,
            "address",
            &eni.mac,
            "mtu",
            ENI_MTU,
            "netns",
            &node.netns,
        ],
    )?;
    if let Some(cidr) = subnet {
        cmd::ip(
            router,
            &[
                "addr",
                "add",
                &format!("{}/32", subnet_gateway(cidr)),
                "dev",
                rlink,
            ],
        )?;
    }
    cmd::ip(router, &["link", "set", rlink, "up"])?;
    if device == 0
        && let Some(cidr) = subnet
    {
        let ns = &node.netns;
        cmd::ip(
            ns,
            &[
                "addr",
                "add",
                &format!("{}/{}", eni.primary_ip, cidr.prefix_len()),
                "dev",
                &eth,
            ],
        )?;
        cmd::ip(ns, &["link", "set", &eth, "up"])?;
        cmd::ip(
            ns,
            &[
                "route",
                "add",
                "default",
                "via",
                &subnet_gateway(cidr).to_string(),
                "dev",
                &eth,
            ],
        )?;
    }
    Ok(())
}
