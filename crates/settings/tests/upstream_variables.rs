//! The catalog against the existing implementation's documented variables: every one has a fate,
//! and the catalog invents none (besides ours, marked so).

use ipamd_settings::{CATALOG, Fate, lookup};

fn upstream() -> Vec<&'static str> {
    include_str!("data/upstream-variables.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect()
}

#[test]
fn every_documented_variable_has_a_fate() {
    let missing: Vec<&str> = upstream()
        .into_iter()
        .filter(|n| lookup(n).is_none())
        .collect();
    assert!(missing.is_empty(), "no fate for {missing:?}");
}

#[test]
fn the_catalog_holds_only_upstreams_and_ours() {
    let names = upstream();
    for v in CATALOG {
        assert!(
            names.contains(&v.name) || v.fate == Fate::Ours,
            "{} is neither upstream's (tests/data/upstream-variables.txt) nor marked ours",
            v.name
        );
    }
}
