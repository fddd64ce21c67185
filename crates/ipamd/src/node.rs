//! The node agent's shared state: what it learned at start-up, the datastore, and what custom
//! networking currently asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use ec2::InstanceIdentity;
use eniconfig::{EniConfigSpec, Selection, Validation};
use instance_limits::InstanceLimits;
use ipam::{Datastore, PoolSettings, PoolState, Time};
use ipnet::Ipv4Net;
use tokio::sync::Notify;

use crate::cli::Cli;
use crate::metrics::Metrics;
use crate::source::ObjectsRx;

/// Where new ENIs go, or why none may be made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Target {
    Ready {
        /// The ENIConfig in force (custom networking), or None (the node's own subnet and, with
        /// subnet discovery, the tagged subnets of its zone).
        eniconfig: Option<String>,
        /// Where new ENIs may go, the preferred first (the ENIConfig's `spec.subnet`, or the
        /// node's own subnet): each new ENI goes to the one with the most free addresses that
        /// is not resting after a refusal (`subnets.rs`).
        subnets: Vec<String>,
        /// Empty: CreateNetworkInterface without groups, EC2 applies the VPC default.
        security_groups: Vec<String>,
    },
    Blocked {
        reason: String,
    },
}

/// Per-ENI facts the datastore does not keep.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EniFacts {
    pub subnet_id: String,
    pub security_groups: Vec<String>,
}

#[derive(Debug)]
pub struct NodeState {
    pub ds: Datastore,
    pub enis: BTreeMap<String, EniFacts>,
    /// Attached interfaces ipamd does not manage (tagged no_manage, or on other cards), with
    /// the device index each occupies on card 0 (None on other cards).
    pub unmanaged: Vec<(String, Option<u32>)>,
    pub last_decrease: Option<Time>,
    pub selection: Option<Selection>,
    pub spec: Option<EniConfigSpec>,
    pub validation: Option<(String, EniConfigSpec, Validation)>,
    pub target: Option<Target>,
    pub last_ec2_error: Option<String>,
    /// Subnets that reported no free addresses, until when to leave them alone.
    pub subnet_backoff: BTreeMap<String, Time>,
    /// What EC2 last said about the subnets pod ENIs may go to (`subnets.rs`).
    pub subnets: crate::subnets::Subnets,
    /// Attached ENIs whose interface could not be routed: excluded until they are.
    pub unrouted: BTreeSet<String>,
    /// Why the node's own datapath cannot serve pods (e.g. a strict rp_filter ipamd could not
    /// loosen): the node is not ready while it is set.
    pub datapath_problem: Option<String>,
    pub network_ready: bool,
    pub shutting_down: bool,
    /// The kubelet's max pods against the node's (capacity.rs), once the Node says.
    pub max_pods_check: Option<instance_limits::KubeletCheck>,
    /// Pool rounds completed since start: a test (or a person) can tell that a decision about
    /// the current state has been made, instead of waiting and hoping.
    pub rounds: u64,
}

impl NodeState {
    pub fn new(ds: Datastore) -> Self {
        NodeState {
            ds,
            enis: BTreeMap::new(),
            unmanaged: Vec::new(),
            last_decrease: None,
            selection: None,
            spec: None,
            validation: None,
            target: None,
            last_ec2_error: None,
            subnet_backoff: BTreeMap::new(),
            subnets: crate::subnets::Subnets::default(),
            unrouted: BTreeSet::new(),
            datapath_problem: None,
            network_ready: false,
            shutting_down: false,
            max_pods_check: None,
            rounds: 0,
        }
    }

    /// Whether an ADD would get a working address now; the reason when not. The one readiness
    /// rule: the plugin's STATUS, the CNI config file and introspection all follow it.
    pub fn can_serve(&self, now: Time) -> Result<(), String> {
        if let Some(problem) = &self.datapath_problem {
            return Err(problem.clone());
        }
        match &self.target {
            Some(Target::Ready { .. }) => {}
            Some(Target::Blocked { reason }) => return Err(reason.clone()),
            None => return Err("ipamd is still working out where pod ENIs go".into()),
        }
        let stats = self.ds.stats(now);
        if stats.total > stats.assigned {
            Ok(())
        } else {
            Err(format!(
                "no free address in the pool ({} of {} assigned)",
                stats.assigned, stats.total
            ))
        }
    }
}

pub struct Node {
    pub cli: Cli,
    pub identity: InstanceIdentity,
    pub limits: InstanceLimits,
    pub max_pods: u32,
    pub pool: PoolSettings,
    pub state: Mutex<NodeState>,
    /// Wakes the pool manager at once (an ADD found the pool empty, a config changed).
    pub wake: Notify,
    /// Asks the pool manager for a reconcile with the instance at once (a DEL that matched
    /// nothing may have freed a recovered address).
    pub reconcile_now: Notify,
    /// Something that readiness depends on may have changed (a pool round, an ADD or DEL).
    pub changed: Notify,
    /// Instance metadata, read to reconcile the pool without EC2 API calls.
    pub metadata: ec2::Metadata,
    pub metrics: Metrics,
    pub objects: ObjectsRx,
    pub events: crate::events::EventSink,
    /// The VPC's IPv4 blocks: IMDS's at start-up, then re-read from EC2 (a block associated
    /// later must join the SNAT exclusions).
    pub vpc_blocks: std::sync::RwLock<Vec<Ipv4Net>>,
}

impl Node {
    pub fn lock(&self) -> MutexGuard<'_, NodeState> {
        // A panic while holding the lock would leave a poisoned but consistent datastore.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn custom_networking(&self) -> bool {
        self.cli.settings.custom_network_cfg
    }

    pub fn vpc_cidrs(&self) -> Vec<Ipv4Net> {
        self.vpc_blocks
            .read()
            .map(|b| b.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    pub fn pool_state(&self, st: &NodeState, now: Time) -> PoolState {
        PoolState {
            stats: st.ds.stats(now),
            enis: st.ds.eni_views(now),
            attached_enis: st.enis.len() + st.unmanaged.len(),
            last_decrease: st.last_decrease,
            cannot_grow: crate::subnets::cannot_grow(self, st, now),
        }
    }
}
