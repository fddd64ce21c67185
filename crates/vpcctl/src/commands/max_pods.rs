//! `vpcctl max-pods`: the figure to give the kubelet as `--max-pods`.

use std::io::Write;

use instance_limits::{InstanceLimits, LimitsTable, MaxPodsOptions, max_pods};

use crate::CliError;

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["instance_type", "all"]))]
pub struct Args {
    /// EC2 instance type, e.g. m5.large.
    instance_type: Option<String>,
    /// Every instance type in the table, one `<type> <max-pods>` line each.
    #[arg(long)]
    all: bool,
    /// The primary ENI serves no pods.
    #[arg(long)]
    custom_networking: bool,
    /// Pod addresses come in /28 prefixes.
    #[arg(long)]
    prefix_delegation: bool,
    /// Cap on the instance's interfaces (MAX_ENI).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    cni_max_eni: Option<u32>,
    /// The figure without the 110/250 kubelet cap.
    #[arg(long)]
    show_max_allowed: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Row<'a> {
    instance_type: &'a str,
    #[serde(flatten)]
    result: instance_limits::MaxPods,
}

pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let options = MaxPodsOptions {
        custom_networking: args.custom_networking,
        prefix_delegation: args.prefix_delegation,
        max_eni: args.cni_max_eni,
        show_max_allowed: args.show_max_allowed,
    };
    let table = LimitsTable::builtin();
    let compute = |limits: &InstanceLimits| {
        max_pods(limits, &options).map_err(|e| CliError::Input(e.to_string()))
    };
    let Some(instance_type) = &args.instance_type else {
        return all(table, &options, args.json, out);
    };
    let limits = table
        .get(instance_type)
        .map_err(|e| CliError::Input(e.to_string()))?;
    let result = compute(limits)?;
    if args.json {
        let row = Row {
            instance_type,
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
