//! Forgets the connection-tracking entries of a released pod address (`ipam.md`): conntrack keeps
//! a SYN_SENT entry 120 s and an established one for days, longer than the address cooldown, so
//! the next pod given the address would otherwise inherit another pod's NAT and connmark state.
//! `conntrack -D` (Debian/AL2 package `conntrack`) lists and deletes entries one by one, which
//! ctnetlink's delete message cannot do by address alone.

use std::net::Ipv4Addr;

/// Deletes every entry whose original source or destination is `ip`; returns how many went.
/// No matching entry is not an error. At the lowest CPU priority (`nice -n 19`): the flush can
/// wait, the plugin's gRPC calls next to it cannot.
pub fn flush(ip: Ipv4Addr) -> Result<u64, String> {
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
    use super::deleted_count;

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
