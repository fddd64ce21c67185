//! The pool run the way the pool manager runs it, without EC2: decide, apply the effect EC2
//! would have to a datastore, repeat until nothing changes. The pool's tests judge the
//! arithmetic by it, and capacity planning (`vpcctl`) asks it how many addresses a node holds
//! under given warm settings and pod counts, so both agree with what `ipamd` does.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use super::{PoolAction, PoolSettings, PoolState, decide};
use crate::{AllocKey, Datastore, DatastoreError, Eni, PodMetadata, Time};

/// What a settled node holds in its pod subnets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    /// Pod ENIs (the primary not counted).
    pub enis: usize,
    /// Addresses on pod ENIs that pods may get (secondary addresses, or 16 per prefix).
    pub pod_addresses: usize,
    /// Of those, assigned to pods.
    pub assigned: usize,
    /// What the node takes from the subnets: pod addresses plus each pod ENI's own primary.
    pub subnet_addresses: usize,
}

pub struct Simulation {
    pub ds: Datastore,
    pub settings: PoolSettings,
    pub now: Time,
    pub last_decrease: Option<Time>,
    pub actions: Vec<PoolAction>,
    next_eni: u32,
    next_block: u32,
    pods: usize,
}

fn pod(k: usize) -> AllocKey {
    AllocKey::new("aws-cni", &format!("pod-{k}"), "eth0")
}

/// An ENI of the simulation; the primary (device 0) is excluded under custom networking.
pub fn simulated_eni(id: &str, device: u32, primary: bool) -> Eni {
    Eni {
        id: id.to_string(),
        device_number: device,
        network_card: 0,
        primary,
        excluded: false,
        subnet_id: "subnet-1".to_string(),
        subnet_cidr: Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10).unwrap_or_default(),
        security_groups: vec!["sg-1".to_string()],
        mac: format!("02:00:00:00:00:{device:02x}"),
        primary_ip: Ipv4Addr::new(10, 0, 0, 10 + (device % 200) as u8),
        created_at: Time::from_secs(0),
    }
}

impl Simulation {
    /// A node with its primary ENI only; `custom_networking`: the primary serves no pod.
    pub fn new(settings: PoolSettings, custom_networking: bool) -> Simulation {
        let mut ds = Datastore::new(Duration::from_secs(30), settings.max_pods);
        let mut primary = simulated_eni("eni-0", 0, true);
        primary.excluded = custom_networking;
        // A fresh datastore takes its first ENI.
        let _ = ds.add_eni(primary);
        Simulation {
            ds,
            settings,
            now: Time::from_secs(1000),
            last_decrease: None,
            actions: Vec::new(),
            next_eni: 1,
            next_block: 0,
            pods: 0,
        }
    }

    pub fn state(&self) -> PoolState {
        PoolState {
            stats: self.ds.stats(self.now),
            enis: self.ds.eni_views(self.now),
            attached_enis: self.ds.enis().count(),
            last_decrease: self.last_decrease,
            cannot_grow: Vec::new(),
        }
    }

    fn add_blocks(&mut self, eni_id: &str, slots: usize) {
        for _ in 0..slots {
            self.next_block += 1;
            let base = u32::from(Ipv4Addr::new(100, 64, 0, 0)) + self.next_block * 16;
            let len = if self.settings.prefix_delegation {
                28
            } else {
                32
            };
            if let Ok(block) = Ipv4Net::new(Ipv4Addr::from(base), len) {
                let _ = self.ds.add_block(eni_id, block);
            }
        }
    }

    /// The EC2 effect of one action.
    pub fn apply(&mut self, action: &PoolAction) {
        match action {
            PoolAction::Steady | PoolAction::AtCapacity { .. } => {}
            PoolAction::AddToEni { eni_id, slots } => self.add_blocks(eni_id, *slots),
            PoolAction::CreateEni { slots } => {
                let id = format!("eni-{}", self.next_eni);
                let mut e = simulated_eni(&id, self.next_eni, false);
                e.created_at = self.now;
                self.next_eni += 1;
                let _ = self.ds.add_eni(e);
                self.add_blocks(&id, *slots);
            }
            PoolAction::ReleaseBlocks { eni_id, blocks } => {
                for b in blocks {
                    let _ = self.ds.remove_block(eni_id, *b, false, self.now);
                }
                self.last_decrease = Some(self.now);
            }
            PoolAction::ReleaseEni { eni_id } => {
                let _ = self.ds.remove_eni(eni_id, false, self.now);
                self.last_decrease = Some(self.now);
            }
        }
    }

    /// Pods 0..n are wanted: missing ones are added (as far as addresses allow), extra ones
    /// deleted; then the pool manager runs until nothing changes. Err names the last actions
    /// when the pool never settles (a flapping arithmetic).
    pub fn run_to(&mut self, n: usize) -> Result<(), String> {
        for k in n..self.pods.max(n) {
            self.ds.release(&pod(k), self.now);
        }
        self.pods = n;
        let mut steady_rounds = 0;
        for _ in 0..500 {
            for k in 0..self.pods {
                match self.ds.assign(&pod(k), PodMetadata::default(), self.now) {
                    Ok(_) => {}
                    Err(
                        DatastoreError::NoAvailableAddress { .. }
                        | DatastoreError::MaxPodsReached { .. },
                    ) => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            let action = decide(&self.settings, &self.state(), self.now);
            self.apply(&action);
            let quiet = matches!(action, PoolAction::Steady | PoolAction::AtCapacity { .. });
            self.actions.push(action);
            steady_rounds = if quiet { steady_rounds + 1 } else { 0 };
            // Long enough quiet to rule out a pending rate-limited decrease or young ENI.
            if steady_rounds >= 4 {
                return Ok(());
            }
            self.now = self.now.plus(Duration::from_secs(31));
        }
        let last = &self.actions[self.actions.len().saturating_sub(6)..];
        Err(format!("pool never settled: last actions {last:?}"))
    }

    pub fn held(&self) -> Held {
        let stats = self.ds.stats(self.now);
        let pod_enis = self.ds.enis().filter(|e| !e.primary && !e.excluded).count();
        Held {
            enis: pod_enis,
            pod_addresses: stats.total,
            assigned: stats.assigned,
            // Each pod ENI's own address comes from the subnet too (the primary's is the
            // node's, there before any pod).
            subnet_addresses: stats.total + pod_enis,
        }
    }
}

/// What a node holds once settled at `pods` pods under `settings`.
pub fn settle(
    settings: &PoolSettings,
    custom_networking: bool,
    pods: usize,
) -> Result<Held, String> {
    let mut sim = Simulation::new(settings.clone(), custom_networking);
    sim.run_to(pods)?;
    Ok(sim.held())
}
