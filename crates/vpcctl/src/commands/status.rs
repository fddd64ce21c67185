//! `vpcctl status`: a running node's ENIs, pool, targets and ENIConfig, from its introspection
//! endpoint (loopback on the node).

use std::io::Write;

use node_contract::introspection::{self as contract, Client};

use crate::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// ipamd's introspection address.
    #[arg(long, default_value = node_contract::INTROSPECTION_ADDRESS)]
    address: String,
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let address = args
        .address
        .parse()
        .map_err(|_| CliError::Input(format!("--address {:?} is not host:port", args.address)))?;
    let client = Client::new(address);
    let failed = |e: contract::ClientError| CliError::Failed(e.to_string());
    let enis = client.enis().map_err(failed)?;
    let pool = client.pool().map_err(failed)?;
    let config = client
        .get_json(contract::ENI_CONFIGS_PATH)
        .map_err(failed)?;
    if args.json {
        let all = serde_json::json!({"enis": enis, "pool": pool, "eni_config": config});
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&all).unwrap_or_default()
        )?;
        return Ok(());
    }
    let s = &pool.stats;
    writeln!(
        out,
        "node {} ({}), max pods {}, network-ready {}",
        enis.instance_id, pool.instance_type, pool.max_pods, pool.network_ready
    )?;
    writeln!(
        out,
        "pool: {} addresses, {} assigned, {} available ({} cooling down), {} prefixes; next: {}",
        s.total,
        s.assigned,
        pool.available,
        s.cooling_down,
        s.total_prefixes,
        pool.next_action["action"].as_str().unwrap_or("?")
    )?;
    if let Some(why) = pool.can_serve.reason() {
        writeln!(out, "not ready: {why}")?;
    }
    let t = &pool.targets;
    writeln!(
        out,
        "targets: WARM_ENI_TARGET={} WARM_IP_TARGET={} MINIMUM_IP_TARGET={} WARM_PREFIX_TARGET={} prefix delegation {}",
        t["warm_eni_target"],
        t["warm_ip_target"],
        t["minimum_ip_target"],
        t["warm_prefix_target"],
        t["prefix_delegation"]
    )?;
    if config["custom_networking"] == true {
        writeln!(
            out,
            "ENIConfig: {} (chosen by {}), {}",
            config["name"].as_str().unwrap_or("none"),
            config["rule"].as_str().unwrap_or("-"),
            config["target"]["state"].as_str().unwrap_or("?")
        )?;
        if let Some(reason) = config["target"]["reason"].as_str() {
            writeln!(out, "  {reason}")?;
        }
    } else {
        writeln!(out, "custom networking off: pod ENIs in the node's subnet")?;
    }
    if let Some(e) = &pool.last_ec2_error {
        writeln!(out, "last EC2 error: {e}")?;
    }
    writeln!(
        out,
        "\n{:<23} {:>3} {:>5} {:<16} {:<8} {:>9}  groups",
        "ENI", "dev", "table", "subnet", "flags", "assigned"
    )?;
    for e in &enis.enis {
        let assigned = e.addresses.iter().filter(|a| a.assigned).count();
        let flags: Vec<&str> = [
            (e.primary, "primary"),
            (e.excluded, "excl"),
            (e.stale, "stale"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, label)| *label)
        .collect();
        writeln!(
            out,
            "{:<23} {:>3} {:>5} {:<16} {:<8} {:>9}  {}",
            e.id,
            e.device_number,
            e.route_table,
            e.subnet_cidr,
            flags.join(","),
            format!("{assigned}/{}", e.addresses.len()),
            e.security_groups.join(",")
        )?;
    }
    Ok(())
}
