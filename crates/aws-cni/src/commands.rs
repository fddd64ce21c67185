//! The CNI verbs: ADD, DEL, CHECK, STATUS, GC, VERSION.

use std::net::Ipv4Addr;
use std::time::Duration;

use netlink::{MAIN_TABLE, Netlink};
use netns::Netns;
use rpc::{AddNetworkRequest, DelNetworkRequest, GarbageCollectRequest, ValidAttachment};
use serde_json::json;
use tonic::Code as GrpcCode;

use crate::conf::{CniEnv, NetConf, SUPPORTED_VERSIONS};
use crate::error::{CniError, Code};
use crate::log::Log;
use crate::pod::{self, PodSpec};
use crate::result::{AddResult, render};

/// How long the plugin waits for ipamd before telling the runtime to try again.
const IPAMD_TIMEOUT: Duration = Duration::from_secs(3);
pub const CLIENT_VERSION: &str = concat!("vpc-cni-rs-", env!("CARGO_PKG_VERSION"));

fn ipamd_down(address: &str, e: impl std::fmt::Display) -> CniError {
    CniError::new(
        Code::TryAgainLater,
        format!("ipamd is not reachable at {address}: {e}; is aws-node running on this node?"),
    )
}

fn from_status(s: tonic::Status) -> CniError {
    let code = match s.code() {
        GrpcCode::Unavailable | GrpcCode::DeadlineExceeded | GrpcCode::FailedPrecondition => {
            Code::TryAgainLater
        }
        _ => Code::Plugin,
    };
    CniError::new(code, format!("ipamd: {}", s.message()))
}

fn node_netlink_err(e: netlink::NetlinkError) -> CniError {
    CniError::new(Code::Io, format!("netlink on the node: {e}"))
}

/// One invocation's view of the pod: what ipamd is told and what the node names after it.
pub struct Sandbox<'a> {
    pub env: &'a CniEnv,
    pub conf: &'a NetConf,
}

impl Sandbox<'_> {
    pub fn host_if(&self) -> String {
        pod::host_veth_name(
            &self.conf.veth_prefix,
            self.env.pod_namespace(),
            self.env.pod_name(),
            &self.env.container_id,
        )
    }

    pub fn add_request(&self) -> AddNetworkRequest {
        let (env, conf) = (self.env, self.conf);
        AddNetworkRequest {
            client_version: CLIENT_VERSION.to_string(),
            k8s_pod_name: env.pod_name().to_string(),
            k8s_pod_namespace: env.pod_namespace().to_string(),
            k8s_pod_infra_container_id: env.infra_container_id().to_string(),
            netns: env.netns.clone(),
            if_name: env.if_name.clone(),
            network_name: conf.name.clone(),
            container_id: env.container_id.clone(),
            requires_multi_nic_attachment: false,
        }
    }

    pub fn del_request(&self, reason: &str) -> DelNetworkRequest {
        let (env, conf) = (self.env, self.conf);
        DelNetworkRequest {
            client_version: CLIENT_VERSION.to_string(),
            k8s_pod_name: env.pod_name().to_string(),
            k8s_pod_namespace: env.pod_namespace().to_string(),
            k8s_pod_infra_container_id: env.infra_container_id().to_string(),
            reason: reason.to_string(),
            if_name: env.if_name.clone(),
            network_name: conf.name.clone(),
            container_id: env.container_id.clone(),
            ..Default::default()
        }
    }
}

/// The address and table ipamd's AddNetwork reply carries.
fn allocation(reply: &rpc::AddNetworkReply) -> Result<(Ipv4Addr, u32), CniError> {
    let meta = reply
        .ip_allocation_metadata
        .first()
        .filter(|_| reply.success)
        .ok_or_else(|| CniError::new(Code::Plugin, "ipamd answered without an address"))?;
    let ip = meta.i_pv4_addr.parse().map_err(|_| {
        CniError::new(
            Code::Plugin,
            format!(
                "ipamd answered with an invalid address {:?}",
                meta.i_pv4_addr
            ),
        )
    })?;
    let table = u32::try_from(meta.route_table_id)
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(MAIN_TABLE);
    Ok((ip, table))
}

/// ADD: an address from ipamd, then the datapath; any failure after the address undoes what was
/// built and gives the address back.
pub async fn add(env: &CniEnv, conf: &NetConf, log: &Log) -> Result<String, CniError> {
    let sandbox = Sandbox { env, conf };
    let mut client = rpc::connect(&conf.ipamd_address, IPAMD_TIMEOUT)
        .await
        .map_err(|e| ipamd_down(&conf.ipamd_address, e))?;
    let reply = client
        .add_network(sandbox.add_request())
        .await
        .map_err(from_status)?
        .into_inner();
    let (ip, table) = allocation(&reply)?;
    let host_if = sandbox.host_if();
    let spec = PodSpec {
        host_if: &host_if,
        pod_if: &env.if_name,
        ip,
        mtu: conf.mtu,
        table,
    };
    log.info(&format!(
        "ADD {}/{} container {}: {ip} table {table} via {host_if}",
        env.pod_namespace(),
        env.pod_name(),
        env.container_id
    ));
    let failure = match build(env, &spec).await {
        Ok(built) => {
            let result = render(
                &conf.cni_version,
                &AddResult {
                    host_if: &host_if,
                    host_mac: &netlink::format_mac(&built.host.mac.unwrap_or_default()),
                    pod_if: &env.if_name,
                    pod_mac: &netlink::format_mac(&built.pod_mac),
                    sandbox: &env.netns,
                    ip,
                },
            );
            return Ok(result.to_string());
        }
        Err(failure) => failure,
    };
    // Give the address back: nothing of a failed ADD stays behind.
    if let Err(e) = client
        .del_network(sandbox.del_request("PodSetupFailed"))
        .await
    {
        log.error(&format!("releasing {ip} after a failed ADD: {e}"));
    }
    log.error(&format!("ADD failed: {failure}"));
    Err(failure)
}

/// Builds the pod's datapath; on failure, undoes what was built before returning the error.
async fn build(env: &CniEnv, spec: &PodSpec<'_>) -> Result<pod::Built, CniError> {
    let pod_ns = Netns::open(&env.netns).map_err(|e| CniError::new(Code::Io, e.to_string()))?;
    let node = Netlink::connect().await.map_err(node_netlink_err)?;
    match pod::build(&node, &pod_ns, spec).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let undo = pod::Undo {
                node: &node,
                host_if: spec.host_if,
                ip: spec.ip,
                table: spec.table,
            };
            let leftovers = undo.run().await;
            if leftovers.is_empty() {
                Err(e)
            } else {
                let left: Vec<String> = leftovers.iter().map(ToString::to_string).collect();
                Err(CniError::new(
                    e.code,
                    format!("{e}; undoing it left: {}", left.join("; ")),
                ))
            }
        }
    }
}

/// What ipamd said to a DEL.
enum Released {
    /// The container held this address (and its ENI's table, when not main).
    Address(Option<Ipv4Addr>, Option<u32>),
    /// The container holds nothing (already released, or never known).
    Nothing,
    /// ipamd could not be asked.
    Unreachable,
}

/// DEL removes only what belongs to this sandbox: its own host veth (see
/// [`pod::sandbox_veth`]) and the rules of the address this container held. `prevResult` is
/// used only when ipamd cannot be asked, and even then an address the node routes to another
/// pod's veth is left alone: a late DEL must never tear down the pod that got the address next.
pub async fn del(env: &CniEnv, conf: &NetConf, log: &Log) -> Result<String, CniError> {
    let sandbox = Sandbox { env, conf };
    let request = sandbox.del_request("PodDeleted");
    let released = match rpc::connect(&conf.ipamd_address, IPAMD_TIMEOUT).await {
        Ok(mut client) => match client.del_network(request).await {
            Ok(reply) => match reply.into_inner().ip_allocation_metadata.first() {
                Some(m) => Released::Address(
                    m.i_pv4_addr.parse().ok(),
                    u32::try_from(m.route_table_id).ok().filter(|t| *t > 0),
                ),
                None => Released::Nothing,
            },
            Err(e) => {
                log.error(&format!(
                    "DEL: ipamd refused: {e}; cleaning up from prevResult"
                ));
                Released::Unreachable
            }
        },
        Err(e) => {
            log.error(&format!(
                "DEL: ipamd is not reachable ({e}); cleaning up from prevResult"
            ));
            Released::Unreachable
        }
    };
    let node = Netlink::connect().await.map_err(node_netlink_err)?;
    let host_if = sandbox.host_if();
    // DEL may come with no namespace, or after it is gone.
    let pod_ns = (!env.netns.is_empty())
        .then(|| Netns::open(&env.netns).ok())
        .flatten();
    let veth = pod::sandbox_veth(
        &node,
        &host_if,
        pod_ns.as_ref(),
        &env.if_name,
        conf.prev_host_mac(&host_if),
    )
    .await
    .map_err(node_netlink_err)?;
    if veth.is_none() && node.link_by_name(&host_if).await.ok().flatten().is_some() {
        log.info(&format!(
            "DEL container {}: {host_if} belongs to another sandbox of the pod: left alone",
            env.container_id
        ));
    }
    let candidates: Vec<(Ipv4Addr, Option<u32>)> = match released {
        Released::Address(ip, table) => ip
            .or(conf.prev_ip())
            .map(|ip| (ip, table))
            .into_iter()
            .collect(),
        // ipamd no longer ties an address to this container (its checkpoint was lost, or the
        // DEL is repeated): the sandbox's own veth names its address.
        Released::Nothing => match &veth {
            Some(link) => pod::routed_via(&node, link)
                .await
                .map_err(node_netlink_err)?
                .into_iter()
                .map(|ip| (ip, None))
                .collect(),
            None => Vec::new(),
        },
        Released::Unreachable => conf.prev_ip().map(|ip| (ip, None)).into_iter().collect(),
    };
    let mut addresses = Vec::new();
    for (ip, table) in candidates {
        match pod::routed_to(&node, ip).await.map_err(node_netlink_err)? {
            Some(oif) if veth.as_ref().is_none_or(|v| v.index != oif) => log.info(&format!(
                "DEL container {}: {ip} is routed to another pod now: its rules are left alone",
                env.container_id
            )),
            _ => addresses.push((ip, table)),
        }
    }
    let errors = pod::remove(&node, veth.as_ref(), &addresses).await;
    if !errors.is_empty() {
        let left: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(CniError::new(
            Code::Io,
            format!("DEL left something behind: {}", left.join("; ")),
        ));
    }
    log.info(&format!(
        "DEL container {} done: rules of {:?} removed, veth {}",
        env.container_id,
        addresses.iter().map(|(ip, _)| ip).collect::<Vec<_>>(),
        if veth.is_some() {
            "deleted"
        } else {
            "not ours or gone"
        }
    ));
    Ok(String::new())
}

pub async fn check(env: &CniEnv, conf: &NetConf) -> Result<String, CniError> {
    let ip = conf.prev_ip().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "CHECK needs prevResult with the pod's address",
        )
    })?;
    let pod_ns = Netns::open(&env.netns).map_err(|e| CniError::new(Code::Io, e.to_string()))?;
    let node = Netlink::connect().await.map_err(node_netlink_err)?;
    // The table comes from the node's own from-pod rule; without one the address is on main.
    let table = pod::from_rule_tables(&node, ip)
        .await
        .map_err(node_netlink_err)?
        .first()
        .copied()
        .unwrap_or(MAIN_TABLE);
    let host_if = Sandbox { env, conf }.host_if();
    let spec = PodSpec {
        host_if: &host_if,
        pod_if: &env.if_name,
        ip,
        mtu: conf.mtu,
        table,
    };
    pod::check(&node, &pod_ns, &spec).await?;
    Ok(String::new())
}

pub async fn status(conf: &NetConf) -> Result<String, CniError> {
    let not_available = |msg: String| CniError::new(Code::NotAvailable, msg);
    let channel = rpc::channel(&conf.ipamd_address, IPAMD_TIMEOUT)
        .await
        .map_err(|e| {
            not_available(format!(
                "ipamd is not reachable at {}: {e}",
                conf.ipamd_address
            ))
        })?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "rpc.CNIBackend".into(),
        })
        .await
        .map_err(|e| not_available(format!("ipamd health: {}", e.message())))?
        .into_inner();
    if answer.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        Ok(String::new())
    } else {
        Err(not_available(format!(
            "ipamd has no free address for a new pod yet (health status {})",
            answer.status
        )))
    }
}

pub fn version(conf_version: Option<&str>) -> String {
    json!({"cniVersion": conf_version.unwrap_or("1.1.0"), "supportedVersions": SUPPORTED_VERSIONS})
        .to_string()
}

/// CNI GC: asks ipamd to release this network's allocations whose attachment the runtime no
/// longer lists. CNI 1.1 requires `cni.dev/valid-attachments`: without it nothing is released
/// (an empty list would mean "release every pod").
pub async fn gc(conf: &NetConf, log: &Log) -> Result<String, CniError> {
    let valid = conf.valid_attachments.clone().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "GC needs cni.dev/valid-attachments (CNI 1.1): nothing was released",
        )
    })?;
    let mut client = rpc::connect(&conf.ipamd_address, IPAMD_TIMEOUT)
        .await
        .map_err(|e| ipamd_down(&conf.ipamd_address, e))?;
    let reply = client
        .garbage_collect(GarbageCollectRequest {
            client_version: CLIENT_VERSION.to_string(),
            network_name: conf.name.clone(),
            valid_attachments: valid
                .into_iter()
                .map(|(container_id, if_name)| ValidAttachment {
                    container_id,
                    if_name,
                })
                .collect(),
        })
        .await
        .map_err(from_status)?
        .into_inner();
    for r in &reply.released {
        log.info(&format!(
            "GC released {} of network {}",
            r.i_pv4_addr, conf.name
        ));
    }
    Ok(String::new())
}
