//! ENIConfig status (`custom-networking.md`): conditions computed from EC2's facts (pure), and the
//! writer that patches them while this agent holds the Lease.

use std::future::Future;
use std::time::Duration;

use eniconfig::{GroupFacts, SubnetFacts};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::crd::{Condition, ENIConfig, EniConfigResourceSpec, EniConfigStatus, SubnetStatus};

/// What EC2 says about an ENIConfig's subnets and groups. Implemented by the agent on its EC2
/// client.
pub trait Facts: Send + Sync {
    /// The subnets among `ids` that exist (one DescribeSubnets).
    fn subnets(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<SubnetFacts>, String>> + Send;
    /// The groups among `ids` that exist.
    fn groups(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<GroupFacts>, String>> + Send;
}

/// Pure: the status of an ENIConfig in the cluster's VPC. `subnets` is EC2's answer for the
/// spec's subnets (`spec.subnet` and `spec.subnets`; missing ones absent). `previous` keeps each
/// condition's lastTransitionTime while its status does not change, so an unchanged ENIConfig
/// yields an identical status and is not written again.
pub fn status_for(
    name: &str,
    spec: &EniConfigResourceSpec,
    vpc_id: &str,
    subnets: &[SubnetFacts],
    groups: &[GroupFacts],
    previous: Option<&EniConfigStatus>,
    now: Timestamp,
) -> EniConfigStatus {
    let mut conditions = Vec::new();
    let mut problems: Vec<(&str, String)> = Vec::new();
    let listed = spec.all_subnets();
    let found: Vec<&SubnetFacts> = listed
        .iter()
        .filter_map(|id| subnets.iter().find(|s| &s.id == id))
        .collect();
    let missing: Vec<&str> = listed
        .iter()
        .filter(|id| !subnets.iter().any(|s| &s.id == *id))
        .map(String::as_str)
        .collect();
    let described = found
        .iter()
        .map(|s| format!("subnet {} ({}) is in {}", s.id, s.cidr, s.availability_zone))
        .collect::<Vec<_>>()
        .join("; ");
    if missing.is_empty() {
        conditions.push(("SubnetFound", "True", "SubnetFound".to_string(), described));
    } else {
        let m = format!("subnet {} does not exist", missing.join(", "));
        conditions.push(("SubnetFound", "False", "SubnetNotFound".into(), m.clone()));
        problems.push(("SubnetNotFound", m));
    }
    let foreign: Vec<String> = found
        .iter()
        .filter(|s| s.vpc_id != vpc_id)
        .map(|s| format!("subnet {} is in VPC {}", s.id, s.vpc_id))
        .collect();
    if found.is_empty() {
        let m = format!("subnet {} does not exist", spec.subnet);
        conditions.push(("SameVPC", "Unknown", "SubnetNotFound".into(), m));
    } else if foreign.is_empty() {
        let ids: Vec<&str> = found.iter().map(|s| s.id.as_str()).collect();
        conditions.push((
            "SameVPC",
            "True",
            "SameVPC".into(),
            format!("subnet {} is in VPC {vpc_id}", ids.join(", ")),
        ));
    } else {
        let m = format!(
            "{}, the cluster's nodes are in VPC {vpc_id}",
            foreign.join("; ")
        );
        conditions.push(("SameVPC", "False", "OtherVPC".into(), m.clone()));
        problems.push(("OtherVPC", m));
    }
    let zones: std::collections::BTreeSet<&str> =
        found.iter().map(|s| s.availability_zone.as_str()).collect();
    if zones.len() > 1 {
        problems.push((
            "SubnetsInSeveralZones",
            format!(
                "the subnets are in {}: an ENIConfig's subnets must share one zone (a node attaches ENIs in its own zone only)",
                zones.iter().copied().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if eniconfig::is_zone_name(name) {
        for s in found.iter().filter(|s| s.availability_zone != name) {
            problems.push((
                "ZoneMismatch",
                format!(
                    "ENIConfig {name} is named after a zone but subnet {} is in {}: nodes of {name} cannot attach ENIs there",
                    s.id, s.availability_zone
                ),
            ));
        }
    }
    let wanted = spec.security_groups.as_deref().unwrap_or_default();
    if wanted.is_empty() {
        conditions.push((
            "SecurityGroupsDefaulted",
            "True",
            "NoSecurityGroups".into(),
            "no securityGroups: pod ENIs get the VPC's default security group (or the primary ENI's with ENI_CONFIG_SG_FALLBACK=primary-eni)".into(),
        ));
    } else {
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|g| !groups.iter().any(|f| &f.id == *g))
            .map(String::as_str)
            .collect();
        let foreign: Vec<String> = groups
            .iter()
            .filter(|f| wanted.contains(&f.id) && f.vpc_id != vpc_id)
            .map(|f| format!("{} (VPC {})", f.id, f.vpc_id))
            .collect();
        if missing.is_empty() && foreign.is_empty() {
            conditions.push((
                "SecurityGroupsFound",
                "True",
                "SecurityGroupsFound".into(),
                format!("{} exist in VPC {vpc_id}", wanted.join(", ")),
            ));
        } else {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("{} do not exist", missing.join(", ")));
            }
            if !foreign.is_empty() {
                parts.push(format!(
                    "{} belong to another VPC than {vpc_id}",
                    foreign.join(", ")
                ));
            }
            let (reason, m) = if missing.is_empty() {
                ("SecurityGroupsInOtherVPC", parts.join("; "))
            } else {
                ("SecurityGroupsNotFound", parts.join("; "))
            };
            conditions.push(("SecurityGroupsFound", "False", reason.into(), m.clone()));
            problems.push((reason, m));
        }
    }
    match problems.first() {
        None => conditions.push((
            "Ready",
            "True",
            "Valid".into(),
            "nodes selecting this ENIConfig can create pod ENIs".into(),
        )),
        Some((reason, _)) => {
            let all: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
            conditions.push(("Ready", "False", (*reason).into(), all.join("; ")));
        }
    }
    let now = Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string();
    let conditions = conditions
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let since = previous
                .and_then(|p| p.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
                .map(|c| c.last_transition_time.clone());
            Condition {
                type_: type_.into(),
                status: status.into(),
                last_transition_time: since.unwrap_or_else(|| now.clone()),
                reason,
                message,
                observed_generation: None,
            }
        })
        .collect();
    EniConfigStatus {
        availability_zone: found.first().map(|s| s.availability_zone.clone()),
        available_ip_address_count: (!found.is_empty())
            .then(|| found.iter().map(|s| i64::from(s.available_addresses)).sum()),
        subnets: (listed.len() > 1).then(|| {
            found
                .iter()
                .map(|s| SubnetStatus {
                    id: s.id.clone(),
                    cidr: s.cidr.to_string(),
                    availability_zone: s.availability_zone.clone(),
                    available_ip_address_count: i64::from(s.available_addresses),
                })
                .collect()
        }),
        conditions: Some(conditions),
    }
}

/// Checks every ENIConfig and writes its status when it changed; returns how many were written.
pub async fn write_all<F: Facts>(
    api: &Api<ENIConfig>,
    facts: &F,
    vpc_id: &str,
) -> Result<usize, kube::Error> {
    let mut written = 0;
    for eniconfig in api.list(&ListParams::default()).await? {
        let name = eniconfig.name_any();
        let subnets = match facts.subnets(&eniconfig.spec.all_subnets()).await {
            Ok(s) => s,
            Err(e) => {
                warn!(
                    eniconfig = name,
                    error = e,
                    "ENIConfig status: subnet not checked"
                );
                continue;
            }
        };
        let wanted = eniconfig.spec.security_groups.clone().unwrap_or_default();
        let groups = if wanted.is_empty() {
            Vec::new()
        } else {
            match facts.groups(&wanted).await {
                Ok(g) => g,
                Err(e) => {
                    warn!(
                        eniconfig = name,
                        error = e,
                        "ENIConfig status: groups not checked"
                    );
                    continue;
                }
            }
        };
        let status = status_for(
            &name,
            &eniconfig.spec,
            vpc_id,
            &subnets,
            &groups,
            eniconfig.status.as_ref(),
            Timestamp::now(),
        );
        if eniconfig.status.as_ref() == Some(&status) {
            continue;
        }
        let patch = json!({ "status": status });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        info!(
            eniconfig = name,
            ready = ready(&status),
            "ENIConfig status written"
        );
        written += 1;
    }
    Ok(written)
}

fn ready(status: &EniConfigStatus) -> &str {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
        .unwrap_or("Unknown")
}

/// While `leader` says so, re-checks every ENIConfig when `changed` fires and every `period`
/// (free-address counts move without any change to the object).
pub async fn run_writer<F: Facts, T: Clone + Send + Sync>(
    client: Client,
    facts: F,
    vpc_id: String,
    mut leader: watch::Receiver<bool>,
    mut changed: watch::Receiver<T>,
    period: Duration,
) {
    let api: Api<ENIConfig> = Api::all(client);
    loop {
        if *leader.borrow_and_update()
            && let Err(e) = write_all(&api, &facts, &vpc_id).await
        {
            warn!(error = %e, "ENIConfig status not written");
        }
        tokio::select! {
            r = leader.changed() => if r.is_err() { return },
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests;
