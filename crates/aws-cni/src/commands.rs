//! The CNI verbs: ADD, DEL, CHECK, STATUS, GC, VERSION.

use std::net::Ipv4Addr;
use std::time::Duration;

use netlink::{MAIN_TABLE, Netlink};
use netns::Netns;
use rpc::{AddNetworkRequest, DelNetworkRequest};
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

fn host_if(conf: &NetConf, env: &CniEnv) -> String {
    pod::host_veth_name(
        &conf.veth_prefix,
        env.pod_namespace(),
        env.pod_name(),
        &env.container_id,
    )
}

fn node_netlink_err(e: netlink::NetlinkError) -> CniError {
    CniError::new(Code::Io, format!("netlink on the node: {e}"))
}

pub async fn add(env: &CniEnv, conf: &NetConf, log: &Log) -> Result<String, CniError> {
    let mut client = rpc::connect(&conf.ipamd_address, IPAMD_TIMEOUT)
        .await
        .map_err(|e| ipamd_down(&conf.ipamd_address, e))?;
    let request = AddNetworkRequest {
        client_version: CLIENT_VERSION.to_string(),
        k8s_pod_name: env.pod_name().to_string(),
        k8s_pod_namespace: env.pod_namespace().to_string(),
        k8s_pod_infra_container_id: env.infra_container_id().to_string(),
        netns: env.netns.clone(),
        if_name: env.if_name.clone(),
        network_name: conf.name.clone(),
        container_id: env.container_id.clone(),
        requires_multi_nic_attachment: false,
    };
    let reply = client
        .add_network(request)
        .await
        .map_err(from_status)?
        .into_inner();
    let meta = reply
        .ip_allocation_metadata
        .first()
        .filter(|_| reply.success)
        .ok_or_else(|| CniError::new(Code::Plugin, "ipamd answered without an address"))?;
    let ip: Ipv4Addr = meta.i_pv4_addr.parse().map_err(|_| {
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
    let host_if = host_if(conf, env);
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

    let built = async {
        let pod_ns = Netns::open(&env.netns).map_err(|e| CniError::new(Code::Io, e.to_string()))?;
        let node = Netlink::connect().await.map_err(node_netlink_err)?;
        let built = pod::build(&node, &pod_ns, &spec).await;
        Ok::<_, CniError>((node, built))
    }
    .await;
    let failure = match built {
        Ok((_, Ok(b))) => {
            let result = render(
                &conf.cni_version,
                &AddResult {
                    host_if: &host_if,
                    host_mac: &netlink::format_mac(&b.host.mac.unwrap_or_default()),
                    pod_if: &env.if_name,
                    pod_mac: &netlink::format_mac(&b.pod_mac),
                    sandbox: &env.netns,
                    ip,
                },
            );
            return Ok(result.to_string());
        }
        Ok((node, Err(e))) => {
            for leftover in pod::remove(&node, &host_if, Some(ip), Some(table)).await {
                log.error(&format!("undoing a failed ADD: {leftover}"));
            }
            e
        }
        Err(e) => e,
    };
    // Give the address back: nothing of a failed ADD stays behind.
    if let Err(e) = client
        .del_network(del_request(env, conf, "PodSetupFailed"))
        .await
    {
        log.error(&format!("releasing {ip} after a failed ADD: {e}"));
    }
    log.error(&format!("ADD failed: {failure}"));
    Err(failure)
}

fn del_request(env: &CniEnv, conf: &NetConf, reason: &str) -> DelNetworkRequest {
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

pub async fn del(env: &CniEnv, conf: &NetConf, log: &Log) -> Result<String, CniError> {
    let request = del_request(env, conf, "PodDeleted");
    let released = match rpc::connect(&conf.ipamd_address, IPAMD_TIMEOUT).await {
        Ok(mut client) => match client.del_network(request).await {
            Ok(reply) => reply.into_inner().ip_allocation_metadata.first().map(|m| {
                (
                    m.i_pv4_addr.parse().ok(),
                    u32::try_from(m.route_table_id).ok(),
                )
            }),
            Err(e) => {
                log.error(&format!(
                    "DEL: ipamd refused: {e}; cleaning up from prevResult"
                ));
                None
            }
        },
        Err(e) => {
            log.error(&format!(
                "DEL: ipamd is not reachable ({e}); cleaning up from prevResult"
            ));
            None
        }
    };
    let (ip, table) = match released {
        Some((ip, table)) => (ip.or(conf.prev_ip()), table.filter(|t| *t > 0)),
        None => (conf.prev_ip(), None),
    };
    let node = Netlink::connect().await.map_err(node_netlink_err)?;
    let host_if = host_if(conf, env);
    let errors = pod::remove(&node, &host_if, ip, table).await;
    if !errors.is_empty() {
        return Err(CniError::new(
            Code::Io,
            format!("DEL left something behind: {}", errors.join("; ")),
        ));
    }
    log.info(&format!(
        "DEL container {} ({:?}) done",
        env.container_id, ip
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
    let host_if = host_if(conf, env);
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

/// Introspection of the node's ipamd (loopback in the node's namespace, where the plugin runs).
const INTROSPECTION: &str = "127.0.0.1:61679";

async fn allocations() -> Result<Vec<(String, String, String)>, CniError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fail = |e: String| {
        CniError::new(
            Code::TryAgainLater,
            format!("GC: ipamd introspection at {INTROSPECTION}: {e}"),
        )
    };
    let mut s = tokio::time::timeout(IPAMD_TIMEOUT, tokio::net::TcpStream::connect(INTROSPECTION))
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    s.write_all(b"GET /v1/enis HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    tokio::time::timeout(IPAMD_TIMEOUT, s.read_to_end(&mut raw))
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::new();
    for eni in v["enis"].as_array().into_iter().flatten() {
        for a in eni["addresses"].as_array().into_iter().flatten() {
            let k = &a["key"];
            if let (Some(n), Some(c), Some(i)) = (
                k["network_name"].as_str(),
                k["container_id"].as_str(),
                k["if_name"].as_str(),
            ) {
                out.push((n.to_string(), c.to_string(), i.to_string()));
            }
        }
    }
    Ok(out)
}

/// Releases this network's allocations whose attachment the runtime no longer lists.
pub async fn gc(conf: &NetConf, log: &Log) -> Result<String, CniError> {
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    let mut client = rpc::connect(&conf.ipamd_address, IPAMD_TIMEOUT)
        .await
        .map_err(|e| ipamd_down(&conf.ipamd_address, e))?;
    for (network, container, if_name) in allocations().await? {
        if network != conf.name
            || valid
                .iter()
                .any(|(c, i)| *c == container && (i.is_empty() || *i == if_name))
        {
            continue;
        }
        let request = DelNetworkRequest {
            client_version: CLIENT_VERSION.to_string(),
            reason: "GC".to_string(),
            if_name: if_name.clone(),
            network_name: network.clone(),
            container_id: container.clone(),
            ..Default::default()
        };
        client.del_network(request).await.map_err(from_status)?;
        log.info(&format!("GC released {network}/{container}/{if_name}"));
    }
    Ok(String::new())
}
