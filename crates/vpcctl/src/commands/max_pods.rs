//! `vpcctl max-pods`: the figure to give the kubelet as `--max-pods`. Takes the flags of the
//! EKS AMI's `max-pods-calculator.sh` beside its own, so scripts switch by changing the command
//! name. A type missing from the built-in table is looked up with EC2 DescribeInstanceTypes
//! (region and credentials as the SDK finds them, or `--profile`); stderr says where the limits
//! came from, stdout stays the number alone.

use std::io::Write;
use std::sync::Arc;

use ec2::{Ec2, Ec2Metrics, SdkEc2, SdkOptions};
use instance_limits::{InstanceLimits, LimitsTable, MaxPodsOptions, max_pods};

use crate::CliError;

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["instance_type", "type_flag", "instance_type_from_imds", "all"]))]
pub struct Args {
    /// EC2 instance type, e.g. m5.large.
    instance_type: Option<String>,
    /// The instance type (max-pods-calculator.sh's spelling).
    #[arg(
        long = "instance-type",
        value_name = "TYPE",
        conflicts_with = "instance_type"
    )]
    type_flag: Option<String>,
    /// This instance's type, from instance metadata (EC2 lookups then use its region).
    #[arg(long, conflicts_with_all = ["instance_type", "type_flag"])]
    instance_type_from_imds: bool,
    /// Every instance type in the table, one `<type> <max-pods>` line each.
    #[arg(long)]
    all: bool,
    /// The primary ENI serves no pods.
    #[arg(long, visible_alias = "cni-custom-networking-enabled")]
    custom_networking: bool,
    /// Pod addresses come in /28 prefixes.
    #[arg(long, visible_alias = "cni-prefix-delegation-enabled")]
    prefix_delegation: bool,
    /// Cap on the instance's interfaces (MAX_ENI).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    cni_max_eni: Option<u32>,
    /// The figure without the 110/250 kubelet cap.
    #[arg(long)]
    show_max_allowed: bool,
    /// The VPC CNI version the node runs (max-pods-calculator.sh's flag): prefix delegation needs
    /// 1.9.0 or later.
    #[arg(long, value_name = "VERSION", value_parser = parse_cni_version)]
    cni_version: Option<(u32, u32)>,
    /// AWS shared-config profile for the DescribeInstanceTypes lookup.
    #[arg(long)]
    profile: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `1.9.0`, `v1.18.3-eksbuild.1` → (major, minor).
fn parse_cni_version(v: &str) -> Result<(u32, u32), String> {
    let core = v.trim_start_matches('v');
    let mut parts = core.split(['.', '-']);
    let mut number = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (number(), number()) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => Err(format!(
            "{v:?} is not a version like 1.18.3 or v1.18.3-eksbuild.1"
        )),
    }
}

#[derive(serde::Serialize)]
struct Row<'a> {
    instance_type: &'a str,
    /// Where the instance's limits come from.
    source: &'a str,
    #[serde(flatten)]
    result: instance_limits::MaxPods,
}

/// The built-in table's entry, or EC2's answer and where it came from.
fn lookup(
    args: &Args,
    instance_type: &str,
    region: Option<String>,
) -> Result<(InstanceLimits, String), CliError> {
    if let Ok(limits) = LimitsTable::builtin().get(instance_type) {
        return Ok((limits.clone(), "built-in table".to_string()));
    }
    let runtime = runtime()?;
    runtime.block_on(async {
        let ec2 = SdkEc2::new(
            &SdkOptions {
                region,
                profile: args.profile.clone(),
                // A person waits on this; one retry is enough.
                max_attempts: 2,
                ..Default::default()
            },
            Arc::new(Ec2Metrics::unregistered()),
        )
        .await;
        let region = ec2
            .sdk()
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "no region".to_string());
        let limits = ec2.instance_type_limits(instance_type).await.map_err(|e| {
            CliError::Input(format!(
                "instance type {instance_type} is not in the built-in table ({} types) and EC2 DescribeInstanceTypes ({region}) did not give it: {e}",
                LimitsTable::builtin().len()
            ))
        })?;
        Ok((
            limits,
            format!("EC2 DescribeInstanceTypes ({region})"),
        ))
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("tokio runtime: {e}")))
}

pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    if let Some((major, minor)) = args.cni_version
        && args.prefix_delegation
        && (major, minor) < (1, 9)
    {
        return Err(CliError::Input(format!(
            "prefix delegation needs VPC CNI 1.9.0 or later; --cni-version says {major}.{minor}"
        )));
    }
    let options = MaxPodsOptions {
        custom_networking: args.custom_networking,
        prefix_delegation: args.prefix_delegation,
        max_eni: args.cni_max_eni,
        show_max_allowed: args.show_max_allowed,
    };
    if args.all {
        return all(LimitsTable::builtin(), &options, args.json, out);
    }
    let (instance_type, region) = if args.instance_type_from_imds {
        let id = runtime()?
            .block_on(ec2::fetch_identity(None))
            .map_err(|e| CliError::Failed(format!("--instance-type-from-imds: {e}")))?;
        (id.instance_type, Some(id.region))
    } else {
        let t = args
            .instance_type
            .clone()
            .or_else(|| args.type_flag.clone())
            .ok_or_else(|| CliError::Input("no instance type given".to_string()))?;
        (t, None)
    };
    let (limits, source) = lookup(args, &instance_type, region)?;
    let result = max_pods(&limits, &options).map_err(|e| CliError::Input(e.to_string()))?;
    if source != "built-in table" {
        eprintln!(
            "vpcctl: {instance_type}: limits from {source}, not the built-in table: {} ENIs, {} addresses each",
            limits.eni_limit, limits.ipv4_per_eni
        );
    }
    if args.json {
        let row = Row {
            instance_type: &instance_type,
            source: &source,
            result,
        };
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&row).unwrap_or_default()
        )?;
    } else {
        writeln!(out, "{}", result.max_pods)?;
    }
    Ok(())
}

/// The whole table. Types the options do not apply to (no prefix delegation, unknown vCPUs
/// under the cap) are listed on stderr, not dropped silently.
fn all(
    table: &LimitsTable,
    options: &MaxPodsOptions,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut rows = Vec::new();
    for limits in table.iter() {
        match max_pods(limits, options) {
            Ok(result) => rows.push(Row {
                instance_type: &limits.instance_type,
                source: "built-in table",
                result,
            }),
            Err(e) => eprintln!("vpcctl: skipped: {e}"),
        }
    }
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        )?;
    } else {
        for row in rows {
            writeln!(out, "{} {}", row.instance_type, row.result.max_pods)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cni_versions() {
        for (v, want) in [
            ("1.9.0", Some((1, 9))),
            ("v1.18.3-eksbuild.1", Some((1, 18))),
            ("1.7", Some((1, 7))),
            ("2", None),
            ("latest", None),
        ] {
            assert_eq!(super::parse_cni_version(v).ok(), want, "{v}");
        }
    }
}
