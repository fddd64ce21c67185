//! What the runtime hands the plugin: the network configuration on stdin and the `CNI_*`
//! environment. Parsing is pure so it can be fuzzed; every error carries its CNI code.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, Code};

pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
pub const DEFAULT_LOG_FILE: &str = "/var/log/aws-routed-eni/plugin.log";
pub use node_contract::DEFAULT_MTU;

#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub mtu: u32,
    pub veth_prefix: String,
    pub log_file: String,
    pub log_level: String,
    pub ipamd_address: String,
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC): (container id, interface).
    pub valid_attachments: Option<Vec<(String, String)>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Mtu {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
struct RawConf {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    #[serde(default)]
    name: String,
    mtu: Option<Mtu>,
    #[serde(rename = "vethPrefix")]
    veth_prefix: Option<String>,
    #[serde(rename = "pluginLogFile")]
    log_file: Option<String>,
    #[serde(rename = "pluginLogLevel")]
    log_level: Option<String>,
    #[serde(rename = "ipamdAddress")]
    ipamd_address: Option<String>,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Deserialize)]
struct Attachment {
    #[serde(rename = "containerID")]
    container_id: String,
    #[serde(default)]
    ifname: String,
}

fn invalid(msg: String) -> CniError {
    CniError::new(Code::InvalidConfig, msg)
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let raw: RawConf = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                Code::Decode,
                format!("the network configuration on stdin is not valid JSON: {e}"),
            )
        })?;
        let version = if raw.cni_version.is_empty() {
            "0.3.0".to_string()
        } else {
            raw.cni_version
        };
        if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "cniVersion {version} is not supported; supported: {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        let mtu = match raw.mtu {
            None => DEFAULT_MTU,
            Some(Mtu::Number(n)) => {
                u32::try_from(n).map_err(|_| invalid(format!("mtu {n} is out of range")))?
            }
            Some(Mtu::Text(t)) => t
                .trim()
                .parse()
                .map_err(|_| invalid(format!("mtu {t:?} is not a number")))?,
        };
        let range = node_contract::MTU_RANGE;
        if !range.contains(&mtu) {
            return Err(invalid(format!(
                "mtu {mtu} is outside {}-{}",
                range.start(),
                range.end()
            )));
        }
        let veth_prefix = raw
            .veth_prefix
            .unwrap_or_else(|| node_contract::DEFAULT_VETH_PREFIX.to_string());
        node_contract::check_veth_prefix(&veth_prefix)
            .map_err(|why| invalid(format!("vethPrefix {veth_prefix:?}: {why}")))?;
        Ok(NetConf {
            cni_version: version,
            name: raw.name,
            mtu,
            veth_prefix,
            log_file: raw.log_file.unwrap_or_else(|| DEFAULT_LOG_FILE.to_string()),
            log_level: raw.log_level.unwrap_or_else(|| "DEBUG".to_string()),
            ipamd_address: raw
                .ipamd_address
                .unwrap_or_else(|| node_contract::GRPC_ADDRESS.to_string()),
            prev_result: raw.prev_result,
            valid_attachments: raw
                .valid_attachments
                .map(|v| v.into_iter().map(|a| (a.container_id, a.ifname)).collect()),
        })
    }

    /// The host veth's MAC recorded in `prevResult` (the interface named `host_if` without a
    /// sandbox): a random MAC per ADD, so it tells this sandbox's veth from a later one's.
    pub fn prev_host_mac(&self, host_if: &str) -> Option<[u8; 6]> {
        let interfaces = self.prev_result.as_ref()?.get("interfaces")?.as_array()?;
        interfaces.iter().find_map(|i| {
            if i.get("name")?.as_str()? != host_if || i.get("sandbox").is_some() {
                return None;
            }
            netlink::parse_mac(i.get("mac")?.as_str()?).ok()
        })
    }

    /// The pod address recorded in `prevResult` (DEL without ipamd, CHECK).
    pub fn prev_ip(&self) -> Option<Ipv4Addr> {
        let ips = self.prev_result.as_ref()?.get("ips")?.as_array()?;
        ips.iter().find_map(|ip| {
            let addr = ip.get("address")?.as_str()?;
            addr.split('/').next()?.parse().ok()
        })
    }
}

/// The `CNI_*` environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub if_name: String,
    pub args: BTreeMap<String, String>,
}

impl CniEnv {
    pub fn pod_name(&self) -> &str {
        self.args
            .get("K8S_POD_NAME")
            .map(String::as_str)
            .unwrap_or_default()
    }
    pub fn pod_namespace(&self) -> &str {
        self.args
            .get("K8S_POD_NAMESPACE")
            .map(String::as_str)
            .unwrap_or_default()
    }
    pub fn infra_container_id(&self) -> &str {
        self.args
            .get("K8S_POD_INFRA_CONTAINER_ID")
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Reads the variables `command` needs; `lookup` is the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let command = lookup("CNI_COMMAND")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| missing("CNI_COMMAND"))?;
        let needs = |var: &str| -> bool {
            match command.as_str() {
                "ADD" | "CHECK" => matches!(var, "CNI_CONTAINERID" | "CNI_NETNS" | "CNI_IFNAME"),
                "DEL" => matches!(var, "CNI_CONTAINERID" | "CNI_IFNAME"),
                _ => false,
            }
        };
        let get = |var: &str| -> Result<String, CniError> {
            match lookup(var).filter(|v| !v.is_empty()) {
                Some(v) => Ok(v),
                None if needs(var) => Err(missing(var)),
                None => Ok(String::new()),
            }
        };
        let args = lookup("CNI_ARGS").unwrap_or_default();
        let mut parsed = BTreeMap::new();
        for pair in args.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                CniError::new(
                    Code::InvalidEnv,
                    format!("CNI_ARGS entry {pair:?} is not KEY=VALUE"),
                )
            })?;
            parsed.insert(k.to_string(), v.to_string());
        }
        Ok(CniEnv {
            container_id: get("CNI_CONTAINERID")?,
            netns: get("CNI_NETNS")?,
            if_name: get("CNI_IFNAME")?,
            args: parsed,
            command,
        })
    }
}

fn missing(var: &str) -> CniError {
    CniError::new(Code::InvalidEnv, format!("{var} is not set"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_as_string_or_number_and_defaults() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni","mtu":"1500"}"#,
        )
        .unwrap();
        assert_eq!((c.mtu, c.veth_prefix.as_str()), (1500, "eni"));
        let c =
            NetConf::parse(br#"{"cniVersion":"0.4.0","name":"n","mtu":9001,"vethPrefix":"abc"}"#)
                .unwrap();
        assert_eq!((c.mtu, c.veth_prefix.as_str()), (9001, "abc"));
        assert_eq!(c.ipamd_address, "unix:///var/run/aws-node/ipamd.sock");
    }

    #[test]
    fn bad_configs_carry_their_codes() {
        assert_eq!(NetConf::parse(b"{not json").unwrap_err().code, Code::Decode);
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"9.9.9"}"#)
                .unwrap_err()
                .code,
            Code::IncompatibleVersion
        );
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","mtu":"big"}"#).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
        assert!(e.msg.contains("\"big\""));
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"1.0.0","vethPrefix":"eth"}"#)
                .unwrap_err()
                .code,
            Code::InvalidConfig
        );
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"1.0.0","mtu":100}"#)
                .unwrap_err()
                .code,
            Code::InvalidConfig
        );
    }

    #[test]
    fn prev_result_host_mac() {
        let c = NetConf::parse(br#"{"cniVersion":"1.0.0","prevResult":{"interfaces":[{"name":"eni1","mac":"02:aa:bb:cc:dd:ee"},{"name":"eth0","mac":"02:00:00:00:00:01","sandbox":"/run/netns/p"}]}}"#).unwrap();
        assert_eq!(
            c.prev_host_mac("eni1"),
            Some([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])
        );
        assert_eq!(
            c.prev_host_mac("eth0"),
            None,
            "the pod's own interface is not the host veth"
        );
        assert_eq!(c.prev_host_mac("eni2"), None);
    }

    #[test]
    fn prev_result_address() {
        let c = NetConf::parse(br#"{"cniVersion":"1.0.0","prevResult":{"ips":[{"address":"100.64.1.5/32","interface":1}]}}"#).unwrap();
        assert_eq!(c.prev_ip(), Some(Ipv4Addr::new(100, 64, 1, 5)));
    }

    #[test]
    fn environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let e = CniEnv::from_lookup(vars(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
            ),
        ]))
        .unwrap();
        assert_eq!((e.pod_namespace(), e.pod_name()), ("default", "web"));
        let err = CniEnv::from_lookup(vars(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "abc")]))
            .unwrap_err();
        assert_eq!(err.code, Code::InvalidEnv);
        assert!(err.msg.contains("CNI_NETNS"));
        assert_eq!(
            CniEnv::from_lookup(vars(&[])).unwrap_err().code,
            Code::InvalidEnv
        );
        // DEL needs no netns (the pod may be gone).
        assert!(
            CniEnv::from_lookup(vars(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "a"),
                ("CNI_IFNAME", "eth0")
            ]))
            .is_ok()
        );
        let err = CniEnv::from_lookup(vars(&[("CNI_COMMAND", "VERSION"), ("CNI_ARGS", "novalue")]))
            .unwrap_err();
        assert!(err.msg.contains("novalue"));
    }
}
