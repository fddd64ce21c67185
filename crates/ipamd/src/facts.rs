//! EC2's answers as the facts ENIConfig validation and status are computed from.

use std::sync::Arc;

use ec2::Ec2;
use eniconfig::{GroupFacts, SubnetFacts};

pub fn subnet_facts(s: ec2::Subnet) -> SubnetFacts {
    SubnetFacts {
        id: s.id,
        vpc_id: s.vpc_id,
        availability_zone: s.availability_zone,
        cidr: s.cidr,
        available_addresses: s.available_addresses,
        tags: s.tags,
    }
}

pub fn group_facts(g: ec2::SecurityGroup) -> GroupFacts {
    GroupFacts {
        id: g.id,
        vpc_id: g.vpc_id,
    }
}

/// What the ENIConfig status writer asks EC2.
pub struct Ec2Facts<C>(pub Arc<C>);

impl<C: Ec2 + 'static> cluster::Facts for Ec2Facts<C> {
    async fn subnets(&self, ids: &[String]) -> Result<Vec<SubnetFacts>, String> {
        self.0
            .subnets(&ec2::SubnetQuery::Ids(ids.to_vec()))
            .await
            .map(|s| s.into_iter().map(subnet_facts).collect())
            .map_err(|e| e.to_string())
    }

    async fn groups(&self, ids: &[String]) -> Result<Vec<GroupFacts>, String> {
        self.0
            .security_groups(ids)
            .await
            .map(|g| g.into_iter().map(group_facts).collect())
            .map_err(|e| e.to_string())
    }
}
