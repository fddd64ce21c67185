//! What `vpcctl` does to a cluster with `--kubeconfig`: read and apply ENIConfigs, read and set the
//! `aws-node` DaemonSet's environment. Each write says whether it changed anything, so a second
//! run of the same command reports nothing to do.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::crd::{ENIConfig, EniConfigResourceSpec};

/// Field manager of every write (server-side apply).
pub const MANAGER: &str = "vpcctl";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "ENIConfig {name}: the API server dropped {field}: the cluster's ENIConfig CRD predates it; apply ours (deploy/crd.yaml, or `vpcctl crd | kubectl apply -f -`) and run again"
    )]
    Pruned { name: String, field: &'static str },
    #[error("DaemonSet {namespace}/{name} has no container named {container}")]
    NoContainer {
        namespace: String,
        name: String,
        container: String,
    },
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> AdminError {
    let what = what.into();
    move |source| AdminError::Api { what, source }
}

/// Every ENIConfig of the cluster, by name.
pub async fn eniconfigs(
    client: &Client,
) -> Result<BTreeMap<String, eniconfig::EniConfigSpec>, AdminError> {
    let api: Api<ENIConfig> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(api_error("listing ENIConfigs"))?;
    Ok(list
        .into_iter()
        .map(|c| (c.name_any(), c.spec.0.clone()))
        .collect())
}

/// Every Node of the cluster (labels, the kubelet's max pods, cordon), by name.
pub async fn nodes(client: &Client) -> Result<Vec<eniconfig::NodeObject>, AdminError> {
    let api: Api<Node> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(api_error("listing Nodes"))?;
    let mut nodes: Vec<_> = list.iter().map(crate::watch::node_object).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

/// Creates or updates one ENIConfig's spec (server-side apply); Unchanged when it already says so.
pub async fn apply_eniconfig(
    client: &Client,
    name: &str,
    spec: &eniconfig::EniConfigSpec,
) -> Result<Change, AdminError> {
    let api: Api<ENIConfig> = Api::all(client.clone());
    let current = api
        .get_opt(name)
        .await
        .map_err(api_error(format!("reading ENIConfig {name}")))?;
    let wanted = EniConfigResourceSpec(spec.clone());
    let change = match &current {
        Some(c) if c.spec == wanted => return Ok(Change::Unchanged),
        Some(_) => Change::Updated,
        None => Change::Created,
    };
    let object = ENIConfig {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: wanted,
        status: None,
    };
    let applied = api
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(api_error(format!("applying ENIConfig {name}")))?;
    // A cluster with the older CRD (no spec.subnets in its schema) prunes the field silently.
    if spec.subnets.is_some() && applied.spec.subnets != spec.subnets {
        return Err(AdminError::Pruned {
            name: name.to_string(),
            field: "spec.subnets",
        });
    }
    Ok(change)
}

/// The literal `value`s of a DaemonSet container's environment (valueFrom entries are left out).
pub async fn daemonset_env(
    client: &Client,
    namespace: &str,
    name: &str,
    container: &str,
) -> Result<BTreeMap<String, String>, AdminError> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let ds = api
        .get(name)
        .await
        .map_err(api_error(format!("reading DaemonSet {namespace}/{name}")))?;
    let c = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == container))
        .ok_or_else(|| AdminError::NoContainer {
            namespace: namespace.into(),
            name: name.into(),
            container: container.into(),
        })?;
    Ok(c.env
        .iter()
        .flatten()
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect())
}

/// Sets `set` and removes `remove` on the container (a strategic merge: other variables stay),
/// like `kubectl set env`; Unchanged when it already looks so.
pub async fn set_daemonset_env(
    client: &Client,
    namespace: &str,
    name: &str,
    container: &str,
    set: &BTreeMap<String, String>,
    remove: &[String],
) -> Result<Change, AdminError> {
    let current = daemonset_env(client, namespace, name, container).await?;
    if set.iter().all(|(k, v)| current.get(k) == Some(v))
        && remove.iter().all(|k| !current.contains_key(k))
    {
        return Ok(Change::Unchanged);
    }
    let mut env: Vec<_> = set
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    env.extend(
        remove
            .iter()
            .map(|k| json!({"name": k, "$patch": "delete"})),
    );
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": container, "env": env}]}}}});
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map_err(api_error(format!(
            "setting the environment of DaemonSet {namespace}/{name}"
        )))?;
    Ok(Change::Updated)
}
