//! Forgets the connection-tracking entries of a released pod address (`ipam.md`): conntrack keeps
//! a SYN_SENT entry 120 s and an established one for days, longer than the address cooldown, so
//! the next pod given the address would otherwise inherit another pod's NAT and connmark state.
//! `conntrack -D` (Debian/AL2 package `conntrack`) lists and deletes entries one by one, which
//! ctnetlink's delete message cannot do by address alone.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Deletes the entries of every address in `ips` that has any: one listing (`conntrack -L`)
/// first, then [`flush`] for the addresses it shows. Most released addresses have no entry
/// left, so a batch usually costs one process instead of two per address. Returns how many
/// entries went.
pub fn flush_listed(ips: &BTreeSet<Ipv4Addr>) -> Result<u64, String> {
    if ips.is_empty() {
        return Ok(0);
    }
    let out = command::output(&["nice", "-n", "19", "conntrack", "-L", "-f", "ipv4"], None)
        .map_err(|e| e.to_string())?;
    if !out.success {
        return Err(format!("conntrack -L: {}", out.stderr.trim()));
    }
    let mut deleted = 0;
    for ip in listed(&out.stdout, ips) {
        deleted += flush(ip)?;
    }
    Ok(deleted)
}

/// The addresses of `ips` that are the original source or destination of an entry of
/// `conntrack -L` output (the first `src=` and `dst=` of a line; the second pair is the reply).
fn listed(listing: &str, ips: &BTreeSet<Ipv4Addr>) -> BTreeSet<Ipv4Addr> {
    let mut found = BTreeSet::new();
    for line in listing.lines() {
        let mut words = line.split_whitespace();
        let src = words.clone().find_map(|w| w.strip_prefix("src="));
        let dst = words.find_map(|w| w.strip_prefix("dst="));
        for addr in [src, dst].into_iter().flatten() {
            if let Ok(ip) = addr.parse::<Ipv4Addr>()
                && ips.contains(&ip)
            {
                found.insert(ip);
            }
        }
    }
    found
}

/// Deletes every entry whose original source or destination is `ip`; returns how many went.
/// No matching entry is not an error. At the lowest CPU priority (`nice -n 19`): the flush can
/// wait, the plugin's gRPC calls next to it cannot.
fn flush(ip: Ipv4Addr) -> Result<u64, String> {
    let mut deleted = 0;
    for direction in ["--orig-src", "--orig-dst"] {
        let out = command::output(
            &[
                "nice",
                "-n",
                "19",
                "conntrack",
                "-D",
                "-f",
                "ipv4",
                direction,
                &ip.to_string(),
            ],
            None,
        )
        .map_err(|e| e.to_string())?;
        let stderr = &out.stderr;
        // "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted." (exit 1 when 0)
        match deleted_count(stderr) {
            Some(n) => deleted += n,
            None => {
                return Err(format!("conntrack -D {direction} {ip}: {stderr}"));
            }
        }
    }
    Ok(deleted)
}

fn deleted_count(stderr: &str) -> Option<u64> {
    let line = stderr
        .lines()
        .find(|l| l.contains("flow entries have been deleted"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "flow")?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_names_the_original_source_and_destination() {
        let listing = "\
tcp      6 119 SYN_SENT src=100.64.0.5 dst=198.51.100.7 sport=40000 dport=443 [UNREPLIED] src=198.51.100.7 dst=100.64.0.5 sport=443 dport=40000 mark=0 use=1
udp      17 29 src=198.51.100.9 dst=100.64.0.6 sport=53 dport=5353 src=100.64.0.6 dst=198.51.100.9 sport=5353 dport=53 mark=128 use=1
tcp      6 431999 ESTABLISHED src=10.0.1.4 dst=100.64.0.7 sport=1 dport=2 src=100.64.0.8 dst=10.0.1.4 sport=2 dport=1 [ASSURED] mark=0 use=1
";
        let ips: BTreeSet<Ipv4Addr> = ["100.64.0.5", "100.64.0.6", "100.64.0.8", "100.64.0.9"]
            .iter()
            .map(|s| s.parse().expect("ip"))
            .collect();
        let found: Vec<String> = listed(listing, &ips)
            .iter()
            .map(|i| i.to_string())
            .collect();
        // .8 appears only as a reply source (a DNAT'd flow to .7): not this address's entry.
        assert_eq!(found, ["100.64.0.5", "100.64.0.6"]);
        assert!(listed("", &ips).is_empty());
        assert!(listed("garbage src=x dst=", &ips).is_empty());
    }

    #[test]
    fn reads_the_count_from_conntracks_summary() {
        assert_eq!(
            deleted_count(
                "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.\n"
            ),
            Some(2)
        );
        assert_eq!(
            deleted_count(
                "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n"
            ),
            Some(0)
        );
        assert_eq!(
            deleted_count("conntrack v1.4.7 (conntrack-tools): Operation not permitted\n"),
            None
        );
        assert_eq!(deleted_count(""), None);
    }
}
