//! The node's side of the datapath (`datapath.md`): one route table per ENI, SNAT and connmark,
//! start-up sysctls.

pub mod conntrack;
pub mod eni;
pub mod iptables;
pub mod node;
pub mod service_rules;
pub mod snat;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    #[error("no interface with MAC {mac} appeared on the node within {waited:?}")]
    NoLink {
        mac: String,
        waited: std::time::Duration,
    },
    #[error("sysctl {key}: {source}")]
    Sysctl { key: String, source: std::io::Error },
    #[error(transparent)]
    Command(#[from] command::CommandError),
}

/// Writes a sysctl of the namespace ipamd runs in.
pub fn sysctl(key: &str, value: &str) -> Result<(), DatapathError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|source| DatapathError::Sysctl {
        key: key.to_string(),
        source,
    })
}
