//! `vpcctl validate`: every ENIConfig checked against EC2 before a node trips on it — the subnet
//! exists, is in the cluster's VPC and in the zone the ENIConfig is named after, the groups
//! exist in that VPC, how many addresses are free, and whether the subnet shares the nodes'
//! CIDR block.

use std::path::PathBuf;
use std::sync::Arc;

use ec2::{Ec2, Ec2Metrics, SdkEc2, SdkOptions};
use eniconfig::{GroupFacts, NodeFacts, SubnetFacts, Validation};
use ipnet::Ipv4Net;

use crate::CliError;
use crate::store::{EniConfigSource, Store};

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
    security_groups: Vec<String>,
    valid: bool,
    #[serde(flatten)]
    validation: Validation,
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
            let subnet = ec2.subnet(&spec.subnet).await.map_err(ec2_err)?;
            let groups = ec2.security_groups(spec.groups()).await.map_err(ec2_err)?;
            let zone = eniconfig::is_zone_name(name)
                .then(|| name.clone())
                .or_else(|| subnet.as_ref().map(|s| s.availability_zone.clone()))
                .unwrap_or_default();
            let facts = NodeFacts {
                vpc_id: args.vpc_id.clone(),
                availability_zone: zone,
                primary_block: node_cidr,
                vpc_cidrs: vpc.cidrs.clone(),
            };
            let subnet_facts = subnet.as_ref().map(|s| SubnetFacts {
                id: s.id.clone(),
                vpc_id: s.vpc_id.clone(),
                availability_zone: s.availability_zone.clone(),
                cidr: s.cidr,
                available_addresses: s.available_addresses,
            });
            let group_facts: Vec<GroupFacts> = groups
                .iter()
                .map(|g| GroupFacts {
                    id: g.id.clone(),
                    vpc_id: g.vpc_id.clone(),
                })
                .collect();
            let validation =
                eniconfig::validate(name, spec, &facts, subnet_facts.as_ref(), &group_facts);
            rows.push(Row {
                name: name.clone(),
                subnet: spec.subnet.clone(),
                availability_zone: subnet
                    .as_ref()
                    .map(|s| s.availability_zone.clone())
                    .unwrap_or_default(),
                free_addresses: subnet.as_ref().map(|s| s.available_addresses),
                security_groups: spec.groups().to_vec(),
                valid: validation.valid(),
                validation,
            });
        }
        Ok::<_, CliError>(rows)
    })?;
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
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
            for e in &r.validation.errors {
                writeln!(out, "    error: {e}")?;
            }
            for w in &r.validation.warnings {
                writeln!(out, "    warning: {w}")?;
            }
        }
    }
    let invalid: Vec<&str> = rows
        .iter()
        .filter(|r| !r.valid)
        .map(|r| r.name.as_str())
        .collect();
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "invalid ENIConfigs: {}",
            invalid.join(", ")
        )))
    }
}
