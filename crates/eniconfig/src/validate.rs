//! Checks an ENIConfig against EC2's facts before any EC2 write (`custom-networking.md`).

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

use crate::EniConfigSpec;

/// What the node knows about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub vpc_id: String,
    pub availability_zone: String,
    /// The VPC CIDR block the node's primary subnet comes from.
    pub primary_block: Option<Ipv4Net>,
    pub vpc_cidrs: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubnetFacts {
    pub id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub cidr: Ipv4Net,
    pub available_addresses: u32,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFacts {
    pub id: String,
    pub vpc_id: String,
}

/// The outcome: errors stop ENI creation, warnings do not.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Validation {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// The spec lists no groups: EC2 (or the fallback) picks them.
    pub groups_defaulted: bool,
}

impl Validation {
    pub fn valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// `subnets` is EC2's answer for the spec's subnets (`spec.subnet` and `spec.subnets`; one that
/// does not exist is absent), `groups` the groups among `spec.securityGroups` that exist. Every
/// subnet must exist and be in the node's VPC and zone: one that is not refuses the whole
/// ENIConfig (an ENI there could not attach, or would carry the wrong network).
pub fn validate(
    name: &str,
    spec: &EniConfigSpec,
    node: &NodeFacts,
    subnets: &[SubnetFacts],
    groups: &[GroupFacts],
) -> Validation {
    let mut v = Validation::default();
    for id in spec.all_subnets() {
        match subnets.iter().find(|s| s.id == id) {
            None => v
                .errors
                .push(format!("ENIConfig {name}: subnet {id} does not exist")),
            Some(s) => check_subnet(name, s, node, &mut v),
        }
    }
    for g in spec.groups() {
        match groups.iter().find(|f| &f.id == g) {
            None => v.errors.push(format!(
                "ENIConfig {name}: security group {g} does not exist"
            )),
            Some(f) if f.vpc_id != node.vpc_id => v.errors.push(format!(
                "ENIConfig {name}: security group {g} is in VPC {}, the node is in VPC {}",
                f.vpc_id, node.vpc_id
            )),
            Some(_) => {}
        }
    }
    if spec.groups().is_empty() {
        v.groups_defaulted = true;
        v.warnings.push(format!(
            "ENIConfig {name} lists no securityGroups: pod ENIs get the fallback groups (ENI_CONFIG_SG_FALLBACK)"
        ));
    }
    v
}

fn check_subnet(name: &str, s: &SubnetFacts, node: &NodeFacts, v: &mut Validation) {
    if s.vpc_id != node.vpc_id {
        v.errors.push(format!(
            "ENIConfig {name}: subnet {} is in VPC {}, the node is in VPC {}",
            s.id, s.vpc_id, node.vpc_id
        ));
    }
    if s.availability_zone != node.availability_zone {
        v.errors.push(format!(
            "ENIConfig {name}: subnet {} is in {}, the node is in {}; an ENI cannot attach across zones (name the ENIConfig after its zone and select it with ENI_CONFIG_LABEL_DEF=topology.kubernetes.io/zone)",
            s.id, s.availability_zone, node.availability_zone
        ));
    }
    if let Some(block) = node.primary_block
        && block.contains(&s.cidr)
    {
        v.warnings.push(format!(
            "ENIConfig {name}: subnet {} ({}) comes from the same VPC CIDR block {block} as the node's subnet; custom networking subnets should come from a secondary block",
            s.id, s.cidr
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeFacts {
        NodeFacts {
            vpc_id: "vpc-1".into(),
            availability_zone: "us-west-2a".into(),
            primary_block: Some("10.0.0.0/16".parse().unwrap()),
            vpc_cidrs: vec![
                "10.0.0.0/16".parse().unwrap(),
                "100.64.0.0/16".parse().unwrap(),
            ],
        }
    }

    fn subnet(az: &str, vpc: &str, cidr: &str) -> SubnetFacts {
        named("subnet-p", az, vpc, cidr)
    }

    fn named(id: &str, az: &str, vpc: &str, cidr: &str) -> SubnetFacts {
        SubnetFacts {
            id: id.into(),
            vpc_id: vpc.into(),
            availability_zone: az.into(),
            cidr: cidr.parse().unwrap(),
            available_addresses: 100,
            tags: BTreeMap::new(),
        }
    }

    fn spec(groups: Option<Vec<&str>>) -> EniConfigSpec {
        EniConfigSpec::new(
            "subnet-p",
            groups.map(|g| g.into_iter().map(String::from).collect()),
        )
    }

    fn group(id: &str, vpc: &str) -> GroupFacts {
        GroupFacts {
            id: id.into(),
            vpc_id: vpc.into(),
        }
    }

    #[test]
    fn a_valid_config() {
        let v = validate(
            "us-west-2a",
            &spec(Some(vec!["sg-1"])),
            &node(),
            &[subnet("us-west-2a", "vpc-1", "100.64.0.0/19")],
            &[group("sg-1", "vpc-1")],
        );
        assert_eq!(v, Validation::default());
    }

    #[test]
    fn every_listed_subnet_is_checked() {
        let mut spec = spec(Some(vec!["sg-1"]));
        spec.subnets = Some(vec![
            "subnet-q".into(),
            "subnet-r".into(),
            "subnet-s".into(),
        ]);
        let facts = [
            subnet("us-west-2a", "vpc-1", "100.64.0.0/19"),
            named("subnet-q", "us-west-2a", "vpc-1", "100.64.32.0/19"),
            named("subnet-r", "us-west-2b", "vpc-1", "100.64.64.0/19"),
        ];
        let v = validate("a", &spec, &node(), &facts, &[group("sg-1", "vpc-1")]);
        assert_eq!(v.errors.len(), 2, "{:?}", v.errors);
        assert!(
            v.errors[0].contains("subnet-r is in us-west-2b"),
            "{:?}",
            v.errors
        );
        assert!(v.errors[1].contains("subnet subnet-s does not exist"));
        // All of them in the node's VPC and zone: valid.
        spec.subnets = Some(vec!["subnet-q".into()]);
        let v = validate("a", &spec, &node(), &facts, &[group("sg-1", "vpc-1")]);
        assert!(v.valid(), "{:?}", v.errors);
    }

    #[test]
    fn every_problem_is_named() {
        let v = validate(
            "x",
            &spec(Some(vec!["sg-1", "sg-2"])),
            &node(),
            &[subnet("us-west-2b", "vpc-2", "100.64.0.0/19")],
            &[group("sg-1", "vpc-9")],
        );
        assert_eq!(v.errors.len(), 4, "{:?}", v.errors);
        assert!(v.errors[0].contains("VPC vpc-2"));
        assert!(v.errors[1].contains("us-west-2b") && v.errors[1].contains("us-west-2a"));
        assert!(v.errors[2].contains("sg-1 is in VPC vpc-9"));
        assert!(v.errors[3].contains("sg-2 does not exist"));
        let missing = validate("x", &spec(None), &node(), &[], &[]);
        assert!(missing.errors[0].contains("subnet subnet-p does not exist"));
    }

    #[test]
    fn warnings_do_not_block() {
        let v = validate(
            "x",
            &spec(Some(vec![])),
            &node(),
            &[subnet("us-west-2a", "vpc-1", "10.0.8.0/24")],
            &[],
        );
        assert!(v.valid());
        assert!(v.groups_defaulted);
        assert_eq!(v.warnings.len(), 2);
        assert!(v.warnings[0].contains("same VPC CIDR block"));
    }
}
