//! `AWS_EXTERNAL_SERVICE_CIDRS`: destinations that pods on secondary ENIs must reach through the
//! main table (endpoints outside the VPC behind a service), as `to <cidr> lookup main` rules at
//! priority 1535, ahead of the pods' `from <pod> lookup <eni table>` rules at 1536. Rules at
//! that priority that are no longer listed are removed, so a changed list converges.

use ipnet::Ipv4Net;
use netlink::{Netlink, Rule};

use super::DatapathError;

pub use node_contract::SERVICE_RULE_PRIORITY as PRIORITY;
const MAIN_TABLE: u32 = 254;

pub fn rule(cidr: Ipv4Net) -> Rule {
    Rule {
        priority: PRIORITY,
        src: None,
        dst: Some(cidr),
        table: MAIN_TABLE,
        fwmark: None,
    }
}

/// Pure: (rules to add, rules to delete) from the current rules and the wanted CIDRs.
pub fn plan(current: &[Rule], wanted: &[Ipv4Net]) -> (Vec<Rule>, Vec<Rule>) {
    let wanted: Vec<Rule> = wanted.iter().map(|c| rule(*c)).collect();
    let ours: Vec<&Rule> = current.iter().filter(|r| r.priority == PRIORITY).collect();
    let add = wanted
        .iter()
        .filter(|w| !ours.contains(w))
        .cloned()
        .collect();
    let delete = ours
        .into_iter()
        .filter(|r| !wanted.contains(r))
        .cloned()
        .collect();
    (add, delete)
}

pub async fn reconcile(nl: &Netlink, wanted: &[Ipv4Net]) -> Result<(), DatapathError> {
    let (add, delete) = plan(&nl.rules().await?, wanted);
    for r in &delete {
        nl.delete_rule(r).await?;
    }
    for r in &add {
        nl.add_rule(r).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn converges_on_the_list() {
        let pod_rule = Rule {
            priority: node_contract::FROM_ENI_RULE_PRIORITY,
            src: Some(net("100.64.0.9/32")),
            dst: None,
            table: 3,
            fwmark: None,
        };
        let current = vec![rule(net("10.1.0.0/16")), rule(net("10.9.0.0/16")), pod_rule];
        let (add, delete) = plan(&current, &[net("10.1.0.0/16"), net("172.16.0.0/12")]);
        assert_eq!(add, vec![rule(net("172.16.0.0/12"))]);
        assert_eq!(delete, vec![rule(net("10.9.0.0/16"))]);
        let (add, delete) = plan(&current, &[]);
        assert!(add.is_empty());
        assert_eq!(delete.len(), 2, "the pod's rule is not ours to delete");
    }
}
