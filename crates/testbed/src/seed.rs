//! Seeds EC2 from the config through the normal EC2 API, as an operator would.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types::{
    Filter, InstanceType, IpPermission, IpRange, ResourceType, Tag, TagSpecification,
    UserIdGroupPair,
};

use crate::config::{Config, Ports};

#[derive(Debug, thiserror::Error)]
#[error("seeding EC2, {step}: {message}")]
pub struct SeedError {
    pub step: String,
    pub message: String,
}

fn fail<E: std::error::Error>(step: impl Into<String>) -> impl FnOnce(E) -> SeedError {
    let step = step.into();
    move |e| SeedError {
        step,
        message: DisplayErrorContext(e).to_string(),
    }
}

fn missing(step: &str, what: &str) -> SeedError {
    SeedError {
        step: step.to_string(),
        message: format!("the response lacks {what}"),
    }
}

/// EC2 ids of what the config names.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Seeded {
    pub vpc_id: String,
    pub subnets: BTreeMap<String, String>,
    pub security_groups: BTreeMap<String, String>,
    /// node name → instance id
    pub instances: BTreeMap<String, String>,
}

pub async fn seed(ec2: &Client, config: &Config) -> Result<Seeded, SeedError> {
    let mut seeded = Seeded::default();
    let step = "CreateVpc";
    let vpc = ec2
        .create_vpc()
        .cidr_block(config.vpc.cidr.to_string())
        .send()
        .await
        .map_err(fail(step))?;
    seeded.vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .ok_or_else(|| missing(step, "the VPC id"))?
        .to_string();
    for cidr in &config.vpc.secondary_cidrs {
        ec2.associate_vpc_cidr_block()
            .vpc_id(&seeded.vpc_id)
            .cidr_block(cidr.to_string())
            .send()
            .await
            .map_err(fail(format!("AssociateVpcCidrBlock {cidr}")))?;
    }
    for s in &config.subnets {
        let step = format!("CreateSubnet {}", s.name);
        let tags = (!s.tags.is_empty()).then(|| {
            TagSpecification::builder()
                .resource_type(ResourceType::Subnet)
                .set_tags(Some(
                    s.tags
                        .iter()
                        .map(|(k, v)| Tag::builder().key(k).value(v).build())
                        .collect(),
                ))
                .build()
        });
        let out = ec2
            .create_subnet()
            .vpc_id(&seeded.vpc_id)
            .cidr_block(s.cidr.to_string())
            .availability_zone(&s.az)
            .set_tag_specifications(tags.map(|t| vec![t]))
            .send()
            .await
            .map_err(fail(&step))?;
        let id = out
            .subnet()
            .and_then(|s| s.subnet_id())
            .ok_or_else(|| missing(&step, "the subnet id"))?;
        seeded.subnets.insert(s.name.clone(), id.to_string());
    }
    for g in &config.security_groups {
        let step = format!("CreateSecurityGroup {}", g.name);
        let out = ec2
            .create_security_group()
            .vpc_id(&seeded.vpc_id)
            .group_name(&g.name)
            .description(format!("testbed group {}", g.name))
            .send()
            .await
            .map_err(fail(&step))?;
        let id = out
            .group_id()
            .ok_or_else(|| missing(&step, "the group id"))?;
        seeded
            .security_groups
            .insert(g.name.clone(), id.to_string());
    }
    // Rules after every group exists: a rule may name another group.
    for g in &config.security_groups {
        if g.ingress.is_empty() {
            continue;
        }
        let mut permissions = Vec::new();
        for rule in &g.ingress {
            let (protocol, ports) = rule.parse_ports().map_err(|message| SeedError {
                step: format!("security group {}", g.name),
                message,
            })?;
            let mut p = IpPermission::builder().ip_protocol(protocol);
            p = match ports {
                Ports::All => p.from_port(-1).to_port(-1),
                Ports::Range(a, b) => p.from_port(i32::from(a)).to_port(i32::from(b)),
            };
            p = match seeded.security_groups.get(&rule.from) {
                Some(group_id) => {
                    p.user_id_group_pairs(UserIdGroupPair::builder().group_id(group_id).build())
                }
                None => p.ip_ranges(IpRange::builder().cidr_ip(&rule.from).build()),
            };
            permissions.push(p.build());
        }
        ec2.authorize_security_group_ingress()
            .group_id(&seeded.security_groups[&g.name])
            .set_ip_permissions(Some(permissions))
            .send()
            .await
            .map_err(fail(format!("AuthorizeSecurityGroupIngress {}", g.name)))?;
    }
    for n in &config.nodes {
        let step = format!("RunInstances {}", n.name);
        let groups: Vec<String> = n
            .security_groups
            .iter()
            .map(|g| seeded.security_groups[g].clone())
            .collect();
        let out = ec2
            .run_instances()
            .image_id("ami-12345678")
            .min_count(1)
            .max_count(1)
            .instance_type(InstanceType::from(n.instance_type.as_str()))
            .subnet_id(&seeded.subnets[&n.subnet])
            .set_security_group_ids((!groups.is_empty()).then_some(groups))
            .send()
            .await
            .map_err(fail(&step))?;
        let id = out
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .ok_or_else(|| missing(&step, "the instance id"))?;
        seeded.instances.insert(n.name.clone(), id.to_string());
    }
    Ok(seeded)
}

/// The VPC's default security group.
pub async fn default_group(ec2: &Client, vpc_id: &str) -> Result<String, SeedError> {
    let step = "DescribeSecurityGroups default";
    let out = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .filters(
            Filter::builder()
                .name("group-name")
                .values("default")
                .build(),
        )
        .send()
        .await
        .map_err(fail(step))?;
    out.security_groups()
        .first()
        .and_then(|g| g.group_id())
        .map(str::to_string)
        .ok_or_else(|| missing(step, "the default group"))
}
