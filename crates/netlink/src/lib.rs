//! Every netlink call of the project behind one socket type with typed verbs: the node agent and
//! the CNI plugin never build raw messages.
//!
//! A [`Netlink`] is a route-netlink socket bound to the network namespace it was opened in
//! ([`Netlink::connect`] for the caller's, [`Netlink::connect_in`] for another); it can then be
//! used from any thread. Its connection task runs on the tokio runtime that opened it and ends when
//! the last clone of the socket is dropped.
//!
//! Verbs are idempotent where the callers need it (adding what exists, deleting what is absent
//! succeed) and every failure names the operation, the devices by name and the namespace.

mod types;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use nix::errno::Errno;
use rtnetlink::{AddressMessageBuilder, IpVersion, LinkUnspec, LinkVeth, RouteMessageBuilder};

pub use types::{Link, MAIN_TABLE, NetlinkError, Route, Rule, Scope, format_mac, parse_mac};

/// A route-netlink socket in one network namespace.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
    /// The namespace, as errors name it: its path, or `net:[inode]` for the caller's own.
    ns: Arc<str>,
    /// The kernel runs one dump at a time per socket and refuses a second with EBUSY (ipamd
    /// lists rules for a new ENI while start-up lists them for the node): clones take turns.
    dumps: Arc<tokio::sync::Mutex<()>>,
}

impl Netlink {
    /// A socket in the calling thread's namespace; its connection task is spawned on the current
    /// tokio runtime.
    pub async fn connect() -> Result<Self, NetlinkError> {
        let ns = current_ns_name();
        let rt = runtime(&ns)?;
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|source| NetlinkError::Socket {
                ns: ns.clone(),
                source,
            })?;
        rt.spawn(with_kernel_messages(conn));
        Ok(Netlink {
            handle,
            ns: ns.into(),
            dumps: Arc::default(),
        })
    }

    /// A socket opened inside `ns` (on a short-lived thread, see [`netns::Netns::run`]), then
    /// usable from anywhere: the caller's thread never changes namespace.
    pub async fn connect_in(ns: &netns::Netns) -> Result<Self, NetlinkError> {
        let name = ns_name(ns);
        let rt = runtime(&name)?;
        let opened = {
            let rt = rt.clone();
            ns.run(move || {
                let _in_runtime = rt.enter();
                rtnetlink::new_connection()
            })?
        };
        let (conn, handle, _) = opened.map_err(|source| NetlinkError::Socket {
            ns: name.clone(),
            source,
        })?;
        rt.spawn(with_kernel_messages(conn));
        Ok(Netlink {
            handle,
            ns: name.into(),
            dumps: Arc::default(),
        })
    }

    /// The namespace this socket works in, as its errors name it.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    // ---- links ----

    pub async fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        let msgs: Vec<LinkMessage> = self
            .dump(
                || "list links".into(),
                || self.handle.link().get().execute(),
            )
            .await?;
        Ok(msgs.into_iter().map(to_link).collect())
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let req = self.handle.link().get().match_name(name).execute();
        match pin!(req).try_next().await {
            Ok(m) => Ok(m.map(to_link)),
            Err(e) if is_no_device(&e) => Ok(None),
            Err(e) => Err(self.fail(format!("look up link {name}"), e)),
        }
    }

    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>, NetlinkError> {
        let req = self.handle.link().get().match_index(index).execute();
        match pin!(req).try_next().await {
            Ok(m) => Ok(m.map(to_link)),
            Err(e) if is_no_device(&e) => Ok(None),
            Err(e) => Err(self.fail(format!("look up link #{index}"), e)),
        }
    }

    pub async fn link_by_mac(&self, mac: &[u8; 6]) -> Result<Option<Link>, NetlinkError> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .find(|l| l.mac.as_ref() == Some(mac)))
    }

    pub async fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        match self.handle.link().set(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(format!("set {} up", self.dev(index).await), e)),
        }
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        match self.handle.link().set(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(format!("set mtu {mtu} on {}", self.dev(index).await), e)),
        }
    }

    pub async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(format!("delete link {}", self.dev(index).await), e)),
        }
    }

    /// Deletes the link called `name`; `false` when there is none. One request, no lookup.
    pub async fn delete_link_by_name(&self, name: &str) -> Result<bool, NetlinkError> {
        let msg = LinkUnspec::new_with_name(name).build();
        match self.handle.link().del_with_message(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_no_device(&e) => Ok(false),
            Err(e) => Err(self.fail(format!("delete link {name}"), e)),
        }
    }

    /// A veth pair: `host` in this socket's namespace with `host_mac` (None: the kernel picks a
    /// random one), the peer created directly inside `peer_ns` as `peer_name` (IFLA_NET_NS_FD on
    /// the peer: it never exists in this namespace, not even briefly); both ends get `mtu`.
    /// Returns the host end, still down.
    pub async fn create_veth(
        &self,
        host: &str,
        host_mac: Option<[u8; 6]>,
        peer_name: &str,
        peer_ns: &netns::Netns,
        mtu: u32,
    ) -> Result<Link, NetlinkError> {
        let peer_fd = open_ns_fd(peer_ns)?;
        let peer = LinkUnspec::new_with_name(peer_name)
            .mtu(mtu)
            .setns_by_fd(peer_fd.as_raw_fd())
            .build();
        let mut msg = LinkVeth::new(host, peer_name)
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
        if let Some(mac) = host_mac {
            msg = msg.address(mac.to_vec());
        }
        let created = self.handle.link().add(msg.build()).execute().await;
        drop(peer_fd);
        if let Err(e) = created {
            if errno(&e) == Some(Errno::EEXIST as i32) {
                // Say which end is taken.
                return Err(if self.link_by_name(host).await?.is_some() {
                    NetlinkError::Exists {
                        what: format!("veth {host}"),
                        ns: self.ns.to_string(),
                    }
                } else {
                    NetlinkError::Exists {
                        what: format!("link {peer_name}"),
                        ns: ns_name(peer_ns),
                    }
                });
            }
            let op = format!(
                "create veth {host} (peer {peer_name} in {})",
                ns_name(peer_ns)
            );
            return Err(self.fail(op, e));
        }
        self.link_by_name(host)
            .await?
            .ok_or_else(|| NetlinkError::NotFound {
                what: format!("veth {host} just created"),
                ns: self.ns.to_string(),
            })
    }

    // ---- addresses ----

    /// The IPv4 addresses of link `index`.
    pub async fn addresses(&self, index: u32) -> Result<Vec<Ipv4Net>, NetlinkError> {
        let msgs: Vec<AddressMessage> = self
            .dump(
                || format!("list addresses of #{index}"),
                || {
                    self.handle
                        .address()
                        .get()
                        .set_link_index_filter(index)
                        .execute()
                },
            )
            .await?;
        Ok(msgs.into_iter().filter_map(to_ipv4_address).collect())
    }

    /// Adds `addr` to link `index`; already there is success.
    pub async fn add_address(&self, index: u32, addr: Ipv4Net) -> Result<(), NetlinkError> {
        let req = self
            .handle
            .address()
            .add(index, IpAddr::V4(addr.addr()), addr.prefix_len());
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(Errno::EEXIST as i32) => Ok(()),
            Err(e) => Err(self.fail(
                format!("add address {addr} to {}", self.dev(index).await),
                e,
            )),
        }
    }

    /// Removes `addr` from link `index`; absent (or the link gone) is success.
    pub async fn delete_address(&self, index: u32, addr: Ipv4Net) -> Result<(), NetlinkError> {
        let msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(addr.addr(), addr.prefix_len())
            .build();
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_in(&e, &[Errno::EADDRNOTAVAIL, Errno::ENOENT, Errno::ENODEV]) => Ok(()),
            Err(e) => Err(self.fail(
                format!("delete address {addr} from {}", self.dev(index).await),
                e,
            )),
        }
    }

    // ---- routes ----

    /// The IPv4 unicast routes of `table` (254 = main). Multipath routes and scopes other than
    /// universe/link/host are left out: this crate never makes them.
    pub async fn routes(&self, table: u32) -> Result<Vec<Route>, NetlinkError> {
        let dump = RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(table)
            .build();
        let msgs: Vec<RouteMessage> = self
            .dump(
                || format!("list routes of table {table}"),
                move || self.handle.route().get(dump).execute(),
            )
            .await?;
        Ok(msgs
            .into_iter()
            .filter_map(to_route)
            .filter(|r| r.table == table)
            .collect())
    }

    /// Creates or replaces the route (NLM_F_CREATE | NLM_F_REPLACE), protocol `static`.
    /// A gateway must be reachable through a link route first (the pod's `169.254.1.1/32 scope
    /// link`), or `onlink` set; the kernel checks an onlink gateway against the local table,
    /// which exists only once the namespace has an address.
    pub async fn replace_route(&self, route: &Route) -> Result<(), NetlinkError> {
        let req = self.handle.route().add(route_message(route)).replace();
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(format!("replace route {}", self.route_text(route).await), e)),
        }
    }

    /// Deletes the route matching `route`'s destination, table, gateway and device, whatever its
    /// scope and protocol; absent is success.
    pub async fn delete_route(&self, route: &Route) -> Result<(), NetlinkError> {
        let mut msg = route_message(route);
        // As `ip route del` does: any scope, any protocol (the kernel's own subnet routes too).
        msg.header.scope = RouteScope::NoWhere;
        msg.header.protocol = RouteProtocol::Unspec;
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_in(&e, &[Errno::ESRCH, Errno::ENOENT]) => Ok(()),
            Err(e) => Err(self.fail(format!("delete route {}", self.route_text(route).await), e)),
        }
    }

    // ---- rules ----

    /// The IPv4 `lookup` rules that [`Rule`] can express (rules with other selectors, such as
    /// `iif`, or other actions are left out).
    pub async fn rules(&self) -> Result<Vec<Rule>, NetlinkError> {
        let msgs: Vec<RuleMessage> = self
            .dump(
                || "list rules".into(),
                || self.handle.rule().get(IpVersion::V4).execute(),
            )
            .await?;
        Ok(msgs.into_iter().filter_map(to_rule).collect())
    }

    /// Adds the rule unless an identical one exists. The kernel accepts duplicate rules when asked
    /// without NLM_F_EXCL, so this looks first and also asks with NLM_F_EXCL (EEXIST = success).
    pub async fn add_rule(&self, rule: &Rule) -> Result<(), NetlinkError> {
        if self.rules().await?.contains(rule) {
            return Ok(());
        }
        let mut req = self.handle.rule().add();
        *req.message_mut() = rule_message(rule);
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(Errno::EEXIST as i32) => Ok(()),
            Err(e) => Err(self.fail(format!("add rule {rule}"), e)),
        }
    }

    /// Deletes the rule; absent is success.
    pub async fn delete_rule(&self, rule: &Rule) -> Result<(), NetlinkError> {
        match self.handle.rule().del(rule_message(rule)).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_in(&e, &[Errno::ENOENT, Errno::ESRCH]) => Ok(()),
            Err(e) => Err(self.fail(format!("delete rule {rule}"), e)),
        }
    }

    // ---- neighbours ----

    /// Sets a permanent ARP entry `ip → mac` on link `index`, replacing any entry for `ip`.
    pub async fn replace_neighbour(
        &self,
        index: u32,
        ip: Ipv4Addr,
        mac: [u8; 6],
    ) -> Result<(), NetlinkError> {
        let req = self
            .handle
            .neighbours()
            .add(index, IpAddr::V4(ip))
            .state(NeighbourState::Permanent)
            .link_layer_address(&mac)
            .replace();
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let op = format!(
                    "set neighbour {ip} lladdr {} permanent on {}",
                    format_mac(&mac),
                    self.dev(index).await
                );
                Err(self.fail(op, e))
            }
        }
    }

    /// The IPv4 neighbours of link `index` that have a MAC: (ip, mac, permanent).
    pub async fn neighbours(
        &self,
        index: u32,
    ) -> Result<Vec<(Ipv4Addr, [u8; 6], bool)>, NetlinkError> {
        let msgs: Vec<_> = self
            .dump(
                || format!("list neighbours of #{index}"),
                || {
                    self.handle
                        .neighbours()
                        .get()
                        .set_address_family(AddressFamily::Inet)
                        .execute()
                },
            )
            .await?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.ifindex == index)
            .filter_map(|m| {
                let mut ip = None;
                let mut mac = None;
                for a in &m.attributes {
                    match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                            ip = Some(*v4)
                        }
                        NeighbourAttribute::LinkLayerAddress(l) => {
                            mac = <[u8; 6]>::try_from(&l[..]).ok()
                        }
                        _ => {}
                    }
                }
                Some((ip?, mac?, m.header.state == NeighbourState::Permanent))
            })
            .collect())
    }

    /// Reads a whole dump, one at a time on this socket (see [`Netlink::dumps`]).
    async fn dump<T, S>(
        &self,
        op: impl FnOnce() -> String,
        request: impl FnOnce() -> S,
    ) -> Result<Vec<T>, NetlinkError>
    where
        S: futures_util::Stream<Item = Result<T, rtnetlink::Error>>,
    {
        let _turn = self.dumps.lock().await;
        request()
            .try_collect()
            .await
            .map_err(|e| self.fail(op(), e))
    }

    // ---- error text ----

    fn fail(&self, op: String, e: rtnetlink::Error) -> NetlinkError {
        let ns = self.ns.to_string();
        match e {
            rtnetlink::Error::NetlinkError(m) if m.code.is_some() => NetlinkError::Kernel {
                op,
                ns,
                errno: m.code.map_or(0, |c| -c.get()),
                detail: kernel_message(&m.header),
            },
            rtnetlink::Error::RequestFailed => NetlinkError::Protocol {
                op,
                ns,
                detail: "the netlink connection is closed (has its tokio runtime shut down?)"
                    .into(),
            },
            e => NetlinkError::Protocol {
                op,
                ns,
                detail: e.to_string(),
            },
        }
    }

    /// `eth0` for index 2 when it still exists, `#2` otherwise. Only on error paths.
    async fn dev(&self, index: u32) -> String {
        match self.link_by_index(index).await {
            Ok(Some(l)) => l.name,
            _ => format!("#{index}"),
        }
    }

    async fn route_text(&self, route: &Route) -> String {
        let text = route.to_string();
        match route.oif {
            Some(oif) => text.replace(
                &format!("dev #{oif}"),
                &format!("dev {}", self.dev(oif).await),
            ),
            None => text,
        }
    }
}

type Connection = rtnetlink::proto::Connection<netlink_packet_route::RouteNetlinkMessage>;

/// Asks the kernel to explain its refusals (extended ACK, e.g. "Nexthop has invalid gateway"),
/// with the echoed request capped to its header. Kernels without it just don't explain.
fn with_kernel_messages(mut conn: Connection) -> Connection {
    use rtnetlink::sys::AsyncSocket;
    let socket = conn.socket_mut().socket_mut();
    let _ = socket.set_ext_ack(true);
    let _ = socket.set_cap_ack(true);
    conn
}

/// The NLMSGERR_ATTR_MSG text of an error's payload: the capped request header (16 bytes),
/// then attributes.
fn kernel_message(payload: &[u8]) -> Option<String> {
    const NLMSGERR_ATTR_MSG: u16 = 1;
    let mut rest = payload.get(16..)?;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        let value = rest.get(4..len)?;
        if kind == NLMSGERR_ATTR_MSG {
            let text = value.split(|b| *b == 0).next().unwrap_or_default();
            let text = String::from_utf8_lossy(text)
                .trim()
                .trim_end_matches('.')
                .to_string();
            return (!text.is_empty()).then_some(text);
        }
        rest = rest.get((len + 3) & !3..).unwrap_or_default();
    }
    None
}

fn runtime(ns: &str) -> Result<tokio::runtime::Handle, NetlinkError> {
    tokio::runtime::Handle::try_current().map_err(|e| NetlinkError::Socket {
        ns: ns.to_string(),
        source: std::io::Error::other(e),
    })
}

/// `net:[4026531840]`: how the kernel names the calling thread's namespace.
fn current_ns_name() -> String {
    std::fs::read_link("/proc/thread-self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "the current network namespace".into())
}

/// The namespace's path, unless that path means "whichever thread opens it".
fn ns_name(ns: &netns::Netns) -> String {
    let path = ns.path();
    if path.starts_with("/proc/thread-self") || path.starts_with("/proc/self") {
        ns.run(current_ns_name)
            .unwrap_or_else(|_| path.display().to_string())
    } else {
        path.display().to_string()
    }
}

/// A file descriptor for `ns`: its path opened again when that is the same namespace (no thread
/// needed), else opened from inside it (thread-relative paths such as `Netns::current()`'s).
fn open_ns_fd(ns: &netns::Netns) -> Result<File, NetlinkError> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(file) = File::open(ns.path()) {
        let same = file.metadata().map(|m| (m.dev(), m.ino())).ok() == ns.id().ok();
        if same {
            return Ok(file);
        }
    }
    let self_ns = Path::new("/proc/thread-self/ns/net");
    ns.run(|| File::open(self_ns))?.map_err(|source| {
        NetlinkError::Netns(netns::NetnsError::Open {
            path: ns.path().to_path_buf(),
            source,
        })
    })
}

/// The positive errno of a kernel refusal.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn errno_in(e: &rtnetlink::Error, absent: &[Errno]) -> bool {
    errno(e).is_some_and(|n| absent.iter().any(|a| *a as i32 == n))
}

fn is_no_device(e: &rtnetlink::Error) -> bool {
    errno_in(e, &[Errno::ENODEV])
}

fn to_link(m: LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
        peer: None,
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => link.mac = <[u8; 6]>::try_from(&a[..]).ok(),
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Link(peer) => link.peer = Some(peer),
            _ => {}
        }
    }
    link
}

fn to_ipv4_address(m: AddressMessage) -> Option<Ipv4Net> {
    if m.header.family != AddressFamily::Inet {
        return None;
    }
    // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on point-to-point links).
    let mut local = None;
    let mut address = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(IpAddr::V4(ip)) => local = Some(*ip),
            AddressAttribute::Address(IpAddr::V4(ip)) => address = Some(*ip),
            _ => {}
        }
    }
    Ipv4Net::new(local.or(address)?, m.header.prefix_len).ok()
}

fn route_message(r: &Route) -> RouteMessage {
    let scope = match r.scope {
        Scope::Universe => RouteScope::Universe,
        Scope::Link => RouteScope::Link,
        Scope::Host => RouteScope::Host,
    };
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .table_id(r.table)
        .scope(scope);
    if let Some(gw) = r.gateway {
        b = b.gateway(gw);
    }
    if let Some(oif) = r.oif {
        b = b.output_interface(oif);
    }
    if r.onlink {
        b = b.onlink();
    }
    b.build()
}

fn to_route(m: RouteMessage) -> Option<Route> {
    if m.header.address_family != AddressFamily::Inet || m.header.kind != RouteType::Unicast {
        return None;
    }
    let scope = match m.header.scope {
        RouteScope::Universe => Scope::Universe,
        RouteScope::Link => Scope::Link,
        RouteScope::Host => Scope::Host,
        _ => return None,
    };
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut route = Route {
        dst: Ipv4Net::default(),
        gateway: None,
        oif: None,
        table: u32::from(m.header.table),
        scope,
        onlink: m.header.flags.contains(RouteFlags::Onlink),
    };
    for a in m.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => route.gateway = Some(ip),
            RouteAttribute::Oif(i) => route.oif = Some(i),
            RouteAttribute::Table(t) => route.table = t,
            RouteAttribute::MultiPath(_) => return None,
            _ => {}
        }
    }
    route.dst = Ipv4Net::new(dst, m.header.destination_prefix_length).ok()?;
    Some(route)
}

fn rule_message(r: &Rule) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.action = RuleAction::ToTable;
    // FRA_TABLE takes precedence over the header's 8-bit field; tables above 255 need it.
    m.header.table = u8::try_from(r.table).unwrap_or(0);
    m.attributes.push(RuleAttribute::Table(r.table));
    m.attributes.push(RuleAttribute::Priority(r.priority));
    if let Some(src) = r.src {
        m.header.src_len = src.prefix_len();
        m.attributes
            .push(RuleAttribute::Source(IpAddr::V4(src.addr())));
    }
    if let Some(dst) = r.dst {
        m.header.dst_len = dst.prefix_len();
        m.attributes
            .push(RuleAttribute::Destination(IpAddr::V4(dst.addr())));
    }
    if let Some((mark, mask)) = r.fwmark {
        m.attributes.push(RuleAttribute::FwMark(mark));
        m.attributes.push(RuleAttribute::FwMask(mask));
    }
    m
}

fn to_rule(m: RuleMessage) -> Option<Rule> {
    if m.header.family != AddressFamily::Inet
        || m.header.action != RuleAction::ToTable
        || m.header.tos != 0
    {
        return None;
    }
    let mut rule = Rule {
        priority: 0,
        src: None,
        dst: None,
        table: u32::from(m.header.table),
        fwmark: None,
    };
    let (mut mark, mut mask) = (None, None);
    for a in m.attributes {
        match a {
            RuleAttribute::Priority(p) => rule.priority = p,
            RuleAttribute::Table(t) => rule.table = t,
            RuleAttribute::Source(IpAddr::V4(ip)) => {
                rule.src = Ipv4Net::new(ip, m.header.src_len).ok()
            }
            RuleAttribute::Destination(IpAddr::V4(ip)) => {
                rule.dst = Ipv4Net::new(ip, m.header.dst_len).ok()
            }
            RuleAttribute::FwMark(v) => mark = Some(v),
            RuleAttribute::FwMask(v) => mask = Some(v),
            RuleAttribute::L3MDev(false) | RuleAttribute::Protocol(_) => {}
            RuleAttribute::SuppressPrefixLen(v) | RuleAttribute::SuppressIfGroup(v)
                if v == u32::MAX => {}
            // A selector or option `Rule` cannot carry: not one of ours.
            _ => return None,
        }
    }
    match (mark, mask) {
        (None | Some(0), None | Some(0)) => {}
        (m, k) => rule.fwmark = Some((m.unwrap_or(0), k.unwrap_or(u32::MAX))),
    }
    Some(rule)
}
