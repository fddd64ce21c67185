//! The emulator's view of the network (`GET /_testbed/network`), which the hypervisor and the
//! router follow.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Snapshot {
    pub version: u64,
    #[serde(default)]
    pub vpcs: Vec<VpcView>,
    #[serde(default)]
    pub subnets: Vec<SubnetView>,
    #[serde(default)]
    pub security_groups: Vec<GroupView>,
    #[serde(default)]
    pub instances: Vec<InstanceView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VpcView {
    pub id: String,
    pub cidrs: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubnetView {
    pub id: String,
    pub vpc_id: String,
    pub az: String,
    pub cidr: Ipv4Net,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GroupView {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ingress: Vec<RuleView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RuleView {
    /// "-1" (all), "tcp", "udp", "icmp"
    pub protocol: String,
    pub from_port: Option<i64>,
    pub to_port: Option<i64>,
    #[serde(default)]
    pub cidrs: Vec<Ipv4Net>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InstanceView {
    pub id: String,
    #[serde(rename = "type")]
    pub instance_type: String,
    pub az: String,
    pub state: String,
    #[serde(default)]
    pub enis: Vec<EniView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EniView {
    pub id: String,
    pub mac: String,
    pub device_index: Option<u32>,
    pub subnet_id: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub primary_ip: Ipv4Addr,
    #[serde(default)]
    pub private_ips: Vec<Ipv4Addr>,
    #[serde(default)]
    pub prefixes: Vec<Ipv4Net>,
}

impl EniView {
    /// Every address block the ENI holds: its addresses as /32s and its prefixes.
    pub fn blocks(&self) -> Vec<Ipv4Net> {
        let mut out: Vec<Ipv4Net> = std::iter::once(self.primary_ip)
            .chain(self.private_ips.iter().copied())
            .map(Ipv4Net::from)
            .collect();
        out.extend(self.prefixes.iter().copied());
        out.sort();
        out.dedup();
        out
    }
}

impl Snapshot {
    pub fn subnet(&self, id: &str) -> Option<&SubnetView> {
        self.subnets.iter().find(|s| s.id == id)
    }

    pub fn instance(&self, id: &str) -> Option<&InstanceView> {
        self.instances.iter().find(|i| i.id == id)
    }
}
