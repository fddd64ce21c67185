//! A testbed's pods judged by traffic: each pod listens on an allowed and a forbidden port, and
//! [`World::traffic`] requires, by real connections, that every pod reaches every other pod on
//! the allowed port and the internet host through its node's SNAT, and no pod reaches a pod on
//! another node on the forbidden port (security groups).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::invariants;
use crate::testbed::{Testbed, node_datapath, pod_address};

/// Admitted by the testbeds' pod and node groups.
pub const ALLOWED: u16 = 8080;
/// Admitted by no group: only same-node traffic (which never leaves the node) reaches it.
pub const FORBIDDEN: u16 = 9090;

/// A listener inside a namespace that is really closed when dropped (its socket must not keep
/// a deleted pod's namespace, and so its veth, alive).
pub struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    pub fn open(ns: &str, addr: SocketAddr) -> Listener {
        let handle = netns::Netns::named(ns).unwrap();
        let l: TcpListener = handle.run(|| TcpListener::bind(addr)).unwrap().unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => drop(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Listener {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

pub struct Pod {
    pub node: String,
    pub ip: Ipv4Addr,
    pub _listeners: [Listener; 2],
}

/// The pods of a test by name, each with a listener on the allowed and the forbidden port.
pub struct World {
    pub tb: Testbed,
    pub pods: BTreeMap<String, Pod>,
    _internet: Listener,
}

pub fn internet() -> SocketAddr {
    SocketAddr::from((
        ::testbed::fabric::INTERNET_HOST
            .parse::<Ipv4Addr>()
            .unwrap(),
        443,
    ))
}

/// A TCP connection from inside `ns`; `limit` bounds the wait (a forbidden port is dropped,
/// not refused).
pub fn reaches(ns: &str, to: SocketAddr, limit: Duration) -> bool {
    let handle = netns::Netns::named(ns).unwrap();
    handle
        .run(|| TcpStream::connect_timeout(&to, limit).is_ok())
        .unwrap_or(false)
}

impl World {
    pub fn new(tb: Testbed) -> World {
        let inet = format!("{}-inet", tb.prefix);
        World {
            _internet: Listener::open(&inet, internet()),
            tb,
            pods: BTreeMap::new(),
        }
    }

    /// ADD as a kubelet does it: retried while ipamd cannot serve yet.
    pub fn add(&mut self, node: &str, name: &str) -> Ipv4Addr {
        let start = Instant::now();
        let result = loop {
            match self.tb.pod_add(node, name, &[]) {
                Ok(r) => break r,
                Err(e) if start.elapsed() > Duration::from_secs(60) => {
                    panic!("pod {name} on {node} got no address: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        };
        let ip = pod_address(&result);
        let ns = self.tb.pod_ns(node, name);
        self.pods.insert(
            name.to_string(),
            Pod {
                node: node.to_string(),
                ip,
                _listeners: [
                    Listener::open(&ns, SocketAddr::from((ip, ALLOWED))),
                    Listener::open(&ns, SocketAddr::from((ip, FORBIDDEN))),
                ],
            },
        );
        ip
    }

    pub fn del(&mut self, name: &str) {
        let pod = self.pods.remove(name).expect("a pod of this test");
        drop(pod._listeners);
        ::testbed::pods::del(&self.tb.prefix, &pod.node, name, "default")
            .unwrap_or_else(|e| panic!("DEL {name}: {e}"));
    }

    /// Every pod reaches every other pod on the allowed port and the internet through SNAT;
    /// no pod reaches a pod on another node on the forbidden port. What failed, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let quick = Duration::from_millis(700);
        for (a, pa) in &self.pods {
            let ns = self.tb.pod_ns(&pa.node, a);
            for (b, pb) in self.pods.iter().filter(|(b, _)| *b != a) {
                if !reaches(
                    &ns,
                    SocketAddr::from((pb.ip, ALLOWED)),
                    Duration::from_secs(2),
                ) {
                    out.push(format!(
                        "{a} ({}) cannot reach {b} ({}):{ALLOWED}",
                        pa.ip, pb.ip
                    ));
                }
                if pa.node != pb.node && reaches(&ns, SocketAddr::from((pb.ip, FORBIDDEN)), quick) {
                    out.push(format!(
                        "{a} reaches {b}:{FORBIDDEN}, which its group forbids"
                    ));
                }
            }
            if !reaches(&ns, internet(), Duration::from_secs(2)) {
                out.push(format!("{a} ({}) cannot reach the internet", pa.ip));
            }
        }
        out
    }

    /// Traffic as [`World::problems`] says, waiting a little for a restarted node to settle.
    pub fn traffic(&self, what: &str) {
        let mut last = Vec::new();
        for _ in 0..10 {
            last = self.problems();
            if last.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{what}: traffic broken:\n  {}", last.join("\n  "));
    }

    pub fn datapath(&self, node: &str) -> String {
        node_datapath(&self.tb.netns(node))
    }

    pub async fn invariants(&self, node: &str, what: &str) {
        let ec2 = self.tb.ec2().await;
        invariants::assert_invariants(&self.tb, &ec2, node, Duration::from_secs(30), what).await;
    }

    pub fn pool(&self, node: &str) -> Value {
        self.tb.introspect(node, "/v1/pool")
    }
}
