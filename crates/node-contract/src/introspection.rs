//! ipamd's introspection responses as types (`/v1/enis`, `/v1/pool`), serialized by ipamd and
//! read by `vpcctl status` and the tests through [`Client`], so a field renamed on one side
//! fails to compile on the other. Parts that mirror another crate's types (the pool targets,
//! the next decision, the kubelet check) stay JSON values.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const ENIS_PATH: &str = "/v1/enis";
pub const POOL_PATH: &str = "/v1/pool";
pub const ENI_CONFIGS_PATH: &str = "/v1/eni-configs";
pub const SUBNETS_PATH: &str = "/v1/subnets";

/// `/v1/enis`: every ENI of the pool with its addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enis {
    pub instance_id: String,
    pub enis: Vec<Eni>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eni {
    pub id: String,
    pub primary: bool,
    pub device_number: u32,
    pub route_table: u32,
    pub subnet_id: String,
    pub subnet_cidr: String,
    pub security_groups: Vec<String>,
    pub mac: String,
    pub primary_ip: Ipv4Addr,
    /// Serves no pod (the primary under custom networking, `no_manage`, not routed yet).
    pub excluded: bool,
    /// Its subnet or groups differ from what the ENIConfig in force asks for now.
    pub stale: bool,
    pub addresses: Vec<Address>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub address: Ipv4Addr,
    pub assigned: bool,
    /// The allocation holding it.
    pub key: Option<AllocationKey>,
    /// `namespace/name` of the pod holding it.
    pub pod: Option<String>,
    pub assigned_at_unix_ns: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationKey {
    pub network_name: String,
    pub container_id: String,
    pub if_name: String,
}

/// The datastore's figures (`ipam::Stats`, serialized the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PoolStats {
    pub total: usize,
    pub assigned: usize,
    pub cooling_down: usize,
    pub total_prefixes: usize,
    pub free_prefixes: usize,
}

/// Whether a new pod would get a working address now, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CanServe {
    Yes(bool),
    No { no: String },
}

impl CanServe {
    pub fn reason(&self) -> Option<&str> {
        match self {
            CanServe::Yes(_) => None,
            CanServe::No { no } => Some(no),
        }
    }
}

/// `/v1/pool`: the pool's figures, targets and state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub instance_type: String,
    pub max_pods: u32,
    pub stats: PoolStats,
    pub available: usize,
    pub attached_enis: usize,
    /// `ipam::PoolSettings`.
    pub targets: Value,
    /// `ipam::PoolAction`.
    pub next_action: Value,
    /// The CNI config has been written.
    pub network_ready: bool,
    /// Pool manager rounds since start.
    pub rounds: u64,
    pub can_serve: CanServe,
    /// Subnets left alone because they reported no free addresses: seconds still to wait.
    pub subnet_full_backoff: BTreeMap<String, u64>,
    pub unrouted_enis: Vec<String>,
    pub datapath_problem: Option<String>,
    pub last_ec2_error: Option<String>,
    /// The kubelet's max pods against the node's (Kubernetes mode).
    #[serde(default)]
    pub kubelet_max_pods: Value,
}

/// `/v1/subnets`: the subnets the node's pods use or may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subnets {
    pub custom_networking: bool,
    /// The ENIConfig in force (custom networking).
    pub eniconfig: Option<String>,
    /// Subnet discovery chooses where ENIs go (no custom networking, `ENABLE_SUBNET_DISCOVERY`).
    pub subnet_discovery: bool,
    /// Seconds since DescribeSubnets last answered (None: not asked yet).
    pub read_s_ago: Option<u64>,
    pub subnets: Vec<SubnetUse>,
    /// Subnets of the zone discovery leaves alone.
    pub excluded: Vec<ExcludedSubnet>,
}

/// One subnet: what EC2 last said of it, and what this node holds there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetUse {
    pub id: String,
    pub cidr: Option<String>,
    pub availability_zone: Option<String>,
    /// Free addresses by EC2's last count, less what this node took since.
    pub free: Option<u32>,
    /// New ENIs may go here.
    pub candidate: bool,
    /// This node's pod ENIs in the subnet, the addresses they hold, of those assigned to pods,
    /// and the rest (warm).
    pub enis: usize,
    pub held: usize,
    pub assigned: usize,
    pub warm: usize,
    /// Seconds it is still left alone after reporting no free address.
    pub full_backoff_s: Option<u64>,
    /// Seconds it is still not asked for prefixes after reporting no free /28.
    pub no_prefix_backoff_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExcludedSubnet {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("introspection at {address}: {source}")]
    Io {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("introspection at {address}{path}: HTTP {status}: {body}")]
    Status {
        address: SocketAddr,
        path: String,
        status: u16,
        body: String,
    },
    #[error("introspection at {address}{path}: {source}")]
    Decode {
        address: SocketAddr,
        path: String,
        source: serde_json::Error,
    },
}

/// A blocking client of one node's introspection (HTTP/1.0 GET on loopback).
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub address: SocketAddr,
    pub timeout: Duration,
}

impl Client {
    pub fn new(address: SocketAddr) -> Client {
        Client {
            address,
            timeout: Duration::from_secs(10),
        }
    }

    /// The body of `path` as JSON.
    pub fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        self.get(path)
    }

    pub fn enis(&self) -> Result<Enis, ClientError> {
        self.get(ENIS_PATH)
    }

    pub fn pool(&self) -> Result<Pool, ClientError> {
        self.get(POOL_PATH)
    }

    pub fn subnets(&self) -> Result<Subnets, ClientError> {
        self.get(SUBNETS_PATH)
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let address = self.address;
        let io = |source| ClientError::Io { address, source };
        let mut stream = TcpStream::connect_timeout(&address, self.timeout).map_err(io)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        // One write: a server may answer as soon as the head is complete.
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: {address}\r\nAccept: application/json\r\n\r\n");
        stream.write_all(request.as_bytes()).map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(io)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status != 200 {
            return Err(ClientError::Status {
                address,
                path: path.to_string(),
                status,
                body: body.chars().take(500).collect(),
            });
        }
        serde_json::from_str(body).map_err(|source| ClientError::Decode {
            address,
            path: path.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn can_serve_reads_both_shapes() {
        let yes: CanServe = serde_json::from_str("true").unwrap_or(CanServe::Yes(false));
        assert_eq!(yes.reason(), None);
        let no: CanServe =
            serde_json::from_str(r#"{"no":"subnet full"}"#).unwrap_or(CanServe::Yes(true));
        assert_eq!(no.reason(), Some("subnet full"));
    }

    #[test]
    fn a_client_reads_a_served_answer_and_names_failures() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let server = std::thread::spawn(move || {
            for (i, stream) in listener.incoming().take(2).enumerate() {
                let mut s = stream.unwrap_or_else(|e| panic!("{e}"));
                // The whole request head, then the answer.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let reply = if i == 0 {
                    "HTTP/1.1 200 OK\r\n\r\n{\"instance_id\":\"i-1\",\"enis\":[]}".to_string()
                } else {
                    "HTTP/1.1 404 Not Found\r\n\r\nnope".to_string()
                };
                let _ = s.write_all(reply.as_bytes());
            }
        });
        let client = Client::new(address);
        let enis = client.enis().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(enis.instance_id, "i-1");
        let err = client
            .pool()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("HTTP 404") && err.contains("/v1/pool"),
            "{err}"
        );
        server.join().unwrap_or_else(|_| panic!("server"));
    }
}
