use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

const COOLDOWN: Duration = Duration::from_secs(30);

pub(crate) fn eni(id: &str, device_number: u32, primary: bool) -> Eni {
    Eni {
        id: id.to_string(),
        device_number,
        network_card: 0,
        primary,
        excluded: false,
        subnet_id: "subnet-pods".to_string(),
        subnet_cidr: "100.64.0.0/19".parse().unwrap(),
        security_groups: vec!["sg-pods".to_string()],
        mac: format!("02:00:00:00:00:{device_number:02x}"),
        primary_ip: Ipv4Addr::new(100, 64, 0, 4 + device_number as u8),
        created_at: Time::from_secs(0),
    }
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, 0, last)
}

fn slash32(last: u8) -> Ipv4Net {
    Ipv4Net::new(ip(last), 32).unwrap()
}

fn key(n: usize) -> AllocKey {
    AllocKey::new("aws-cni", &format!("container-{n}"), "eth0")
}

fn meta() -> PodMetadata {
    PodMetadata::default()
}

/// One pod ENI (device 1) holding `n` secondary addresses 100.64.0.10...
pub(crate) fn node_with_addresses(n: u8) -> Datastore {
    let mut ds = Datastore::new(COOLDOWN, 110);
    ds.add_eni(eni("eni-1", 1, false)).unwrap();
    for i in 0..n {
        ds.add_block("eni-1", slash32(10 + i)).unwrap();
    }
    ds
}

#[test]
fn add_is_idempotent_and_del_of_unknown_changes_nothing() {
    let mut ds = node_with_addresses(3);
    let t = Time::from_secs(100);
    let first = ds.assign(&key(1), meta(), t).unwrap();
    assert!(first.fresh);
    let again = ds.assign(&key(1), meta(), t).unwrap();
    assert_eq!(again.ip, first.ip);
    assert!(!again.fresh);
    assert_eq!(ds.stats(t).assigned, 1);
    assert_eq!(ds.release(&key(9), t), None);
    assert_eq!(ds.stats(t).assigned, 1);
    let released = ds.release(&key(1), t).unwrap();
    assert_eq!(released.ip, first.ip);
    assert_eq!(released.route_table, 2);
    assert_eq!(ds.release(&key(1), t), None);
}

#[test]
fn never_used_addresses_first_then_oldest_released_out_of_cooldown() {
    let mut ds = node_with_addresses(3);
    let t0 = Time::from_secs(100);
    let a = ds.assign(&key(1), meta(), t0).unwrap().ip;
    assert_eq!(a, ip(10));
    ds.release(&key(1), t0);
    // .10 cools down; never-used .11 comes next, then .12.
    assert_eq!(ds.assign(&key(2), meta(), t0).unwrap().ip, ip(11));
    assert_eq!(ds.assign(&key(3), meta(), t0).unwrap().ip, ip(12));
    // Only .10 is left and it is cooling down: counted available, not handed out.
    let stats = ds.stats(t0);
    assert_eq!(
        (
            stats.total,
            stats.assigned,
            stats.available(),
            stats.cooling_down
        ),
        (3, 2, 1, 1)
    );
    let err = ds
        .assign(&key(4), meta(), t0.plus(Duration::from_secs(29)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            DatastoreError::NoAvailableAddress {
                cooling_down: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        ds.assign(&key(4), meta(), t0.plus(COOLDOWN)).unwrap().ip,
        ip(10)
    );
}

#[test]
fn oldest_release_wins_among_cooled_addresses() {
    let mut ds = node_with_addresses(2);
    let t = Time::from_secs(100);
    ds.assign(&key(1), meta(), t).unwrap();
    ds.assign(&key(2), meta(), t).unwrap();
    ds.release(&key(2), t); // .11 released first
    ds.release(&key(1), t.plus(Duration::from_secs(5))); // .10 later
    let later = t.plus(Duration::from_secs(60));
    assert_eq!(ds.assign(&key(3), meta(), later).unwrap().ip, ip(11));
}

#[test]
fn packs_the_fullest_eni_and_skips_excluded_ones() {
    let mut ds = Datastore::new(COOLDOWN, 110);
    let mut primary = eni("eni-0", 0, true);
    primary.excluded = true;
    ds.add_eni(primary).unwrap();
    ds.add_block("eni-0", slash32(200)).unwrap();
    ds.add_eni(eni("eni-1", 1, false)).unwrap();
    ds.add_eni(eni("eni-2", 2, false)).unwrap();
    for i in 0..3 {
        ds.add_block("eni-1", slash32(10 + i)).unwrap();
        ds.add_block("eni-2", slash32(20 + i)).unwrap();
    }
    let t = Time::from_secs(100);
    // Both empty: the lower device number first, then keep packing it.
    for n in 0..3 {
        assert_eq!(ds.assign(&key(n), meta(), t).unwrap().eni_id, "eni-1");
    }
    let fourth = ds.assign(&key(3), meta(), t).unwrap();
    assert_eq!((fourth.eni_id.as_str(), fourth.route_table), ("eni-2", 3));
    ds.release(&key(0), t);
    // eni-1 still has 2 assigned, eni-2 has 1: a cooled address on eni-1 beats free ones on eni-2.
    let later = t.plus(COOLDOWN);
    assert_eq!(ds.assign(&key(4), meta(), later).unwrap().eni_id, "eni-1");
    // The excluded primary's address never goes out, and does not count.
    assert_eq!(ds.stats(later).total, 6);
    for n in 5..7 {
        assert_eq!(ds.assign(&key(n), meta(), later).unwrap().eni_id, "eni-2");
    }
    assert!(ds.assign(&key(7), meta(), later).is_err());
}

#[test]
fn max_pods_is_a_ceiling_but_repeated_add_still_answers() {
    let mut ds = node_with_addresses(5);
    ds.set_max_pods(2);
    let t = Time::from_secs(1);
    ds.assign(&key(1), meta(), t).unwrap();
    ds.assign(&key(2), meta(), t).unwrap();
    let err = ds.assign(&key(3), meta(), t).unwrap_err();
    assert_eq!(
        err,
        DatastoreError::MaxPodsReached {
            assigned: 2,
            max_pods: 2
        }
    );
    assert!(err.to_string().contains("max pods is 2"));
    assert!(ds.assign(&key(2), meta(), t).is_ok());
}

#[test]
fn prefix_mode_hands_out_all_sixteen_and_packs_prefixes() {
    let mut ds = Datastore::new(COOLDOWN, 110);
    ds.add_eni(eni("eni-1", 1, false)).unwrap();
    let p1: Ipv4Net = "100.64.1.0/28".parse().unwrap();
    let p2: Ipv4Net = "100.64.1.16/28".parse().unwrap();
    ds.add_block("eni-1", p1).unwrap();
    ds.add_block("eni-1", p2).unwrap();
    let t = Time::from_secs(1);
    let s = ds.stats(t);
    assert_eq!((s.total, s.total_prefixes, s.free_prefixes), (32, 2, 2));
    let ips: Vec<Ipv4Addr> = (0..16)
        .map(|n| ds.assign(&key(n), meta(), t).unwrap().ip)
        .collect();
    assert!(
        ips.iter().all(|a| p1.contains(a)),
        "first prefix filled first: {ips:?}"
    );
    assert_eq!(ips[0], Ipv4Addr::new(100, 64, 1, 0));
    assert_eq!(ds.stats(t).free_prefixes, 1);
    assert!(p2.contains(&ds.assign(&key(16), meta(), t).unwrap().ip));
    assert_eq!(ds.stats(t).free_prefixes, 0);
    // Overlapping blocks are refused, as are odd sizes.
    let err = ds
        .add_block("eni-1", "100.64.1.3/32".parse().unwrap())
        .unwrap_err();
    assert!(matches!(err, DatastoreError::Overlap { .. }), "{err}");
    let err = ds
        .add_block("eni-1", "100.64.2.0/27".parse().unwrap())
        .unwrap_err();
    assert!(matches!(err, DatastoreError::BadBlock { .. }));
}

#[test]
fn blocks_and_enis_in_use_are_not_removed_unless_forced() {
    let mut ds = node_with_addresses(2);
    let t = Time::from_secs(100);
    ds.assign(&key(1), meta(), t).unwrap();
    let err = ds.remove_block("eni-1", slash32(10), false, t).unwrap_err();
    assert!(
        matches!(err, DatastoreError::InUse { assigned: 1, .. }),
        "{err}"
    );
    ds.remove_block("eni-1", slash32(11), false, t).unwrap();
    ds.release(&key(1), t);
    let err = ds.remove_eni("eni-1", false, t).unwrap_err();
    assert!(
        matches!(
            err,
            DatastoreError::InUse {
                cooling_down: 1,
                ..
            }
        ),
        "{err}"
    );
    ds.assign(&key(2), meta(), t.plus(COOLDOWN)).unwrap();
    let dropped = ds.remove_eni("eni-1", true, t.plus(COOLDOWN)).unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].0, key(2));
    assert_eq!(ds.allocations().count(), 0);
    assert!(ds.eni("eni-1").is_none());
}

#[test]
fn restore_keeps_addresses_and_refuses_conflicts() {
    let mut ds = node_with_addresses(3);
    let t = Time::from_secs(5);
    let a = ds.restore(&key(1), ip(11), meta(), t).unwrap();
    assert_eq!(a.ip, ip(11));
    assert!(!ds.restore(&key(1), ip(11), meta(), t).unwrap().fresh);
    let err = ds.restore(&key(1), ip(12), meta(), t).unwrap_err();
    assert!(matches!(err, DatastoreError::KeyHoldsOther { .. }));
    let err = ds.restore(&key(2), ip(11), meta(), t).unwrap_err();
    assert!(err.to_string().contains("container-1"), "{err}");
    let err = ds.restore(&key(3), ip(99), meta(), t).unwrap_err();
    assert_eq!(err, DatastoreError::AddressNotOnNode(ip(99)));
    // A fresh assignment skips the restored address.
    assert_eq!(ds.assign(&key(4), meta(), t).unwrap().ip, ip(10));
    assert_eq!(ds.assign(&key(5), meta(), t).unwrap().ip, ip(12));
}

#[test]
fn route_tables() {
    assert_eq!(route_table_id(0, 0), 254);
    assert_eq!(route_table_id(1, 0), 2);
    assert_eq!(route_table_id(2, 1), 10_102);
}

#[derive(Debug, Clone)]
enum Op {
    Assign(usize),
    Release(usize),
    Advance(u64),
    AddEni {
        excluded: bool,
        prefixes: bool,
        blocks: u8,
    },
    RemoveEni(usize),
    SetMaxPods(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..40).prop_map(Op::Assign),
        4 => (0usize..40).prop_map(Op::Release),
        2 => (0u64..45).prop_map(Op::Advance),
        1 => (any::<bool>(), any::<bool>(), 0u8..6)
            .prop_map(|(excluded, prefixes, blocks)| Op::AddEni { excluded, prefixes, blocks }),
        1 => (0usize..6).prop_map(Op::RemoveEni),
        1 => (0usize..40).prop_map(Op::SetMaxPods),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn datastore_invariants_hold_under_any_sequence(ops in proptest::collection::vec(op(), 1..120)) {
        let mut ds = Datastore::new(COOLDOWN, 30);
        let mut now = Time::from_secs(1000);
        let mut next_eni = 0u32;
        let mut next_block = 0u32;
        // When each address was last released, to check the cooldown from outside.
        let mut released_at: BTreeMap<Ipv4Addr, Time> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Assign(k) => {
                    let before = ds.allocation(&key(k)).map(|a| a.ip);
                    let was_full = ds.allocations().count() >= ds.max_pods();
                    match ds.assign(&key(k), meta(), now) {
                        Ok(a) => {
                            if let Some(prev) = before {
                                prop_assert_eq!(prev, a.ip, "repeated ADD moved the address");
                                prop_assert!(!a.fresh);
                            } else {
                                prop_assert!(!was_full, "assigned beyond max pods");
                                if let Some(t) = released_at.get(&a.ip) {
                                    prop_assert!(now.since(*t) >= COOLDOWN, "{} reused inside its cooldown", a.ip);
                                }
                                let on = ds.eni(&a.eni_id).unwrap();
                                prop_assert!(!on.excluded, "assigned on an excluded ENI");
                            }
                        }
                        Err(DatastoreError::MaxPodsReached { .. }) => prop_assert!(was_full),
                        Err(DatastoreError::NoAvailableAddress { .. }) => {}
                        Err(e) => prop_assert!(false, "unexpected error {}", e),
                    }
                }
                Op::Release(k) => {
                    let held = ds.allocation(&key(k)).map(|a| a.ip);
                    let r = ds.release(&key(k), now);
                    prop_assert_eq!(r.as_ref().map(|r| r.ip), held);
                    if let Some(r) = r {
                        released_at.insert(r.ip, now);
                    }
                }
                Op::Advance(s) => now = now.plus(Duration::from_secs(s)),
                Op::AddEni { excluded, prefixes, blocks } => {
                    next_eni += 1;
                    let id = format!("eni-{next_eni}");
                    let mut e = eni(&id, next_eni, false);
                    e.excluded = excluded;
                    ds.add_eni(e).unwrap();
                    for _ in 0..blocks {
                        next_block += 1;
                        let base = u32::from(Ipv4Addr::new(100, 64, 0, 0)) + next_block * 16;
                        let cidr = Ipv4Net::new(Ipv4Addr::from(base), if prefixes { 28 } else { 32 }).unwrap();
                        ds.add_block(&id, cidr).unwrap();
                    }
                }
                Op::RemoveEni(n) => {
                    let id = format!("eni-{n}");
                    if ds.eni(&id).is_some() {
                        let in_use = ds.allocations().any(|(_, a)| a.eni_id == id);
                        let r = ds.remove_eni(&id, false, now);
                        if in_use { prop_assert!(r.is_err()); }
                    }
                }
                Op::SetMaxPods(m) => ds.set_max_pods(m),
            }
            check_invariants(&ds, now)?;
        }
    }
}

fn check_invariants(ds: &Datastore, now: Time) -> Result<(), TestCaseError> {
    let mut seen = BTreeSet::new();
    for (k, a) in ds.allocations() {
        prop_assert!(seen.insert(a.ip), "{} held by two keys", a.ip);
        let holder = ds
            .addresses(&a.eni_id)
            .into_iter()
            .find(|(ip, _)| *ip == a.ip)
            .and_then(|(_, h)| h.cloned());
        prop_assert_eq!(
            holder.as_ref(),
            Some(k),
            "allocation of {} not on its ENI",
            k
        );
    }
    let stats = ds.stats(now);
    prop_assert!(stats.assigned <= stats.total);
    prop_assert!(stats.free_prefixes <= stats.total_prefixes);
    prop_assert_eq!(stats.assigned, ds.allocations().count());
    Ok(())
}

#[test]
fn a_request_key_falls_back_to_the_infra_container_and_eth0() {
    assert_eq!(
        AllocKey::for_request("aws-cni", "c1", "infra", "eth1"),
        Some(AllocKey::new("aws-cni", "c1", "eth1"))
    );
    assert_eq!(
        AllocKey::for_request("aws-cni", "", "infra", ""),
        Some(AllocKey::new("aws-cni", "infra", "eth0"))
    );
    assert_eq!(AllocKey::for_request("aws-cni", "", "", "eth0"), None);
}
