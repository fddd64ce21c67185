//! The arithmetic run the way the pool manager runs it: decide, apply the EC2-like effect to the
//! datastore, repeat until stable.

use super::simulate::Simulation;
use super::*;
use crate::{AllocKey, PodMetadata};
use proptest::prelude::*;

struct Node {
    ipv4_per_eni: usize,
    eni_limit: usize,
    custom_networking: bool,
}

const T3_SMALL: Node = Node {
    ipv4_per_eni: 4,
    eni_limit: 3,
    custom_networking: false,
};
const M5_LARGE: Node = Node {
    ipv4_per_eni: 10,
    eni_limit: 3,
    custom_networking: false,
};
const M5_LARGE_CN: Node = Node {
    ipv4_per_eni: 10,
    eni_limit: 3,
    custom_networking: true,
};

#[derive(Default, Clone, Copy)]
struct Targets {
    warm_eni: usize,
    warm_ip: usize,
    min_ip: usize,
    warm_prefix: usize,
    prefix_delegation: bool,
    max_eni: Option<usize>,
}

type Sim = Simulation;

impl Simulation {
    fn for_node(node: Node, t: Targets) -> Sim {
        let max_enis = t.max_eni.unwrap_or(node.eni_limit).min(node.eni_limit);
        let pod_enis = max_enis - usize::from(node.custom_networking);
        let per_eni = (node.ipv4_per_eni - 1) * if t.prefix_delegation { 16 } else { 1 };
        let max_pods = pod_enis * per_eni + 2;
        let settings = PoolSettings {
            warm_eni_target: t.warm_eni,
            warm_ip_target: t.warm_ip,
            minimum_ip_target: t.min_ip,
            warm_prefix_target: t.warm_prefix,
            prefix_delegation: t.prefix_delegation,
            slots_per_eni: node.ipv4_per_eni - 1,
            max_enis,
            max_pods,
            eni_min_age: Duration::from_secs(60),
            decrease_interval: Duration::from_secs(30),
        };
        Simulation::new(settings, node.custom_networking)
    }

    /// (ENIs attached, addresses on pod-serving ENIs)
    fn shape(&self) -> (usize, usize) {
        (self.ds.enis().count(), self.ds.stats(self.now).total)
    }

    fn prefixes(&self) -> usize {
        self.ds.stats(self.now).total_prefixes
    }

    fn assigned(&self) -> usize {
        self.ds.stats(self.now).assigned
    }
}

fn pod(k: usize) -> AllocKey {
    AllocKey::new("aws-cni", &format!("pod-{k}"), "eth0")
}

fn sim(node: Node, t: Targets, pods: usize) -> Sim {
    let mut s = Sim::for_node(node, t);
    s.run_to(pods).unwrap();
    s
}

#[test]
fn reference_rows_of_the_spec() {
    let warm_eni = Targets {
        warm_eni: 1,
        ..Default::default()
    };
    let warm_ip = Targets {
        warm_ip: 1,
        min_ip: 1,
        ..Default::default()
    };
    assert_eq!(sim(T3_SMALL, warm_eni, 0).shape(), (1, 3));
    assert_eq!(sim(T3_SMALL, warm_eni, 5).shape(), (3, 9));
    assert_eq!(sim(T3_SMALL, warm_ip, 0).shape(), (1, 1));
    assert_eq!(sim(T3_SMALL, warm_ip, 5).shape(), (2, 6));
}

#[test]
fn custom_networking_keeps_the_primary_out() {
    let warm_eni = Targets {
        warm_eni: 1,
        ..Default::default()
    };
    let s = sim(M5_LARGE_CN, warm_eni, 0);
    assert_eq!(s.shape(), (2, 9));
    assert_eq!(
        s.ds.eni_views(s.now)[0].blocks.len(),
        0,
        "primary got addresses"
    );
    // The first ENI comes with its addresses in the create call: one action, not two.
    assert_eq!(s.actions[0], PoolAction::CreateEni { slots: 9 });
    // Up to max pods (20 = 18 pod addresses + 2 host-network pods): both pod ENIs full.
    let s = sim(M5_LARGE_CN, warm_eni, 18);
    assert_eq!((s.shape(), s.assigned()), ((3, 18), 18));
    assert!(matches!(
        s.actions.last(),
        Some(PoolAction::AtCapacity { .. })
    ));
}

#[test]
fn max_eni_caps_the_warm_eni_target() {
    let t = Targets {
        warm_eni: 3,
        max_eni: Some(2),
        ..Default::default()
    };
    assert_eq!(sim(M5_LARGE, t, 0).shape(), (2, 18));
}

#[test]
fn ip_targets_give_max_of_warm_and_minimum() {
    for (warm_ip, min_ip, pods, expected_total) in [
        (5, 0, 0, 5),
        (0, 10, 0, 10),
        (5, 10, 0, 10),
        (10, 5, 0, 10),
        (5, 10, 8, 13),
        (2, 0, 12, 14),
    ] {
        let t = Targets {
            warm_ip,
            min_ip,
            ..Default::default()
        };
        let s = sim(M5_LARGE, t, pods);
        assert_eq!(
            s.shape().1,
            expected_total,
            "WARM_IP_TARGET={warm_ip} MINIMUM_IP_TARGET={min_ip} pods={pods}"
        );
    }
}

#[test]
fn prefix_delegation_targets() {
    let pd = Targets {
        prefix_delegation: true,
        ..Default::default()
    };
    // WARM_PREFIX_TARGET=1: one free prefix kept.
    let t = Targets {
        warm_prefix: 1,
        ..pd
    };
    assert_eq!(sim(M5_LARGE_CN, t, 0).prefixes(), 1);
    assert_eq!(sim(M5_LARGE_CN, t, 16).prefixes(), 2);
    assert_eq!(sim(M5_LARGE_CN, t, 20).prefixes(), 3);
    // WARM_PREFIX_TARGET=0: a prefix only when nothing is available, and it stays.
    assert_eq!(sim(M5_LARGE_CN, pd, 0).prefixes(), 1);
    // WARM_PREFIX_TARGET=3 on a fresh node: three prefixes at once.
    let s = sim(
        M5_LARGE_CN,
        Targets {
            warm_prefix: 3,
            ..pd
        },
        0,
    );
    assert_eq!(s.prefixes(), 3);
    assert_eq!(s.actions[0], PoolAction::CreateEni { slots: 3 });
    // IP targets in prefix mode: ceil(short / 16) prefixes.
    assert_eq!(
        sim(M5_LARGE_CN, Targets { warm_ip: 20, ..pd }, 0).prefixes(),
        2
    );
    assert_eq!(
        sim(
            M5_LARGE_CN,
            Targets {
                warm_ip: 5,
                min_ip: 40,
                ..pd
            },
            0
        )
        .prefixes(),
        3
    );
    assert_eq!(
        sim(M5_LARGE_CN, Targets { warm_ip: 1, ..pd }, 16).prefixes(),
        2
    );
}

#[test]
fn scale_down_returns_to_the_baseline() {
    for t in [
        Targets {
            warm_eni: 1,
            ..Default::default()
        },
        Targets {
            warm_ip: 1,
            min_ip: 1,
            ..Default::default()
        },
        Targets {
            warm_ip: 3,
            ..Default::default()
        },
    ] {
        let mut s = Sim::for_node(T3_SMALL, t);
        s.run_to(0).unwrap();
        let baseline = s.shape();
        s.run_to(8).unwrap();
        s.run_to(0).unwrap();
        assert_eq!(s.shape(), baseline);
    }
    let pd = Targets {
        prefix_delegation: true,
        warm_prefix: 1,
        ..Default::default()
    };
    let mut s = Sim::for_node(M5_LARGE_CN, pd);
    s.run_to(0).unwrap();
    let baseline = (s.shape(), s.prefixes());
    s.run_to(60).unwrap();
    s.run_to(0).unwrap();
    assert_eq!((s.shape(), s.prefixes()), baseline);
}

#[test]
fn decreases_are_rate_limited_and_young_enis_stay() {
    let t = Targets {
        warm_eni: 1,
        ..Default::default()
    };
    let mut s = Sim::for_node(T3_SMALL, t);
    s.run_to(5).unwrap();
    for k in 0..5 {
        s.ds.release(&pod(k), s.now);
    }
    s.now = s.now.plus(Duration::from_secs(31));
    s.last_decrease = Some(s.now);
    assert_eq!(decide(&s.settings, &s.state(), s.now), PoolAction::Steady);
    s.now = s.now.plus(Duration::from_secs(30));
    assert!(matches!(
        decide(&s.settings, &s.state(), s.now),
        PoolAction::ReleaseEni { .. }
    ));
    // Addresses still cooling down keep their ENI: eni-1 held pods, eni-2 did not.
    let mut s = Sim::for_node(T3_SMALL, t);
    s.run_to(5).unwrap();
    for k in 0..5 {
        s.ds.release(&pod(k), s.now);
    }
    let eni_2 = PoolAction::ReleaseEni {
        eni_id: "eni-2".into(),
    };
    assert_eq!(decide(&s.settings, &s.state(), s.now), eni_2);
    s.apply(&eni_2);
    s.last_decrease = None;
    assert_eq!(decide(&s.settings, &s.state(), s.now), PoolAction::Steady);
    s.now = s.now.plus(Duration::from_secs(30));
    let eni_1 = PoolAction::ReleaseEni {
        eni_id: "eni-1".into(),
    };
    assert_eq!(decide(&s.settings, &s.state(), s.now), eni_1);
}

#[test]
fn an_eni_whose_subnet_rests_is_not_grown_a_new_eni_is_made_instead() {
    // One pod ENI holding 5 of its 9 slots.
    let t = Targets {
        warm_ip: 5,
        ..Targets::default()
    };
    let mut s = sim(M5_LARGE_CN, t, 0);
    let mut state = s.state();
    let first = state
        .enis
        .iter()
        .find(|e| !e.excluded && e.blocks.len() < s.settings.slots_per_eni)
        .map(|e| e.id.clone())
        .expect("an ENI with room after settling on WARM_IP_TARGET=5");
    s.ds.assign(&pod(0), PodMetadata::default(), s.now).unwrap();
    state = s.state();
    assert!(
        matches!(decide(&s.settings, &state, s.now), PoolAction::AddToEni { ref eni_id, .. } if *eni_id == first)
    );
    state.cannot_grow = vec![first];
    assert!(matches!(
        decide(&s.settings, &state, s.now),
        PoolAction::CreateEni { .. }
    ));
    // No room for another ENI: at capacity, not a call to the resting subnet.
    state.attached_enis = s.settings.max_enis;
    assert!(matches!(
        decide(&s.settings, &state, s.now),
        PoolAction::AtCapacity { .. }
    ));
}

#[test]
fn never_low_at_max_pods() {
    let settings = Sim::for_node(
        M5_LARGE_CN,
        Targets {
            warm_ip: 50,
            ..Default::default()
        },
    )
    .settings;
    let stats = Stats {
        total: settings.max_pods,
        assigned: settings.max_pods,
        ..Default::default()
    };
    assert_eq!(shortage(&settings, &stats), 0);
}

impl Sim {
    /// ENABLE_PREFIX_DELEGATION turned on for a node that holds /32s (an ipamd restarted with
    /// the new setting): its secondary addresses stay until they are released.
    fn turn_on_prefix_delegation(&mut self, warm_prefix: usize) {
        let per_eni = self.settings.slots_per_eni * 16;
        let pod_enis = self.settings.max_enis - usize::from(self.ds.enis().any(|e| e.excluded));
        self.settings.prefix_delegation = true;
        self.settings.warm_prefix_target = warm_prefix;
        self.settings.max_pods = pod_enis * per_eni + 2;
        self.ds.set_max_pods(self.settings.max_pods);
    }
}

#[test]
fn prefix_delegation_on_a_node_holding_secondary_addresses() {
    for (pods_before, warm_prefix, pods_after) in
        [(0, 1, 0), (5, 1, 0), (5, 0, 3), (20, 2, 40), (9, 1, 9)]
    {
        let mut s = sim(M5_LARGE_CN, Targets::default(), pods_before);
        let secondaries = s.shape().1;
        assert!(secondaries > 0);
        s.turn_on_prefix_delegation(warm_prefix);
        // Every decision on the mixed pool is made without underflow, and the pool settles.
        s.run_to(pods_after).unwrap();
        let state = s.state();
        // A node whose slots are all taken by pods' /32s stays at capacity until they go.
        assert_eq!(
            s.assigned(),
            pods_after.min(state.stats.total),
            "{pods_before} -> {pods_after}"
        );
        let settled = decide(&s.settings, &state, s.now.plus(Duration::from_secs(3600)));
        assert!(
            matches!(settled, PoolAction::Steady | PoolAction::AtCapacity { .. }),
            "{settled:?}"
        );
        // The free /32s do not count as prefixes.
        let prefixes = state
            .enis
            .iter()
            .flat_map(|e| &e.blocks)
            .filter(|b| b.prefix_len() < 32)
            .count();
        assert_eq!(state.stats.total_prefixes, prefixes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]
    #[test]
    fn mixed_pools_settle(
        before in 0usize..20, after in 0usize..40, warm_prefix in 0usize..3,
        warm_ip in 0usize..20, min_ip in 0usize..20, cn in any::<bool>(),
    ) {
        let node = Node { ipv4_per_eni: 10, eni_limit: 3, custom_networking: cn };
        let mut s = Sim::for_node(node, Targets::default());
        s.run_to(before).unwrap();
        s.turn_on_prefix_delegation(warm_prefix);
        s.settings.warm_ip_target = warm_ip;
        s.settings.minimum_ip_target = min_ip;
        s.run_to(after).unwrap();
        let state = s.state();
        prop_assert_eq!(s.assigned(), after.min(s.settings.max_pods).min(state.stats.total));
        let settled = decide(&s.settings, &state, s.now.plus(Duration::from_secs(3600)));
        prop_assert!(matches!(settled, PoolAction::Steady | PoolAction::AtCapacity { .. }), "{:?}", settled);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]
    #[test]
    fn pool_settles_within_limits(
        warm_eni in 0usize..4, warm_ip in 0usize..20, min_ip in 0usize..30,
        warm_prefix in 0usize..4, pd in any::<bool>(), cn in any::<bool>(),
        max_eni in proptest::option::of(1usize..4), pods in proptest::collection::vec(0usize..40, 1..4),
    ) {
        let node = Node { ipv4_per_eni: 10, eni_limit: 3, custom_networking: cn };
        prop_assume!(!(cn && max_eni == Some(1)));
        let t = Targets { warm_eni, warm_ip, min_ip, warm_prefix, prefix_delegation: pd, max_eni };
        let mut s = Sim::for_node(node, t);
        for n in pods {
            s.run_to(n).unwrap();
            let state = s.state();
            prop_assert!(state.attached_enis <= s.settings.max_enis);
            for e in &state.enis {
                prop_assert!(e.blocks.len() <= s.settings.slots_per_eni);
                if cn && e.primary { prop_assert!(e.blocks.is_empty()); }
            }
            // Settled means: targets met, or nothing more can be had.
            let wanted = n.min(s.settings.max_pods);
            prop_assert_eq!(s.assigned(), wanted.min(state.stats.total));
            let settled = decide(&s.settings, &state, s.now.plus(Duration::from_secs(3600)));
            prop_assert!(matches!(settled, PoolAction::Steady | PoolAction::AtCapacity { .. }), "{:?}", settled);
        }
    }
}
