//! `vpc-testbed`: bring a VPC of network namespaces up and down, inspect it, run commands in it.

use std::io::{Read, Seek};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use testbed::daemon::{self, DaemonOptions};
use testbed::pods::PodRuntime;
use testbed::state::{Status, state_dir};
use testbed::{emulator, sweep};

#[derive(Parser)]
#[command(
    name = "vpc-testbed",
    version,
    about = "AWS on one machine: an EC2 emulator and a VPC of network namespaces"
)]
struct Cli {
    /// Prefix of every namespace and of the state directory, so runs can coexist (a-z, 0-9).
    #[arg(long, env = "VPC_TESTBED_PREFIX", default_value = "vtb", value_parser = parse_prefix, global = true)]
    prefix: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the emulator, seed EC2, build the namespaces and relays; return when ready.
    Up {
        /// testbed.yaml (default: the reference document's two-zone custom-networking VPC).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Do not start ipamd on the nodes.
        #[arg(long)]
        no_agents: bool,
    },
    /// Remove everything `up` made.
    Down,
    /// Endpoints, nodes, namespaces and pods.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a node's (`node`) or a pod's (`node/pod`) namespace.
    Exec {
        target: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Up, pods on every node, a table of addresses and a connectivity matrix, down. Fails if
    /// any expectation fails.
    Demo {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "2")]
        pods_per_node: usize,
    },
    /// Create or delete a pod with the node's real CNI plugins (`--runtime cni`: the testbed runs
    /// the conflist, `add` prints the CNI result) or through the node's containerd (`--runtime
    /// cri`: a sandbox with a listener on port 8080, as a kubelet asks for it).
    Pod {
        #[command(subcommand)]
        action: PodCmd,
    },
    /// Add or replace Node and ENIConfig objects in the standalone manifests of every node (or
    /// one); each ipamd picks them up while running.
    Apply {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[arg(long)]
        node: Option<String>,
    },
    /// Remove an object from the nodes' manifests.
    Delete {
        /// Only `eniconfig` for now.
        kind: String,
        name: String,
        #[arg(long)]
        node: Option<String>,
    },
    /// Run the EC2 and instance-metadata emulator alone, in the foreground, with empty state.
    Ec2 {
        #[arg(long, default_value = "127.0.0.1:5000")]
        listen: String,
        /// Further emulator options (see emulator/README.md).
        #[arg(last = true)]
        args: Vec<String>,
    },
    #[command(hide = true)]
    Daemon {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        no_agents: bool,
    },
}

#[derive(Subcommand)]
enum PodCmd {
    Add {
        node: String,
        name: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        /// `cni`: run the node's conflist; `cri`: ask the node's containerd (runtime: containerd).
        #[arg(long, value_enum, default_value = "cni")]
        runtime: PodRuntime,
        /// Use this conflist instead of the node's (`--runtime cni`).
        #[arg(long)]
        conflist: Option<PathBuf>,
        /// Ask the plugins for this CNI version (`--runtime cni`).
        #[arg(long)]
        cni_version: Option<String>,
    },
    Del {
        node: String,
        name: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Default: the runtime that made the pod.
        #[arg(long, value_enum)]
        runtime: Option<PodRuntime>,
    },
    /// Run CHECK (or another verb) on a pod with its recorded result.
    Invoke {
        node: String,
        name: String,
        command: String,
        #[arg(long, default_value = "default")]
        namespace: String,
    },
}

fn parse_prefix(v: &str) -> Result<String, String> {
    if !v.is_empty()
        && v.len() <= 8
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        Ok(v.to_string())
    } else {
        Err("expected 1 to 8 characters of a-z and 0-9".to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Up { config, no_agents } => up(&cli.prefix, config, no_agents),
        Cmd::Down => down(&cli.prefix),
        Cmd::Status { json } => status(&cli.prefix, json),
        Cmd::Exec { target, command } => exec(&cli.prefix, &target, &command),
        Cmd::Ec2 { listen, args } => ec2(&listen, &args),
        Cmd::Pod { action } => pod(&cli.prefix, action),
        Cmd::Demo {
            config,
            pods_per_node,
        } => demo(&cli.prefix, config, pods_per_node),
        Cmd::Apply { file, node } => apply(&cli.prefix, &file, node.as_deref()),
        Cmd::Delete { kind, name, node } => delete(&cli.prefix, &kind, &name, node.as_deref()),
        Cmd::Daemon { config, no_agents } => {
            let options = DaemonOptions {
                prefix: cli.prefix.clone(),
                config,
                no_agents,
            };
            let result = daemon::run(&options).map_err(|e| e.to_string());
            for e in sweep::sweep(&cli.prefix) {
                eprintln!("sweep: {e}");
            }
            result
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpc-testbed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Alive and not a zombie (a demo's own `up` leaves its daemon as an unreaped child).
fn daemon_alive(status: &Status) -> bool {
    sweep::alive(status.daemon_pid as i32)
}

fn up(prefix: &str, config: Option<PathBuf>, no_agents: bool) -> Result<(), String> {
    // Refuse a bad config here, before anything is started.
    testbed::config::Config::load(config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(s) = Status::read(prefix)
        && daemon_alive(&s)
    {
        return Err(format!(
            "testbed {prefix} is already up (daemon pid {}); run `vpc-testbed down` first",
            s.daemon_pid
        ));
    }
    for e in sweep::sweep(prefix) {
        eprintln!("vpc-testbed: leftover clean-up: {e}");
    }
    let dir = state_dir(prefix);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let log = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(daemon::log_path(prefix))
        .map_err(|e| format!("daemon log: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args(["--prefix", prefix, "daemon"]);
    if let Some(c) = &config {
        let c = c
            .canonicalize()
            .map_err(|e| format!("{}: {e}", c.display()))?;
        cmd.arg("--config").arg(c);
    }
    if no_agents {
        cmd.arg("--no-agents");
    }
    // Read through our own handle: a daemon that fails sweeps its state directory, log included.
    let mut log_reader = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("start the testbed daemon: {e}"))?;
    let started = Instant::now();
    let limit = Duration::from_secs(120);
    loop {
        if Status::read(prefix).is_some() {
            break;
        }
        if let Ok(Some(code)) = child.try_wait() {
            let mut text = String::new();
            let _ = log_reader.rewind();
            let _ = log_reader.read_to_string(&mut text);
            let lines: Vec<&str> = text.lines().collect();
            return Err(format!(
                "the testbed daemon stopped ({code}) before it was ready:\n{}",
                lines[lines.len().saturating_sub(30)..].join("\n")
            ));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            return Err(format!(
                "the testbed was not ready within {limit:?}:\n{}",
                daemon::tail(&daemon::log_path(prefix), 30)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = Status::read(prefix).ok_or("status vanished")?;
    println!(
        "testbed {prefix} up in {:.1} s: EC2 {} ({}), {} nodes",
        started.elapsed().as_secs_f64(),
        s.ec2_endpoint,
        s.vpc_id,
        s.nodes.len()
    );
    for n in &s.nodes {
        println!("  {}", node_line(n));
    }
    Ok(())
}

fn down(prefix: &str) -> Result<(), String> {
    if let Some(s) = Status::read(prefix)
        && daemon_alive(&s)
    {
        let pid = nix::unistd::Pid::from_raw(s.daemon_pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let started = Instant::now();
        while daemon_alive(&s) && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let errors = sweep::sweep(prefix);
    if errors.is_empty() {
        println!("testbed {prefix} down");
        Ok(())
    } else {
        Err(format!(
            "clean-up of {prefix} was incomplete:\n  {}",
            errors.join("\n  ")
        ))
    }
}

/// Name, instance, zone, address, namespace, and its containerd's CRI socket if it runs one.
fn node_line(n: &testbed::state::NodeStatus) -> String {
    let runtime = n
        .cri_socket
        .as_ref()
        .map(|s| format!(", containerd (CRI {s})"))
        .unwrap_or_default();
    format!(
        "{:<10} {:<20} {:<12} {:<12} netns {}{runtime}",
        n.name, n.instance_id, n.az, n.primary_ip, n.netns
    )
}

fn status(prefix: &str, json: bool) -> Result<(), String> {
    let s = Status::read(prefix).ok_or_else(|| format!("testbed {prefix} is not up"))?;
    if !daemon_alive(&s) {
        return Err(format!(
            "testbed {prefix} is down (its daemon {} is gone); run `vpc-testbed up` again",
            s.daemon_pid
        ));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(
        "testbed {prefix}: EC2 {} region {} {}",
        s.ec2_endpoint, s.region, s.vpc_id
    );
    for n in &s.nodes {
        println!("  node {}", node_line(n));
    }
    for p in &s.pods {
        println!(
            "  pod  {}/{:<10} on {:<10} {:<15} netns {}",
            p.namespace, p.name, p.node, p.ip, p.netns
        );
    }
    Ok(())
}

fn exec(prefix: &str, target: &str, command: &[String]) -> Result<(), String> {
    let s = Status::read(prefix).ok_or_else(|| format!("testbed {prefix} is not up"))?;
    let netns = match target.split_once('/') {
        None => s
            .nodes
            .iter()
            .find(|n| n.name == target)
            .map(|n| n.netns.clone()),
        Some((node, pod)) => s
            .pods
            .iter()
            .find(|p| {
                p.node == node && (p.name == pod || format!("{}/{}", p.namespace, p.name) == pod)
            })
            .map(|p| p.netns.clone()),
    }
    .ok_or_else(|| format!("no node or pod {target:?} in testbed {prefix}"))?;
    // A CRI pod's namespace is a path under its node's containerd state, not a named one.
    let err = if netns.starts_with('/') {
        Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(command)
            .exec()
    } else {
        Command::new("ip")
            .args(["netns", "exec", &netns])
            .args(command)
            .exec()
    };
    Err(format!("enter {netns}: {err}"))
}

fn ec2(listen: &str, args: &[String]) -> Result<(), String> {
    let mut all = vec!["--listen".to_string(), listen.to_string()];
    all.extend_from_slice(args);
    let err = emulator::command(&all).map_err(|e| e.to_string())?.exec();
    Err(format!("start the emulator: {err}"))
}

/// The manifests directories of the chosen node(s).
fn manifests_dirs(prefix: &str, node: Option<&str>) -> Result<Vec<(String, PathBuf)>, String> {
    let s = Status::read(prefix).ok_or_else(|| format!("testbed {prefix} is not up"))?;
    let dirs: Vec<(String, PathBuf)> = s
        .nodes
        .iter()
        .filter(|n| node.is_none_or(|want| n.name == want))
        .map(|n| (n.name.clone(), PathBuf::from(&n.manifests_dir)))
        .collect();
    if dirs.is_empty() {
        return Err(format!(
            "no node {:?} in testbed {prefix}",
            node.unwrap_or_default()
        ));
    }
    Ok(dirs)
}

fn apply(prefix: &str, file: &std::path::Path, node: Option<&str>) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let objects =
        eniconfig::parse_manifests(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    if objects.is_empty() {
        return Err(format!(
            "{}: no Node or ENIConfig object in it",
            file.display()
        ));
    }
    for (name, dir) in manifests_dirs(prefix, node)? {
        for o in &objects {
            // A Node object only goes to the node it names.
            if let eniconfig::Object::Node(n) = o
                && n.name != name
            {
                continue;
            }
            testbed::agents::apply_object(&dir, o).map_err(|e| e.to_string())?;
        }
        println!("applied {} object(s) to {name}", objects.len());
    }
    Ok(())
}

fn delete(prefix: &str, kind: &str, name: &str, node: Option<&str>) -> Result<(), String> {
    if !kind.eq_ignore_ascii_case("eniconfig") {
        return Err(format!(
            "cannot delete {kind:?}: only eniconfig objects can be deleted"
        ));
    }
    let mut found = false;
    for (node_name, dir) in manifests_dirs(prefix, node)? {
        if testbed::agents::delete_eniconfig(&dir, name).map_err(|e| e.to_string())? {
            found = true;
            println!("deleted ENIConfig {name} on {node_name}");
        }
    }
    if found {
        Ok(())
    } else {
        Err(format!("no ENIConfig {name:?} on the chosen nodes"))
    }
}

fn pod(prefix: &str, action: PodCmd) -> Result<(), String> {
    use testbed::pods;
    match action {
        PodCmd::Add {
            node,
            name,
            namespace,
            runtime: PodRuntime::Cri,
            conflist,
            cni_version,
        } => {
            if conflist.is_some() || cni_version.is_some() {
                return Err(
                    "--conflist and --cni-version apply to --runtime cni: containerd runs the node's conflist"
                        .to_string(),
                );
            }
            let result =
                pods::add_cri(prefix, &node, &name, &namespace).map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        PodCmd::Add {
            node,
            name,
            namespace,
            runtime: PodRuntime::Cni,
            conflist,
            cni_version,
        } => {
            let options = pods::PodOptions {
                conflist,
                cni_version,
            };
            let result =
                pods::add(prefix, &node, &name, &namespace, &options).map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        PodCmd::Del {
            node,
            name,
            namespace,
            runtime: Some(PodRuntime::Cri),
        } => pods::del_cri(prefix, &node, &name, &namespace).map_err(|e| e.to_string()),
        PodCmd::Del {
            node,
            name,
            namespace,
            runtime: _,
        } => pods::del(prefix, &node, &name, &namespace).map_err(|e| e.to_string()),
        PodCmd::Invoke {
            node,
            name,
            command,
            namespace,
        } => {
            let out = pods::invoke(prefix, &node, &name, &namespace, &command)
                .map_err(|e| e.to_string())?;
            if !out.is_null() {
                println!("{out}");
            }
            Ok(())
        }
    }
}

fn demo(prefix: &str, config: Option<PathBuf>, pods_per_node: usize) -> Result<(), String> {
    up(prefix, config, false)?;
    let result = testbed::demo::run(prefix, pods_per_node);
    let down_result = down(prefix);
    match result {
        Ok(true) => down_result,
        Ok(false) => Err("the demo's expectations were not all met".to_string()),
        Err(e) => Err(e.to_string()),
    }
}
