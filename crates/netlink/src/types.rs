//! What the verbs take and return, and the error that names the operation and both sides.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

pub use node_contract::MAIN_TABLE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub up: bool,
    /// A veth's peer: its interface index, in the peer's namespace (IFLA_LINK).
    pub peer: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Universe,
    Link,
    Host,
}

/// An IPv4 unicast route. `dst` keeps its prefix length (`0.0.0.0/0` is the default route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub table: u32,
    pub scope: Scope,
    pub onlink: bool,
}

/// An IPv4 `lookup <table>` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub priority: u32,
    pub src: Option<Ipv4Net>,
    pub dst: Option<Ipv4Net>,
    pub table: u32,
    /// (mark, mask)
    pub fwmark: Option<(u32, u32)>,
}

impl Route {
    /// `dst/len dev <index> scope link` in `table`.
    pub fn link_scope(dst: Ipv4Net, oif: u32, table: u32) -> Self {
        Route {
            dst,
            gateway: None,
            oif: Some(oif),
            table,
            scope: Scope::Link,
            onlink: false,
        }
    }

    /// `default via <gateway> dev <index>` in `table`.
    pub fn default_via(gateway: Ipv4Addr, oif: u32, table: u32) -> Self {
        Route {
            dst: Ipv4Net::default(),
            gateway: Some(gateway),
            oif: Some(oif),
            table,
            scope: Scope::Universe,
            onlink: false,
        }
    }
}

/// Written like `ip route` does, with the interface index (the socket adds the name when it can).
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dst.prefix_len() == 0 && self.dst.addr().is_unspecified() {
            write!(f, "default")?;
        } else {
            write!(f, "{}", self.dst)?;
        }
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " dev #{oif}")?;
        }
        write!(f, " table {}", table_name(self.table))?;
        match self.scope {
            Scope::Universe => {}
            Scope::Link => write!(f, " scope link")?,
            Scope::Host => write!(f, " scope host")?,
        }
        if self.onlink {
            write!(f, " onlink")?;
        }
        Ok(())
    }
}

/// Written like `ip rule` does.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pref {}", self.priority)?;
        if let Some(src) = self.src {
            write!(f, " from {src}")?;
        }
        if let Some(dst) = self.dst {
            write!(f, " to {dst}")?;
        }
        if let Some((mark, mask)) = self.fwmark {
            write!(f, " fwmark {mark:#x}/{mask:#x}")?;
        }
        write!(f, " lookup {}", table_name(self.table))
    }
}

fn table_name(table: u32) -> String {
    match table {
        MAIN_TABLE => "main".to_string(),
        255 => "local".to_string(),
        253 => "default".to_string(),
        n => n.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel refused: `op` says what was asked (with the devices by name), `ns` where.
    /// `detail` is the kernel's own explanation, when it gives one.
    #[error("{op} in {ns}: {}", explain(*.errno, .detail))]
    Kernel {
        op: String,
        ns: String,
        errno: i32,
        detail: Option<String>,
    },
    /// A create found its name taken (errno EEXIST).
    #[error("{what} already exists in {ns}")]
    Exists { what: String, ns: String },
    /// Something we just made or were pointed at is not there (errno ENODEV).
    #[error("{what} not found in {ns}")]
    NotFound { what: String, ns: String },
    #[error("open a netlink socket in {ns}: {source}")]
    Socket { ns: String, source: std::io::Error },
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    /// The connection task is gone (its runtime shut down) or the reply made no sense.
    #[error("{op} in {ns}: {detail}")]
    Protocol {
        op: String,
        ns: String,
        detail: String,
    },
    #[error("invalid MAC address {input:?}: expected six hex bytes separated by ':'")]
    InvalidMac { input: String },
}

fn explain(errno: i32, detail: &Option<String>) -> String {
    let desc = nix::errno::Errno::from_raw(errno).desc();
    match detail {
        Some(d) => format!("{desc} ({d})"),
        None => desc.to_string(),
    }
}

impl NetlinkError {
    /// The errno behind the error (positive, e.g. `libc::EEXIST` = 17), when there is one.
    pub fn errno(&self) -> Option<i32> {
        use nix::errno::Errno;
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            NetlinkError::Exists { .. } => Some(Errno::EEXIST as i32),
            NetlinkError::NotFound { .. } => Some(Errno::ENODEV as i32),
            NetlinkError::Socket { source, .. } => source.raw_os_error(),
            NetlinkError::Netns(netns::NetnsError::Open { source, .. }) => source.raw_os_error(),
            NetlinkError::Netns(netns::NetnsError::Enter { source, .. }) => Some(*source as i32),
            NetlinkError::Netns(_)
            | NetlinkError::Protocol { .. }
            | NetlinkError::InvalidMac { .. } => None,
        }
    }

    /// True for "no such thing" answers: ENOENT, ESRCH, ENODEV.
    pub fn is_not_found(&self) -> bool {
        use nix::errno::Errno;
        matches!(self.errno(), Some(e) if e == Errno::ENOENT as i32 || e == Errno::ESRCH as i32 || e == Errno::ENODEV as i32)
    }

    /// True for EEXIST.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(nix::errno::Errno::EEXIST as i32)
    }
}

/// `"0a:1b:2c:3d:4e:5f"` (either case; `-` also accepted as separator).
pub fn parse_mac(s: &str) -> Result<[u8; 6], NetlinkError> {
    let invalid = || NetlinkError::InvalidMac {
        input: s.to_string(),
    };
    let mut mac = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for byte in mac.iter_mut() {
        let part = parts.next().ok_or_else(invalid)?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
    }
    if parts.next().is_some() {
        return Err(invalid());
    }
    Ok(mac)
}

/// Lower-case, colon separated, as `ip link` prints it.
pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m = parse_mac("0A:1b:2c:3d:4e:FF").expect("valid");
        assert_eq!(m, [0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0xff]);
        assert_eq!(format_mac(&m), "0a:1b:2c:3d:4e:ff");
        assert_eq!(parse_mac("0a-1b-2c-3d-4e-ff").expect("dashes"), m);
    }

    #[test]
    fn mac_rejects_garbage() {
        for bad in [
            "",
            "0a:1b:2c:3d:4e",
            "0a:1b:2c:3d:4e:5f:60",
            "0a:1b:2c:3d:4e:5",
            "0a:1b:2c:3d:4e:5g",
            "0a:1b:2c:3d:4e:+f",
            "0a1b2c3d4e5f",
        ] {
            let err = parse_mac(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid MAC address"), "{err}");
            assert_eq!(err.errno(), None);
        }
    }

    #[test]
    fn route_and_rule_read_like_ip() {
        let r = Route::default_via("10.0.0.1".parse().expect("ip"), 3, 2);
        assert_eq!(r.to_string(), "default via 10.0.0.1 dev #3 table 2");
        let r = Route::link_scope("169.254.1.1/32".parse().expect("net"), 7, MAIN_TABLE);
        assert_eq!(r.to_string(), "169.254.1.1/32 dev #7 table main scope link");
        let rule = Rule {
            priority: 1024,
            src: None,
            dst: None,
            table: MAIN_TABLE,
            fwmark: Some((0x80, 0x80)),
        };
        assert_eq!(rule.to_string(), "pref 1024 fwmark 0x80/0x80 lookup main");
    }

    #[test]
    fn kernel_error_names_operation_and_errno() {
        let e = NetlinkError::Kernel {
            op: "add route 10.0.0.0/24 via 10.0.0.1 table 2".into(),
            ns: "/run/netns/x".into(),
            errno: 17,
            detail: None,
        };
        assert_eq!(
            e.to_string(),
            "add route 10.0.0.0/24 via 10.0.0.1 table 2 in /run/netns/x: File exists"
        );
        assert!(e.is_exists());
        assert!(!e.is_not_found());
        let e = NetlinkError::Kernel {
            op: "replace route default via 192.0.2.1 dev eth0 table 4".into(),
            ns: "net:[4026531840]".into(),
            errno: 22,
            detail: Some("Nexthop has invalid gateway".into()),
        };
        assert_eq!(
            e.to_string(),
            "replace route default via 192.0.2.1 dev eth0 table 4 in net:[4026531840]: \
             Invalid argument (Nexthop has invalid gateway)"
        );
    }
}
