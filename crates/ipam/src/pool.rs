//! The warm-pool arithmetic of `ipam.md`: from the datastore's figures and the targets, what the
//! pool manager should ask EC2 for next. Same results as the existing implementation.

use std::time::Duration;

use ipnet::Ipv4Net;

use crate::{EniView, Stats, Time};

const ADDRESSES_PER_PREFIX: usize = 16;

/// The targets and limits that drive the pool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PoolSettings {
    pub warm_eni_target: usize,
    /// `WARM_IP_TARGET`; 0 means unset.
    pub warm_ip_target: usize,
    /// `MINIMUM_IP_TARGET`; 0 means unset.
    pub minimum_ip_target: usize,
    pub warm_prefix_target: usize,
    pub prefix_delegation: bool,
    /// Address slots per ENI: IPv4 addresses per interface minus the ENI's own primary.
    pub slots_per_eni: usize,
    /// Interfaces the instance may have attached: min(`MAX_ENI`, the instance limit).
    pub max_enis: usize,
    pub max_pods: usize,
    /// An ENI younger than this is never released.
    pub eni_min_age: Duration,
    /// At most one decrease this often.
    pub decrease_interval: Duration,
}

impl PoolSettings {
    pub fn ip_targets_set(&self) -> bool {
        self.warm_ip_target > 0 || self.minimum_ip_target > 0
    }
}

/// What the pool manager knows beside the datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolState {
    pub stats: Stats,
    pub enis: Vec<EniView>,
    /// Interfaces attached to the instance, unmanaged and excluded ones included.
    pub attached_enis: usize,
    pub last_decrease: Option<Time>,
    /// ENIs that cannot take more addresses now (their subnet refused them and rests): growing
    /// skips them, so a new ENI may go to another subnet instead.
    pub cannot_grow: Vec<String>,
}

/// The next step, in slots (secondary addresses or prefixes, by mode).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PoolAction {
    /// Targets are met.
    Steady,
    /// Assign `slots` more addresses or prefixes to an existing ENI.
    AddToEni { eni_id: String, slots: usize },
    /// Create (and attach) a new ENI holding `slots` addresses or prefixes.
    CreateEni { slots: usize },
    /// Below target, but every ENI is full and no interface can be added.
    AtCapacity { short: usize },
    /// Unassign these addresses (/32) or prefixes (/28).
    ReleaseBlocks {
        eni_id: String,
        blocks: Vec<Ipv4Net>,
    },
    /// Detach and delete this ENI.
    ReleaseEni { eni_id: String },
}

/// Shortage and surplus in slots when `WARM_IP_TARGET` / `MINIMUM_IP_TARGET` are set.
fn target_state(s: &PoolSettings, stats: &Stats) -> (usize, usize) {
    let available = stats.available();
    let short = s
        .warm_ip_target
        .saturating_sub(available)
        .max(s.minimum_ip_target.saturating_sub(stats.total));
    let over = available
        .saturating_sub(s.warm_ip_target)
        .min(stats.total.saturating_sub(s.minimum_ip_target));
    if !s.prefix_delegation {
        return (short, over);
    }
    let short_prefixes = short.div_ceil(ADDRESSES_PER_PREFIX);
    let needed_for_warm = (stats.assigned + s.warm_ip_target).div_ceil(ADDRESSES_PER_PREFIX);
    let needed_for_min = s.minimum_ip_target.div_ceil(ADDRESSES_PER_PREFIX);
    let over_prefixes = stats
        .free_prefixes
        .min(stats.total_prefixes.saturating_sub(needed_for_warm))
        .min(stats.total_prefixes.saturating_sub(needed_for_min));
    (short_prefixes, over_prefixes)
}

/// How many slots the pool is short; 0 when it is not low.
fn shortage(s: &PoolSettings, stats: &Stats) -> usize {
    if stats.total >= s.max_pods {
        return 0;
    }
    if s.ip_targets_set() {
        return target_state(s, stats).0;
    }
    let available = stats.available();
    let (warm, per_unit) = if s.prefix_delegation {
        (s.warm_prefix_target, ADDRESSES_PER_PREFIX)
    } else {
        (s.warm_eni_target, s.slots_per_eni)
    };
    let low = available < warm * per_unit || (warm == 0 && available == 0);
    match (low, s.prefix_delegation) {
        (false, _) => 0,
        (true, true) => s
            .warm_prefix_target
            .saturating_sub(stats.free_prefixes)
            .max(1),
        // Without IP targets an ENI is filled completely.
        (true, false) => s.slots_per_eni,
    }
}

/// Decides the next pool step. Pure: the same inputs give the same answer.
pub fn decide(s: &PoolSettings, state: &PoolState, now: Time) -> PoolAction {
    let short = shortage(s, &state.stats);
    if short > 0 {
        return grow(s, state, short);
    }
    if let Some(last) = state.last_decrease
        && now.since(last) < s.decrease_interval
    {
        return PoolAction::Steady;
    }
    shrink(s, state, now)
}

fn grow(s: &PoolSettings, state: &PoolState, short: usize) -> PoolAction {
    let wanted = |room: usize| {
        if s.ip_targets_set() || s.prefix_delegation {
            room.min(short)
        } else {
            room
        }
    };
    let with_room = state
        .enis
        .iter()
        .filter(|e| !e.excluded && e.blocks.len() < s.slots_per_eni)
        .filter(|e| !state.cannot_grow.contains(&e.id))
        .min_by_key(|e| e.device_number);
    if let Some(eni) = with_room {
        return PoolAction::AddToEni {
            eni_id: eni.id.clone(),
            slots: wanted(s.slots_per_eni - eni.blocks.len()),
        };
    }
    if state.attached_enis < s.max_enis {
        return PoolAction::CreateEni {
            slots: wanted(s.slots_per_eni),
        };
    }
    PoolAction::AtCapacity { short }
}

fn shrink(s: &PoolSettings, state: &PoolState, now: Time) -> PoolAction {
    let stats = &state.stats;
    let surplus_blocks = if s.ip_targets_set() {
        target_state(s, stats).1
    } else if s.prefix_delegation {
        stats.free_prefixes.saturating_sub(s.warm_prefix_target)
    } else {
        // Without IP targets single addresses are never released, only whole ENIs.
        0
    };
    if surplus_blocks > 0
        && let Some(action) = release_blocks(s, state, surplus_blocks)
    {
        return action;
    }
    let eni_surplus = s.ip_targets_set()
        || s.prefix_delegation
        || stats.available() >= (s.warm_eni_target + 1) * s.slots_per_eni;
    if !eni_surplus {
        return PoolAction::Steady;
    }
    freeable_eni(s, state, now)
        .map(|eni_id| PoolAction::ReleaseEni { eni_id })
        .unwrap_or(PoolAction::Steady)
}

/// Free blocks to give back, from the emptiest ENI first, never so many that the pool would be
/// low again (which would make it flap).
fn release_blocks(s: &PoolSettings, state: &PoolState, count: usize) -> Option<PoolAction> {
    let mut enis: Vec<&EniView> = state
        .enis
        .iter()
        .filter(|e| !e.excluded && !e.free_blocks.is_empty())
        .collect();
    enis.sort_by_key(|e| (e.assigned, std::cmp::Reverse(e.device_number)));
    let eni = enis.first()?;
    let mut blocks = Vec::new();
    let mut after = state.stats;
    for block in eni.free_blocks.iter().rev().take(count) {
        // A node that turned prefix delegation on may still hold /32s: only a prefix counts
        // against the prefix figures.
        let prefix = usize::from(is_prefix(block));
        let next = Stats {
            total: after.total.saturating_sub(block_size(block)),
            total_prefixes: after.total_prefixes.saturating_sub(prefix),
            free_prefixes: after.free_prefixes.saturating_sub(prefix),
            ..after
        };
        if shortage(s, &next) > 0 {
            break;
        }
        after = next;
        blocks.push(*block);
    }
    blocks.sort();
    (!blocks.is_empty()).then(|| PoolAction::ReleaseBlocks {
        eni_id: eni.id.clone(),
        blocks,
    })
}

fn block_size(block: &Ipv4Net) -> usize {
    1usize << (32 - block.prefix_len())
}

fn is_prefix(block: &Ipv4Net) -> bool {
    block.prefix_len() < 32
}

/// An ENI that can go: not primary, not excluded, old enough, nothing assigned or cooling down,
/// and not needed to hold the targets. The newest such ENI goes first.
fn freeable_eni(s: &PoolSettings, state: &PoolState, now: Time) -> Option<String> {
    state
        .enis
        .iter()
        .filter(|e| {
            !e.primary
                && !e.excluded
                && now.since(e.created_at) >= s.eni_min_age
                && e.assigned == 0
                && e.cooling_down == 0
        })
        .filter(|e| {
            // Nothing on it is assigned or cooling down, so all its prefixes are free ones.
            let prefixes = e.blocks.iter().filter(|b| is_prefix(b)).count();
            let after = Stats {
                total: state.stats.total.saturating_sub(e.total),
                total_prefixes: state.stats.total_prefixes.saturating_sub(prefixes),
                free_prefixes: state.stats.free_prefixes.saturating_sub(prefixes),
                ..state.stats
            };
            shortage(s, &after) == 0
        })
        .max_by_key(|e| e.device_number)
        .map(|e| e.id.clone())
}

pub mod simulate;

#[cfg(test)]
mod tests;
