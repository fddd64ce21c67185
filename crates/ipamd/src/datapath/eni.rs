//! Routing of one ENI: its interface up with the right MTU and its primary address, table N+1
//! with the subnet gateway and a default route, and `from <primary> lookup N+1`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use netlink::{Link, Netlink, Route, Rule, Scope};

use super::DatapathError;

use node_contract::{FROM_ENI_RULE_PRIORITY, MAIN_TABLE};

fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    node_contract::subnet_router(subnet.network())
}

/// Waits (bounded, with backoff) for the hypervisor to plug the ENI in.
pub async fn wait_for_link(
    nl: &Netlink,
    mac: &str,
    limit: Duration,
) -> Result<Link, DatapathError> {
    let wanted = netlink::parse_mac(mac)?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(link) = nl.link_by_mac(&wanted).await? {
            return Ok(link);
        }
        if started.elapsed() >= limit {
            return Err(DatapathError::NoLink {
                mac: mac.to_string(),
                waited: limit,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

pub struct EniRouting {
    pub primary_ip: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub table: u32,
    pub mtu: u32,
}

impl EniRouting {
    /// The routing of a pooled ENI: its table, gateway and address from its subnet as EC2
    /// reports it.
    pub fn of(eni: &ipam::Eni, mtu: u32) -> Self {
        EniRouting {
            primary_ip: eni.primary_ip,
            subnet: eni.subnet_cidr,
            table: eni.route_table(),
            mtu,
        }
    }

    fn routes(&self, index: u32) -> [Route; 2] {
        let gw = gateway(self.subnet);
        [
            Route {
                dst: Ipv4Net::from(gw),
                gateway: None,
                oif: Some(index),
                table: self.table,
                scope: Scope::Link,
                onlink: false,
            },
            Route {
                dst: Ipv4Net::default(),
                gateway: Some(gw),
                oif: Some(index),
                table: self.table,
                scope: Scope::Universe,
                onlink: false,
            },
        ]
    }

    fn rule(&self) -> Rule {
        Rule {
            priority: FROM_ENI_RULE_PRIORITY,
            src: Some(Ipv4Net::from(self.primary_ip)),
            dst: None,
            table: self.table,
            fwmark: None,
        }
    }

    /// Idempotent: safe on every start-up and reconcile.
    pub async fn apply(&self, nl: &Netlink, link: &Link) -> Result<(), DatapathError> {
        if link.mtu != self.mtu {
            nl.set_mtu(link.index, self.mtu).await?;
        }
        nl.set_up(link.index).await?;
        let addr = Ipv4Net::new(self.primary_ip, self.subnet.prefix_len())
            .unwrap_or(Ipv4Net::from(self.primary_ip));
        nl.add_address(link.index, addr).await?;
        for r in self.routes(link.index) {
            nl.replace_route(&r).await?;
        }
        // The kernel put the subnet route in main when the address was added: the ENI's traffic
        // belongs to its own table.
        nl.delete_route(&Route {
            dst: self.subnet.trunc(),
            gateway: None,
            oif: Some(link.index),
            table: MAIN_TABLE,
            scope: Scope::Link,
            onlink: false,
        })
        .await?;
        nl.add_rule(&self.rule()).await?;
        Ok(())
    }

    /// Removes what [`Self::apply`] made; keeps going and collects errors.
    pub async fn remove(&self, nl: &Netlink, link: Option<&Link>) -> Vec<DatapathError> {
        let mut errors = Vec::new();
        if let Err(e) = nl.delete_rule(&self.rule()).await {
            errors.push(e.into());
        }
        if let Some(link) = link {
            for r in self.routes(link.index).iter().rev() {
                if let Err(e) = nl.delete_route(r).await {
                    errors.push(e.into());
                }
            }
        }
        errors
    }
}
