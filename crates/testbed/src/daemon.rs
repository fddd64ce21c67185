//! The run's supervisor, started in the background by `vpc-testbed up`: it owns the emulator,
//! builds the namespaces, serves the relays and follows EC2 (hypervisor and router) until
//! SIGTERM, then removes everything it made.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::TestbedError;
use crate::agents::{self, NodeDir};
use crate::config::{Config, NodeRuntime};
use crate::containerd;
use crate::emulator::{EmulatorProcess, http_json};
use crate::fabric::{EC2_RELAY_PORT, Fabric, METADATA_ADDR, Names};
use crate::network::Snapshot;
use crate::seed;
use crate::state::{NodeStatus, Status, state_dir};

pub struct DaemonOptions {
    pub prefix: String,
    pub config: Option<PathBuf>,
    pub no_agents: bool,
}

fn log(line: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!("{}.{:03} {line}", now.as_secs(), now.subsec_millis());
}

/// Runs until SIGTERM/SIGINT; the caller sweeps afterwards whatever the outcome.
pub fn run(options: &DaemonOptions) -> Result<(), TestbedError> {
    let config = Config::load(options.config.as_deref())?;
    let dir = state_dir(&options.prefix);
    let sock_dir = dir.join("sock");
    std::fs::create_dir_all(&sock_dir)
        .map_err(|e| TestbedError::Other(format!("create {}: {e}", sock_dir.display())))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| TestbedError::Other(format!("tokio runtime: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        runtime.spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            stop.store(true, Ordering::SeqCst);
        });
    }

    let emulator_log = std::fs::File::create(dir.join("emulator.log"))
        .map_err(|e| TestbedError::Other(format!("emulator log: {e}")))?;
    let mut emulator_log = std::io::LineWriter::new(emulator_log);
    let emulator = EmulatorProcess::start(
        &["--sock-dir".into(), sock_dir.display().to_string()],
        Box::new(move |line| {
            let _ = writeln!(emulator_log, "{line}");
        }),
    )?;
    log(&format!(
        "emulator {} (pid {})",
        emulator.endpoint,
        emulator.pid()
    ));

    let sdk = runtime.block_on(sdk_client(&emulator.endpoint, &config.region));
    let seeded = runtime.block_on(seed::seed(&sdk, &config))?;
    log(&format!(
        "seeded {}: {} subnets, {} instances",
        seeded.vpc_id,
        seeded.subnets.len(),
        seeded.instances.len()
    ));

    let names = Names {
        prefix: options.prefix.clone(),
    };
    let mut fabric = Fabric::new(
        names.clone(),
        &seeded.vpc_id,
        config.vpc_cidrs(),
        config.nat_gateway,
    );
    fabric.build_base()?;
    let mut nodes = Vec::new();
    for n in &config.nodes {
        let instance_id = &seeded.instances[&n.name];
        let slot = fabric.add_node(&n.name, instance_id)?;
        let imds = listen(&slot.netns, METADATA_ADDR, 80)?;
        let ec2 = listen(&slot.netns, "127.0.0.1", EC2_RELAY_PORT)?;
        runtime.spawn(crate::relay::serve(
            imds,
            sock_dir.join(format!("imds-{instance_id}.sock")),
        ));
        runtime.spawn(crate::relay::serve(ec2, sock_dir.join("ec2.sock")));
        nodes.push((n, slot, instance_id.clone()));
    }

    let mut snapshot = fetch(&emulator, None)?;
    fabric.reconcile(&snapshot)?;

    // The nodes' own containerd, before their ipamd: like a node's runtime, it waits for the
    // CNI config ipamd writes once it can serve pods.
    let images_dir = dir.join("images");
    std::fs::create_dir_all(&images_dir)
        .map_err(|e| TestbedError::Other(format!("create {}: {e}", images_dir.display())))?;
    let mut runtimes = Vec::new();
    for (n, slot, _) in &nodes {
        if n.runtime != NodeRuntime::Containerd {
            continue;
        }
        let cdir = containerd::prepare(&NodeDir::new(&dir, &n.name))?;
        let child = containerd::start(&slot.netns, &cdir)?;
        containerd::import_images(&cdir, &images_dir)?;
        log(&format!(
            "{}: containerd (pid {}) serves its CRI at {}",
            n.name,
            child.id(),
            cdir.socket().display()
        ));
        runtimes.push((n.name.clone(), cdir, child));
    }
    let status = Status {
        prefix: options.prefix.clone(),
        ec2_endpoint: emulator.endpoint.clone(),
        region: config.region.clone(),
        vpc_id: seeded.vpc_id.clone(),
        daemon_pid: std::process::id(),
        emulator_pid: emulator.pid(),
        state_dir: dir.display().to_string(),
        namespaces: crate::cmd::namespaces_with_prefix(&format!("{}-", options.prefix))?,
        nodes: nodes
            .iter()
            .map(|(n, slot, instance_id)| {
                let eni0 = snapshot
                    .instance(instance_id)
                    .and_then(|i| i.enis.iter().find(|e| e.device_index == Some(0)));
                NodeStatus {
                    name: n.name.clone(),
                    netns: slot.netns.clone(),
                    instance_id: instance_id.clone(),
                    az: snapshot
                        .instance(instance_id)
                        .map(|i| i.az.clone())
                        .unwrap_or_default(),
                    primary_ip: eni0.map(|e| e.primary_ip.to_string()).unwrap_or_default(),
                    introspection: node_contract::INTROSPECTION_ADDRESS.to_string(),
                    manifests_dir: NodeDir::new(&dir, &n.name)
                        .manifests()
                        .display()
                        .to_string(),
                    ipamd_pid: None,
                    cri_socket: runtimes
                        .iter()
                        .find(|(name, _, _)| *name == n.name)
                        .map(|(_, cdir, _)| cdir.socket().display().to_string()),
                    containerd_pid: runtimes
                        .iter()
                        .find(|(name, _, _)| *name == n.name)
                        .map(|(_, _, child)| child.id()),
                }
            })
            .collect(),
        pods: Vec::new(),
    };
    let mut status = status;
    let mut agents = Vec::new();
    // The API server's objects exist with or without agents: an ipamd started later reads them.
    for (n, _, _) in &nodes {
        agents::initial_manifests(
            &NodeDir::new(&dir, &n.name).manifests(),
            &config,
            n,
            &seeded,
        )?;
    }
    if !options.no_agents {
        for ((n, slot, _), node_status) in nodes.iter().zip(status.nodes.iter_mut()) {
            let node_dir = NodeDir::new(&dir, &n.name);
            let child = agents::start_ipamd(&slot.netns, &node_dir, &config.region, &config, n)?;
            node_status.ipamd_pid = Some(child.id());
            agents.push(child);
        }
        // Ready means every node that can serve pods does; a node whose ENIConfig is missing
        // stays not network-ready (by design) and is reported.
        let started = std::time::Instant::now();
        let conflists: Vec<(String, PathBuf)> = nodes
            .iter()
            .map(|(n, _, _)| (n.name.clone(), NodeDir::new(&dir, &n.name).conflist()))
            .collect();
        let settled = |name: &str, conflist: &std::path::Path| {
            conflist.exists()
                || blocked(
                    &crate::fabric::Names {
                        prefix: options.prefix.clone(),
                    }
                    .node(name),
                )
        };
        while started.elapsed() < Duration::from_secs(20)
            && !conflists.iter().all(|(name, p)| settled(name, p))
        {
            if let Ok(next) = fetch(&emulator, Some(snapshot.version))
                && next.version != snapshot.version
            {
                snapshot = next;
                if let Err(e) = fabric.reconcile(&snapshot) {
                    log(&format!("reconcile: {e}"));
                }
            }
        }
        for (name, path) in &conflists {
            if !path.exists() {
                log(&format!(
                    "{name} is not network-ready after {:?}: see its ipamd.log",
                    started.elapsed()
                ));
            }
        }
    }
    status
        .write()
        .map_err(|e| TestbedError::Other(format!("write status: {e}")))?;
    log("ready");

    // Follow EC2: the long poll returns as soon as anything changes.
    while !stop.load(Ordering::SeqCst) {
        match fetch(&emulator, Some(snapshot.version)) {
            Ok(next) if next.version != snapshot.version => {
                snapshot = next;
                if let Err(e) = fabric.reconcile(&snapshot) {
                    log(&format!("reconcile: {e}"));
                }
            }
            Ok(_) => {}
            Err(e) => {
                log(&format!("network snapshot: {e}"));
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    log("stopping");
    // Pods go first, while ipamd still answers their DELs.
    for (name, cdir, mut child) in runtimes {
        for e in containerd::stop(&cdir) {
            log(&format!("{name}: stopping containerd: {e}"));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    for a in &agents {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(a.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    // Bounded: an agent that does not stop in time is killed; the sweep checks afterwards.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    for mut a in agents {
        while std::time::Instant::now() < until && matches!(a.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = a.kill();
        let _ = a.wait();
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    emulator.stop();
    Ok(())
}

/// The node's ipamd says it cannot serve pods (e.g. its ENIConfig is missing): waiting for its
/// CNI config would be waiting for nothing.
fn blocked(netns: &str) -> bool {
    let Ok(ns) = netns::Netns::named(netns) else {
        return false;
    };
    ns.run(|| {
        http_json(
            node_contract::INTROSPECTION_PORT,
            "GET",
            node_contract::introspection::ENI_CONFIGS_PATH,
            None,
            Duration::from_secs(2),
        )
    })
    .ok()
    .and_then(Result::ok)
    .is_some_and(|(_, body)| body["target"]["state"] == "blocked")
}

fn listen(netns: &str, addr: &str, port: u16) -> Result<std::net::TcpListener, TestbedError> {
    let addr: SocketAddr = format!("{addr}:{port}")
        .parse()
        .map_err(|e| TestbedError::Other(format!("relay address {addr}:{port}: {e}")))?;
    Ok(crate::relay::listen_in(netns, addr)?)
}

fn fetch(emulator: &EmulatorProcess, after: Option<u64>) -> Result<Snapshot, TestbedError> {
    let path = match after {
        Some(v) => format!("/_testbed/network?after={v}&timeout=1"),
        None => "/_testbed/network".to_string(),
    };
    let (status, body) = http_json(emulator.port(), "GET", &path, None, Duration::from_secs(30))?;
    if status != 200 {
        return Err(TestbedError::Other(format!(
            "GET {path}: HTTP {status}: {body}"
        )));
    }
    serde_json::from_value(body).map_err(|e| TestbedError::Other(format!("GET {path}: {e}")))
}

/// An SDK client for the emulator with dummy credentials.
pub async fn sdk_client(endpoint: &str, region: &str) -> aws_sdk_ec2::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testbed", "testbed", None, None, "testbed",
        ))
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_ec2::Client::new(&config)
}

/// The daemon's log, for `up` to show when the daemon fails.
pub fn log_path(prefix: &str) -> PathBuf {
    state_dir(prefix).join("daemon.log")
}

/// The last lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
