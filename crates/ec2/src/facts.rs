//! EC2's answers as the facts ENIConfig validation and status are computed from: the one
//! adapter between this seam and the pure `eniconfig` checks (ipamd and `vpcctl validate` both
//! use it).

use eniconfig::{GroupFacts, SubnetFacts};

use crate::{SecurityGroup, Subnet};

impl From<&Subnet> for SubnetFacts {
    fn from(s: &Subnet) -> Self {
        SubnetFacts {
            id: s.id.clone(),
            vpc_id: s.vpc_id.clone(),
            availability_zone: s.availability_zone.clone(),
            cidr: s.cidr,
            available_addresses: s.available_addresses,
            tags: s.tags.clone(),
        }
    }
}

impl From<&SecurityGroup> for GroupFacts {
    fn from(g: &SecurityGroup) -> Self {
        GroupFacts {
            id: g.id.clone(),
            vpc_id: g.vpc_id.clone(),
        }
    }
}
