use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::Time;

/// Route table of the main routing table (the primary ENI's).
use node_contract::MAIN_TABLE;

/// The route table for an ENI: main for the primary (device 0 on card 0), N+1 for device N on
/// card 0, 10000 + N + 100·c on card c.
pub fn route_table_id(device_number: u32, network_card: u32) -> u32 {
    match (network_card, device_number) {
        (0, 0) => MAIN_TABLE,
        (0, n) => n + 1,
        (c, n) => 10_000 + n + 100 * c,
    }
}

/// What an allocation is keyed by: the CNI attachment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct AllocKey {
    pub network_name: String,
    pub container_id: String,
    pub if_name: String,
}

impl AllocKey {
    pub fn new(network_name: &str, container_id: &str, if_name: &str) -> Self {
        AllocKey {
            network_name: network_name.to_string(),
            container_id: container_id.to_string(),
            if_name: if_name.to_string(),
        }
    }

    /// The key of an AddNetwork/DelNetwork request: its container ID, else the pod's infra
    /// container ID (older plugins), on `eth0` when the interface is unnamed. `None` when the
    /// request names no container at all.
    pub fn for_request(
        network_name: &str,
        container_id: &str,
        infra_container_id: &str,
        if_name: &str,
    ) -> Option<Self> {
        let container = [container_id, infra_container_id]
            .into_iter()
            .find(|c| !c.is_empty())?;
        let if_name = if if_name.is_empty() { "eth0" } else { if_name };
        Some(AllocKey::new(network_name, container, if_name))
    }
}

impl std::fmt::Display for AllocKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.network_name, self.container_id, self.if_name
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PodMetadata {
    pub namespace: String,
    pub name: String,
}

/// An ENI as the datastore knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Eni {
    pub id: String,
    pub device_number: u32,
    pub network_card: u32,
    pub primary: bool,
    /// Holds no pod addresses: the primary under custom networking, or tagged no_manage.
    pub excluded: bool,
    pub subnet_id: String,
    pub subnet_cidr: Ipv4Net,
    pub security_groups: Vec<String>,
    pub mac: String,
    pub primary_ip: Ipv4Addr,
    pub created_at: Time,
}

impl Eni {
    pub fn route_table(&self) -> u32 {
        route_table_id(self.device_number, self.network_card)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Free { released_at: Option<Time> },
    Assigned(AllocKey),
}

/// A secondary address (/32) or a delegated prefix (/28) on an ENI.
#[derive(Debug, Clone)]
struct Block {
    addrs: BTreeMap<Ipv4Addr, Slot>,
    assigned: usize,
}

impl Block {
    fn new(cidr: Ipv4Net) -> Self {
        // Every address of a delegated prefix serves pods, its first and last included.
        let first = u32::from(cidr.network());
        let size = 1u32 << (32 - cidr.prefix_len());
        let addrs = (0..size)
            .map(|i| (Ipv4Addr::from(first + i), Slot::Free { released_at: None }))
            .collect();
        Block { addrs, assigned: 0 }
    }

    fn in_cooldown(&self, now: Time, cooldown: Duration) -> usize {
        self.addrs
            .values()
            .filter(|s| cooling(s, now, cooldown))
            .count()
    }
}

fn cooling(slot: &Slot, now: Time, cooldown: Duration) -> bool {
    matches!(slot, Slot::Free { released_at: Some(t) } if now.since(*t) < cooldown)
}

#[derive(Debug, Clone)]
struct EniState {
    eni: Eni,
    blocks: BTreeMap<Ipv4Net, Block>,
}

impl EniState {
    fn assigned(&self) -> usize {
        self.blocks.values().map(|b| b.assigned).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Allocation {
    pub ip: Ipv4Addr,
    pub eni_id: String,
    pub assigned_at: Time,
    pub metadata: PodMetadata,
}

/// What ADD gets back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Assignment {
    pub ip: Ipv4Addr,
    pub eni_id: String,
    pub device_number: u32,
    pub route_table: u32,
    pub subnet_cidr: Ipv4Net,
    /// False when the key already held this address (a repeated ADD).
    pub fresh: bool,
}

/// What DEL released.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Released {
    pub key: AllocKey,
    pub ip: Ipv4Addr,
    pub eni_id: String,
    pub device_number: u32,
    pub route_table: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Addresses on non-excluded ENIs.
    pub total: usize,
    pub assigned: usize,
    /// Free but released less than the cooldown ago: counted as available, not handed out.
    pub cooling_down: usize,
    pub total_prefixes: usize,
    /// Prefixes with nothing assigned and nothing cooling down.
    pub free_prefixes: usize,
}

impl Stats {
    pub fn available(&self) -> usize {
        self.total - self.assigned
    }
}

/// One ENI's figures, for the pool arithmetic and introspection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EniView {
    pub id: String,
    pub device_number: u32,
    pub primary: bool,
    pub excluded: bool,
    pub created_at: Time,
    /// Address blocks held (secondary addresses or prefixes): the ENI's used slots.
    pub blocks: Vec<Ipv4Net>,
    pub total: usize,
    pub assigned: usize,
    pub cooling_down: usize,
    /// Blocks with nothing assigned and nothing cooling down, in address order.
    pub free_blocks: Vec<Ipv4Net>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DatastoreError {
    #[error(
        "no free address for {key}: {assigned} of {total} addresses assigned, {cooling_down} cooling down"
    )]
    NoAvailableAddress {
        key: AllocKey,
        total: usize,
        assigned: usize,
        cooling_down: usize,
    },
    #[error("max pods reached: {assigned} addresses assigned, the node's max pods is {max_pods}")]
    MaxPodsReached { assigned: usize, max_pods: usize },
    #[error("ENI {0} is not in the datastore")]
    UnknownEni(String),
    #[error("ENI {0} is already in the datastore")]
    DuplicateEni(String),
    #[error("{cidr} cannot be added to ENI {eni}: it overlaps {existing} on ENI {existing_eni}")]
    Overlap {
        cidr: Ipv4Net,
        eni: String,
        existing: Ipv4Net,
        existing_eni: String,
    },
    #[error("{cidr} is neither a /32 address nor a /28 prefix")]
    BadBlock { cidr: Ipv4Net },
    #[error("{cidr} is not on ENI {eni}")]
    UnknownBlock { cidr: Ipv4Net, eni: String },
    #[error(
        "{what} on ENI {eni} is still in use: {assigned} assigned, {cooling_down} cooling down"
    )]
    InUse {
        what: String,
        eni: String,
        assigned: usize,
        cooling_down: usize,
    },
    #[error("address {0} is not on any ENI of this node")]
    AddressNotOnNode(Ipv4Addr),
    #[error("address {ip} cannot go to {key}: {holder} holds it")]
    AddressTaken {
        ip: Ipv4Addr,
        key: String,
        holder: String,
    },
    #[error("{key} already holds {held}, not {requested}")]
    KeyHoldsOther {
        key: AllocKey,
        held: Ipv4Addr,
        requested: Ipv4Addr,
    },
}

/// Who holds which address on this node's ENIs. Iteration is ordered everywhere, so every
/// decision is deterministic.
#[derive(Debug, Clone)]
pub struct Datastore {
    enis: BTreeMap<String, EniState>,
    allocations: BTreeMap<AllocKey, Allocation>,
    cooldown: Duration,
    max_pods: usize,
}

impl Datastore {
    pub fn new(cooldown: Duration, max_pods: usize) -> Self {
        Datastore {
            enis: BTreeMap::new(),
            allocations: BTreeMap::new(),
            cooldown,
            max_pods,
        }
    }

    pub fn max_pods(&self) -> usize {
        self.max_pods
    }

    pub fn set_max_pods(&mut self, max_pods: usize) {
        self.max_pods = max_pods;
    }

    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    pub fn add_eni(&mut self, eni: Eni) -> Result<(), DatastoreError> {
        if self.enis.contains_key(&eni.id) {
            return Err(DatastoreError::DuplicateEni(eni.id));
        }
        self.enis.insert(
            eni.id.clone(),
            EniState {
                eni,
                blocks: BTreeMap::new(),
            },
        );
        Ok(())
    }

    pub fn eni(&self, id: &str) -> Option<&Eni> {
        self.enis.get(id).map(|s| &s.eni)
    }

    pub fn enis(&self) -> impl Iterator<Item = &Eni> {
        self.enis.values().map(|s| &s.eni)
    }

    /// Changes whether an ENI serves pods. Addresses already assigned on it stay assigned.
    pub fn set_excluded(&mut self, id: &str, excluded: bool) -> Result<(), DatastoreError> {
        let state = self.eni_mut(id)?;
        state.eni.excluded = excluded;
        Ok(())
    }

    /// Adds a secondary address (/32) or a prefix (/28) to an ENI.
    pub fn add_block(&mut self, eni_id: &str, cidr: Ipv4Net) -> Result<(), DatastoreError> {
        let cidr = cidr.trunc();
        if cidr.prefix_len() != 32 && cidr.prefix_len() != 28 {
            return Err(DatastoreError::BadBlock { cidr });
        }
        if !self.enis.contains_key(eni_id) {
            return Err(DatastoreError::UnknownEni(eni_id.to_string()));
        }
        for state in self.enis.values() {
            for existing in state.blocks.keys() {
                if existing.contains(&cidr) || cidr.contains(existing) {
                    return Err(DatastoreError::Overlap {
                        cidr,
                        eni: eni_id.to_string(),
                        existing: *existing,
                        existing_eni: state.eni.id.clone(),
                    });
                }
            }
        }
        self.eni_mut(eni_id)?.blocks.insert(cidr, Block::new(cidr));
        Ok(())
    }

    /// Removes a block. Without `force`, refuses while any of its addresses is assigned or
    /// cooling down; with it (EC2 no longer has the block), returns the allocations dropped.
    pub fn remove_block(
        &mut self,
        eni_id: &str,
        cidr: Ipv4Net,
        force: bool,
        now: Time,
    ) -> Result<Vec<(AllocKey, Allocation)>, DatastoreError> {
        let cooldown = self.cooldown;
        let state = self.eni_mut(eni_id)?;
        let block = state
            .blocks
            .get(&cidr)
            .ok_or_else(|| DatastoreError::UnknownBlock {
                cidr,
                eni: eni_id.to_string(),
            })?;
        let cooling_down = block.in_cooldown(now, cooldown);
        if !force && (block.assigned > 0 || cooling_down > 0) {
            return Err(DatastoreError::InUse {
                what: cidr.to_string(),
                eni: eni_id.to_string(),
                assigned: block.assigned,
                cooling_down,
            });
        }
        let holders: Vec<AllocKey> = block
            .addrs
            .values()
            .filter_map(|s| match s {
                Slot::Assigned(k) => Some(k.clone()),
                Slot::Free { .. } => None,
            })
            .collect();
        state.blocks.remove(&cidr);
        Ok(self.drop_allocations(holders))
    }

    /// Removes an ENI, with the same rule as [`Datastore::remove_block`].
    pub fn remove_eni(
        &mut self,
        eni_id: &str,
        force: bool,
        now: Time,
    ) -> Result<Vec<(AllocKey, Allocation)>, DatastoreError> {
        let state = self
            .enis
            .get(eni_id)
            .ok_or_else(|| DatastoreError::UnknownEni(eni_id.to_string()))?;
        let assigned = state.assigned();
        let cooling_down: usize = state
            .blocks
            .values()
            .map(|b| b.in_cooldown(now, self.cooldown))
            .sum();
        if !force && (assigned > 0 || cooling_down > 0) {
            return Err(DatastoreError::InUse {
                what: "the ENI".to_string(),
                eni: eni_id.to_string(),
                assigned,
                cooling_down,
            });
        }
        let holders: Vec<AllocKey> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.eni_id == eni_id)
            .map(|(k, _)| k.clone())
            .collect();
        self.enis.remove(eni_id);
        Ok(self.drop_allocations(holders))
    }

    fn drop_allocations(&mut self, keys: Vec<AllocKey>) -> Vec<(AllocKey, Allocation)> {
        keys.into_iter()
            .filter_map(|k| self.allocations.remove(&k).map(|a| (k, a)))
            .collect()
    }

    fn eni_mut(&mut self, id: &str) -> Result<&mut EniState, DatastoreError> {
        self.enis
            .get_mut(id)
            .ok_or_else(|| DatastoreError::UnknownEni(id.to_string()))
    }

    pub fn allocation(&self, key: &AllocKey) -> Option<&Allocation> {
        self.allocations.get(key)
    }

    pub fn allocations(&self) -> impl Iterator<Item = (&AllocKey, &Allocation)> {
        self.allocations.iter()
    }

    fn assignment(&self, ip: Ipv4Addr, eni_id: &str, fresh: bool) -> Assignment {
        let eni = &self.enis[eni_id].eni;
        Assignment {
            ip,
            eni_id: eni.id.clone(),
            device_number: eni.device_number,
            route_table: eni.route_table(),
            subnet_cidr: eni.subnet_cidr,
            fresh,
        }
    }

    /// Gives `key` an address: the same one again if it already holds one.
    pub fn assign(
        &mut self,
        key: &AllocKey,
        metadata: PodMetadata,
        now: Time,
    ) -> Result<Assignment, DatastoreError> {
        if let Some(a) = self.allocations.get(key) {
            return Ok(self.assignment(a.ip, &a.eni_id.clone(), false));
        }
        if self.allocations.len() >= self.max_pods {
            return Err(DatastoreError::MaxPodsReached {
                assigned: self.allocations.len(),
                max_pods: self.max_pods,
            });
        }
        let Some((eni_id, cidr, ip)) = self.pick(now) else {
            let stats = self.stats(now);
            return Err(DatastoreError::NoAvailableAddress {
                key: key.clone(),
                total: stats.total,
                assigned: stats.assigned,
                cooling_down: stats.cooling_down,
            });
        };
        self.take(&eni_id, cidr, ip, key, metadata, now);
        Ok(self.assignment(ip, &eni_id, true))
    }

    fn take(
        &mut self,
        eni_id: &str,
        cidr: Ipv4Net,
        ip: Ipv4Addr,
        key: &AllocKey,
        metadata: PodMetadata,
        at: Time,
    ) {
        if let Some(block) = self
            .enis
            .get_mut(eni_id)
            .and_then(|s| s.blocks.get_mut(&cidr))
        {
            block.addrs.insert(ip, Slot::Assigned(key.clone()));
            block.assigned += 1;
        }
        self.allocations.insert(
            key.clone(),
            Allocation {
                ip,
                eni_id: eni_id.to_string(),
                assigned_at: at,
                metadata,
            },
        );
    }

    /// Packs: the ENI, then the block, with the most assigned addresses; inside a block a
    /// never-used address first, else the one released longest ago and out of cooldown.
    fn pick(&self, now: Time) -> Option<(String, Ipv4Net, Ipv4Addr)> {
        let mut enis: Vec<&EniState> = self.enis.values().filter(|s| !s.eni.excluded).collect();
        enis.sort_by_key(|s| (std::cmp::Reverse(s.assigned()), s.eni.device_number));
        enis.into_iter().find_map(|state| {
            state
                .blocks
                .iter()
                .flat_map(|(cidr, block)| {
                    block.addrs.iter().filter_map(move |(ip, slot)| {
                        let released = match slot {
                            Slot::Free { released_at: None } => None,
                            Slot::Free {
                                released_at: Some(t),
                            } if now.since(*t) >= self.cooldown => Some(*t),
                            _ => return None,
                        };
                        // Fullest block, then never used, then released longest ago.
                        Some(((std::cmp::Reverse(block.assigned), released, *ip), *cidr))
                    })
                })
                .min()
                .map(|((_, _, ip), cidr)| (state.eni.id.clone(), cidr, ip))
        })
    }

    /// Restores an allocation with a known address (checkpoint restore). Unlike [`Self::assign`]
    /// it accepts an address on an excluded ENI, so a live pod keeps its address; ENI
    /// placement is reported back through the returned assignment.
    pub fn restore(
        &mut self,
        key: &AllocKey,
        ip: Ipv4Addr,
        metadata: PodMetadata,
        assigned_at: Time,
    ) -> Result<Assignment, DatastoreError> {
        if let Some(a) = self.allocations.get(key) {
            if a.ip == ip {
                return Ok(self.assignment(ip, &a.eni_id.clone(), false));
            }
            return Err(DatastoreError::KeyHoldsOther {
                key: key.clone(),
                held: a.ip,
                requested: ip,
            });
        }
        let (eni_id, cidr, slot) = self
            .enis
            .values()
            .find_map(|s| {
                s.blocks
                    .iter()
                    .find(|(c, _)| c.contains(&ip))
                    .and_then(|(c, b)| b.addrs.get(&ip).map(|slot| (s.eni.id.clone(), *c, slot)))
            })
            .ok_or(DatastoreError::AddressNotOnNode(ip))?;
        if let Slot::Assigned(holder) = slot {
            return Err(DatastoreError::AddressTaken {
                ip,
                key: key.to_string(),
                holder: holder.to_string(),
            });
        }
        self.take(&eni_id, cidr, ip, key, metadata, assigned_at);
        Ok(self.assignment(ip, &eni_id, true))
    }

    /// Releases `key`'s address; `None` when the key holds nothing (DEL of an unknown pod).
    pub fn release(&mut self, key: &AllocKey, now: Time) -> Option<Released> {
        let allocation = self.allocations.remove(key)?;
        let state = self.enis.get_mut(&allocation.eni_id)?;
        if let Some(block) = state
            .blocks
            .values_mut()
            .find(|b| b.addrs.contains_key(&allocation.ip))
        {
            block.addrs.insert(
                allocation.ip,
                Slot::Free {
                    released_at: Some(now),
                },
            );
            block.assigned -= 1;
        }
        Some(Released {
            key: key.clone(),
            ip: allocation.ip,
            eni_id: state.eni.id.clone(),
            device_number: state.eni.device_number,
            route_table: state.eni.route_table(),
        })
    }

    pub fn stats(&self, now: Time) -> Stats {
        let mut stats = Stats::default();
        for state in self.enis.values().filter(|s| !s.eni.excluded) {
            for (cidr, block) in &state.blocks {
                let cooling = block.in_cooldown(now, self.cooldown);
                stats.total += block.addrs.len();
                stats.assigned += block.assigned;
                stats.cooling_down += cooling;
                if cidr.prefix_len() < 32 {
                    stats.total_prefixes += 1;
                    if block.assigned == 0 && cooling == 0 {
                        stats.free_prefixes += 1;
                    }
                }
            }
        }
        stats
    }

    pub fn eni_views(&self, now: Time) -> Vec<EniView> {
        self.enis
            .values()
            .map(|s| {
                let mut view = EniView {
                    id: s.eni.id.clone(),
                    device_number: s.eni.device_number,
                    primary: s.eni.primary,
                    excluded: s.eni.excluded,
                    created_at: s.eni.created_at,
                    blocks: s.blocks.keys().copied().collect(),
                    total: 0,
                    assigned: 0,
                    cooling_down: 0,
                    free_blocks: Vec::new(),
                };
                for (cidr, block) in &s.blocks {
                    let cooling = block.in_cooldown(now, self.cooldown);
                    view.total += block.addrs.len();
                    view.assigned += block.assigned;
                    view.cooling_down += cooling;
                    if block.assigned == 0 && cooling == 0 {
                        view.free_blocks.push(*cidr);
                    }
                }
                view
            })
            .collect()
    }

    /// Every address of an ENI with its holder, for introspection.
    pub fn addresses(&self, eni_id: &str) -> Vec<(Ipv4Addr, Option<&AllocKey>)> {
        self.enis
            .get(eni_id)
            .map(|s| {
                s.blocks
                    .values()
                    .flat_map(|b| b.addrs.iter())
                    .map(|(ip, slot)| match slot {
                        Slot::Assigned(k) => (*ip, Some(k)),
                        Slot::Free { .. } => (*ip, None),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests;
