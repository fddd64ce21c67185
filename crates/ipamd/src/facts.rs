//! The ENIConfig status writer's view of EC2 (the conversions are `ec2`'s `From` impls).

use std::sync::Arc;

use ec2::Ec2;
use eniconfig::{GroupFacts, SubnetFacts};

/// What the ENIConfig status writer asks EC2.
pub struct Ec2Facts<C>(pub Arc<C>);

impl<C: Ec2 + 'static> cluster::Facts for Ec2Facts<C> {
    async fn subnets(&self, ids: &[String]) -> Result<Vec<SubnetFacts>, String> {
        self.0
            .subnets(&ec2::SubnetQuery::Ids(ids.to_vec()))
            .await
            .map(|s| s.iter().map(SubnetFacts::from).collect())
            .map_err(|e| e.to_string())
    }

    async fn groups(&self, ids: &[String]) -> Result<Vec<GroupFacts>, String> {
        self.0
            .security_groups(ids)
            .await
            .map(|g| g.iter().map(GroupFacts::from).collect())
            .map_err(|e| e.to_string())
    }
}
