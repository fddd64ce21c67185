//! `vpcctl status`: a running node's ENIs, pool, targets and ENIConfig, from its introspection
//! endpoint (loopback on the node).

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
    if args.json {
        let all = serde_json::json!({"enis": enis, "pool": pool, "eni_config": config});
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
    Ok(())
}
