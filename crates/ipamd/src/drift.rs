//! Drift between the pool and what the instance really has (pure): which ENIs and address
//! blocks appeared or went behind ipamd's back. The reconcile loop compares the pool with
//! instance metadata (free of EC2 API tokens) and acts only on what a DescribeNetworkInterfaces
//! confirms, since metadata may lag behind EC2 by a few seconds.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::Ipv4Net;

/// One attached ENI as a source (metadata or EC2) reports it: its pod address blocks (the ENI's
/// own primary address left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub blocks: BTreeSet<Ipv4Net>,
}

/// One ENI as the pool holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub id: String,
    /// Its blocks are not pod addresses (the primary under custom networking): only its
    /// attachment is compared.
    pub blocks_ignored: bool,
    pub blocks: BTreeSet<Ipv4Net>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    /// In the pool, no longer attached.
    pub gone_enis: Vec<String>,
    /// Attached, neither in the pool nor known as unmanaged.
    pub new_enis: Vec<String>,
    /// (ENI, block) in the pool that the ENI no longer holds.
    pub gone_blocks: Vec<(String, Ipv4Net)>,
    /// (ENI, block) the ENI holds that the pool lacks.
    pub new_blocks: Vec<(String, Ipv4Net)>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        *self == Drift::default()
    }

    /// What both readings agree on.
    pub fn confirmed_by(&self, other: &Drift) -> Drift {
        fn both<T: PartialEq + Clone>(a: &[T], b: &[T]) -> Vec<T> {
            a.iter().filter(|x| b.contains(x)).cloned().collect()
        }
        Drift {
            gone_enis: both(&self.gone_enis, &other.gone_enis),
            new_enis: both(&self.new_enis, &other.new_enis),
            gone_blocks: both(&self.gone_blocks, &other.gone_blocks),
            new_blocks: both(&self.new_blocks, &other.new_blocks),
        }
    }
}

/// Compares the pool (`known`, and the ids of attached interfaces ipamd leaves alone) with one
/// reading of the instance's interfaces.
pub fn drift(known: &[Known], unmanaged: &[String], observed: &[Observed]) -> Drift {
    let seen: BTreeMap<&str, &Observed> = observed.iter().map(|o| (o.id.as_str(), o)).collect();
    let mut out = Drift::default();
    for k in known {
        let Some(o) = seen.get(k.id.as_str()) else {
            out.gone_enis.push(k.id.clone());
            continue;
        };
        if k.blocks_ignored {
            continue;
        }
        out.gone_blocks
            .extend(k.blocks.difference(&o.blocks).map(|b| (k.id.clone(), *b)));
        out.new_blocks
            .extend(o.blocks.difference(&k.blocks).map(|b| (k.id.clone(), *b)));
    }
    out.new_enis.extend(
        observed
            .iter()
            .filter(|o| !known.iter().any(|k| k.id == o.id) && !unmanaged.contains(&o.id))
            .map(|o| o.id.clone()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn blocks(list: &[&str]) -> BTreeSet<Ipv4Net> {
        list.iter().map(|s| net(s)).collect()
    }

    fn known(id: &str, list: &[&str]) -> Known {
        Known {
            id: id.into(),
            blocks_ignored: false,
            blocks: blocks(list),
        }
    }

    fn observed(id: &str, list: &[&str]) -> Observed {
        Observed {
            id: id.into(),
            blocks: blocks(list),
        }
    }

    #[test]
    fn in_step_is_empty() {
        let k = [known("eni-1", &["10.0.0.5/32", "10.0.0.6/32"])];
        let o = [observed("eni-1", &["10.0.0.6/32", "10.0.0.5/32"])];
        assert!(drift(&k, &[], &o).is_empty());
    }

    #[test]
    fn every_kind_of_drift() {
        let mut primary = known("eni-0", &[]);
        primary.blocks_ignored = true;
        let k = [
            primary,
            known("eni-1", &["10.0.0.5/32", "10.0.0.6/32"]),
            known("eni-2", &["10.0.1.0/28"]),
        ];
        let o = [
            // The excluded primary's addresses are not compared.
            observed("eni-0", &["10.0.9.9/32"]),
            observed("eni-1", &["10.0.0.6/32", "10.0.0.7/32"]),
            observed("eni-3", &[]),
            observed("eni-unmanaged", &["10.0.4.4/32"]),
        ];
        let d = drift(&k, &["eni-unmanaged".to_string()], &o);
        assert_eq!(d.gone_enis, vec!["eni-2".to_string()]);
        assert_eq!(d.new_enis, vec!["eni-3".to_string()]);
        assert_eq!(
            d.gone_blocks,
            vec![("eni-1".to_string(), net("10.0.0.5/32"))]
        );
        assert_eq!(
            d.new_blocks,
            vec![("eni-1".to_string(), net("10.0.0.7/32"))]
        );
    }

    #[test]
    fn only_what_both_readings_say_is_acted_on() {
        let k = [known("eni-1", &["10.0.0.5/32", "10.0.0.6/32"])];
        // Metadata lags: it misses .6, which EC2 still has; EC2 agrees .5 is gone.
        let metadata = drift(&k, &[], &[observed("eni-1", &[])]);
        let ec2 = drift(&k, &[], &[observed("eni-1", &["10.0.0.6/32"])]);
        let d = metadata.confirmed_by(&ec2);
        assert_eq!(
            d.gone_blocks,
            vec![("eni-1".to_string(), net("10.0.0.5/32"))]
        );
        assert!(d.new_blocks.is_empty() && d.gone_enis.is_empty());
    }
}
