//! The pod's datapath (`datapath.md`): a veth pair with the pod end born in the pod's
//! namespace, the pod's /32 address, its gateway 169.254.1.1 with a permanent neighbour entry,
//! and on the node a host route and the to-pod / from-pod rules.

use std::io::Read;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netlink::{Link, MAIN_TABLE, Netlink, Route, Rule};
use netns::Netns;
use sha1::{Digest, Sha1};

use crate::error::{CniError, Code};
use crate::result::GATEWAY;

pub use node_contract::{
    FROM_ENI_RULE_PRIORITY as FROM_POD_PRIORITY, TO_POD_RULE_PRIORITY as TO_POD_PRIORITY,
};

/// `<prefix>` + the first 11 hex characters of SHA-1 of `"<namespace>.<name>"` (or of the
/// container id when the runtime sends no pod name).
pub fn host_veth_name(prefix: &str, namespace: &str, name: &str, container_id: &str) -> String {
    let input = if name.is_empty() {
        container_id.to_string()
    } else {
        format!("{namespace}.{name}")
    };
    let digest = Sha1::digest(input.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{}", &hex[..11])
}

/// A random locally administered unicast MAC.
fn random_mac() -> [u8; 6] {
    let mut m = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut m);
    }
    m[0] = (m[0] | 0x02) & 0xfe;
    m
}

fn plugin(msg: String) -> CniError {
    CniError::new(Code::Plugin, msg)
}

fn nl_err(e: netlink::NetlinkError) -> CniError {
    plugin(e.to_string())
}

fn to_rule(ip: Ipv4Addr) -> Rule {
    Rule {
        priority: TO_POD_PRIORITY,
        src: None,
        dst: Some(Ipv4Net::from(ip)),
        table: MAIN_TABLE,
        fwmark: None,
    }
}

fn from_rule(ip: Ipv4Addr, table: u32) -> Rule {
    Rule {
        priority: FROM_POD_PRIORITY,
        src: Some(Ipv4Net::from(ip)),
        dst: None,
        table,
        fwmark: None,
    }
}

/// The tables of the node's from-pod rules for `ip` (one, or none when the address is on main).
pub async fn from_rule_tables(
    node: &Netlink,
    ip: Ipv4Addr,
) -> Result<Vec<u32>, netlink::NetlinkError> {
    Ok(node
        .rules()
        .await?
        .into_iter()
        .filter(|r| r.priority == FROM_POD_PRIORITY && r.src == Some(Ipv4Net::from(ip)))
        .map(|r| r.table)
        .collect())
}

fn host_route(ip: Ipv4Addr, index: u32) -> Route {
    Route::link_scope(Ipv4Net::from(ip), index, MAIN_TABLE)
}

pub struct Built {
    pub host: Link,
    pub pod_mac: [u8; 6],
}

pub struct PodSpec<'a> {
    pub host_if: &'a str,
    pub pod_if: &'a str,
    pub ip: Ipv4Addr,
    pub mtu: u32,
    pub table: u32,
}

/// Builds everything; the caller undoes it with [`remove`] if this fails.
pub async fn build(node: &Netlink, pod_ns: &Netns, spec: &PodSpec<'_>) -> Result<Built, CniError> {
    let create = || {
        node.create_veth(
            spec.host_if,
            Some(random_mac()),
            spec.pod_if,
            pod_ns,
            spec.mtu,
        )
    };
    // A stale link with this name (a previous sandbox of the same pod) goes, then the create is
    // retried once. Trying the create first spares the common case a request that takes the
    // kernel's rtnl lock for nothing.
    let host = match create().await {
        Err(e)
            if e.is_exists()
                && node
                    .delete_link_by_name(spec.host_if)
                    .await
                    .map_err(nl_err)? =>
        {
            create().await
        }
        created => created,
    }
    .map_err(nl_err)?;
    node.set_up(host.index).await.map_err(nl_err)?;
    let host_mac = host
        .mac
        .ok_or_else(|| plugin(format!("{} has no MAC", spec.host_if)))?;

    let pod = Netlink::connect_in(pod_ns).await.map_err(nl_err)?;
    let link = pod
        .link_by_name(spec.pod_if)
        .await
        .map_err(nl_err)?
        .ok_or_else(|| {
            plugin(format!(
                "{} did not appear in {}",
                spec.pod_if,
                pod_ns.path().display()
            ))
        })?;
    pod.add_address(link.index, Ipv4Net::from(spec.ip))
        .await
        .map_err(nl_err)?;
    pod.set_up(link.index).await.map_err(nl_err)?;
    pod.replace_route(&Route::link_scope(
        Ipv4Net::from(GATEWAY),
        link.index,
        MAIN_TABLE,
    ))
    .await
    .map_err(nl_err)?;
    pod.replace_route(&Route::default_via(GATEWAY, link.index, MAIN_TABLE))
        .await
        .map_err(nl_err)?;
    pod.replace_neighbour(link.index, GATEWAY, host_mac)
        .await
        .map_err(nl_err)?;

    node.replace_route(&host_route(spec.ip, host.index))
        .await
        .map_err(nl_err)?;
    node.add_rule(&to_rule(spec.ip)).await.map_err(nl_err)?;
    if spec.table != MAIN_TABLE {
        node.add_rule(&from_rule(spec.ip, spec.table))
            .await
            .map_err(nl_err)?;
    }
    Ok(Built {
        host,
        pod_mac: link.mac.unwrap_or_default(),
    })
}

/// The host veth named `host_if` if it belongs to this sandbox: its peer is `pod_if` in the
/// sandbox's namespace, or, the namespace gone, its MAC is the one this sandbox's ADD recorded
/// (`prevResult`). A new sandbox of the same pod reuses the name: its veth is not ours to delete.
pub async fn sandbox_veth(
    node: &Netlink,
    host_if: &str,
    pod_ns: Option<&Netns>,
    pod_if: &str,
    recorded_mac: Option<[u8; 6]>,
) -> Result<Option<Link>, netlink::NetlinkError> {
    let Some(host) = node.link_by_name(host_if).await? else {
        return Ok(None);
    };
    if let Some(ns) = pod_ns {
        let pod = Netlink::connect_in(ns).await?;
        let ours = pod
            .link_by_name(pod_if)
            .await?
            .is_some_and(|p| p.peer == Some(host.index) && host.peer == Some(p.index));
        return Ok(ours.then_some(host));
    }
    Ok((recorded_mac.is_some() && host.mac == recorded_mac).then_some(host))
}

/// The addresses the node routes to `link` (`IP/32 dev <link>` in main): its pod's.
pub async fn routed_via(
    node: &Netlink,
    link: &Link,
) -> Result<Vec<Ipv4Addr>, netlink::NetlinkError> {
    Ok(node
        .routes(MAIN_TABLE)
        .await?
        .into_iter()
        .filter(|r| r.dst.prefix_len() == 32 && r.gateway.is_none() && r.oif == Some(link.index))
        .map(|r| r.dst.addr())
        .collect())
}

/// The interface the node routes `ip` to, if any.
pub async fn routed_to(node: &Netlink, ip: Ipv4Addr) -> Result<Option<u32>, netlink::NetlinkError> {
    Ok(node
        .routes(MAIN_TABLE)
        .await?
        .into_iter()
        .find(|r| r.dst == Ipv4Net::from(ip) && r.gateway.is_none())
        .and_then(|r| r.oif))
}

/// What a teardown could not remove (what is already gone counts as removed).
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("removing the node's rule {rule}: {source}")]
    Rule {
        rule: Rule,
        source: netlink::NetlinkError,
    },
    #[error("looking up the node's from-pod rules of {ip}: {source}")]
    Lookup {
        ip: Ipv4Addr,
        source: netlink::NetlinkError,
    },
    #[error("deleting the host veth {name}: {source}")]
    Veth {
        name: String,
        source: netlink::NetlinkError,
    },
}

/// Removes the node's rules of each address (`table` None: whatever from-pod rule it has) and
/// this sandbox's host veth (the pod end and the host route go with it). Keeps going past
/// failures and returns them all.
pub async fn remove(
    node: &Netlink,
    veth: Option<&Link>,
    addresses: &[(Ipv4Addr, Option<u32>)],
) -> Vec<TeardownError> {
    let mut errors = Vec::new();
    for (ip, table) in addresses {
        delete_rule(node, to_rule(*ip), &mut errors).await;
        // Without ipamd the table is unknown: remove any from-pod rule of this address.
        let tables: Vec<u32> = match table {
            Some(t) if *t != MAIN_TABLE => vec![*t],
            Some(_) => Vec::new(),
            None => match from_rule_tables(node, *ip).await {
                Ok(tables) => tables,
                Err(source) => {
                    errors.push(TeardownError::Lookup { ip: *ip, source });
                    Vec::new()
                }
            },
        };
        for t in tables {
            delete_rule(node, from_rule(*ip, t), &mut errors).await;
        }
    }
    if let Some(link) = veth
        && let Err(source) = node.delete_link(link.index).await
        && !source.is_not_found()
    {
        errors.push(TeardownError::Veth {
            name: link.name.clone(),
            source,
        });
    }
    errors
}

async fn delete_rule(node: &Netlink, rule: Rule, errors: &mut Vec<TeardownError>) {
    if let Err(source) = node.delete_rule(&rule).await {
        errors.push(TeardownError::Rule { rule, source });
    }
}

/// What an ADD built, to undo when a later step fails: the address's rules and the veth named
/// `host_if` (by construction this sandbox's: the ADD made it).
pub struct Undo<'a> {
    pub node: &'a Netlink,
    pub host_if: &'a str,
    pub ip: Ipv4Addr,
    pub table: u32,
}

impl Undo<'_> {
    pub async fn run(self) -> Vec<TeardownError> {
        let veth = match self.node.link_by_name(self.host_if).await {
            Ok(v) => v,
            Err(source) => {
                return vec![TeardownError::Veth {
                    name: self.host_if.to_string(),
                    source,
                }];
            }
        };
        remove(self.node, veth.as_ref(), &[(self.ip, Some(self.table))]).await
    }
}

/// Verifies the pod's interface, address, routes and neighbour, and the node's rules.
pub async fn check(node: &Netlink, pod_ns: &Netns, spec: &PodSpec<'_>) -> Result<(), CniError> {
    let differs = |what: String| CniError::new(Code::Plugin, format!("CHECK: {what}"));
    let host = node
        .link_by_name(spec.host_if)
        .await
        .map_err(nl_err)?
        .ok_or_else(|| differs(format!("host veth {} is missing", spec.host_if)))?;
    let pod = Netlink::connect_in(pod_ns).await.map_err(nl_err)?;
    let link = pod
        .link_by_name(spec.pod_if)
        .await
        .map_err(nl_err)?
        .ok_or_else(|| {
            differs(format!(
                "{} is missing in {}",
                spec.pod_if,
                pod_ns.path().display()
            ))
        })?;
    if !pod
        .addresses(link.index)
        .await
        .map_err(nl_err)?
        .contains(&Ipv4Net::from(spec.ip))
    {
        return Err(differs(format!(
            "{} does not hold {}/32",
            spec.pod_if, spec.ip
        )));
    }
    let routes = pod.routes(MAIN_TABLE).await.map_err(nl_err)?;
    if !routes
        .iter()
        .any(|r| r.dst == Ipv4Net::from(GATEWAY) && r.oif == Some(link.index))
    {
        return Err(differs(format!(
            "the route to {GATEWAY} via {} is missing in the pod",
            spec.pod_if
        )));
    }
    if !routes
        .iter()
        .any(|r| r.dst.prefix_len() == 0 && r.gateway == Some(GATEWAY))
    {
        return Err(differs(format!(
            "the pod's default route via {GATEWAY} is missing"
        )));
    }
    let neighbours = pod.neighbours(link.index).await.map_err(nl_err)?;
    if !neighbours
        .iter()
        .any(|(ip, mac, permanent)| *ip == GATEWAY && Some(*mac) == host.mac && *permanent)
    {
        return Err(differs(format!(
            "the permanent neighbour entry {GATEWAY} -> {} is missing",
            spec.host_if
        )));
    }
    let node_routes = node.routes(MAIN_TABLE).await.map_err(nl_err)?;
    if !node_routes
        .iter()
        .any(|r| r.dst == Ipv4Net::from(spec.ip) && r.oif == Some(host.index))
    {
        return Err(differs(format!(
            "the node's route {}/32 dev {} is missing",
            spec.ip, spec.host_if
        )));
    }
    let rules = node.rules().await.map_err(nl_err)?;
    if !rules.contains(&to_rule(spec.ip)) {
        return Err(differs(format!(
            "the node's rule to {} lookup main (priority {TO_POD_PRIORITY}) is missing",
            spec.ip
        )));
    }
    if spec.table != MAIN_TABLE && !rules.contains(&from_rule(spec.ip, spec.table)) {
        return Err(differs(format!(
            "the node's rule from {} lookup {} (priority {FROM_POD_PRIORITY}) is missing",
            spec.ip, spec.table
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names() {
        let n = host_veth_name("eni", "default", "web", "abc");
        assert_eq!(n.len(), 14);
        assert!(n.starts_with("eni"));
        // SHA-1("default.web") = 0b0b5bb9...
        let digest: String = Sha1::digest(b"default.web")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(&n[3..], &digest[..11]);
        assert_ne!(
            host_veth_name("eni", "", "", "container-1"),
            host_veth_name("eni", "", "", "container-2")
        );
        assert!(host_veth_name("abcd", "ns", "p", "c").len() <= 15);
    }

    #[test]
    fn macs_are_local_unicast() {
        for _ in 0..20 {
            let m = random_mac();
            assert_eq!(m[0] & 0x03, 0x02);
        }
    }
}
