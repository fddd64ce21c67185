//! A small client for `scripts/bench`: drives ipamd's CNIBackend over its socket and prints one
//! line of `key=value` figures.
//!
//! ```text
//! ipamd-bench roundtrip ADDRESS N     N AddNetwork + DelNetwork over one connection: p50/p99/max
//! ipamd-bench hold ADDRESS N TAG      N allocations keyed TAG-0..N-1, kept
//! ipamd-bench release ADDRESS N TAG   gives them back
//! ipamd-bench first ADDRESS SECONDS   retries AddNetwork (then releases) until one succeeds:
//!                                     prints the wall clock of the first address
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rpc::cni_backend_client::CniBackendClient;
use rpc::{AddNetworkRequest, DelNetworkRequest};
use tonic::transport::Channel;

const TIMEOUT: Duration = Duration::from_secs(3);
const NETWORK: &str = "aws-cni";

fn add_request(container: &str) -> AddNetworkRequest {
    AddNetworkRequest {
        client_version: "ipamd-bench".into(),
        k8s_pod_name: container.into(),
        k8s_pod_namespace: "bench".into(),
        k8s_pod_infra_container_id: container.into(),
        netns: "/run/netns/none".into(),
        if_name: "eth0".into(),
        network_name: NETWORK.into(),
        container_id: container.into(),
        requires_multi_nic_attachment: false,
    }
}

fn del_request(container: &str) -> DelNetworkRequest {
    DelNetworkRequest {
        client_version: "ipamd-bench".into(),
        k8s_pod_name: container.into(),
        k8s_pod_namespace: "bench".into(),
        k8s_pod_infra_container_id: container.into(),
        reason: "PodDeleted".into(),
        if_name: "eth0".into(),
        network_name: NETWORK.into(),
        container_id: container.into(),
        ..Default::default()
    }
}

async fn add(client: &mut CniBackendClient<Channel>, container: &str) -> Result<String, String> {
    let reply = client
        .add_network(add_request(container))
        .await
        .map_err(|s| format!("AddNetwork {container}: {}", s.message()))?
        .into_inner();
    match reply.ip_allocation_metadata.first() {
        Some(m) if reply.success => Ok(m.i_pv4_addr.clone()),
        _ => Err(format!(
            "AddNetwork {container}: answered without an address"
        )),
    }
}

async fn del(client: &mut CniBackendClient<Channel>, container: &str) -> Result<(), String> {
    client
        .del_network(del_request(container))
        .await
        .map(|_| ())
        .map_err(|s| format!("DelNetwork {container}: {}", s.message()))
}

/// The `q`-quantile (nearest rank) of sorted samples, in microseconds.
fn quantile_us(sorted: &[Duration], q: f64) -> u128 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_micros()
}

fn summary(name: &str, mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "{name}_p50_us={} {name}_p99_us={} {name}_max_us={}",
        quantile_us(&samples, 0.5),
        quantile_us(&samples, 0.99),
        quantile_us(&samples, 1.0)
    )
}

async fn connect(address: &str) -> Result<CniBackendClient<Channel>, String> {
    rpc::connect(address, TIMEOUT)
        .await
        .map_err(|e| format!("connect to ipamd at {address}: {e}"))
}

fn count(arg: Option<&String>) -> Result<usize, String> {
    let text = arg.ok_or("missing count")?;
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("count {text:?} is not a positive integer")),
    }
}

async fn run(args: &[String]) -> Result<String, String> {
    let (verb, address) = match args {
        [verb, address, ..] => (verb.as_str(), address.as_str()),
        _ => return Err("usage: ipamd-bench roundtrip|hold|release|first ADDRESS …".into()),
    };
    let tag = || args.get(3).cloned().ok_or("missing TAG".to_string());
    match verb {
        "roundtrip" => {
            let n = count(args.get(2))?;
            let mut client = connect(address).await?;
            let (mut adds, mut dels) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for i in 0..n {
                let container = format!("rt-{i}");
                let t = Instant::now();
                add(&mut client, &container).await?;
                adds.push(t.elapsed());
                let t = Instant::now();
                del(&mut client, &container).await?;
                dels.push(t.elapsed());
            }
            Ok(format!(
                "n={n} {} {}",
                summary("add", adds),
                summary("del", dels)
            ))
        }
        "hold" | "release" => {
            let (n, tag) = (count(args.get(2))?, tag()?);
            let mut client = connect(address).await?;
            for i in 0..n {
                let container = format!("{tag}-{i}");
                if verb == "hold" {
                    add(&mut client, &container).await?;
                } else {
                    del(&mut client, &container).await?;
                }
            }
            Ok(format!("{verb}={n}"))
        }
        "first" => {
            let seconds: f64 = args
                .get(2)
                .and_then(|s| s.parse().ok())
                .ok_or("first needs a timeout in seconds")?;
            let path = address.strip_prefix("unix://").unwrap_or(address);
            let until = Instant::now() + Duration::from_secs_f64(seconds);
            let mut last = String::from("the socket never appeared");
            while Instant::now() < until {
                if std::path::Path::new(path).exists() {
                    match connect(address).await {
                        Ok(mut client) => match add(&mut client, "first").await {
                            Ok(ip) => {
                                let at = SystemTime::now()
                                    .duration_since(UNIX_EPOCH)
                                    .map_err(|e| e.to_string())?;
                                del(&mut client, "first").await?;
                                return Ok(format!("first_at={:.3} ip={ip}", at.as_secs_f64()));
                            }
                            Err(e) => last = e,
                        },
                        Err(e) => last = e,
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(format!("no address within {seconds} s: {last}"))
        }
        other => Err(format!(
            "verb {other:?} is not roundtrip, hold, release or first"
        )),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ipamd-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
