//! Growing pod space in place, as a pure function: a new block for the VPC, a subnet of it per
//! zone, each appended to that zone's ENIConfigs' `spec.subnets`. Running nodes read the
//! changed ENIConfig (watch, or the manifests directory) and put their next ENIs in whichever
//! subnet has the most free addresses: no restart, no re-annotation. What is in place is found
//! again, so a second run has nothing to do.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

use super::plan::{Change, Observed, Plan, Refusal, associate, zone_subnets};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandRequest {
    pub cidr: Ipv4Net,
    /// None: every zone an ENIConfig serves.
    pub azs: Option<Vec<String>>,
    /// None: the largest size that gives every zone one subnet.
    pub subnet_prefix: Option<u8>,
}

/// The zone each ENIConfig serves: its `spec.subnet`'s, or its name when that is a zone and the
/// subnet is unknown. ENIConfigs whose zone cannot be told are returned apart.
fn eniconfig_zones(obs: &Observed) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut by_zone: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for (name, spec) in obs.eniconfigs.iter().flatten() {
        let zone = obs
            .subnets
            .iter()
            .find(|s| s.id == spec.subnet)
            .map(|s| s.availability_zone.clone())
            .or_else(|| eniconfig::is_zone_name(name).then(|| name.clone()));
        match zone {
            Some(z) => by_zone.entry(z).or_default().push(name.clone()),
            None => unknown.push(name.clone()),
        }
    }
    (by_zone, unknown)
}

pub fn expand(req: &ExpandRequest, obs: &Observed) -> Result<Plan, Refusal> {
    let mut plan = Plan::new(None);
    let (mut by_zone, unknown) = eniconfig_zones(obs);
    for name in unknown {
        plan.warnings.push(format!(
            "ENIConfig {name}: its subnet does not exist and its name is not a zone, so it is left as it is"
        ));
    }
    if let Some(azs) = &req.azs {
        for z in azs {
            if !by_zone.contains_key(z) {
                return Err(Refusal::NoEniConfigInZone {
                    zone: z.clone(),
                    zones: by_zone.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        by_zone.retain(|z, _| azs.contains(z));
    }
    if by_zone.is_empty() {
        return Err(Refusal::NoEniConfigs);
    }
    associate(req.cidr, obs, &mut plan)?;
    let zones: Vec<String> = by_zone.keys().cloned().collect();
    plan.notes.push(format!(
        "zones: {} (those the ENIConfigs serve; --azs to choose)",
        zones.join(", ")
    ));
    zone_subnets(req.cidr, &zones, req.subnet_prefix, obs, &mut plan)?;
    let eniconfigs = obs.eniconfigs.clone().unwrap_or_default();
    for zs in plan.subnets.clone() {
        for name in by_zone.get(&zs.az).into_iter().flatten() {
            let current = &eniconfigs[name];
            match &zs.existing {
                Some(id) if current.all_subnets().contains(id) => plan
                    .notes
                    .push(format!("ENIConfig {name} already lists subnet {id}")),
                _ => plan.changes.push(Change::AddEniConfigSubnet {
                    name: name.clone(),
                    subnet: zs.reference(),
                    current: current.clone(),
                }),
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::custom_networking::plan::subnet_tags;
    use crate::custom_networking::plan::tests::{execute, net, observed, subnet};
    use ec2::VpcCidrBlock;
    use eniconfig::EniConfigSpec;
    use proptest::prelude::*;

    /// Custom networking in place: 100.64.0.0/16 with a /19 per zone, an ENIConfig per zone.
    fn running() -> Observed {
        let mut o = observed();
        o.vpc.blocks.push(VpcCidrBlock {
            cidr: net("100.64.0.0/16"),
            association_id: "a-1".into(),
            state: "associated".into(),
        });
        for (id, az, cidr) in [
            ("subnet-pa", "us-west-2a", "100.64.0.0/19"),
            ("subnet-pb", "us-west-2b", "100.64.32.0/19"),
        ] {
            let mut s = subnet(id, az, cidr);
            s.tags = subnet_tags(az);
            o.subnets.push(s);
        }
        o.eniconfigs = Some(BTreeMap::from([
            (
                "us-west-2a".to_string(),
                EniConfigSpec::new("subnet-pa", Some(vec!["sg-pods".into()])),
            ),
            (
                "us-west-2b".to_string(),
                EniConfigSpec::new("subnet-pb", Some(vec!["sg-pods".into()])),
            ),
        ]));
        o
    }

    fn request(cidr: &str) -> ExpandRequest {
        ExpandRequest {
            cidr: net(cidr),
            azs: None,
            subnet_prefix: None,
        }
    }

    #[test]
    fn a_new_block_becomes_one_more_subnet_per_zone() {
        let p = expand(&request("100.65.0.0/16"), &running()).unwrap();
        let lines: Vec<String> = p.changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            [
                "associate 100.65.0.0/16 with the VPC",
                "create subnet 100.65.0.0/17 in us-west-2a (32763 usable addresses), tagged Name=custom-networking-us-west-2a, vpc-cni.k8s.aws/eniconfig=us-west-2a",
                "create subnet 100.65.128.0/17 in us-west-2b (32763 usable addresses), tagged Name=custom-networking-us-west-2b, vpc-cni.k8s.aws/eniconfig=us-west-2b",
                "add <new subnet in us-west-2a> to ENIConfig us-west-2a's spec.subnets (new ENIs then go to any of subnet-pa, <new subnet in us-west-2a>)",
                "add <new subnet in us-west-2b> to ENIConfig us-west-2b's spec.subnets (new ENIs then go to any of subnet-pb, <new subnet in us-west-2b>)",
            ]
        );
        let after = execute(&running(), &p);
        let a = &after.eniconfigs.as_ref().unwrap()["us-west-2a"];
        assert_eq!(a.all_subnets(), ["subnet-pa", "subnet-new-us-west-2a"]);
        assert_eq!(a.groups(), ["sg-pods"]);
        let again = expand(&request("100.65.0.0/16"), &after).unwrap();
        assert_eq!(again.changes, vec![], "{:?}", again.changes);
        assert!(
            again
                .notes
                .iter()
                .any(|n| n == "ENIConfig us-west-2a already lists subnet subnet-new-us-west-2a"),
            "{:?}",
            again.notes
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let mut none = running();
        none.eniconfigs = Some(BTreeMap::new());
        assert_eq!(
            expand(&request("100.65.0.0/16"), &none).unwrap_err(),
            Refusal::NoEniConfigs
        );
        let mut r = request("100.65.0.0/16");
        r.azs = Some(vec!["us-west-2c".into()]);
        assert!(
            expand(&r, &running()).unwrap_err().to_string().contains(
                "no ENIConfig serves us-west-2c (ENIConfigs serve us-west-2a, us-west-2b)"
            )
        );
        assert!(matches!(
            expand(&request("10.0.128.0/17"), &running()).unwrap_err(),
            Refusal::Overlaps { .. }
        ));
        // The block the ENIConfigs already use, with room left, adds a second subnet of it.
        let mut r = request("100.64.0.0/16");
        r.subnet_prefix = Some(19);
        let p = expand(&r, &running()).unwrap();
        assert!(p.changes.is_empty(), "{:?}", p.changes);
    }

    proptest! {
        /// Whatever zones and sizes: a second run finds nothing to do, every ENIConfig of a
        /// chosen zone lists exactly one subnet of the block, and no subnet is carved twice.
        #[test]
        fn expand_is_idempotent(prefix in 17u8..=24, only_a in any::<bool>()) {
            let mut r = request("100.65.0.0/16");
            r.subnet_prefix = Some(prefix);
            if only_a {
                r.azs = Some(vec!["us-west-2a".into()]);
            }
            let obs = running();
            let p = expand(&r, &obs).unwrap();
            let after = execute(&obs, &p);
            let again = expand(&r, &after).unwrap();
            prop_assert!(again.changes.is_empty(), "{:?}", again.changes);
            for (name, spec) in after.eniconfigs.as_ref().unwrap() {
                let inside = spec
                    .all_subnets()
                    .iter()
                    .filter(|id| after.subnets.iter().any(|s| &s.id == *id && r.cidr.contains(&s.cidr)))
                    .count();
                let chosen = !only_a || name == "us-west-2a";
                prop_assert_eq!(inside, usize::from(chosen), "{}", name);
            }
        }
    }
}
