//! `vpcctl status`: a running node's ENIs, pool, targets, ENIConfig and the subnets its pods
//! use (free, held by pods, held warm), from its introspection endpoint (loopback on the node).

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
    let subnets = client.subnets().map_err(failed)?;
    if args.json {
        let all = serde_json::json!({"enis": enis, "pool": pool, "eni_config": config, "subnets": subnets});
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
    write_subnets(&subnets, out)
}

/// The subnets the node's pods use or may use: EC2's last free count, and what this node holds
/// there (on its ENIs; assigned to pods; warm).
fn write_subnets(subnets: &contract::Subnets, out: &mut impl Write) -> Result<(), CliError> {
    let how = match (&subnets.eniconfig, subnets.subnet_discovery) {
        (Some(name), _) if subnets.custom_networking => format!("ENIConfig {name}"),
        (_, true) => "subnet discovery".to_string(),
        _ => "the node's subnet".to_string(),
    };
    let age = subnets
        .read_s_ago
        .map(|s| format!("{s} s ago"))
        .unwrap_or_else(|| "not yet".to_string());
    writeln!(
        out,
        "\nsubnets ({how}; free as EC2 last said it, {age}; held: on this node's ENIs)"
    )?;
    writeln!(
        out,
        "{:<26} {:<18} {:<12} {:>6} {:>5} {:>5} {:>5}  state",
        "SUBNET", "CIDR", "ZONE", "FREE", "HELD", "PODS", "WARM"
    )?;
    for s in &subnets.subnets {
        let mut state = vec![
            if s.candidate {
                "new ENIs"
            } else {
                "no new ENIs"
            }
            .to_string(),
        ];
        if let Some(n) = s.full_backoff_s {
            state.push(format!("full ({n} s)"));
        }
        if let Some(n) = s.no_prefix_backoff_s {
            state.push(format!("no /28 ({n} s)"));
        }
        writeln!(
            out,
            "{:<26} {:<18} {:<12} {:>6} {:>5} {:>5} {:>5}  {}",
            s.id,
            s.cidr.as_deref().unwrap_or("?"),
            s.availability_zone.as_deref().unwrap_or("?"),
            s.free.map_or("-".to_string(), |n| n.to_string()),
            s.held,
            s.assigned,
            s.warm,
            state.join(", ")
        )?;
    }
    for x in &subnets.excluded {
        writeln!(out, "{:<26} excluded: {}", x.id, x.reason)?;
    }
    Ok(())
}
