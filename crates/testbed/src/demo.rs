//! `vpc-testbed demo`: pods on every node of a running testbed, a table of where their
//! addresses come from, and a connectivity matrix checked by real connections. Every cell
//! has an expectation; the demo fails if any is not met.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::TestbedError;
use crate::emulator::http_json;
use crate::fabric::INTERNET_HOST;
use crate::pods::{self, PodOptions};
use crate::state::Status;

const ALLOWED: u16 = 8080;
const BLOCKED: u16 = 9090;
const INTERNET_PORT: u16 = 443;

struct Pod {
    node: String,
    name: String,
    netns: String,
    ip: Ipv4Addr,
}

fn other(m: String) -> TestbedError {
    TestbedError::Other(m)
}

fn listen(netns: &str, addr: SocketAddr) -> Result<TcpListener, TestbedError> {
    let ns = netns::Netns::named(netns).map_err(|e| other(e.to_string()))?;
    let l = ns
        .run(|| TcpListener::bind(addr))
        .map_err(|e| other(e.to_string()))?
        .map_err(|e| other(format!("listen on {addr} in {netns}: {e}")))?;
    let accept = l.try_clone().map_err(|e| other(e.to_string()))?;
    std::thread::spawn(move || {
        for s in accept.incoming().flatten() {
            drop(s);
        }
    });
    Ok(l)
}

fn reaches(netns: &str, to: SocketAddr) -> bool {
    let Ok(ns) = netns::Netns::named(netns) else {
        return false;
    };
    ns.run(|| TcpStream::connect_timeout(&to, Duration::from_millis(1500)).is_ok())
        .unwrap_or(false)
}

/// Where an address lives, from the node's own introspection.
fn placement(node_netns: &str, ip: Ipv4Addr) -> Option<(String, String, String)> {
    let ns = netns::Netns::named(node_netns).ok()?;
    let (_, body) = ns
        .run(|| {
            http_json(
                node_contract::INTROSPECTION_PORT,
                "GET",
                node_contract::introspection::ENIS_PATH,
                None,
                Duration::from_secs(5),
            )
        })
        .ok()?
        .ok()?;
    body["enis"].as_array()?.iter().find_map(|e| {
        let holds = e["addresses"]
            .as_array()?
            .iter()
            .any(|a| a["address"] == ip.to_string());
        holds.then(|| {
            (
                e["id"].as_str().unwrap_or_default().to_string(),
                e["subnet_cidr"].as_str().unwrap_or_default().to_string(),
                e["security_groups"]
                    .as_array()
                    .map(|g| {
                        g.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default(),
            )
        })
    })
}

/// Runs the demo on the testbed `prefix` (already up); true when every expectation held.
pub fn run(prefix: &str, pods_per_node: usize) -> Result<bool, TestbedError> {
    let status =
        Status::read(prefix).ok_or_else(|| other(format!("testbed {prefix} is not up")))?;
    let mut pods = Vec::new();
    for n in &status.nodes {
        for i in 1..=pods_per_node {
            let name = format!("web-{}{i}", n.name.trim_start_matches("node-"));
            let options = PodOptions {
                conflist: None,
                cni_version: None,
            };
            let result = pods::add(prefix, &n.name, &name, "default", &options)?;
            let ip: Ipv4Addr = result["ips"][0]["address"]
                .as_str()
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| other(format!("no address in the result for {name}: {result}")))?;
            pods.push(Pod {
                node: n.name.clone(),
                name: name.clone(),
                netns: format!("{prefix}-{}-default-{name}", n.name),
                ip,
            });
        }
    }
    println!("\nPods (addresses from the ENIConfig's subnet of each node's zone):\n");
    println!(
        "{:<10} {:<8} {:<15} {:<23} {:<16} security groups",
        "pod", "node", "address", "ENI", "subnet"
    );
    let mut ok = true;
    for p in &pods {
        let node = status
            .nodes
            .iter()
            .find(|n| n.name == p.node)
            .map(|n| n.netns.clone())
            .unwrap_or_default();
        let (eni, subnet, groups) = placement(&node, p.ip).unwrap_or_default();
        let primary_subnet = subnet.starts_with("10.");
        if primary_subnet || eni.is_empty() {
            ok = false;
        }
        println!(
            "{:<10} {:<8} {:<15} {:<23} {:<16} {groups}{}",
            p.name,
            p.node,
            p.ip,
            eni,
            subnet,
            if primary_subnet {
                "   <- expected a pod subnet"
            } else {
                ""
            }
        );
    }

    let mut listeners = Vec::new();
    for p in &pods {
        for port in [ALLOWED, BLOCKED] {
            listeners.push(listen(&p.netns, SocketAddr::from((p.ip, port)))?);
        }
    }
    let internet: Ipv4Addr = INTERNET_HOST
        .parse()
        .map_err(|_| other("internet host".into()))?;
    listeners.push(listen(
        &format!("{prefix}-inet"),
        SocketAddr::from((internet, INTERNET_PORT)),
    )?);

    println!(
        "\nConnectivity, by real connections (tcp/{ALLOWED} is allowed by the pods group, tcp/{BLOCKED} is not; ! marks a surprise):\n"
    );
    let mut header = format!("{:<10}", "from \\ to");
    for q in &pods {
        header.push_str(&format!(
            " {:<13}",
            format!("{}:{ALLOWED}/{BLOCKED}", q.name)
        ));
    }
    header.push_str(&format!(" internet:{INTERNET_PORT}"));
    println!("{header}");
    for p in &pods {
        let mut row = format!("{:<10}", p.name);
        for q in &pods {
            if p.name == q.name {
                row.push_str(&format!(" {:<13}", "-"));
                continue;
            }
            let a = reaches(&p.netns, SocketAddr::from((q.ip, ALLOWED)));
            // Same node: traffic stays on the node and no security group applies (as on EC2).
            let same_node = p.node == q.node;
            let b = reaches(&p.netns, SocketAddr::from((q.ip, BLOCKED)));
            let cell_ok = a && (b == same_node);
            ok &= cell_ok;
            let mark = |v: bool| if v { "ok" } else { "no" };
            row.push_str(&format!(
                " {:<13}",
                format!("{}/{}{}", mark(a), mark(b), if cell_ok { "" } else { " !" })
            ));
        }
        let i = reaches(&p.netns, SocketAddr::from((internet, INTERNET_PORT)));
        ok &= i;
        row.push_str(&format!(" {}", if i { "ok (SNAT)" } else { "no !" }));
        println!("{row}");
    }
    drop(listeners);
    println!(
        "\nExpected: every pod reaches every pod on {ALLOWED}; {BLOCKED} only on its own node; the internet through the node's SNAT."
    );
    println!(
        "{}",
        if ok {
            "demo: every expectation held"
        } else {
            "demo: FAILED (cells marked !)"
        }
    );
    for p in &pods {
        pods::del(prefix, &p.node, &p.name, "default")?;
    }
    Ok(ok)
}
