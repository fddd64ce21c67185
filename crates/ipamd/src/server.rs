//! The plugin-facing gRPC service (`CNIBackend`), wire-compatible with the existing
//! implementation. ADD and DEL are answered from the datastore, never from EC2; the checkpoint
//! is written before the reply.

use std::sync::Arc;

use ipam::{AllocKey, DatastoreError, PodMetadata, Time};
use rpc::cni_backend_server::CniBackend;
use rpc::{
    AddNetworkReply, AddNetworkRequest, DelNetworkReply, DelNetworkRequest, GarbageCollectReply,
    GarbageCollectRequest, IpAllocationMetadata,
};
use tonic::{Request, Response, Status};
use tracing::{debug, error, info};

use crate::forget::Forgetter;
use crate::node::{Node, NodeState, Target};

pub struct Backend {
    pub node: Arc<Node>,
    /// Released addresses' conntrack entries, flushed once the plugin removed the routes.
    pub forget: Forgetter,
}

fn key(network: &str, container: &str, infra: &str, if_name: &str) -> Result<AllocKey, Status> {
    AllocKey::for_request(network, container, infra, if_name).ok_or_else(|| {
        Status::invalid_argument(
            "the request names no container (ContainerID and K8S_POD_INFRA_CONTAINER_ID are empty)",
        )
    })
}

fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn allocation_metadata(
    ip: std::net::Ipv4Addr,
    device: u32,
    table: u32,
) -> Vec<IpAllocationMetadata> {
    vec![IpAllocationMetadata {
        i_pv4_addr: ip.to_string(),
        i_pv6_addr: String::new(),
        device_number: to_i32(device),
        route_table_id: to_i32(table),
    }]
}

impl Backend {
    fn persist(&self, st: &NodeState) -> Result<(), Status> {
        crate::persist::save(&self.node, st).map_err(|e| {
            error!(error = %e, "writing the checkpoint");
            Status::internal(format!("ipamd could not write its checkpoint: {e}"))
        })
    }

    /// Why an ADD found no free address, in words a person can act on.
    fn no_address(&self, st: &NodeState, e: &DatastoreError) -> String {
        let now = Time::now();
        if let Some(Target::Ready { subnets, .. }) = &st.target {
            let resting: Vec<(&String, Time)> = subnets
                .iter()
                .filter_map(|s| Some((s, *st.subnet_backoff.get(s).filter(|u| now < **u)?)))
                .collect();
            if !subnets.is_empty() && resting.len() == subnets.len() {
                let names: Vec<&str> = resting.iter().map(|(s, _)| s.as_str()).collect();
                let soonest = resting.iter().map(|(_, u)| *u).min().unwrap_or(now);
                let (what, verb) = if names.len() == 1 {
                    (format!("subnet {}", names[0]), "is")
                } else {
                    (format!("subnets {}", names.join(", ")), "are")
                };
                return format!(
                    "{e}; {what} {verb} full (EC2 has no free address in it): no new \
                     address for {} s; free addresses in the subnet or give the ENIConfig more \
                     room (spec.subnets, vpcctl custom-networking expand)",
                    soonest.since(now).as_secs()
                );
            }
        }
        match &st.target {
            Some(Target::Blocked { reason }) => format!("{e}; {reason}"),
            _ => format!("{e}; ipamd is adding addresses, try again"),
        }
    }
}

/// A DEL that matched nothing may be for a pod whose address was recovered from the host's
/// routes (`recovered-<ip>`): once the plugin has removed the pod's veth, a reconcile releases
/// it.
fn reconcile_recovered_soon(node: &Arc<Node>) {
    let any = node.lock().ds.allocations().any(|(k, _)| {
        k.container_id
            .starts_with(crate::reconcile::RECOVERED_PREFIX)
    });
    if any {
        let node = node.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            node.reconcile_now.notify_one();
        });
    }
}

#[tonic::async_trait]
impl CniBackend for Backend {
    async fn garbage_collect(
        &self,
        request: Request<GarbageCollectRequest>,
    ) -> Result<Response<GarbageCollectReply>, Status> {
        let r = request.into_inner();
        let released = self.collect_garbage(&r)?;
        Ok(Response::new(GarbageCollectReply {
            success: true,
            released,
        }))
    }

    async fn add_network(
        &self,
        request: Request<AddNetworkRequest>,
    ) -> Result<Response<AddNetworkReply>, Status> {
        let r = request.into_inner();
        self.node.metrics.add_requests.inc();
        let key = key(
            &r.network_name,
            &r.container_id,
            &r.k8s_pod_infra_container_id,
            &r.if_name,
        )?;
        let metadata = PodMetadata {
            namespace: r.k8s_pod_namespace.clone(),
            name: r.k8s_pod_name.clone(),
        };
        let reply = {
            let mut st = self.node.lock();
            let assigned = st.ds.assign(&key, metadata, Time::now());
            match assigned {
                Ok(a) => {
                    if a.fresh
                        && let Err(status) = self.persist(&st)
                    {
                        st.ds.release(&key, Time::now());
                        return Err(status);
                    }
                    info!(pod = %format!("{}/{}", r.k8s_pod_namespace, r.k8s_pod_name), key = %key, ip = %a.ip, eni = a.eni_id, fresh = a.fresh, client = r.client_version, "AddNetwork");
                    AddNetworkReply {
                        success: true,
                        ip_allocation_metadata: allocation_metadata(
                            a.ip,
                            a.device_number,
                            a.route_table,
                        ),
                        use_external_snat: self.node.cli.settings.external_snat,
                        vp_cv4_cid_rs: self
                            .node
                            .vpc_cidrs()
                            .iter()
                            .map(|c| c.to_string())
                            .collect(),
                        ..Default::default()
                    }
                }
                Err(e @ DatastoreError::NoAvailableAddress { .. }) => {
                    self.node.metrics.no_available.inc();
                    self.node.wake.notify_one();
                    return Err(Status::unavailable(self.no_address(&st, &e)));
                }
                Err(e @ DatastoreError::MaxPodsReached { .. }) => {
                    return Err(Status::resource_exhausted(e.to_string()));
                }
                Err(e) => return Err(Status::internal(e.to_string())),
            }
        };
        // Keep the warm pool warm behind this pod.
        self.node.wake.notify_one();
        self.node.changed.notify_one();
        Ok(Response::new(reply))
    }

    async fn del_network(
        &self,
        request: Request<DelNetworkRequest>,
    ) -> Result<Response<DelNetworkReply>, Status> {
        let r = request.into_inner();
        let reason = if r.reason.is_empty() {
            "PodDeleted"
        } else {
            r.reason.as_str()
        };
        self.node
            .metrics
            .del_requests
            .with_label_values(&[reason])
            .inc();
        let key = key(
            &r.network_name,
            &r.container_id,
            &r.k8s_pod_infra_container_id,
            &r.if_name,
        )?;
        let mut st = self.node.lock();
        let Some(released) = st.ds.release(&key, Time::now()) else {
            debug!(key = %key, "DelNetwork for a key holding nothing: nothing to do");
            drop(st);
            reconcile_recovered_soon(&self.node);
            return Ok(Response::new(DelNetworkReply {
                success: true,
                ..Default::default()
            }));
        };
        self.persist(&st)?;
        drop(st);
        info!(key = %key, ip = %released.ip, reason, "DelNetwork");
        self.forget.forget(released.ip);
        self.node.wake.notify_one();
        self.node.changed.notify_one();
        Ok(Response::new(DelNetworkReply {
            success: true,
            ip_allocation_metadata: allocation_metadata(
                released.ip,
                released.device_number,
                released.route_table,
            ),
            ..Default::default()
        }))
    }
}

impl Backend {
    /// CNI GC: releases this network's allocations whose attachment the runtime no longer lists.
    /// Addresses recovered from host routes have no attachment to match: they are reconciled
    /// against the host's pod routes instead.
    pub fn collect_garbage(
        &self,
        r: &GarbageCollectRequest,
    ) -> Result<Vec<IpAllocationMetadata>, Status> {
        if r.network_name.is_empty() {
            return Err(Status::invalid_argument("GarbageCollect names no network"));
        }
        let mut st = self.node.lock();
        let stale: Vec<AllocKey> = st
            .ds
            .allocations()
            .map(|(k, _)| k)
            .filter(|k| k.network_name == r.network_name)
            .filter(|k| {
                !k.container_id
                    .starts_with(crate::reconcile::RECOVERED_PREFIX)
            })
            .filter(|k| {
                !r.valid_attachments.iter().any(|v| {
                    v.container_id == k.container_id
                        && (v.if_name.is_empty() || v.if_name == k.if_name)
                })
            })
            .cloned()
            .collect();
        let now = Time::now();
        let released: Vec<_> = stale.iter().filter_map(|k| st.ds.release(k, now)).collect();
        if !released.is_empty() {
            self.persist(&st)?;
        }
        drop(st);
        self.node
            .metrics
            .del_requests
            .with_label_values(&["GC"])
            .inc_by(released.len() as u64);
        for r in &released {
            info!(key = %r.key, ip = %r.ip, "GC released an allocation the runtime no longer knows");
            self.forget.forget(r.ip);
        }
        self.node.reconcile_now.notify_one();
        self.node.wake.notify_one();
        self.node.changed.notify_one();
        Ok(released
            .iter()
            .flat_map(|r| allocation_metadata(r.ip, r.device_number, r.route_table))
            .collect())
    }
}
