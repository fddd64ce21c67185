//! Every verb against real network namespaces (root only: without it the tests fail, saying so). Each test makes its
//! own namespaces and deletes them on drop; the root namespace is only ever read.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use ipnet::Ipv4Net;
use netlink::{Link, MAIN_TABLE, Netlink, Route, Rule, Scope, format_mac, parse_mac};
use netns::Netns;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::LinkAttribute;

/// `ip netns add nltest-<pid>-<n>`, deleted on drop (failures included).
struct TestNs {
    name: String,
    ns: Netns,
}

impl TestNs {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "nltest-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Netns::named(&name).expect("open the new namespace");
        TestNs { name, ns }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n <ns> ARGS`
    fn ip(&self, args: &str) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend(args.split_whitespace());
        run("ip", &all)
    }

    async fn netlink(&self) -> Netlink {
        Netlink::connect_in(&self.ns).await.expect("connect_in")
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .expect("run a command");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// These tests make network namespaces: they need root, and fail (never skip) without it.
fn require_root() {
    use std::os::unix::fs::MetadataExt;
    assert!(
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0),
        "this test needs root to make network namespaces (run the suite as root, as make test and CI do)"
    );
}

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("a CIDR")
}

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().expect("an IPv4 address")
}

/// A veth `host` in `a` (up) with its peer `eth0` in `b` (up): a link to hang things on.
async fn veth_up(a: &TestNs, b: &TestNs, host: &str) -> (Netlink, Link) {
    let nl = a.netlink().await;
    let link = nl
        .create_veth(host, None, "eth0", &b.ns, 1500)
        .await
        .expect("create_veth");
    nl.set_up(link.index).await.expect("set_up host end");
    let peer_nl = b.netlink().await;
    let peer = peer_nl
        .link_by_name("eth0")
        .await
        .expect("lookup")
        .expect("peer");
    peer_nl.set_up(peer.index).await.expect("set_up peer");
    (nl, link)
}

/// Names of links announced (RTM_NEWLINK) to a listener in `ns` (None: the caller's namespace).
struct LinkWatch {
    rx: futures_util::stream::BoxStream<'static, NetlinkMessage<RouteNetlinkMessage>>,
}

impl LinkWatch {
    fn start(ns: Option<&Netns>) -> Self {
        let rt = tokio::runtime::Handle::current();
        let open = {
            let rt = rt.clone();
            move || {
                let _g = rt.enter();
                rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Link])
            }
        };
        let (conn, _handle, rx) = match ns {
            Some(ns) => ns.run(open).expect("enter namespace"),
            None => open(),
        }
        .expect("multicast socket");
        rt.spawn(conn);
        LinkWatch {
            rx: rx.map(|(msg, _)| msg).boxed(),
        }
    }

    async fn names(mut self) -> Vec<String> {
        let mut names = Vec::new();
        while let Ok(Some(msg)) =
            tokio::time::timeout(Duration::from_millis(300), self.rx.next()).await
        {
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) = msg.payload {
                for a in link.attributes {
                    if let LinkAttribute::IfName(n) = a {
                        names.push(n);
                    }
                }
            }
        }
        names
    }
}

#[tokio::test]
async fn veth_peer_is_born_in_its_namespace_with_mac_and_mtu() {
    require_root();
    let (a, b) = (TestNs::new(), TestNs::new());
    let nl = a.netlink().await;
    let watch_a = LinkWatch::start(Some(&a.ns));
    let watch_root = LinkWatch::start(None);

    let mac = parse_mac("02:aa:bb:cc:dd:01").expect("mac");
    let host = nl
        .create_veth("nlt-veth0", Some(mac), "eth0", &b.ns, 1400)
        .await
        .expect("create_veth");
    assert_eq!(host.name, "nlt-veth0");
    assert_eq!(host.mac, Some(mac));
    assert_eq!(host.mtu, 1400);
    assert!(!host.up, "the host end is left down");

    // The peer was announced in b only: a saw just the host end, root saw neither.
    let seen_a = watch_a.names().await;
    assert!(
        seen_a.contains(&"nlt-veth0".to_string()),
        "the watch works: {seen_a:?}"
    );
    assert!(
        !seen_a.contains(&"eth0".to_string()),
        "peer appeared in a: {seen_a:?}"
    );
    let seen_root = watch_root.names().await;
    assert!(
        !seen_root.iter().any(|n| n == "nlt-veth0" || n == "eth0"),
        "{seen_root:?}"
    );
    assert!(nl.link_by_name("eth0").await.expect("lookup").is_none());

    let b_nl = b.netlink().await;
    let peer = b_nl
        .link_by_name("eth0")
        .await
        .expect("lookup")
        .expect("peer in b");
    assert_eq!(peer.mtu, 1400);
    assert!(b.ip("link show eth0").contains("mtu 1400"));
    let shown = a.ip("link show nlt-veth0");
    assert!(
        shown.contains("mtu 1400") && shown.contains(&format!("link/ether {}", format_mac(&mac))),
        "{shown}"
    );

    // Lookups.
    assert_eq!(
        nl.link_by_mac(&mac).await.expect("by mac"),
        Some(host.clone())
    );
    assert_eq!(
        nl.link_by_index(host.index).await.expect("by index"),
        Some(host.clone())
    );
    assert!(nl.link_by_name("nope0").await.expect("lookup").is_none());
    assert!(
        nl.links()
            .await
            .expect("links")
            .iter()
            .any(|l| l.name == "lo")
    );

    // Up, MTU.
    nl.set_up(host.index).await.expect("set_up");
    nl.set_mtu(host.index, 1300).await.expect("set_mtu");
    let now = nl
        .link_by_name("nlt-veth0")
        .await
        .expect("lookup")
        .expect("host");
    assert!(now.up && now.mtu == 1300, "{now:?}");
    assert!(a.ip("link show nlt-veth0").contains("UP"));

    // Either name taken: the error says which, and where.
    let err = nl
        .create_veth("nlt-veth0", None, "eth9", &b.ns, 1500)
        .await
        .expect_err("host name taken");
    assert_eq!(
        err.to_string(),
        format!("veth nlt-veth0 already exists in {}", a.path())
    );
    assert!(err.is_exists());
    let err = nl
        .create_veth("nlt-veth1", None, "eth0", &b.ns, 1500)
        .await
        .expect_err("peer name taken");
    assert_eq!(
        err.to_string(),
        format!("link eth0 already exists in {}", b.path())
    );
    assert_eq!(err.errno(), Some(17));
    assert!(
        nl.link_by_name("nlt-veth1")
            .await
            .expect("lookup")
            .is_none(),
        "nothing half made"
    );

    // Delete by name: true, then false; the peer goes with it.
    assert!(nl.delete_link_by_name("nlt-veth0").await.expect("delete"));
    assert!(
        !nl.delete_link_by_name("nlt-veth0")
            .await
            .expect("delete again")
    );
    assert!(b_nl.link_by_name("eth0").await.expect("lookup").is_none());
}

#[tokio::test]
async fn kernel_random_mac_and_delete_by_index() {
    require_root();
    let (a, b) = (TestNs::new(), TestNs::new());
    let nl = a.netlink().await;
    let host = nl
        .create_veth("nlt-rnd", None, "eth1", &b.ns, 9001)
        .await
        .expect("create");
    let mac = host.mac.expect("a MAC");
    assert_eq!(
        mac[0] & 0x03,
        0x02,
        "locally administered unicast: {}",
        format_mac(&mac)
    );
    assert_eq!(host.mtu, 9001);
    nl.delete_link(host.index).await.expect("delete");
    let err = nl.delete_link(host.index).await.expect_err("gone");
    assert!(err.is_not_found(), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "delete link #{} in {}: No such device",
            host.index,
            a.path()
        )
    );
    let err = nl.set_up(99_999).await.expect_err("no such link");
    assert_eq!(
        err.to_string(),
        format!("set #99999 up in {}: No such device", a.path())
    );
}

#[tokio::test]
async fn addresses_are_idempotent() {
    require_root();
    let (a, b) = (TestNs::new(), TestNs::new());
    let (nl, link) = veth_up(&a, &b, "nlt-addr").await;
    let addr = net("10.1.2.3/32");
    nl.add_address(link.index, addr).await.expect("add");
    nl.add_address(link.index, addr).await.expect("add again");
    nl.add_address(link.index, net("10.9.0.1/24"))
        .await
        .expect("add a /24");
    assert_eq!(
        nl.addresses(link.index).await.expect("list"),
        vec![addr, net("10.9.0.1/24")]
    );
    let shown = a.ip("-4 -o addr show dev nlt-addr");
    assert_eq!(shown.matches("inet 10.1.2.3/32").count(), 1, "{shown}");

    nl.delete_address(link.index, addr).await.expect("delete");
    nl.delete_address(link.index, addr)
        .await
        .expect("delete again");
    nl.delete_address(99_999, addr)
        .await
        .expect("link gone: nothing to delete");
    assert_eq!(
        nl.addresses(link.index).await.expect("list"),
        vec![net("10.9.0.1/24")]
    );
}

#[tokio::test]
async fn routes_pod_side_and_eni_table() {
    require_root();
    let (a, b) = (TestNs::new(), TestNs::new());
    let (nl, link) = veth_up(&a, &b, "nlt-rt").await;
    let gw = ip4("169.254.1.1");

    // Pod side: the /32 link route first, then the default via it.
    let link_route = Route::link_scope(net("169.254.1.1/32"), link.index, MAIN_TABLE);
    let default = Route::default_via(gw, link.index, MAIN_TABLE);
    for _ in 0..2 {
        nl.replace_route(&link_route).await.expect("link route");
        nl.replace_route(&default).await.expect("default route");
    }
    assert_eq!(
        nl.routes(MAIN_TABLE).await.expect("main"),
        vec![default.clone(), link_route.clone()]
    );
    let shown = a.ip("route show");
    assert!(
        shown.contains("default via 169.254.1.1 dev nlt-rt proto static"),
        "{shown}"
    );
    assert!(
        shown.contains("169.254.1.1 dev nlt-rt proto static scope link"),
        "{shown}"
    );

    // ENI tables: N+1 and a card>0 table above 255.
    for table in [2, 10_101] {
        let eni_gw = ip4("10.0.32.1");
        let gw_route = Route::link_scope(net("10.0.32.1/32"), link.index, table);
        let eni_default = Route::default_via(eni_gw, link.index, table);
        nl.replace_route(&gw_route).await.expect("gw route");
        nl.replace_route(&eni_default).await.expect("eni default");
        nl.replace_route(&eni_default)
            .await
            .expect("eni default again");
        assert_eq!(
            nl.routes(table).await.expect("table"),
            vec![eni_default.clone(), gw_route.clone()]
        );
        let shown = a.ip(&format!("route show table {table}"));
        assert_eq!(
            shown,
            "default via 10.0.32.1 dev nlt-rt proto static \n10.0.32.1 dev nlt-rt proto static scope link \n"
        );

        nl.delete_route(&eni_default).await.expect("delete");
        nl.delete_route(&eni_default).await.expect("delete again");
        assert_eq!(
            nl.routes(table).await.expect("table"),
            vec![gw_route.clone()]
        );
    }
    assert_eq!(
        nl.routes(MAIN_TABLE).await.expect("main").len(),
        2,
        "other tables left main alone"
    );

    // Onlink: a gateway with no route to it. (The kernel checks the gateway against the local
    // table, which a namespace only has once it has an address: the pod gets its address first.)
    nl.add_address(link.index, net("10.7.0.2/24"))
        .await
        .expect("address");
    let onlink = Route {
        onlink: true,
        ..Route::default_via(ip4("192.0.2.1"), link.index, 3)
    };
    nl.replace_route(&onlink).await.expect("onlink default");
    assert_eq!(nl.routes(3).await.expect("table 3"), vec![onlink.clone()]);
    assert!(
        a.ip("route show table 3")
            .contains("default via 192.0.2.1 dev nlt-rt proto static onlink")
    );

    // Without onlink the kernel refuses, and the error says what and where.
    let unreachable = Route::default_via(ip4("192.0.2.1"), link.index, 4);
    let err = nl
        .replace_route(&unreachable)
        .await
        .expect_err("unreachable gateway");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "replace route default via 192.0.2.1 dev nlt-rt table 4 in {}: ",
            a.path()
        )),
        "{text}"
    );
    assert!(
        text.ends_with("Network is unreachable (Nexthop has invalid gateway)"),
        "{text}"
    );
    assert_eq!(err.errno(), Some(101));

    // Delete matches whatever scope/protocol the kernel gave it (its own subnet route included).
    let kernel_route = Route::link_scope(net("10.7.0.0/24"), link.index, MAIN_TABLE);
    assert!(
        nl.routes(MAIN_TABLE)
            .await
            .expect("main")
            .contains(&kernel_route)
    );
    nl.delete_route(&Route {
        scope: Scope::Universe,
        ..kernel_route.clone()
    })
    .await
    .expect("delete");
    assert!(
        !nl.routes(MAIN_TABLE)
            .await
            .expect("main")
            .contains(&kernel_route)
    );
}

#[tokio::test]
async fn rules_are_never_duplicated() {
    require_root();
    let a = TestNs::new();
    let nl = a.netlink().await;
    let to_pod = Rule {
        priority: 512,
        src: None,
        dst: Some(net("10.0.1.5/32")),
        table: MAIN_TABLE,
        fwmark: None,
    };
    let from_pod = Rule {
        priority: 1536,
        src: Some(net("10.0.1.5/32")),
        dst: None,
        table: 3,
        fwmark: None,
    };
    let connmark = Rule {
        priority: 1024,
        src: None,
        dst: None,
        table: MAIN_TABLE,
        fwmark: Some((0x80, 0x80)),
    };
    let eni = Rule {
        priority: 32765,
        src: Some(net("10.0.1.4/32")),
        dst: None,
        table: 10_101,
        fwmark: None,
    };
    let before = nl.rules().await.expect("rules");
    assert_eq!(before.len(), 3, "local, main, default: {before:?}");

    for rule in [&to_pod, &from_pod, &connmark, &eni] {
        nl.add_rule(rule).await.expect("add");
        nl.add_rule(rule).await.expect("add again");
    }
    let rules = nl.rules().await.expect("rules");
    for rule in [&to_pod, &from_pod, &connmark, &eni] {
        assert_eq!(
            rules.iter().filter(|r| *r == rule).count(),
            1,
            "{rule}: {rules:?}"
        );
    }
    assert_eq!(rules.len(), 7);
    let shown = a.ip("rule show");
    assert!(
        shown.contains("512:\tfrom all to 10.0.1.5 lookup main"),
        "{shown}"
    );
    assert!(
        shown.contains("1024:\tfrom all fwmark 0x80/0x80 lookup main"),
        "{shown}"
    );
    assert!(shown.contains("1536:\tfrom 10.0.1.5 lookup 3"), "{shown}");
    assert!(
        shown.contains("32765:\tfrom 10.0.1.4 lookup 10101"),
        "{shown}"
    );

    for rule in [&to_pod, &from_pod, &connmark, &eni] {
        nl.delete_rule(rule).await.expect("delete");
        nl.delete_rule(rule).await.expect("delete again");
    }
    assert_eq!(nl.rules().await.expect("rules"), before);
}

#[tokio::test]
async fn permanent_neighbour() {
    require_root();
    let (a, b) = (TestNs::new(), TestNs::new());
    let (nl, link) = veth_up(&a, &b, "nlt-nb").await;
    let gw = ip4("169.254.1.1");
    let first = parse_mac("02:00:00:00:00:01").expect("mac");
    let second = parse_mac("02:00:00:00:00:02").expect("mac");
    nl.replace_neighbour(link.index, gw, first)
        .await
        .expect("add");
    nl.replace_neighbour(link.index, gw, second)
        .await
        .expect("replace");
    assert_eq!(
        nl.neighbours(link.index).await.expect("list"),
        vec![(gw, second, true)]
    );
    let shown = a.ip("neigh show dev nlt-nb");
    assert_eq!(shown, "169.254.1.1 lladdr 02:00:00:00:00:02 PERMANENT \n");
    let err = nl
        .replace_neighbour(99_999, gw, first)
        .await
        .expect_err("no such link");
    assert!(
        err.to_string().starts_with(
            "set neighbour 169.254.1.1 lladdr 02:00:00:00:00:01 permanent on #99999 in "
        ),
        "{err}"
    );
}

#[tokio::test]
async fn connect_uses_the_calling_threads_namespace() {
    require_root();
    let a = TestNs::new();
    let (b, c) = (TestNs::new(), TestNs::new());
    // A link only a can see.
    a.netlink()
        .await
        .create_veth("nlt-only-a", None, "eth0", &b.ns, 1500)
        .await
        .expect("veth");
    let names =
        a.ns.run(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let nl = Netlink::connect().await.expect("connect");
                assert!(nl.namespace().starts_with("net:["), "{}", nl.namespace());
                nl.links()
                    .await
                    .expect("links")
                    .into_iter()
                    .map(|l| l.name)
                    .collect::<Vec<_>>()
            })
        })
        .expect("run in a");
    assert_eq!(names, vec!["lo".to_string(), "nlt-only-a".to_string()]);

    // connect_in through a thread-relative handle still names the namespace usefully.
    let named = c.ns.run(connect_in_current).expect("run in c");
    assert!(named.starts_with("net:["), "{named}");
}

/// On this thread (inside some namespace): connect_in(Netns::current()), list links, say its name.
fn connect_in_current() -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let here = Netns::current().expect("current");
        let nl = Netlink::connect_in(&here)
            .await
            .expect("connect_in current");
        let links = nl.links().await.expect("links");
        assert_eq!(links.len(), 1, "a fresh namespace has only lo: {links:?}");
        nl.namespace().to_string()
    })
}

#[test]
fn dropping_the_socket_ends_its_connection_task() {
    require_root();
    let a = TestNs::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let nl = a.netlink().await;
        nl.links().await.expect("links");
        let copy = nl.clone();
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            1
        );
        drop(nl);
        copy.links().await.expect("a clone keeps it alive");
        drop(copy);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            0,
            "a node agent opening one socket per pod must not pile up tasks"
        );
    });
}

/// The kernel runs one dump per socket at a time and refuses another with EBUSY while the first
/// is still being read (a dump longer than one message batch). ipamd's tasks share one socket:
/// concurrent listings must all succeed.
#[tokio::test]
async fn concurrent_dumps_on_one_socket_all_succeed() {
    require_root();
    let a = TestNs::new();
    a.ip("link add d0 type veth peer name d1");
    a.ip("link set d1 up");
    a.ip("link set d0 up");
    // Enough routes that one dump takes many batches.
    let batch: String = (0..3000)
        .map(|i| {
            format!(
                "route add 10.{}.{}.0/24 dev d0 table 100\n",
                i / 256,
                i % 256
            )
        })
        .collect();
    let file = std::env::temp_dir().join(format!("{}-routes", a.name));
    std::fs::write(&file, batch).expect("write the batch");
    let added = Command::new("ip")
        .args(["-n", &a.name, "-batch"])
        .arg(&file)
        .status();
    let _ = std::fs::remove_file(&file);
    assert!(added.expect("ip -batch").success(), "ip -batch failed");

    let nl = a.netlink().await;
    let clone = nl.clone();
    let (r1, r2, rules, links, r3) = tokio::join!(
        nl.routes(100),
        clone.routes(100),
        nl.rules(),
        nl.links(),
        nl.routes(100)
    );
    for (what, n) in [
        ("routes", r1.expect("routes").len()),
        ("routes of a clone", r2.expect("routes of a clone").len()),
        ("routes again", r3.expect("routes again").len()),
    ] {
        assert_eq!(n, 3000, "{what}");
    }
    assert_eq!(rules.expect("rules").len(), 3);
    assert!(links.expect("links").iter().any(|l| l.name == "d0"));
}
