//! The node's own datapath, set up once at start-up (idempotent across restarts): the primary
//! interface's loose rp_filter (strict with `AWS_VPC_CNI_NODE_PORT_SUPPORT=false`, as upstream),
//! SNAT and connmark rules, the connmark rule at 1024, the `AWS_EXTERNAL_SERVICE_CIDRS` rules.
//!
//! Lifecycle: a restart re-applies all of it and finds it in place (nothing duplicated); a
//! strict rp_filter that cannot be loosened (a read-only /proc/sys, as in a container that is
//! not privileged) leaves the node not ready, with the reason, instead of running with replies
//! of pods' connections dropped.

use std::net::Ipv4Addr;

use ipamd_settings::IpamdSettings;
use ipnet::Ipv4Net;
use netlink::{Link, MAIN_TABLE, Netlink, Rule};
use tracing::{info, warn};

use super::{DatapathError, iptables, service_rules, snat};

/// `fwmark <connmark> lookup main`: replies to connections that came in on the primary
/// interface go back out of it.
pub use node_contract::CONNMARK_RULE_PRIORITY;
/// Loose: a reply that arrives on another ENI than the route back would use is accepted.
const RP_FILTER_LOOSE: &str = "2";
/// Strict: what upstream sets without NodePort support.
const RP_FILTER_STRICT: &str = "1";

fn rp_filter_key(interface: &str) -> String {
    format!("net.ipv4.conf.{interface}.rp_filter")
}

fn read_sysctl(key: &str) -> Result<u8, DatapathError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let text = std::fs::read_to_string(&path).map_err(|source| DatapathError::Sysctl {
        key: key.to_string(),
        source,
    })?;
    text.trim().parse().map_err(|_| DatapathError::Sysctl {
        key: key.to_string(),
        source: std::io::Error::other(format!("{:?} is not a number", text.trim())),
    })
}

/// The primary interface's rp_filter as `AWS_VPC_CNI_NODE_PORT_SUPPORT` asks: loose with
/// NodePort support ([`loosen_rp_filter`]); strict without, as upstream, which the user chose, so
/// a failure to tighten it is logged and never keeps the node not ready (loose is safe for pods).
pub fn set_rp_filter(interface: &str, node_port_support: bool) -> Option<String> {
    if node_port_support {
        return loosen_rp_filter(interface);
    }
    match super::sysctl(&rp_filter_key(interface), RP_FILTER_STRICT) {
        Ok(()) => info!(
            interface,
            rp_filter = 1,
            "primary interface rp_filter strict: AWS_VPC_CNI_NODE_PORT_SUPPORT=false"
        ),
        Err(e) => {
            warn!(error = %e, "AWS_VPC_CNI_NODE_PORT_SUPPORT=false asks for a strict rp_filter, which ipamd cannot set")
        }
    }
    None
}

/// Loosens the primary interface's rp_filter; the reason the node cannot serve pods when it
/// stays strict. The kernel uses the larger of `all` and the interface's value.
pub fn loosen_rp_filter(interface: &str) -> Option<String> {
    let key = rp_filter_key(interface);
    if let Err(e) = super::sysctl(&key, RP_FILTER_LOOSE) {
        warn!(error = %e, "setting the primary interface's rp_filter");
    }
    let effective = match (
        read_sysctl(&key),
        read_sysctl("net.ipv4.conf.all.rp_filter"),
    ) {
        (Ok(i), Ok(a)) => i.max(a),
        (Err(e), _) | (_, Err(e)) => return Some(format!("cannot read rp_filter: {e}")),
    };
    if effective == 1 {
        return Some(format!(
            "{key} is strict (1) and ipamd cannot change it: replies to pods that arrive on the \
             primary interface would be dropped; set {key}=2 (the aws-node init container does, \
             when privileged)"
        ));
    }
    info!(
        interface,
        rp_filter = effective,
        "primary interface rp_filter"
    );
    None
}

/// SNAT and connmark rules, and the connmark rule (unless SNAT is external).
pub async fn setup(
    nl: &Netlink,
    settings: &IpamdSettings,
    primary: &Link,
    primary_ip: Ipv4Addr,
    vpc_cidrs: &[Ipv4Net],
) -> Result<(), DatapathError> {
    snat::reconcile(settings, &primary.name, primary_ip, vpc_cidrs)?;
    if !settings.external_snat {
        nl.add_rule(&Rule {
            priority: CONNMARK_RULE_PRIORITY,
            src: None,
            dst: None,
            table: MAIN_TABLE,
            fwmark: Some((settings.connmark, settings.connmark)),
        })
        .await?;
    }
    service_rules::reconcile(nl, &settings.external_service_cidrs.0).await?;
    info!(
        iptables = iptables::backend().iptables(),
        external_snat = settings.external_snat,
        "datapath ready"
    );
    Ok(())
}
