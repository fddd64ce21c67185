use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;

use instance_limits::InstanceLimits;
use ipnet::Ipv4Net;

use crate::Ec2Error;

/// An ENI as EC2 describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NetworkInterface {
    pub id: String,
    pub mac: String,
    pub status: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub description: String,
    pub security_groups: Vec<String>,
    pub primary_ip: Option<Ipv4Addr>,
    /// Secondary addresses (the primary excluded).
    pub secondary_ips: Vec<Ipv4Addr>,
    pub prefixes: Vec<Ipv4Net>,
    pub tags: BTreeMap<String, String>,
    pub attachment: Option<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attachment {
    pub id: String,
    pub instance_id: String,
    pub device_index: u32,
    pub network_card: u32,
    pub status: String,
    pub delete_on_termination: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub cidr: Ipv4Net,
    pub available_addresses: u32,
    pub tags: BTreeMap<String, String>,
}

/// Which subnets a DescribeSubnets asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubnetQuery {
    /// These subnets; those that do not exist are absent from the answer (no error).
    Ids(Vec<String>),
    /// Every subnet of the VPC in the zone (subnet discovery's candidates).
    Zone {
        vpc_id: String,
        availability_zone: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecurityGroup {
    pub id: String,
    pub vpc_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Vpc {
    pub id: String,
    /// Associated IPv4 blocks, the primary first.
    pub cidrs: Vec<Ipv4Net>,
}

/// Addresses to put on an ENI: secondary /32s or delegated /28 prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum AddressRequest {
    Secondary(u32),
    Prefixes(u32),
}

/// A new ENI, created with its addresses and tags in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateEni {
    pub subnet_id: String,
    /// Empty: EC2 applies the VPC's default security group.
    pub security_groups: Vec<String>,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub addresses: AddressRequest,
}

/// What `ipamd` asks of EC2. Implemented on the AWS SDK; tests may implement it in memory.
pub trait Ec2: Send + Sync {
    /// Every ENI attached to the instance, with addresses, prefixes, tags and groups.
    fn instance_enis(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Vec<NetworkInterface>, Ec2Error>> + Send;
    fn subnet(&self, id: &str) -> impl Future<Output = Result<Option<Subnet>, Ec2Error>> + Send;
    /// Several subnets in one DescribeSubnets (all pages), with their tags and free addresses.
    fn subnets(
        &self,
        query: &SubnetQuery,
    ) -> impl Future<Output = Result<Vec<Subnet>, Ec2Error>> + Send;
    /// The groups among `ids` that exist (missing ones are simply absent).
    fn security_groups(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<SecurityGroup>, Ec2Error>> + Send;
    fn vpc(&self, id: &str) -> impl Future<Output = Result<Option<Vpc>, Ec2Error>> + Send;
    fn create_eni(
        &self,
        request: &CreateEni,
    ) -> impl Future<Output = Result<NetworkInterface, Ec2Error>> + Send;
    /// Returns the attachment id.
    fn attach_eni(
        &self,
        eni_id: &str,
        instance_id: &str,
        device_index: u32,
    ) -> impl Future<Output = Result<String, Ec2Error>> + Send;
    fn set_delete_on_termination(
        &self,
        eni_id: &str,
        attachment_id: &str,
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send;
    /// Returns the blocks assigned (/32 addresses or /28 prefixes).
    fn assign_addresses(
        &self,
        eni_id: &str,
        request: AddressRequest,
    ) -> impl Future<Output = Result<Vec<Ipv4Net>, Ec2Error>> + Send;
    /// Unassigns /32 addresses and /28 prefixes.
    fn unassign_addresses(
        &self,
        eni_id: &str,
        blocks: &[Ipv4Net],
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send;
    fn detach_eni(
        &self,
        attachment_id: &str,
        force: bool,
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send;
    /// NotFound counts as success: the ENI is gone either way.
    fn delete_eni(&self, eni_id: &str) -> impl Future<Output = Result<(), Ec2Error>> + Send;
    /// Detached ENIs of the VPC that carry `instance_tag` (any value) and every tag of
    /// `tags`: candidates for leak clean-up.
    fn detached_enis_tagged(
        &self,
        vpc_id: &str,
        instance_tag: &str,
        tags: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<NetworkInterface>, Ec2Error>> + Send;
    /// The instances among `ids` that exist and are not terminated.
    fn live_instances(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<String>, Ec2Error>> + Send;
    /// For instance types missing from the shipped table.
    fn instance_type_limits(
        &self,
        instance_type: &str,
    ) -> impl Future<Output = Result<InstanceLimits, Ec2Error>> + Send;
}
