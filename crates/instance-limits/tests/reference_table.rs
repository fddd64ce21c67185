//! The max-pods figures agree with the table the existing implementation ships.

#![allow(clippy::unwrap_used)]

use instance_limits::{LimitsTable, MaxPodsOptions, max_pods};

/// `(instance type, max pods)` rows of the existing implementation's `eni-max-pods.txt`.
pub fn reference_rows() -> Vec<(String, u32)> {
    let text = include_str!("data/eni-max-pods.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (t, n) = l.split_once(' ').expect("two columns");
            (t.to_string(), n.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn uncapped_max_pods_match_the_existing_table() {
    let table = LimitsTable::builtin();
    let options = MaxPodsOptions {
        show_max_allowed: true,
        ..Default::default()
    };
    let rows = reference_rows();
    let mut compared = 0;
    let mut differ = Vec::new();
    for (instance_type, expected) in &rows {
        // Types EC2 retired since the reference was generated are not in our table.
        let Ok(limits) = table.get(instance_type) else {
            continue;
        };
        compared += 1;
        let got = max_pods(limits, &options).unwrap().max_pods;
        if got != *expected {
            differ.push(format!("{instance_type}: ours {got}, reference {expected}"));
        }
    }
    assert!(differ.is_empty(), "differences:\n{}", differ.join("\n"));
    assert!(
        compared >= 860,
        "only {compared} of {} reference rows compared",
        rows.len()
    );
}
