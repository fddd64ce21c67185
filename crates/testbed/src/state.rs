//! A run's state directory (`/run/vpc-testbed/<prefix>/`): what `status` prints, the daemon's pid
//! and log, and the emulator's sockets.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const BASE_DIR: &str = "/run/vpc-testbed";

pub fn state_dir(prefix: &str) -> PathBuf {
    Path::new(BASE_DIR).join(prefix)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub netns: String,
    pub instance_id: String,
    pub az: String,
    pub primary_ip: String,
    /// ipamd's introspection address inside the node's namespace.
    pub introspection: String,
    /// The standalone manifests (Node, ENIConfigs) the node's ipamd watches.
    pub manifests_dir: String,
    pub ipamd_pid: Option<u32>,
    /// The node's containerd CRI socket, when it runs one (`runtime: containerd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cri_socket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containerd_pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodStatus {
    pub node: String,
    pub name: String,
    pub namespace: String,
    /// A name under /run/netns, or the path of a namespace a runtime made.
    pub netns: String,
    pub ip: String,
    /// `cni` (the conflist run by `pod add`) or `cri` (a sandbox of the node's containerd).
    pub runtime: crate::pods::PodRuntime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub prefix: String,
    pub ec2_endpoint: String,
    pub region: String,
    pub vpc_id: String,
    pub daemon_pid: u32,
    pub emulator_pid: u32,
    pub state_dir: String,
    pub namespaces: Vec<String>,
    pub nodes: Vec<NodeStatus>,
    #[serde(default)]
    pub pods: Vec<PodStatus>,
}

impl Status {
    pub fn path(prefix: &str) -> PathBuf {
        state_dir(prefix).join("status.json")
    }

    /// The run's status, with its pods (each `pod add` keeps its own record).
    pub fn read(prefix: &str) -> Option<Status> {
        let text = std::fs::read_to_string(Self::path(prefix)).ok()?;
        let mut status: Status = serde_json::from_str(&text).ok()?;
        status.pods = crate::pods::records(prefix)
            .into_iter()
            .map(|r| PodStatus {
                node: r.node,
                name: r.name,
                namespace: r.namespace,
                netns: r.netns,
                ip: r.ip,
                runtime: r.runtime,
            })
            .collect();
        Some(status)
    }

    pub fn write(&self) -> std::io::Result<()> {
        files::write_atomic(
            &Self::path(&self.prefix),
            &serde_json::to_vec_pretty(self).unwrap_or_default(),
            0o644,
        )
    }
}
