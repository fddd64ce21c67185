//! A testbed per test, with its own prefix, always taken down (also when the test fails).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use node_contract::introspection::{Client, ClientError};

/// A binary of this workspace's build (next to the test's `deps/` directory), or of
/// `$VPC_TESTBED_BIN_DIR` (binaries kept aside from a target directory others build into).
pub fn workspace_bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("VPC_TESTBED_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap()
    } else {
        dir
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

pub fn vpc_testbed(prefix: &str, args: &[&str]) -> Output {
    Command::new(workspace_bin("vpc-testbed"))
        .arg("--prefix")
        .arg(prefix)
        .args(args)
        .output()
        .expect("run vpc-testbed")
}

fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("t{:05x}{n}", std::process::id() % 0xfffff)
}

pub struct Testbed {
    pub prefix: String,
    pub status: serde_json::Value,
    _config: Option<tempfile::TempDir>,
}

impl Testbed {
    /// The default testbed without agents.
    pub fn up(extra: &[&str]) -> Testbed {
        let mut args = vec!["--no-agents"];
        args.extend_from_slice(extra);
        Self::start(None, &args)
    }

    /// A testbed from a config text, with one ipamd per node.
    pub fn with_agents(config: Option<&str>) -> Testbed {
        Self::start(config, &[])
    }

    /// A testbed from a config text whose nodes have no ipamd yet (see [`Testbed::start_ipamd`]).
    pub fn without_agents(config: &str) -> Testbed {
        Self::start(Some(config), &["--no-agents"])
    }

    fn start(config: Option<&str>, extra: &[&str]) -> Testbed {
        let prefix = unique_prefix();
        let dir = config.map(|text| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("testbed.yaml"), text).unwrap();
            dir
        });
        let config_path = dir
            .as_ref()
            .map(|d| d.path().join("testbed.yaml").display().to_string());
        let mut args = vec!["up"];
        if let Some(p) = &config_path {
            args.extend(["--config", p.as_str()]);
        }
        args.extend_from_slice(extra);
        let out = vpc_testbed(&prefix, &args);
        // Taken down on drop even if `up` half-failed.
        let mut tb = Testbed {
            prefix,
            status: serde_json::Value::Null,
            _config: dir,
        };
        assert!(
            out.status.success(),
            "up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tb.refresh();
        tb
    }

    pub fn refresh(&mut self) {
        let s = vpc_testbed(&self.prefix, &["status", "--json"]);
        assert!(
            s.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&s.stderr)
        );
        self.status = serde_json::from_slice(&s.stdout).unwrap();
    }

    pub fn endpoint(&self) -> String {
        self.status["ec2_endpoint"].as_str().unwrap().to_string()
    }

    pub fn port(&self) -> u16 {
        self.endpoint().rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn node(&self, name: &str) -> &serde_json::Value {
        self.status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap()
    }

    pub fn netns(&self, node: &str) -> String {
        self.node(node)["netns"].as_str().unwrap().to_string()
    }

    pub fn instance(&self, node: &str) -> String {
        self.node(node)["instance_id"].as_str().unwrap().to_string()
    }

    pub fn router(&self) -> String {
        format!("{}-router", self.prefix)
    }

    /// The node's own directory (manifests, socket, checkpoint, logs).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        PathBuf::from(self.status["state_dir"].as_str().unwrap())
            .join("nodes")
            .join(node)
    }

    pub fn socket(&self, node: &str) -> String {
        format!(
            "unix://{}",
            self.node_dir(node).join("ipamd.sock").display()
        )
    }

    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        ::testbed::daemon::sdk_client(&self.endpoint(), "us-west-2").await
    }

    /// GET on the node's introspection endpoint (inside its namespace), as JSON.
    pub fn introspect(&self, node: &str, path: &str) -> serde_json::Value {
        self.introspection(node, |c| c.get_json(path))
            .unwrap_or_else(|e| panic!("introspection {path} on {node}: {e}"))
    }

    /// Waits until the node's ipamd says it is network-ready (after a start or a restart).
    pub fn wait_ready(&self, node: &str) {
        let ready = wait_for(Duration::from_secs(30), || {
            self.introspection(node, |c| c.pool())
                .is_ok_and(|p| p.network_ready)
        });
        assert!(
            ready.is_some(),
            "{node} is not network-ready:\n{}",
            self.ipamd_log(node)
        );
    }

    /// A call of the node's typed introspection client, made inside its namespace.
    pub fn introspection<T: Send>(
        &self,
        node: &str,
        call: impl FnOnce(&Client) -> Result<T, ClientError> + Send,
    ) -> Result<T, ClientError> {
        let ns = netns::Netns::named(&self.netns(node)).unwrap();
        let client = Client::new(node_contract::INTROSPECTION_ADDRESS.parse().unwrap());
        ns.run(|| call(&client)).unwrap()
    }

    /// The emulator's per-action call counts.
    pub fn calls(&self) -> serde_json::Value {
        self.emulator_get("/_testbed/calls")
    }

    fn emulator_get(&self, path: &str) -> serde_json::Value {
        ::testbed::emulator::http_json(self.port(), "GET", path, None, Duration::from_secs(10))
            .unwrap()
            .1
    }

    /// Calls made by one node's ipamd (it signs with its own access key), by action, failed ones
    /// included; the seeder's and the tests' own calls left out.
    pub fn calls_of(&self, node: &str) -> std::collections::BTreeMap<String, u64> {
        let by_caller = self.emulator_get("/_testbed/calls?by=caller");
        let actions = by_caller[::testbed::agents::access_key(node)].as_object();
        actions
            .into_iter()
            .flatten()
            .map(|(action, c)| {
                let n = c["ok"].as_u64().unwrap_or(0) + c["error"].as_u64().unwrap_or(0);
                (action.clone(), n)
            })
            .collect()
    }

    pub fn ipamd_log(&self, node: &str) -> String {
        std::fs::read_to_string(self.node_dir(node).join("ipamd.log")).unwrap_or_default()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let out = vpc_testbed(&self.prefix, &["down"]);
        if !out.status.success() {
            eprintln!("down failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

pub fn ip(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip -n {ns} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits up to `limit` for `f` to hold; returns how long it took.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The name of the link with this MAC in `ns`, if any.
pub fn link_with_mac(ns: &str, mac: &str) -> Option<String> {
    ip(ns, &["-o", "link"])
        .lines()
        .find(|l| l.contains(mac))
        .map(|l| {
            l.split(':')
                .nth(1)
                .unwrap()
                .trim()
                .split('@')
                .next()
                .unwrap()
                .to_string()
        })
}

/// A listener opened inside a namespace; accepts in the background.
pub fn listen_in(ns: &str, addr: SocketAddr) -> TcpListener {
    let handle = netns::Netns::named(ns).unwrap();
    let l = handle.run(|| TcpListener::bind(addr)).unwrap().unwrap();
    let clone = l.try_clone().unwrap();
    std::thread::spawn(move || {
        for s in clone.incoming().flatten() {
            drop(s)
        }
    });
    l
}

/// Connects from inside a namespace, from a given source address.
pub fn connect_from(ns: &str, source: Option<Ipv4Addr>, to: SocketAddr) -> std::io::Result<()> {
    let handle = netns::Netns::named(ns).unwrap();
    handle
        .run(|| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            if let Some(src) = source {
                socket.bind(&SocketAddr::from((src, 0)).into())?;
            }
            socket.connect_timeout(&to.into(), Duration::from_secs(2))?;
            let _: TcpStream = socket.into();
            Ok(())
        })
        .unwrap()
}

/// A node's datapath as ipamd and the plugin make it, to compare before/after an event: links
/// (name, MTU, state), addresses, rules, every routing table, and ipamd's iptables rules (the
/// AWS- chains and the jumps to them), without counters.
pub fn node_datapath(ns: &str) -> String {
    let mut out = String::new();
    // IPv4 only: ipamd and the plugin manage no IPv6, and the kernel's own IPv6 link-local
    // addresses change state (DAD) on their own schedule.
    for args in [
        &["-o", "link", "show"][..],
        &["-4", "-o", "addr", "show"][..],
        &["-4", "rule", "show"][..],
        &["-4", "route", "show", "table", "all"][..],
    ] {
        out.push_str(&format!("# ip {}\n", args.join(" ")));
        for line in ip(ns, args).lines() {
            // Link lines: the name, flags and MTU (queue and ether details are the kernel's).
            let line = match line.split_once(" qdisc ") {
                Some((head, _)) if args.contains(&"link") => head,
                _ => line,
            };
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out.push_str("# iptables-save (AWS- chains)\n");
    let saved = Command::new("ip")
        .args(["netns", "exec", ns, "iptables-save"])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&saved.stdout)
        .lines()
        .filter(|l| l.contains("AWS-") || l.starts_with('*'))
    {
        out.push_str(line.split(" [").next().unwrap());
        out.push('\n');
    }
    out
}

/// Lines of `a` missing from `b` and lines of `b` missing from `a`, for a readable failure.
pub fn diff_lines(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = String::new();
    for l in la.iter().filter(|l| !lb.contains(l)) {
        out.push_str(&format!("- {l}\n"));
    }
    for l in lb.iter().filter(|l| !la.contains(l)) {
        out.push_str(&format!("+ {l}\n"));
    }
    out
}

/// An ipamd a test started, killed when dropped (a failing test leaves no daemon behind).
pub struct Ipamd(pub Option<std::process::Child>);

impl Drop for Ipamd {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// The root namespace's links, addresses, routes, rules and firewall, to compare before/after.
pub fn root_snapshot() -> String {
    let mut out = String::new();
    for args in [
        &["ip", "-o", "link", "show"][..],
        &["ip", "-o", "addr", "show"][..],
        &["ip", "route", "show", "table", "all"][..],
        &["ip", "rule", "show"][..],
        &["iptables-save"][..],
    ] {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        // iptables-save stamps the time; packet counters move with any traffic.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            out.push_str(line.split(" [").next().unwrap());
            out.push('\n');
        }
    }
    out
}

impl Testbed {
    /// `vpc-testbed pod add`: the CNI result, or what went wrong.
    pub fn pod_add(
        &self,
        node: &str,
        name: &str,
        extra: &[&str],
    ) -> Result<serde_json::Value, String> {
        let mut args = vec!["pod", "add", node, name];
        args.extend_from_slice(extra);
        let out = vpc_testbed(&self.prefix, &args);
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(format!(
                "pod add {node}/{name}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.ipamd_log(node)
            ))
        }
    }

    /// The network namespace `pod add` made for a pod in namespace `default`.
    pub fn pod_ns(&self, node: &str, name: &str) -> String {
        format!("{}-{node}-default-{name}", self.prefix)
    }
}

/// The pod address of a CNI result.
pub fn pod_address(result: &serde_json::Value) -> Ipv4Addr {
    result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Packets counted by the rules of `chain` that jump to `target`, inside `ns`.
pub fn iptables_packets(ns: &str, table: &str, chain: &str, target: &str) -> u64 {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "iptables", "-t", table, "-L", chain, "-v", "-x", "-n",
        ])
        .output()
        .unwrap();
    // Columns: pkts bytes target …
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 2 && f[2] == target)
        .filter_map(|f| f[0].parse::<u64>().ok())
        .sum()
}

/// The process exists and is not a zombie waiting for init to reap it.
pub fn process_running(pid: i32) -> bool {
    ::testbed::sweep::alive(pid)
}

impl Testbed {
    /// `vpc-testbed apply -f` of one ENIConfig on every node.
    pub fn apply_eniconfig(&self, name: &str, subnet: &str, groups: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("eniconfig.yaml");
        let groups = if groups.is_empty() {
            String::new()
        } else {
            format!(", securityGroups: [{}]", groups.join(", "))
        };
        std::fs::write(
            &file,
            format!("apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata: {{name: {name}}}\nspec: {{subnet: {subnet}{groups}}}\n"),
        )
        .unwrap();
        let out = vpc_testbed(&self.prefix, &["apply", "-f", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kills the node's ipamd (the daemon's, or `previous`) as a crash would, and starts another
    /// the way the daemon does (this testbed's config). Returns once it serves gRPC.
    pub fn restart_ipamd(
        &self,
        node: &str,
        previous: Option<std::process::Child>,
    ) -> std::process::Child {
        match previous {
            Some(mut c) => {
                c.kill().ok();
                c.wait().ok();
            }
            None => {
                let pid = self.node(node)["ipamd_pid"].as_i64().unwrap() as i32;
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .ok();
            }
        }
        self.start_ipamd(node)
    }

    /// Starts an ipamd on the node the way the daemon does (for testbeds up with `--no-agents`,
    /// or after a kill). Returns once it serves gRPC.
    pub fn start_ipamd(&self, node: &str) -> std::process::Child {
        let socket = self.node_dir(node).join("ipamd.sock");
        let child = self.spawn_ipamd(node);
        if wait_for(Duration::from_secs(20), || socket.exists()).is_none() {
            let stderr = std::fs::read_to_string(self.node_dir(node).join("ipamd.stderr"))
                .unwrap_or_default();
            let log = self.ipamd_log(node);
            panic!(
                "ipamd did not come back:\n{stderr}\n{}",
                &log[log.len().saturating_sub(3000)..]
            );
        }
        // Introspection starts next to the gRPC server, not before it.
        let ns = netns::Netns::named(&self.netns(node)).unwrap();
        let introspection = || {
            ns.run(|| {
                ::testbed::emulator::http_json(
                    61679,
                    "GET",
                    "/v1/pool",
                    None,
                    Duration::from_secs(2),
                )
            })
            .is_ok_and(|r| r.is_ok())
        };
        assert!(
            wait_for(Duration::from_secs(10), introspection).is_some(),
            "ipamd on {node} serves gRPC but not its introspection"
        );
        child
    }

    /// Starts an ipamd on the node the way the daemon does, without waiting for it.
    pub fn spawn_ipamd(&self, node: &str) -> std::process::Child {
        let _ = std::fs::remove_file(self.node_dir(node).join("ipamd.sock"));
        let config_path = self._config.as_ref().map(|d| d.path().join("testbed.yaml"));
        let config = ::testbed::config::Config::load(config_path.as_deref()).unwrap();
        let node_config = config.nodes.iter().find(|n| n.name == node).unwrap();
        let dir = ::testbed::agents::NodeDir(self.node_dir(node));
        ::testbed::agents::start_ipamd(&self.netns(node), &dir, "us-west-2", &config, node_config)
            .unwrap()
    }
}

impl Testbed {
    /// The node's containerd directory (config, socket, log); the node must run containerd.
    pub fn containerd_dir(&self, node: &str) -> ::testbed::containerd::ContainerdDir {
        assert!(
            self.node(node)["cri_socket"].is_string(),
            "node {node} runs no containerd: give it `runtime: containerd` in the test's config"
        );
        ::testbed::containerd::ContainerdDir::of(&::testbed::agents::NodeDir(self.node_dir(node)))
    }

    /// A CRI client for the node's containerd.
    pub async fn cri(&self, node: &str) -> ::testbed::cri::Cri {
        let socket = self.containerd_dir(node).socket();
        ::testbed::cri::Cri::connect(&socket)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Stops the node's containerd with `signal` (SIGTERM as a service restart does, SIGKILL as a
    /// crash) and starts another the way the daemon does; returns once its CRI answers.
    pub fn restart_containerd(
        &self,
        node: &str,
        signal: nix::sys::signal::Signal,
    ) -> std::process::Child {
        let dir = self.containerd_dir(node);
        let pids = ::testbed::containerd::pids(&dir);
        assert!(!pids.is_empty(), "no containerd runs for {node}");
        for p in &pids {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), signal).unwrap();
        }
        assert!(
            wait_for(Duration::from_secs(20), || pids
                .iter()
                .all(|p| !process_running(*p)))
            .is_some(),
            "containerd of {node} did not stop on {signal}"
        );
        ::testbed::containerd::start(&self.netns(node), &dir).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The containerd log of a node, for failure messages.
    pub fn containerd_log(&self, node: &str) -> String {
        let log = std::fs::read_to_string(self.containerd_dir(node).log()).unwrap_or_default();
        log[log.len().saturating_sub(4000)..].to_string()
    }
}

/// An HTTP GET from inside a network namespace (a path: a runtime's sandbox); the body.
pub fn http_get_from(netns: &std::path::Path, to: SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let handle = netns::Netns::open(netns).map_err(std::io::Error::other)?;
    handle
        .run(|| {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            write!(s, "GET / HTTP/1.0\r\nHost: {to}\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text
                .split_once("\r\n\r\n")
                .map(|(_, body)| body.trim().to_string())
                .unwrap_or_default())
        })
        .map_err(std::io::Error::other)?
}

/// Connects from inside a network namespace given by path.
pub fn connect_from_path(netns: &std::path::Path, to: SocketAddr) -> std::io::Result<()> {
    let handle = netns::Netns::open(netns).map_err(std::io::Error::other)?;
    handle
        .run(|| TcpStream::connect_timeout(&to, Duration::from_secs(3)).map(drop))
        .map_err(std::io::Error::other)?
}
