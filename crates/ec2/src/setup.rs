//! What setting up custom networking needs from EC2 beyond `ipamd`'s verbs: the VPC's CIDR
//! blocks, subnets, security groups with their rules, zones and instances, and the writes that
//! create them ([`Ec2Setup`], implemented on [`SdkEc2`]).

use std::collections::BTreeMap;
use std::future::Future;

use aws_sdk_ec2::types::{
    AvailabilityZoneState, Filter, IpPermission, IpRange, ResourceType, Tag, TagSpecification,
    UserIdGroupPair,
};
use ipnet::Ipv4Net;

use crate::sdk::{convert_subnet, filter, group_ids, tags_of, to_index};
use crate::{Ec2Error, SdkEc2, SecurityGroup, Subnet};

/// One IPv4 block of a VPC and the state of its association (`associated`, `associating`, …).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VpcCidrBlock {
    pub cidr: Ipv4Net,
    pub association_id: String,
    pub state: String,
}

/// A VPC with every IPv4 block association, whatever its state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VpcDetail {
    pub id: String,
    pub primary_cidr: Ipv4Net,
    pub blocks: Vec<VpcCidrBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubnet {
    pub vpc_id: String,
    pub cidr: Ipv4Net,
    pub availability_zone: String,
    pub tags: BTreeMap<String, String>,
}

/// Where an ingress rule admits traffic from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum IngressSource {
    Group(String),
    Cidr(Ipv4Net),
}

/// One source of one ingress permission. `protocol` is EC2's (`-1` for all, `tcp`, …).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct IngressRule {
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub source: IngressSource,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecurityGroupDetail {
    pub group: SecurityGroup,
    pub ingress: Vec<IngressRule>,
    pub tags: BTreeMap<String, String>,
}

/// An instance's network interface as DescribeInstances shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceEni {
    pub id: String,
    pub subnet_id: String,
    pub device_index: u32,
    pub security_groups: Vec<String>,
    /// Secondary addresses plus delegated prefixes: what pods may be using.
    pub pod_address_blocks: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instance {
    pub id: String,
    pub instance_type: String,
    pub availability_zone: String,
    pub state: String,
    pub enis: Vec<InstanceEni>,
}

/// Reads and writes for setting up a VPC for custom networking.
pub trait Ec2Setup: Send + Sync {
    fn vpc_detail(
        &self,
        vpc_id: &str,
    ) -> impl Future<Output = Result<Option<VpcDetail>, Ec2Error>> + Send;
    fn associate_vpc_cidr(
        &self,
        vpc_id: &str,
        cidr: Ipv4Net,
    ) -> impl Future<Output = Result<VpcCidrBlock, Ec2Error>> + Send;
    fn vpc_subnets(
        &self,
        vpc_id: &str,
    ) -> impl Future<Output = Result<Vec<Subnet>, Ec2Error>> + Send;
    /// The subnet is created with its tags in one call.
    fn create_subnet(
        &self,
        request: &NewSubnet,
    ) -> impl Future<Output = Result<Subnet, Ec2Error>> + Send;
    fn create_tags(
        &self,
        resource_ids: &[String],
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send;
    /// Zones of the client's region that are `available`, sorted.
    fn availability_zones(&self) -> impl Future<Output = Result<Vec<String>, Ec2Error>> + Send;
    fn vpc_security_groups(
        &self,
        vpc_id: &str,
    ) -> impl Future<Output = Result<Vec<SecurityGroupDetail>, Ec2Error>> + Send;
    /// Returns the new group's id; it is created with its tags in one call.
    fn create_security_group(
        &self,
        vpc_id: &str,
        name: &str,
        description: &str,
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String, Ec2Error>> + Send;
    fn authorize_ingress(
        &self,
        group_id: &str,
        rules: &[IngressRule],
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send;
    /// Instances of the VPC that are not terminated.
    fn vpc_instances(
        &self,
        vpc_id: &str,
    ) -> impl Future<Output = Result<Vec<Instance>, Ec2Error>> + Send;
}

fn tag_spec(kind: ResourceType, tags: &BTreeMap<String, String>) -> Option<TagSpecification> {
    (!tags.is_empty()).then(|| {
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(to_tags(tags)))
            .build()
    })
}

fn to_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn vpc_filter(vpc_id: &str) -> Filter {
    filter("vpc-id", &[vpc_id])
}

fn rules_of(p: &IpPermission) -> Vec<IngressRule> {
    let protocol = p.ip_protocol().unwrap_or("-1").to_string();
    let rule = |source| IngressRule {
        protocol: protocol.clone(),
        from_port: p.from_port(),
        to_port: p.to_port(),
        source,
    };
    let groups = p
        .user_id_group_pairs()
        .iter()
        .filter_map(|g| g.group_id())
        .map(|g| rule(IngressSource::Group(g.to_string())));
    let cidrs = p
        .ip_ranges()
        .iter()
        .filter_map(|r| r.cidr_ip()?.parse().ok())
        .map(|c| rule(IngressSource::Cidr(c)));
    groups.chain(cidrs).collect()
}

fn permission_of(r: &IngressRule) -> IpPermission {
    let p = IpPermission::builder()
        .ip_protocol(&r.protocol)
        .set_from_port(r.from_port)
        .set_to_port(r.to_port);
    match &r.source {
        IngressSource::Group(g) => {
            p.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build())
        }
        IngressSource::Cidr(c) => p.ip_ranges(IpRange::builder().cidr_ip(c.to_string()).build()),
    }
    .build()
}

impl Ec2Setup for SdkEc2 {
    async fn vpc_detail(&self, vpc_id: &str) -> Result<Option<VpcDetail>, Ec2Error> {
        let action = "DescribeVpcs";
        let result = self
            .call(action, self.sdk().describe_vpcs().vpc_ids(vpc_id).send())
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) if e.class() == crate::ErrorClass::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(v) = out.vpcs().first() else {
            return Ok(None);
        };
        let primary_cidr =
            v.cidr_block()
                .and_then(|c| c.parse().ok())
                .ok_or(Ec2Error::Incomplete {
                    action,
                    what: "the VPC's CIDR block",
                })?;
        let blocks = v
            .cidr_block_association_set()
            .iter()
            .filter_map(|a| {
                Some(VpcCidrBlock {
                    cidr: a.cidr_block()?.parse().ok()?,
                    association_id: a.association_id().unwrap_or_default().to_string(),
                    state: a
                        .cidr_block_state()
                        .and_then(|s| s.state())
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                })
            })
            .collect();
        Ok(Some(VpcDetail {
            id: v.vpc_id().unwrap_or_default().to_string(),
            primary_cidr,
            blocks,
        }))
    }

    async fn associate_vpc_cidr(
        &self,
        vpc_id: &str,
        cidr: Ipv4Net,
    ) -> Result<VpcCidrBlock, Ec2Error> {
        let action = "AssociateVpcCidrBlock";
        let out = self
            .call(
                action,
                self.sdk()
                    .associate_vpc_cidr_block()
                    .vpc_id(vpc_id)
                    .cidr_block(cidr.to_string())
                    .send(),
            )
            .await?;
        let a = out.cidr_block_association().ok_or(Ec2Error::Incomplete {
            action,
            what: "the CIDR block association",
        })?;
        Ok(VpcCidrBlock {
            cidr,
            association_id: a.association_id().unwrap_or_default().to_string(),
            state: a
                .cidr_block_state()
                .and_then(|s| s.state())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        })
    }

    async fn vpc_subnets(&self, vpc_id: &str) -> Result<Vec<Subnet>, Ec2Error> {
        self.describe_subnets(vec![vpc_filter(vpc_id)]).await
    }

    async fn create_subnet(&self, request: &NewSubnet) -> Result<Subnet, Ec2Error> {
        let action = "CreateSubnet";
        let out = self
            .call(
                action,
                self.sdk()
                    .create_subnet()
                    .vpc_id(&request.vpc_id)
                    .cidr_block(request.cidr.to_string())
                    .availability_zone(&request.availability_zone)
                    .set_tag_specifications(
                        tag_spec(ResourceType::Subnet, &request.tags).map(|t| vec![t]),
                    )
                    .send(),
            )
            .await?;
        let s = out.subnet().ok_or(Ec2Error::Incomplete {
            action,
            what: "the subnet",
        })?;
        convert_subnet(action, s)
    }

    async fn create_tags(
        &self,
        resource_ids: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Ec2Error> {
        self.call(
            "CreateTags",
            self.sdk()
                .create_tags()
                .set_resources(Some(resource_ids.to_vec()))
                .set_tags(Some(to_tags(tags)))
                .send(),
        )
        .await
        .map(|_| ())
    }

    async fn availability_zones(&self) -> Result<Vec<String>, Ec2Error> {
        let out = self
            .call(
                "DescribeAvailabilityZones",
                self.sdk().describe_availability_zones().send(),
            )
            .await?;
        let mut zones: Vec<String> = out
            .availability_zones()
            .iter()
            .filter(|z| z.state() == Some(&AvailabilityZoneState::Available))
            .filter_map(|z| z.zone_name().map(str::to_string))
            .collect();
        zones.sort();
        Ok(zones)
    }

    async fn vpc_security_groups(
        &self,
        vpc_id: &str,
    ) -> Result<Vec<SecurityGroupDetail>, Ec2Error> {
        let out = self
            .call(
                "DescribeSecurityGroups",
                self.sdk()
                    .describe_security_groups()
                    .filters(vpc_filter(vpc_id))
                    .send(),
            )
            .await?;
        Ok(out
            .security_groups()
            .iter()
            .map(|g| SecurityGroupDetail {
                group: SecurityGroup {
                    id: g.group_id().unwrap_or_default().to_string(),
                    vpc_id: g.vpc_id().unwrap_or_default().to_string(),
                    name: g.group_name().unwrap_or_default().to_string(),
                },
                ingress: g.ip_permissions().iter().flat_map(rules_of).collect(),
                tags: tags_of(g.tags()),
            })
            .collect())
    }

    async fn create_security_group(
        &self,
        vpc_id: &str,
        name: &str,
        description: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String, Ec2Error> {
        let action = "CreateSecurityGroup";
        let out = self
            .call(
                action,
                self.sdk()
                    .create_security_group()
                    .vpc_id(vpc_id)
                    .group_name(name)
                    .description(description)
                    .set_tag_specifications(
                        tag_spec(ResourceType::SecurityGroup, tags).map(|t| vec![t]),
                    )
                    .send(),
            )
            .await?;
        out.group_id()
            .map(str::to_string)
            .ok_or(Ec2Error::Incomplete {
                action,
                what: "the group id",
            })
    }

    async fn authorize_ingress(
        &self,
        group_id: &str,
        rules: &[IngressRule],
    ) -> Result<(), Ec2Error> {
        if rules.is_empty() {
            return Ok(());
        }
        self.call(
            "AuthorizeSecurityGroupIngress",
            self.sdk()
                .authorize_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(Some(rules.iter().map(permission_of).collect()))
                .send(),
        )
        .await
        .map(|_| ())
    }

    async fn vpc_instances(&self, vpc_id: &str) -> Result<Vec<Instance>, Ec2Error> {
        let pages = self
            .pages(
                "DescribeInstances",
                |token| {
                    self.sdk()
                        .describe_instances()
                        .filters(vpc_filter(vpc_id))
                        .set_next_token(token)
                        .send()
                },
                |p| p.next_token(),
            )
            .await?;
        let mut out = Vec::new();
        for page in &pages {
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let state = i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default();
                if state == "terminated" {
                    continue;
                }
                let mut enis: Vec<InstanceEni> = i
                    .network_interfaces()
                    .iter()
                    .map(|n| {
                        let secondary = n
                            .private_ip_addresses()
                            .iter()
                            .filter(|a| !a.primary().unwrap_or(false))
                            .count();
                        let blocks = secondary + n.ipv4_prefixes().len();
                        InstanceEni {
                            id: n.network_interface_id().unwrap_or_default().to_string(),
                            subnet_id: n.subnet_id().unwrap_or_default().to_string(),
                            device_index: to_index(n.attachment().and_then(|a| a.device_index())),
                            security_groups: group_ids(n.groups()),
                            pod_address_blocks: u32::try_from(blocks).unwrap_or(u32::MAX),
                        }
                    })
                    .collect();
                enis.sort_by_key(|e| e.device_index);
                out.push(Instance {
                    id: i.instance_id().unwrap_or_default().to_string(),
                    instance_type: i
                        .instance_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    availability_zone: i
                        .placement()
                        .and_then(|p| p.availability_zone())
                        .unwrap_or_default()
                        .to_string(),
                    state,
                    enis,
                });
            }
        }
        Ok(out)
    }
}
