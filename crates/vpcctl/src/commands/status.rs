//! `vpcctl status`: a running node's ENIs, pool, targets, ENIConfig and the subnets its pods
//! use (free, held by pods, held warm), from its introspection endpoint (loopback on the node).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// ipamd's introspection address.
    #[arg(long, default_value = "127.0.0.1:61679")]
    address: String,
    #[arg(long)]
    json: bool,
}

fn get(address: &str, path: &str) -> Result<Value, CliError> {
    let fail = |e: String| CliError::Failed(format!("ipamd introspection at {address}{path}: {e}"));
    let addr = address
        .parse()
        .map_err(|_| CliError::Input(format!("--address {address:?} is not host:port")))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| fail(e.to_string()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| fail(e.to_string()))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).map_err(|e| fail(format!("not JSON: {e}")))
}

pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let enis = get(&args.address, "/v1/enis")?;
    let pool = get(&args.address, "/v1/pool")?;
    let config = get(&args.address, "/v1/eni-configs")?;
    let subnets = get(&args.address, "/v1/subnets")?;
    if args.json {
        let all = serde_json::json!({"enis": enis, "pool": pool, "eni_config": config, "subnets": subnets});
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&all).unwrap_or_default()
        )?;
        return Ok(());
    }
    let s = &pool["stats"];
    writeln!(
        out,
        "node {} ({}), max pods {}, network-ready {}",
        enis["instance_id"].as_str().unwrap_or("?"),
        pool["instance_type"].as_str().unwrap_or("?"),
        pool["max_pods"],
        pool["network_ready"]
    )?;
    writeln!(
        out,
        "pool: {} addresses, {} assigned, {} available ({} cooling down), {} prefixes; next: {}",
        s["total"],
        s["assigned"],
        pool["available"],
        s["cooling_down"],
        s["total_prefixes"],
        pool["next_action"]["action"].as_str().unwrap_or("?")
    )?;
    let t = &pool["targets"];
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
    if let Some(e) = pool["last_ec2_error"].as_str() {
        writeln!(out, "last EC2 error: {e}")?;
    }
    writeln!(
        out,
        "\n{:<23} {:>3} {:>5} {:<16} {:<8} {:>9}  groups",
        "ENI", "dev", "table", "subnet", "flags", "assigned"
    )?;
    for e in enis["enis"].as_array().into_iter().flatten() {
        let addresses = e["addresses"].as_array().map(Vec::len).unwrap_or(0);
        let assigned = e["addresses"]
            .as_array()
            .map(|a| a.iter().filter(|x| x["assigned"] == true).count())
            .unwrap_or(0);
        let mut flags = Vec::new();
        for (key, label) in [
            ("primary", "primary"),
            ("excluded", "excl"),
            ("stale", "stale"),
        ] {
            if e[key] == true {
                flags.push(label);
            }
        }
        let groups: Vec<&str> = e["security_groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str())
            .collect();
        writeln!(
            out,
            "{:<23} {:>3} {:>5} {:<16} {:<8} {:>9}  {}",
            e["id"].as_str().unwrap_or("?"),
            e["device_number"],
            e["route_table"],
            e["subnet_cidr"].as_str().unwrap_or("?"),
            flags.join(","),
            format!("{assigned}/{addresses}"),
            groups.join(",")
        )?;
    }
    write_subnets(&subnets, out)
}

/// The subnets the node's pods use or may use: EC2's last free count, and what this node holds
/// there (on its ENIs; assigned to pods; warm).
fn write_subnets(subnets: &Value, out: &mut impl Write) -> Result<(), CliError> {
    let how = if subnets["custom_networking"] == true {
        format!("ENIConfig {}", subnets["eniconfig"].as_str().unwrap_or("?"))
    } else if subnets["subnet_discovery"] == true {
        "subnet discovery".to_string()
    } else {
        "the node's subnet".to_string()
    };
    let age = subnets["read_s_ago"]
        .as_u64()
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
    let show = |v: &Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
    for s in subnets["subnets"].as_array().into_iter().flatten() {
        let mut state = vec![
            if s["candidate"] == true {
                "new ENIs"
            } else {
                "no new ENIs"
            }
            .to_string(),
        ];
        if let Some(n) = s["full_backoff_s"].as_u64() {
            state.push(format!("full ({n} s)"));
        }
        if let Some(n) = s["no_prefix_backoff_s"].as_u64() {
            state.push(format!("no /28 ({n} s)"));
        }
        writeln!(
            out,
            "{:<26} {:<18} {:<12} {:>6} {:>5} {:>5} {:>5}  {}",
            s["id"].as_str().unwrap_or("?"),
            s["cidr"].as_str().unwrap_or("?"),
            s["availability_zone"].as_str().unwrap_or("?"),
            show(&s["free"]),
            show(&s["held"]),
            show(&s["assigned"]),
            show(&s["warm"]),
            state.join(", ")
        )?;
    }
    for x in subnets["excluded"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "{:<26} excluded: {}",
            x["id"].as_str().unwrap_or("?"),
            x["reason"].as_str().unwrap_or("?")
        )?;
    }
    Ok(())
}
