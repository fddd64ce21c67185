//! `vpcctl validate`: every ENIConfig checked against EC2 before a node trips on it — the subnet
//! exists, is in the cluster's VPC and in the zone the ENIConfig is named after, the groups
//! exist in that VPC, how many addresses are free, and whether the subnet shares the nodes'
//! CIDR block. With `--kubeconfig`, also every Node whose kubelet max pods exceeds what its
//! ENIs can serve under the aws-node DaemonSet's settings (custom networking, prefix delegation,
//! MAX_ENI): those pods would stay in ContainerCreating.

use std::path::PathBuf;
use std::sync::Arc;

use std::collections::BTreeMap;

use ec2::{Ec2, Ec2Metrics, SdkEc2, SdkOptions, SubnetQuery};
use eniconfig::{GroupFacts, NodeFacts, NodeObject, SubnetFacts, Validation};
use instance_limits::{
    InstanceLimits, KubeletCheck, LimitsTable, MaxPodsOptions, check_kubelet, max_pods,
};
use ipamd_settings::IpamdSettings;
use ipnet::Ipv4Net;

use crate::CliError;
use crate::store::{EniConfigSink, EniConfigSource, Store};

#[derive(clap::Args)]
pub struct Args {
    /// A directory of ENIConfig manifests (as `kubectl apply` takes them).
    #[arg(long, required_unless_present = "kubeconfig")]
    eniconfig_dir: Option<PathBuf>,
    /// The cluster's ENIConfigs.
    #[arg(long, conflicts_with = "eniconfig_dir")]
    kubeconfig: Option<PathBuf>,
    /// The cluster's VPC.
    #[arg(long)]
    vpc_id: String,
    /// The nodes' CIDR block, to warn about pod subnets carved from it (default: the VPC's
    /// primary block).
    #[arg(long)]
    node_cidr: Option<Ipv4Net>,
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Row {
    name: String,
    subnet: String,
    availability_zone: String,
    free_addresses: Option<u32>,
    /// Every subnet of the spec (`spec.subnet`, then `spec.subnets`) that exists.
    subnets: Vec<SubnetRow>,
    security_groups: Vec<String>,
    valid: bool,
    #[serde(flatten)]
    validation: Validation,
}

#[derive(serde::Serialize)]
struct SubnetRow {
    id: String,
    availability_zone: String,
    free_addresses: u32,
}

/// One Node against its kubelet max pods.
#[derive(Debug, serde::Serialize)]
struct NodeRow {
    name: String,
    instance_type: Option<String>,
    #[serde(flatten)]
    check: Option<KubeletCheck>,
    /// Why the node could not be checked.
    unchecked: Option<String>,
}

/// The labels the kubelet sets with the instance type (current, then the deprecated one).
fn instance_type(node: &NodeObject) -> Option<String> {
    [
        "node.kubernetes.io/instance-type",
        "beta.kubernetes.io/instance-type",
    ]
    .iter()
    .find_map(|k| node.labels.get(*k).cloned())
}

/// Pure: every node checked with `options` and each instance type's limits (or why not).
fn node_rows(
    nodes: &[NodeObject],
    options: &MaxPodsOptions,
    limits: &BTreeMap<String, Result<InstanceLimits, String>>,
) -> Vec<NodeRow> {
    nodes
        .iter()
        .map(|n| {
            let t = instance_type(n);
            let checked = (|| {
                let t = t
                    .as_ref()
                    .ok_or("no node.kubernetes.io/instance-type label")?;
                let kubelet = n.pod_capacity.ok_or("no status.capacity.pods")?;
                let l = limits
                    .get(t)
                    .ok_or_else(|| format!("no limits for {t}"))?
                    .as_ref()
                    .map_err(Clone::clone)?;
                let computed = max_pods(l, options).map_err(|e| e.to_string())?;
                Ok::<_, String>(check_kubelet(kubelet, &computed, options))
            })();
            NodeRow {
                name: n.name.clone(),
                instance_type: t,
                unchecked: checked.as_ref().err().cloned(),
                check: checked.ok(),
            }
        })
        .collect()
}

/// The max-pods options the aws-node DaemonSet gives ipamd, read as ipamd reads them.
fn daemonset_options(env: &BTreeMap<String, String>) -> Result<MaxPodsOptions, CliError> {
    let s = IpamdSettings::from_lookup(|k| env.get(k).cloned())
        .map_err(|e| CliError::Input(format!("the aws-node DaemonSet's environment: {e}")))?;
    Ok(s.max_pods_options())
}

pub fn run(args: &Args, out: &mut impl std::io::Write) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("tokio runtime: {e}")))?;
    let rows = runtime.block_on(async {
        let source = Store::open(args.eniconfig_dir.as_deref(), args.kubeconfig.as_deref())
            .await
            .map_err(|e| CliError::Failed(e.to_string()))?
            .ok_or_else(|| CliError::Input("give --eniconfig-dir or --kubeconfig".to_string()))?;
        let configs = source
            .eniconfigs()
            .await
            .map_err(|e| CliError::Input(e.to_string()))?;
        if configs.is_empty() {
            return Err(CliError::Input(format!(
                "no ENIConfig in {}",
                source.describe()
            )));
        }
        let ec2 = SdkEc2::new(&SdkOptions::default(), Arc::new(Ec2Metrics::unregistered())).await;
        let ec2_err = |e: ec2::Ec2Error| CliError::Failed(e.to_string());
        let vpc = ec2
            .vpc(&args.vpc_id)
            .await
            .map_err(ec2_err)?
            .ok_or_else(|| CliError::Input(format!("VPC {} does not exist", args.vpc_id)))?;
        let node_cidr = args.node_cidr.or_else(|| vpc.cidrs.first().copied());
        let mut rows = Vec::new();
        for (name, spec) in &configs {
            let subnets: Vec<SubnetFacts> = ec2
                .subnets(&SubnetQuery::Ids(spec.all_subnets()))
                .await
                .map_err(ec2_err)?
                .iter()
                .map(SubnetFacts::from)
                .collect();
            let subnet = subnets.iter().find(|s| s.id == spec.subnet);
            let groups = ec2.security_groups(spec.groups()).await.map_err(ec2_err)?;
            let zone = eniconfig::is_zone_name(name)
                .then(|| name.clone())
                .or_else(|| subnet.map(|s| s.availability_zone.clone()))
                .unwrap_or_default();
            let facts = NodeFacts {
                vpc_id: args.vpc_id.clone(),
                availability_zone: zone,
                primary_block: node_cidr,
                vpc_cidrs: vpc.cidrs.clone(),
            };
            let group_facts: Vec<GroupFacts> = groups.iter().map(GroupFacts::from).collect();
            let validation = eniconfig::validate(name, spec, &facts, &subnets, &group_facts);
            let listed = spec.all_subnets();
            rows.push(Row {
                name: name.clone(),
                subnet: spec.subnet.clone(),
                availability_zone: subnet
                    .map(|s| s.availability_zone.clone())
                    .unwrap_or_default(),
                free_addresses: subnet.map(|s| s.available_addresses),
                subnets: listed
                    .iter()
                    .filter_map(|id| subnets.iter().find(|s| &s.id == id))
                    .map(|s| SubnetRow {
                        id: s.id.clone(),
                        availability_zone: s.availability_zone.clone(),
                        free_addresses: s.available_addresses,
                    })
                    .collect(),
                security_groups: spec.groups().to_vec(),
                valid: validation.valid(),
                validation,
            });
        }
        let mut node_rows_out = Vec::new();
        if let Store::Cluster(cluster) = &source {
            let env = cluster
                .aws_node_env()
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?
                .unwrap_or_default();
            let options = daemonset_options(&env)?;
            let nodes = cluster
                .nodes()
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            let mut limits = BTreeMap::new();
            for t in nodes.iter().filter_map(instance_type) {
                if limits.contains_key(&t) {
                    continue;
                }
                let found = match LimitsTable::builtin().get(&t) {
                    Ok(l) => Ok(l.clone()),
                    Err(_) => ec2.instance_type_limits(&t).await.map_err(|e| {
                        format!("{t} is not in the built-in table and EC2 DescribeInstanceTypes failed: {e}")
                    }),
                };
                limits.insert(t, found);
            }
            node_rows_out = node_rows(&nodes, &options, &limits);
        }
        Ok::<_, CliError>((rows, node_rows_out))
    })?;
    let (rows, nodes) = rows;
    if args.json {
        let doc = if args.kubeconfig.is_some() {
            serde_json::json!({"eniconfigs": rows, "nodes": nodes})
        } else {
            serde_json::to_value(&rows).unwrap_or_default()
        };
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        )?;
    } else {
        writeln!(
            out,
            "{:<16} {:<26} {:<12} {:>6}  RESULT",
            "ENICONFIG", "SUBNET", "ZONE", "FREE"
        )?;
        for r in &rows {
            let result = if r.valid {
                "valid".to_string()
            } else {
                "INVALID".to_string()
            };
            let free = r
                .free_addresses
                .map(|f| f.to_string())
                .unwrap_or_else(|| "-".into());
            writeln!(
                out,
                "{:<16} {:<26} {:<12} {:>6}  {result}",
                r.name, r.subnet, r.availability_zone, free
            )?;
            // spec.subnets: one line each, under the ENIConfig's.
            for s in r.subnets.iter().filter(|s| s.id != r.subnet) {
                writeln!(
                    out,
                    "{:<16} {:<26} {:<12} {:>6}",
                    "", s.id, s.availability_zone, s.free_addresses
                )?;
            }
            for e in &r.validation.errors {
                writeln!(out, "    error: {e}")?;
            }
            for w in &r.validation.warnings {
                writeln!(out, "    warning: {w}")?;
            }
        }
        if !nodes.is_empty() {
            write_nodes(&nodes, out)?;
        }
    }
    let invalid: Vec<&str> = rows
        .iter()
        .filter(|r| !r.valid)
        .map(|r| r.name.as_str())
        .collect();
    let too_high: Vec<&str> = nodes
        .iter()
        .filter(|n| n.check.as_ref().is_some_and(|c| c.too_high))
        .map(|n| n.name.as_str())
        .collect();
    let mut problems = Vec::new();
    if !invalid.is_empty() {
        problems.push(format!("invalid ENIConfigs: {}", invalid.join(", ")));
    }
    if !too_high.is_empty() {
        problems.push(format!(
            "nodes whose max pods is too high: {}",
            too_high.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(problems.join("; ")))
    }
}

fn write_nodes(nodes: &[NodeRow], out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<44} {:<14} {:>7} {:>6}  RESULT",
        "NODE", "TYPE", "KUBELET", "NODE"
    )?;
    for n in nodes {
        let t = n.instance_type.as_deref().unwrap_or("-");
        match (&n.check, &n.unchecked) {
            (Some(c), _) => {
                let result = if c.too_high {
                    format!("TOO HIGH: set --max-pods={}", c.recommended)
                } else {
                    "ok".to_string()
                };
                writeln!(
                    out,
                    "{:<44} {t:<14} {:>7} {:>6}  {result}",
                    n.name, c.kubelet_max_pods, c.servable
                )?;
                if c.too_high {
                    writeln!(out, "    {}", c.message())?;
                }
            }
            (None, why) => writeln!(
                out,
                "{:<44} {t:<14} {:>7} {:>6}  unchecked: {}",
                n.name,
                "-",
                "-",
                why.as_deref().unwrap_or("")
            )?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, instance_type: Option<&str>, pods: Option<u32>) -> NodeObject {
        NodeObject {
            name: name.into(),
            labels: instance_type
                .map(|t| {
                    (
                        "node.kubernetes.io/instance-type".to_string(),
                        t.to_string(),
                    )
                })
                .into_iter()
                .collect(),
            pod_capacity: pods,
            ..Default::default()
        }
    }

    #[test]
    fn nodes_with_too_many_pods_for_their_enis_are_listed() {
        let env: BTreeMap<String, String> = [
            ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
            ("MAX_ENI", "-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let options = daemonset_options(&env).unwrap();
        assert!(options.custom_networking && options.max_eni.is_none());
        let mut limits = BTreeMap::new();
        limits.insert(
            "m5.large".to_string(),
            Ok(LimitsTable::builtin().get("m5.large").unwrap().clone()),
        );
        limits.insert("x9.huge".to_string(), Err("not in EC2".to_string()));
        let nodes = [
            node("old", Some("m5.large"), Some(29)),
            node("new", Some("m5.large"), Some(20)),
            node("mystery", Some("x9.huge"), Some(50)),
            node("unlabelled", None, Some(20)),
            node("no-status", Some("m5.large"), None),
        ];
        let rows = node_rows(&nodes, &options, &limits);
        let too_high: Vec<&str> = rows
            .iter()
            .filter(|r| r.check.as_ref().is_some_and(|c| c.too_high))
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(too_high, ["old"]);
        assert_eq!(rows[0].check.as_ref().unwrap().recommended, 20);
        assert!(rows[1].check.as_ref().is_some_and(|c| !c.too_high));
        assert_eq!(rows[2].unchecked.as_deref(), Some("not in EC2"));
        assert!(
            rows[3]
                .unchecked
                .as_deref()
                .unwrap()
                .contains("instance-type")
        );
        assert!(
            rows[4]
                .unchecked
                .as_deref()
                .unwrap()
                .contains("capacity.pods")
        );
        let mut text = Vec::new();
        write_nodes(&rows, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("TOO HIGH: set --max-pods=20"), "{text}");
        let bad: BTreeMap<String, String> =
            [("WARM_IP_TARGET".to_string(), "lots".to_string())].into();
        assert!(
            daemonset_options(&bad)
                .err()
                .unwrap()
                .to_string()
                .contains("WARM_IP_TARGET")
        );
    }
}
