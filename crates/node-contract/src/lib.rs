//! The node contract: the facts that both sides of the plugin↔ipamd seam (and `vpcctl`, and the
//! tests) must agree on, each defined once here. Changing one changes it everywhere.

pub mod introspection;

use std::net::Ipv4Addr;

/// The kernel's main routing table (`ip route ... table main`).
pub const MAIN_TABLE: u32 = 254;

/// `to <pod address> lookup main`: traffic to a pod is routed by its host route.
pub const TO_POD_RULE_PRIORITY: u32 = 512;
/// `fwmark <connmark> lookup main`: replies to connections that came in on the primary
/// interface leave through it.
pub const CONNMARK_RULE_PRIORITY: u32 = 1024;
/// `to <service CIDR> lookup main` (`AWS_EXTERNAL_SERVICE_CIDRS`), ahead of the from-ENI rules.
pub const SERVICE_RULE_PRIORITY: u32 = 1535;
/// `from <address on an ENI> lookup <the ENI's table>`: a pod's (and the ENI's own primary
/// address's) traffic leaves through its ENI.
pub const FROM_ENI_RULE_PRIORITY: u32 = 1536;

/// The pod's gateway: a link-local address answered by the host veth (permanent neighbour).
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// ipamd's gRPC socket (mode 0660).
pub const GRPC_SOCKET: &str = "/var/run/aws-node/ipamd.sock";
/// The same, as the plugin's `ipamdAddress` and ipamd's `IPAMD_GRPC_ADDRESS` spell it.
pub const GRPC_ADDRESS: &str = "unix:///var/run/aws-node/ipamd.sock";

/// Introspection: HTTP on loopback.
pub const INTROSPECTION_PORT: u16 = 61679;
pub const INTROSPECTION_ADDRESS: &str = "127.0.0.1:61679";

/// Prometheus metrics.
pub const METRICS_PORT: u16 = 61678;
pub const METRICS_ADDRESS: &str = "0.0.0.0:61678";

/// The VPC router of a subnet, as EC2 documents it: the subnet's network address + 1. An ENI's
/// table routes through it (and the testbed's router answers there).
pub fn subnet_router(network: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(network).wrapping_add(1))
}

/// The host veth names' prefix (`AWS_VPC_K8S_CNI_VETHPREFIX`, the plugin's `vethPrefix`).
pub const DEFAULT_VETH_PREFIX: &str = "eni";

/// Checks a veth prefix: 1 to 4 letters, digits, `-` or `_` (a 15-character interface name
/// must hold it and 11 hash characters), and not a prefix of the node's own interfaces.
pub fn check_veth_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() || prefix.len() > 4 {
        return Err("expected 1 to 4 characters");
    }
    if !prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("expected letters, digits, - or _ only");
    }
    if ["eth", "lo", "vlan"].contains(&prefix) {
        return Err("eth, lo and vlan are taken by the node's own interfaces");
    }
    Ok(())
}

/// MTUs accepted for ENIs and pods (`AWS_VPC_ENI_MTU`, `POD_MTU`, the plugin's `mtu`).
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 576..=9001;
/// EC2's jumbo frames.
pub const DEFAULT_MTU: u32 = 9001;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_prefixes() {
        for ok in ["eni", "a", "ab-_", "AB12"] {
            assert_eq!(check_veth_prefix(ok), Ok(()), "{ok}");
        }
        for bad in ["", "toolong", "eth", "lo", "vlan", "a b", "é"] {
            assert!(check_veth_prefix(bad).is_err(), "{bad}");
        }
        assert!(MTU_RANGE.contains(&DEFAULT_MTU));
    }

    #[test]
    fn addresses_agree_with_their_parts() {
        assert_eq!(GRPC_ADDRESS, format!("unix://{GRPC_SOCKET}"));
        assert_eq!(
            INTROSPECTION_ADDRESS,
            format!("127.0.0.1:{INTROSPECTION_PORT}")
        );
        assert_eq!(METRICS_ADDRESS, format!("0.0.0.0:{METRICS_PORT}"));
        // The service rules must come before the from-ENI rules, after the connmark rule.
        const {
            assert!(TO_POD_RULE_PRIORITY < CONNMARK_RULE_PRIORITY);
            assert!(CONNMARK_RULE_PRIORITY < SERVICE_RULE_PRIORITY);
            assert!(SERVICE_RULE_PRIORITY < FROM_ENI_RULE_PRIORITY);
        }
    }
}
