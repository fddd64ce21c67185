//! SNAT and connmark rules (`datapath.md`), reconciled with iptables-restore: our chains are
//! rewritten whole, jumps into the built-in chains are added once and never duplicated. All with
//! the iptables backend kube-proxy uses ([`super::iptables::backend`]). A fresh node's start
//! runs two processes here (one listing, one restore) where it ran eleven (a check and an append
//! per jump): on a shared machine a fleet's starts were bound by them.

use std::net::Ipv4Addr;

use ipamd_settings::{IpamdSettings, RandomizeSnat};
use ipnet::Ipv4Net;

use super::DatapathError;

pub const SNAT_CHAIN: &str = "AWS-SNAT-CHAIN-0";
pub const CONNMARK_CHAIN: &str = "AWS-CONNMARK-CHAIN-0";

type Jump = (&'static str, &'static str, Vec<String>);

/// The jumps in force, and those to remove: with `AWS_VPC_CNI_NODE_PORT_SUPPORT=false` the
/// primary interface's NodePort mark rule goes.
fn jump_sets(settings: &IpamdSettings, primary_if: &str) -> (Vec<Jump>, Vec<Jump>) {
    let all = jumps(settings, primary_if);
    if settings.node_port_support {
        return (all, Vec::new());
    }
    all.into_iter()
        .partition(|(table, _, spec)| !(*table == "mangle" && spec.iter().any(|a| a == primary_if)))
}

/// (table, built-in chain, rule spec) of every jump we own.
fn jumps(settings: &IpamdSettings, primary_if: &str) -> Vec<Jump> {
    let mark = format!("{:#x}", settings.connmark);
    let veths = format!("{}+", settings.veth_prefix);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        (
            "nat",
            "POSTROUTING",
            s(&[
                "-m",
                "comment",
                "--comment",
                "AWS SNAT CHAIN",
                "-j",
                SNAT_CHAIN,
            ]),
        ),
        (
            "nat",
            "PREROUTING",
            s(&[
                "-i",
                &veths,
                "-m",
                "comment",
                "--comment",
                "AWS, outbound connections",
                "-j",
                CONNMARK_CHAIN,
            ]),
        ),
        (
            "nat",
            "PREROUTING",
            s(&[
                "-m",
                "comment",
                "--comment",
                "AWS, CONNMARK",
                "-j",
                "CONNMARK",
                "--restore-mark",
                "--mask",
                &mark,
            ]),
        ),
        (
            "mangle",
            "PREROUTING",
            s(&[
                "-i",
                primary_if,
                "-m",
                "comment",
                "--comment",
                "AWS, primary ENI",
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "--limit-iface-in",
                "-j",
                "CONNMARK",
                "--set-mark",
                &format!("{mark}/{mark}"),
            ]),
        ),
        (
            "mangle",
            "PREROUTING",
            s(&[
                "-i",
                &veths,
                "-m",
                "comment",
                "--comment",
                "AWS, primary ENI",
                "-j",
                "CONNMARK",
                "--restore-mark",
                "--mask",
                &mark,
            ]),
        ),
    ]
}

fn chains_text(settings: &IpamdSettings, primary_ip: Ipv4Addr, vpc_cidrs: &[Ipv4Net]) -> String {
    let mut excluded: Vec<Ipv4Net> = vpc_cidrs.to_vec();
    excluded.extend(settings.exclude_snat_cidrs.0.iter().copied());
    let mark = format!("{:#x}", settings.connmark);
    let mut t = format!("*nat\n:{SNAT_CHAIN} - [0:0]\n:{CONNMARK_CHAIN} - [0:0]\n");
    for c in &excluded {
        t.push_str(&format!(
            "-A {SNAT_CHAIN} -d {c} -m comment --comment \"AWS SNAT CHAIN\" -j RETURN\n"
        ));
        t.push_str(&format!("-A {CONNMARK_CHAIN} -d {c} -m comment --comment \"AWS CONNMARK CHAIN, VPC CIDR\" -j RETURN\n"));
    }
    let random = match settings.randomize_snat {
        RandomizeSnat::Prng => " --random-fully",
        RandomizeSnat::Hashrandom => " --random",
        RandomizeSnat::None => "",
    };
    t.push_str(&format!(
        "-A {SNAT_CHAIN} ! -o vlan+ -m comment --comment \"AWS, SNAT\" -m addrtype ! --dst-type LOCAL -j SNAT --to-source {primary_ip}{random}\n"
    ));
    t.push_str(&format!("-A {CONNMARK_CHAIN} -m comment --comment \"AWS, CONNMARK\" -j CONNMARK --set-xmark {mark}/{mark}\n"));
    t
}

/// One iptables-restore input: our chains rewritten, and `add` appended to their built-in chains.
fn restore_text(chains: String, add: &[&Jump]) -> String {
    let line = |(_, chain, spec): &&Jump| {
        let args: Vec<String> = spec
            .iter()
            .map(|a| {
                if a.contains(char::is_whitespace) {
                    format!("\"{a}\"")
                } else {
                    a.clone()
                }
            })
            .collect();
        format!("-A {chain} {}\n", args.join(" "))
    };
    let mut t = chains;
    for jump in add.iter().filter(|(table, _, _)| *table == "nat") {
        t.push_str(&line(jump));
    }
    t.push_str("COMMIT\n");
    let mangle: String = add
        .iter()
        .filter(|(table, _, _)| *table == "mangle")
        .map(line)
        .collect();
    if !mangle.is_empty() {
        t.push_str(&format!("*mangle\n{mangle}COMMIT\n"));
    }
    t
}

/// Splits `wanted` by what the backend's listing (`saved`, None when it could not be read) shows:
/// jumps that cannot be there, since no rule of their built-in chain carries their comment, and
/// jumps to check one by one (`iptables -C` knows the rule forms the listing may print otherwise).
/// A fresh node's are all of the first kind: they go into the one restore, no process each.
fn surely_absent<'a>(saved: Option<&str>, wanted: &'a [Jump]) -> (Vec<&'a Jump>, Vec<&'a Jump>) {
    wanted.iter().partition(|(table, chain, spec)| {
        let (Some(saved), Some(comment)) = (
            saved,
            spec.iter()
                .position(|a| a == "--comment")
                .and_then(|i| spec.get(i + 1)),
        ) else {
            return false;
        };
        let prefix = format!("-A {chain} ");
        !super::iptables::section(saved, table)
            .lines()
            .any(|l| l.starts_with(&prefix) && l.contains(comment.as_str()))
    })
}

fn run(args: &[&str], input: Option<&str>) -> Result<bool, DatapathError> {
    Ok(command::output(args, input)?.success)
}

fn run_ok(args: &[&str], input: Option<&str>) -> Result<(), DatapathError> {
    command::run(args, input)?;
    Ok(())
}

/// Creates the chains and jumps (or, with external SNAT, removes them). Idempotent.
pub fn reconcile(
    settings: &IpamdSettings,
    primary_if: &str,
    primary_ip: Ipv4Addr,
    vpc_cidrs: &[Ipv4Net],
) -> Result<(), DatapathError> {
    let backend = super::iptables::backend();
    let iptables = backend.iptables();
    let (wanted, unwanted) = jump_sets(settings, primary_if);
    let delete = |jumps: &[Jump]| -> Result<(), DatapathError> {
        for (table, chain, spec) in jumps {
            let mut args = vec![iptables, "-w", "-t", table, "-D", chain];
            args.extend(spec.iter().map(String::as_str));
            while run(&args, None)? {}
        }
        Ok(())
    };
    if settings.external_snat {
        delete(&wanted)?;
        delete(&unwanted)?;
        for chain in [SNAT_CHAIN, CONNMARK_CHAIN] {
            let _ = run(&[iptables, "-w", "-t", "nat", "-F", chain], None);
            let _ = run(&[iptables, "-w", "-t", "nat", "-X", chain], None);
        }
        return Ok(());
    }
    let saved = command::run(&[backend.save()], None).ok();
    let (add, check) = surely_absent(saved.as_deref(), &wanted);
    run_ok(
        &[backend.restore(), "-w", "--noflush"],
        Some(&restore_text(
            chains_text(settings, primary_ip, vpc_cidrs),
            &add,
        )),
    )?;
    delete(&unwanted)?;
    for (table, chain, spec) in check {
        let mut check = vec![iptables, "-w", "-t", table, "-C", chain];
        check.extend(spec.iter().map(String::as_str));
        if !run(&check, None)? {
            let mut add = vec![iptables, "-w", "-t", table, "-A", chain];
            add.extend(spec.iter().map(String::as_str));
            run_ok(&add, None)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> IpamdSettings {
        let map: std::collections::BTreeMap<&str, &str> = vars.iter().copied().collect();
        IpamdSettings::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap()
    }

    #[test]
    fn jumps_whose_comment_is_not_in_their_chain_go_into_the_restore() {
        let settings = settings(&[]);
        let wanted = jump_sets(&settings, "ens5").0;
        // Nothing could be read: every jump is checked.
        let (add, check) = surely_absent(None, &wanted);
        assert_eq!((add.len(), check.len()), (0, 5));
        // A fresh node: no rule of ours anywhere (the comment in our own chain does not count).
        let fresh = "*nat\n:PREROUTING ACCEPT [0:0]\n:AWS-CONNMARK-CHAIN-0 - [0:0]\n-A AWS-CONNMARK-CHAIN-0 -m comment --comment \"AWS, CONNMARK\" -j CONNMARK --set-xmark 0x80/0x80\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n";
        let (add, check) = surely_absent(Some(fresh), &wanted);
        assert_eq!((add.len(), check.len()), (5, 0));
        // A restart: the nat jumps are there (as the listing prints them), the mangle ones not.
        let restarted = "*nat\n-A PREROUTING -i eni+ -m comment --comment \"AWS, outbound connections\" -j AWS-CONNMARK-CHAIN-0\n-A PREROUTING -m comment --comment \"AWS, CONNMARK\" -j CONNMARK --restore-mark --nfmask 0x80 --ctmask 0x80\n-A POSTROUTING -m comment --comment \"AWS SNAT CHAIN\" -j AWS-SNAT-CHAIN-0\nCOMMIT\n*mangle\n-A OUTPUT -m comment --comment \"AWS, primary ENI\" -j ACCEPT\nCOMMIT\n";
        let (add, check) = surely_absent(Some(restarted), &wanted);
        assert!(add.iter().all(|(t, _, _)| *t == "mangle"), "{add:?}");
        assert_eq!((add.len(), check.len()), (2, 3));
        let text = restore_text(
            chains_text(&settings, "10.0.1.5".parse().unwrap(), &[]),
            &add,
        );
        assert!(text.starts_with("*nat\n"), "{text}");
        assert!(
            text.ends_with(
                "COMMIT\n*mangle\n-A PREROUTING -i ens5 -m comment --comment \"AWS, primary ENI\" -m addrtype --dst-type LOCAL --limit-iface-in -j CONNMARK --set-mark 0x80/0x80\n-A PREROUTING -i eni+ -m comment --comment \"AWS, primary ENI\" -j CONNMARK --restore-mark --mask 0x80\nCOMMIT\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn node_port_support_off_drops_only_the_primary_interfaces_mark_rule() {
        let on = jump_sets(&settings(&[]), "ens5");
        assert_eq!((on.0.len(), on.1.len()), (5, 0));
        let (kept, dropped) = jump_sets(
            &settings(&[("AWS_VPC_CNI_NODE_PORT_SUPPORT", "false")]),
            "ens5",
        );
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        let (table, chain, spec) = &dropped[0];
        assert_eq!((*table, *chain), ("mangle", "PREROUTING"));
        assert!(spec.join(" ").starts_with("-i ens5 "), "{spec:?}");
        // The SNAT path (nat jumps, the veth restore in mangle) stays.
        assert_eq!(kept.len(), 4);
        assert!(
            kept.iter()
                .all(|(_, _, s)| !s.contains(&"ens5".to_string()))
        );
    }
}
