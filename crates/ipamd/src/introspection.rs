//! Introspection (loopback only) and Prometheus metrics over HTTP.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use ipam::Time;
use node_contract::introspection as contract;
use serde_json::{Value, json};

use crate::node::{Node, Target};

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route(contract::ENIS_PATH, get(enis))
        .route(contract::ENI_CONFIGS_PATH, get(eni_configs))
        .route("/v1/ipamd-env-settings", get(env_settings))
        .route("/v1/networkutils-env-settings", get(networkutils_settings))
        .route(contract::POOL_PATH, get(pool))
        .route("/v1/compat", get(compat))
        .route(contract::SUBNETS_PATH, get(subnets))
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

async fn enis(State(node): State<Arc<Node>>) -> Json<contract::Enis> {
    let st = node.lock();
    let target = match &st.target {
        Some(Target::Ready {
            subnets,
            security_groups,
            ..
        }) => Some((subnets.clone(), security_groups.clone())),
        _ => None,
    };
    let enis = st
        .ds
        .enis()
        .map(|e| {
            let stale = !e.primary
                && target.as_ref().is_some_and(|(subnets, groups)| {
                    !subnets.contains(&e.subnet_id)
                        || (!groups.is_empty() && &e.security_groups != groups)
                });
            let addresses = st
                .ds
                .addresses(&e.id)
                .into_iter()
                .map(|(ip, holder)| {
                    let allocation = holder.and_then(|k| st.ds.allocation(k));
                    contract::Address {
                        address: ip,
                        assigned: holder.is_some(),
                        key: holder.map(|k| contract::AllocationKey {
                            network_name: k.network_name.clone(),
                            container_id: k.container_id.clone(),
                            if_name: k.if_name.clone(),
                        }),
                        pod: allocation
                            .map(|a| format!("{}/{}", a.metadata.namespace, a.metadata.name)),
                        assigned_at_unix_ns: allocation.map(|a| a.assigned_at.unix_nanos()),
                    }
                })
                .collect();
            contract::Eni {
                id: e.id.clone(),
                primary: e.primary,
                device_number: e.device_number,
                route_table: e.route_table(),
                subnet_id: e.subnet_id.clone(),
                subnet_cidr: e.subnet_cidr.to_string(),
                security_groups: e.security_groups.clone(),
                mac: e.mac.clone(),
                primary_ip: e.primary_ip,
                excluded: e.excluded,
                stale,
                addresses,
            }
        })
        .collect();
    Json(contract::Enis {
        instance_id: node.identity.instance_id.clone(),
        enis,
    })
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

async fn pool(State(node): State<Arc<Node>>) -> Json<contract::Pool> {
    let st = node.lock();
    let now = Time::now();
    let state = node.pool_state(&st, now);
    let decision = ipam::decide(&node.pool, &state, now);
    let stats = state.stats;
    Json(contract::Pool {
        instance_type: node.identity.instance_type.clone(),
        max_pods: node.max_pods,
        stats: contract::PoolStats {
            total: stats.total,
            assigned: stats.assigned,
            cooling_down: stats.cooling_down,
            total_prefixes: stats.total_prefixes,
            free_prefixes: stats.free_prefixes,
        },
        available: stats.available(),
        attached_enis: state.attached_enis,
        targets: json!(node.pool),
        next_action: json!(decision),
        network_ready: st.network_ready,
        rounds: st.rounds,
        can_serve: match st.can_serve(now) {
            Ok(()) => contract::CanServe::Yes(true),
            Err(no) => contract::CanServe::No { no },
        },
        subnet_full_backoff: st
            .subnet_backoff
            .iter()
            .filter(|(_, until)| now < **until)
            .map(|(subnet, until)| (subnet.clone(), until.since(now).as_secs()))
            .collect(),
        unrouted_enis: st.unrouted.iter().cloned().collect(),
        datapath_problem: st.datapath_problem.clone(),
        last_ec2_error: st.last_ec2_error.clone(),
        kubelet_max_pods: json!(st.max_pods_check),
    })
}

/// The subnets this node's pods use or may use: what EC2 last said (zone, free addresses), what
/// the node holds there (addresses on its ENIs, assigned to pods, warm), and whether the subnet
/// rests after a refusal; with subnet discovery also the subnets it leaves alone and why.
async fn subnets(State(node): State<Arc<Node>>) -> Json<contract::Subnets> {
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
    let subnets = ids
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
            contract::SubnetUse {
                id: id.clone(),
                cidr,
                availability_zone: facts.map(|f| f.availability_zone.clone()),
                free: facts.map(|f| f.available_addresses),
                candidate: candidates.contains(id),
                enis: enis.len(),
                held,
                assigned,
                warm: held - assigned,
                full_backoff_s: until(&st.subnet_backoff, id),
                no_prefix_backoff_s: until(&st.subnets.no_prefix, id),
            }
        })
        .collect();
    Json(contract::Subnets {
        custom_networking: node.custom_networking(),
        eniconfig,
        subnet_discovery: !node.custom_networking() && node.cli.settings.enable_subnet_discovery,
        read_s_ago: st.subnets.read_at.map(|t| now.since(t).as_secs()),
        subnets,
        excluded: st
            .subnets
            .excluded
            .iter()
            .map(|(id, why)| contract::ExcludedSubnet {
                id: id.clone(),
                reason: why.to_string(),
            })
            .collect(),
    })
}

/// The start-up review of the environment against the existing implementation.
async fn compat(State(_node): State<Arc<Node>>) -> Json<Value> {
    let findings = crate::compat::findings();
    Json(json!({
        "refused": crate::compat::refusal(findings),
        "findings": findings,
    }))
}
