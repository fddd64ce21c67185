//! A testbed per test, with its own prefix, always taken down (also when the test fails).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_vpc-testbed");

pub fn vpc_testbed(prefix: &str, args: &[&str]) -> Output {
    Command::new(BIN)
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
}

impl Testbed {
    pub fn up(extra: &[&str]) -> Testbed {
        let prefix = unique_prefix();
        let mut args = vec!["up", "--no-agents"];
        args.extend_from_slice(extra);
        let out = vpc_testbed(&prefix, &args);
        // Taken down on drop even if `up` half-failed.
        let mut tb = Testbed {
            prefix,
            status: serde_json::Value::Null,
        };
        assert!(
            out.status.success(),
            "up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = vpc_testbed(&tb.prefix, &["status", "--json"]);
        assert!(
            s.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&s.stderr)
        );
        tb.status = serde_json::from_slice(&s.stdout).unwrap();
        tb
    }

    pub fn endpoint(&self) -> String {
        self.status["ec2_endpoint"].as_str().unwrap().to_string()
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

    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        testbed::daemon::sdk_client(&self.endpoint(), "us-west-2").await
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
