//! Introspection (loopback only) and Prometheus metrics over HTTP.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use ipam::Time;
use serde_json::{Value, json};

use crate::node::{Node, Target};

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/enis", get(enis))
        .route("/v1/eni-configs", get(eni_configs))
        .route("/v1/ipamd-env-settings", get(env_settings))
        .route("/v1/networkutils-env-settings", get(networkutils_settings))
        .route("/v1/pool", get(pool))
        .route("/v1/compat", get(compat))
        .route("/v1/subnets", get(subnets))
        .with_state(node)
}

pub fn metrics_router(node: Arc<Node>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(node): State<Arc<Node>>| async move { node.metrics.render() }),
        )
        .with_state(node)
}

async fn enis(State(node): State<Arc<Node>>) -> Json<Value> {
    let st = node.lock();
    let target = match &st.target {
        Some(Target::Ready {
            subnets,
            security_groups,
            ..
        }) => Some((subnets.clone(), security_groups.clone())),
        _ => None,
    };
    let list: Vec<Value> = st
        .ds
        .enis()
        .map(|e| {
            let stale = !e.primary
                && target.as_ref().is_some_and(|(subnets, groups)| {
                    !subnets.contains(&e.subnet_id)
                        || (!groups.is_empty() && &e.security_groups != groups)
                });
            let addresses: Vec<Value> = st
                .ds
                .addresses(&e.id)
                .into_iter()
                .map(|(ip, holder)| {
                    let allocation = holder.and_then(|k| st.ds.allocation(k));
                    json!({
                        "address": ip.to_string(),
                        "assigned": holder.is_some(),
                        "key": holder,
                        "pod": allocation.map(|a| format!("{}/{}", a.metadata.namespace, a.metadata.name)),
                        "assigned_at_unix_ns": allocation.map(|a| a.assigned_at.unix_nanos()),
                    })
                })
                .collect();
            json!({
                "id": e.id,
                "primary": e.primary,
                "device_number": e.device_number,
                "route_table": e.route_table(),
                "subnet_id": e.subnet_id,
                "subnet_cidr": e.subnet_cidr.to_string(),
                "security_groups": e.security_groups,
                "mac": e.mac,
                "primary_ip": e.primary_ip.to_string(),
                "excluded": e.excluded,
                "stale": stale,
                "addresses": addresses,
            })
        })
        .collect();
    Json(json!({ "instance_id": node.identity.instance_id, "enis": list }))
}

async fn eni_configs(State(node): State<Arc<Node>>) -> Json<Value> {
    let st = node.lock();
    Json(json!({
        "custom_networking": node.custom_networking(),
        "name": st.selection.as_ref().map(|s| s.name.clone()),
        "rule": st.selection.as_ref().map(|s| s.rule.to_string()),
        "spec": st.spec,
        "validation": st.validation.as_ref().map(|(_, _, v)| v),
        "target": st.target,
        "source_errors": node.objects.borrow().errors,
    }))
}

async fn env_settings(State(node): State<Arc<Node>>) -> Json<Value> {
    Json(json!({ "settings": node.cli.settings, "options": node.cli.options }))
}

async fn networkutils_settings(State(node): State<Arc<Node>>) -> Json<Value> {
    let s = &node.cli.settings;
    Json(json!({
        "AWS_VPC_K8S_CNI_EXTERNALSNAT": s.external_snat,
        "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS": s.exclude_snat_cidrs,
        "AWS_VPC_K8S_CNI_RANDOMIZESNAT": s.randomize_snat,
        "AWS_VPC_K8S_CNI_CONNMARK": s.connmark,
        "AWS_VPC_K8S_CNI_VETHPREFIX": s.veth_prefix,
        "AWS_VPC_ENI_MTU": s.eni_mtu,
        "POD_MTU": s.pod_mtu(),
    }))
}

async fn pool(State(node): State<Arc<Node>>) -> Json<Value> {
    let st = node.lock();
    let now = Time::now();
    let state = node.pool_state(&st, now);
    let decision = ipam::decide(&node.pool, &state, now);
    Json(json!({
        "instance_type": node.identity.instance_type,
        "max_pods": node.max_pods,
        "stats": state.stats,
        "available": state.stats.available(),
        "attached_enis": state.attached_enis,
        "targets": node.pool,
        "next_action": decision,
        "network_ready": st.network_ready,
        "rounds": st.rounds,
        "can_serve": st.can_serve(now).err().map_or(json!(true), |why| json!({"no": why})),
        "subnet_full_backoff": st
            .subnet_backoff
            .iter()
            .filter(|(_, until)| now < **until)
            .map(|(subnet, until)| (subnet.clone(), until.since(now).as_secs()))
            .collect::<std::collections::BTreeMap<_, _>>(),
        "unrouted_enis": st.unrouted,
        "datapath_problem": st.datapath_problem,
        "last_ec2_error": st.last_ec2_error,
        "kubelet_max_pods": st.max_pods_check,
    }))
}

/// The subnets this node's pods use or may use: what EC2 last said (zone, free addresses), what
/// the node holds there (addresses on its ENIs, assigned to pods, warm), and whether the subnet
/// rests after a refusal; with subnet discovery also the subnets it leaves alone and why.
async fn subnets(State(node): State<Arc<Node>>) -> Json<Value> {
    let st = node.lock();
    let now = Time::now();
    let (candidates, eniconfig) = match &st.target {
        Some(Target::Ready {
            subnets, eniconfig, ..
        }) => (subnets.clone(), eniconfig.clone()),
        _ => (Vec::new(), None),
    };
    let views = st.ds.eni_views(now);
    let mut ids: Vec<String> = candidates.clone();
    // Where pods have addresses: not the primary under custom networking.
    for e in st.ds.enis().filter(|e| !e.excluded) {
        if !ids.contains(&e.subnet_id) {
            ids.push(e.subnet_id.clone());
        }
    }
    let until = |m: &std::collections::BTreeMap<String, Time>, id: &str| {
        m.get(id)
            .filter(|u| now < **u)
            .map(|u| u.since(now).as_secs())
    };
    let rows: Vec<Value> = ids
        .iter()
        .map(|id| {
            let facts = st.subnets.facts.get(id);
            let enis: Vec<&ipam::EniView> = views
                .iter()
                .filter(|v| {
                    st.ds
                        .eni(&v.id)
                        .is_some_and(|e| &e.subnet_id == id && !e.excluded)
                })
                .collect();
            let held: usize = enis.iter().map(|v| v.total).sum();
            let assigned: usize = enis.iter().map(|v| v.assigned).sum();
            let cidr = facts.map(|f| f.cidr.to_string()).or_else(|| {
                st.ds
                    .enis()
                    .find(|e| &e.subnet_id == id)
                    .map(|e| e.subnet_cidr.to_string())
            });
            json!({
                "id": id,
                "cidr": cidr,
                "availability_zone": facts.map(|f| f.availability_zone.clone()),
                "free": facts.map(|f| f.available_addresses),
                "candidate": candidates.contains(id),
                "enis": enis.len(),
                "held": held,
                "assigned": assigned,
                "warm": held - assigned,
                "full_backoff_s": until(&st.subnet_backoff, id),
                "no_prefix_backoff_s": until(&st.subnets.no_prefix, id),
            })
        })
        .collect();
    Json(json!({
        "custom_networking": node.custom_networking(),
        "eniconfig": eniconfig,
        "subnet_discovery": !node.custom_networking() && node.cli.settings.enable_subnet_discovery,
        "read_s_ago": st.subnets.read_at.map(|t| now.since(t).as_secs()),
        "subnets": rows,
        "excluded": st.subnets.excluded.iter().map(|(id, why)| json!({"id": id, "reason": why.to_string()})).collect::<Vec<_>>(),
    }))
}

/// The start-up review of the environment against the existing implementation.
async fn compat(State(_node): State<Arc<Node>>) -> Json<Value> {
    let findings = crate::compat::findings();
    Json(json!({
        "refused": crate::compat::refusal(findings),
        "findings": findings,
    }))
}
