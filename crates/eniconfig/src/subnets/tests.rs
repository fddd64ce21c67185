use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const VPC: &str = "vpc-1";
const ZONE: &str = "us-west-2a";
const OWN: &str = "subnet-own";

fn facts(id: &str, free: u32, tags: &[(&str, &str)]) -> SubnetFacts {
    SubnetFacts {
        id: id.into(),
        vpc_id: VPC.into(),
        availability_zone: ZONE.into(),
        cidr: "10.0.1.0/24".parse().unwrap(),
        available_addresses: free,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn scope(cluster: Option<&str>) -> DiscoveryScope<'_> {
    DiscoveryScope {
        vpc_id: VPC,
        availability_zone: ZONE,
        node_subnet: OWN,
        cluster_name: cluster,
    }
}

#[test]
fn the_rules_of_the_existing_implementation() {
    let subnets = [
        facts(OWN, 20, &[]),
        facts("subnet-tagged", 200, &[(CNI_ROLE_TAG, "1")]),
        facts("subnet-empty-value", 50, &[(CNI_ROLE_TAG, "")]),
        facts("subnet-untagged", 900, &[]),
        facts("subnet-opted-out", 900, &[(CNI_ROLE_TAG, "0")]),
        facts(
            "subnet-ours",
            100,
            &[
                (CNI_ROLE_TAG, "1"),
                ("kubernetes.io/cluster/blue", "shared"),
            ],
        ),
        facts(
            "subnet-theirs",
            800,
            &[
                (CNI_ROLE_TAG, "1"),
                ("kubernetes.io/cluster/green", "owned"),
            ],
        ),
    ];
    let d = discover(&scope(Some("blue")), &subnets);
    assert_eq!(
        d.eligible_ids(),
        ["subnet-tagged", "subnet-ours", "subnet-empty-value", OWN]
    );
    let excluded: BTreeMap<&str, &Exclusion> =
        d.excluded.iter().map(|(s, e)| (s.id.as_str(), e)).collect();
    assert_eq!(excluded["subnet-untagged"], &Exclusion::Untagged);
    assert_eq!(excluded["subnet-opted-out"], &Exclusion::OptedOut);
    assert_eq!(
        excluded["subnet-theirs"].to_string(),
        "tagged kubernetes.io/cluster/<name> for green, not for this cluster blue (CLUSTER_NAME)"
    );
    assert_eq!(d.node_subnet_excluded(OWN), None);

    // Without CLUSTER_NAME no cluster tag can be ours.
    let d = discover(&scope(None), &subnets);
    assert!(!d.eligible_ids().contains(&"subnet-ours".to_string()));
    assert!(
        d.excluded
            .iter()
            .any(|(s, e)| s.id == "subnet-ours" && e.to_string().contains("CLUSTER_NAME is unset"))
    );
}

#[test]
fn the_nodes_own_subnet() {
    // Used without a tag, also when it carries another cluster's tag (the node lives there).
    let d = discover(
        &scope(Some("blue")),
        &[facts(OWN, 5, &[("kubernetes.io/cluster/green", "shared")])],
    );
    assert_eq!(d.eligible_ids(), [OWN]);
    // Never with cni=0, which is said by the tag's name.
    let d = discover(&scope(None), &[facts(OWN, 5, &[(CNI_ROLE_TAG, "0")])]);
    assert!(d.eligible.is_empty());
    assert_eq!(
        d.node_subnet_excluded(OWN).unwrap().to_string(),
        "tagged kubernetes.io/role/cni=0"
    );
}

#[test]
fn choose_prefers_room_then_most_free() {
    let c = [
        facts("subnet-a", 8, &[]),
        facts("subnet-b", 30, &[]),
        facts("subnet-c", 12, &[]),
    ];
    let none = BTreeSet::new();
    assert_eq!(choose(&c, &none, 10, "subnet-a").unwrap().id, "subnet-b");
    let resting: BTreeSet<String> = ["subnet-b".to_string()].into();
    assert_eq!(choose(&c, &resting, 10, "subnet-a").unwrap().id, "subnet-c");
    // None has room by the last count: the most free is still tried (counts go stale).
    let resting: BTreeSet<String> = ["subnet-b".to_string(), "subnet-c".to_string()].into();
    assert_eq!(choose(&c, &resting, 10, "subnet-a").unwrap().id, "subnet-a");
    let all: BTreeSet<String> = c.iter().map(|s| s.id.clone()).collect();
    assert_eq!(choose(&c, &all, 10, "subnet-a"), None);
    // Ties go to `first`.
    let tie = [facts("subnet-a", 30, &[]), facts("subnet-b", 30, &[])];
    assert_eq!(choose(&tie, &none, 1, "subnet-b").unwrap().id, "subnet-b");
}

fn arb_subnet() -> impl Strategy<Value = SubnetFacts> {
    (
        prop_oneof![Just(OWN.to_string()), "subnet-[a-e]".prop_map(String::from)],
        0u32..60,
        prop_oneof![Just(None), Just(Some("0")), Just(Some("1")), Just(Some(""))],
        prop_oneof![Just(None), Just(Some("blue")), Just(Some("green"))],
        prop_oneof![Just(ZONE), Just("us-west-2b")],
    )
        .prop_map(|(id, free, role, cluster, zone)| {
            let mut tags = BTreeMap::new();
            if let Some(r) = role {
                tags.insert(CNI_ROLE_TAG.to_string(), r.to_string());
            }
            if let Some(c) = cluster {
                tags.insert(format!("{CLUSTER_TAG_PREFIX}{c}"), "shared".to_string());
            }
            SubnetFacts {
                availability_zone: zone.to_string(),
                ..facts(&id, free, &[])
            }
            .with_tags(tags)
        })
}

impl SubnetFacts {
    fn with_tags(mut self, tags: BTreeMap<String, String>) -> Self {
        self.tags = tags;
        self
    }
}

proptest! {
    #[test]
    fn discovery_partitions_and_obeys_every_rule(
        subnets in proptest::collection::vec(arb_subnet(), 0..8),
        cluster in prop_oneof![Just(None), Just(Some("blue"))],
    ) {
        let d = discover(&scope(cluster), &subnets);
        // Every distinct subnet is either a candidate or excluded, never both.
        let ids: BTreeSet<&str> = subnets.iter().map(|s| s.id.as_str()).collect();
        let eligible: BTreeSet<&str> = d.eligible.iter().map(|s| s.id.as_str()).collect();
        let excluded: BTreeSet<&str> = d.excluded.iter().map(|(s, _)| s.id.as_str()).collect();
        prop_assert_eq!(eligible.len(), d.eligible.len());
        prop_assert!(eligible.is_disjoint(&excluded));
        prop_assert_eq!(&eligible | &excluded, ids);
        for s in &d.eligible {
            prop_assert_eq!(s.availability_zone.as_str(), ZONE);
            prop_assert_ne!(s.tags.get(CNI_ROLE_TAG).map(String::as_str), Some("0"));
            if s.id != OWN {
                prop_assert!(s.tags.contains_key(CNI_ROLE_TAG));
                let clusters: Vec<&str> = s.tags.keys()
                    .filter_map(|k| k.strip_prefix(CLUSTER_TAG_PREFIX)).collect();
                prop_assert!(clusters.is_empty() || cluster.is_some_and(|c| clusters.contains(&c)));
            }
        }
        // Most free first.
        for w in d.eligible.windows(2) {
            prop_assert!(w[0].available_addresses >= w[1].available_addresses);
        }
        // The node's own subnet (in the zone) is a candidate unless it opted out.
        if let Some(own) = subnets.iter().find(|s| s.id == OWN) {
            let opted_out = own.tags.get(CNI_ROLE_TAG).is_some_and(|v| v == "0");
            if own.availability_zone == ZONE {
                prop_assert_eq!(eligible.contains(OWN), !opted_out);
            }
        }
    }

    #[test]
    fn choose_never_picks_a_resting_subnet_and_picks_the_roomiest(
        subnets in proptest::collection::vec(arb_subnet(), 0..8),
        resting in proptest::collection::btree_set("subnet-[a-e]", 0..4),
        needed in 1u32..20,
    ) {
        let picked = choose(&subnets, &resting, needed, OWN);
        let open: Vec<&SubnetFacts> = subnets.iter().filter(|s| !resting.contains(&s.id)).collect();
        match picked {
            None => prop_assert!(open.is_empty()),
            Some(p) => {
                prop_assert!(!resting.contains(&p.id));
                let roomy: Vec<&&SubnetFacts> = open.iter().filter(|s| s.available_addresses >= needed).collect();
                if roomy.is_empty() {
                    prop_assert!(open.iter().all(|s| s.available_addresses <= p.available_addresses));
                } else {
                    prop_assert!(p.available_addresses >= needed);
                    prop_assert!(roomy.iter().all(|s| s.available_addresses <= p.available_addresses));
                }
            }
        }
    }
}
