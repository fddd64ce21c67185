//! `ipamd`'s settings: the environment variables of the existing implementation, with the same
//! names and defaults, each also a `--flag`. Invalid values are refused with a message naming the
//! variable and what it accepts; nothing falls back silently to a default.

mod parse;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args};
use ipnet::Ipv4Net;

pub use parse::{SettingsError, parse_bool};
use parse::{
    parse_connmark, parse_exclude_cidrs, parse_loopback_addr, parse_mtu, parse_tags,
    parse_veth_prefix,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SgFallback {
    /// CreateNetworkInterface without groups: EC2 applies the VPC's default security group.
    VpcDefault,
    /// Copy the primary ENI's groups (what the older implementation's code did).
    PrimaryEni,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RandomizeSnat {
    /// `--random-fully`
    Prng,
    /// `--random`
    Hashrandom,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[value(rename_all = "UPPER")]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// Every setting of `interfaces.md`. Field docs are the `--help` text.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct IpamdSettings {
    /// Custom networking: pod ENIs in the subnet and security groups of the node's ENIConfig.
    #[arg(long = "custom-network-cfg", env = "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", value_name = "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
          default_value = "false", value_parser = parse_bool, action = ArgAction::Set)]
    pub custom_network_cfg: bool,

    /// Node label whose value names the ENIConfig (empty: the default key).
    #[arg(
        long = "eni-config-label-def",
        env = "ENI_CONFIG_LABEL_DEF",
        value_name = "ENI_CONFIG_LABEL_DEF"
    )]
    pub eni_config_label_def: Option<String>,

    /// Node annotation whose value names the ENIConfig; wins over the label (empty: the default key).
    #[arg(
        long = "eni-config-annotation-def",
        env = "ENI_CONFIG_ANNOTATION_DEF",
        value_name = "ENI_CONFIG_ANNOTATION_DEF"
    )]
    pub eni_config_annotation_def: Option<String>,

    /// Security groups for pod ENIs when the ENIConfig lists none.
    #[arg(
        long = "eni-config-sg-fallback",
        env = "ENI_CONFIG_SG_FALLBACK",
        value_name = "ENI_CONFIG_SG_FALLBACK",
        value_enum,
        default_value = "vpc-default"
    )]
    pub eni_config_sg_fallback: SgFallback,

    /// Whole ENIs of free addresses to keep ready.
    #[arg(
        long = "warm-eni-target",
        env = "WARM_ENI_TARGET",
        value_name = "WARM_ENI_TARGET",
        default_value = "1"
    )]
    pub warm_eni_target: u32,

    /// Free addresses to keep ready (0: unset); overrides WARM_ENI_TARGET.
    #[arg(
        long = "warm-ip-target",
        env = "WARM_IP_TARGET",
        value_name = "WARM_IP_TARGET",
        default_value = "0"
    )]
    pub warm_ip_target: u32,

    /// Addresses to hold at least (0: unset).
    #[arg(
        long = "minimum-ip-target",
        env = "MINIMUM_IP_TARGET",
        value_name = "MINIMUM_IP_TARGET",
        default_value = "0"
    )]
    pub minimum_ip_target: u32,

    /// Assign /28 prefixes instead of single addresses (Nitro or bare metal).
    #[arg(long = "enable-prefix-delegation", env = "ENABLE_PREFIX_DELEGATION", value_name = "ENABLE_PREFIX_DELEGATION",
          default_value = "false", value_parser = parse_bool, action = ArgAction::Set)]
    pub enable_prefix_delegation: bool,

    /// Free prefixes to keep ready under prefix delegation.
    #[arg(
        long = "warm-prefix-target",
        env = "WARM_PREFIX_TARGET",
        value_name = "WARM_PREFIX_TARGET",
        default_value = "0"
    )]
    pub warm_prefix_target: u32,

    /// Cap on the instance's interfaces, the primary included (at least 1).
    #[arg(long = "max-eni", env = "MAX_ENI", value_name = "MAX_ENI",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_eni: Option<u32>,

    /// Seconds a released address waits before it is handed out again.
    #[arg(
        long = "ip-cooldown-period",
        env = "IP_COOLDOWN_PERIOD",
        value_name = "IP_COOLDOWN_PERIOD",
        default_value = "30"
    )]
    pub ip_cooldown_period: u64,

    /// Pods' traffic to outside the VPC is translated elsewhere (a NAT gateway): no SNAT rules.
    #[arg(long = "external-snat", env = "AWS_VPC_K8S_CNI_EXTERNALSNAT", value_name = "AWS_VPC_K8S_CNI_EXTERNALSNAT",
          default_value = "false", value_parser = parse_bool, action = ArgAction::Set)]
    pub external_snat: bool,

    /// Comma-separated IPv4 CIDRs that pods reach without SNAT.
    #[arg(long = "exclude-snat-cidrs", env = "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", value_name = "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS",
          default_value = "", value_parser = parse_exclude_cidrs)]
    pub exclude_snat_cidrs: CidrList,

    /// SNAT port randomisation.
    #[arg(
        long = "randomize-snat",
        env = "AWS_VPC_K8S_CNI_RANDOMIZESNAT",
        value_name = "AWS_VPC_K8S_CNI_RANDOMIZESNAT",
        value_enum,
        default_value = "prng"
    )]
    pub randomize_snat: RandomizeSnat,

    /// Connection mark for pod connections that need the primary interface (hex or decimal).
    #[arg(long = "connmark", env = "AWS_VPC_K8S_CNI_CONNMARK", value_name = "AWS_VPC_K8S_CNI_CONNMARK",
          default_value = "0x80", value_parser = parse_connmark)]
    pub connmark: u32,

    /// Prefix of host-side veth names: at most 4 characters, not eth, lo or vlan.
    #[arg(long = "veth-prefix", env = "AWS_VPC_K8S_CNI_VETHPREFIX", value_name = "AWS_VPC_K8S_CNI_VETHPREFIX",
          default_value = "eni", value_parser = parse_veth_prefix)]
    pub veth_prefix: String,

    /// MTU of pod ENIs (576-9001).
    #[arg(long = "eni-mtu", env = "AWS_VPC_ENI_MTU", value_name = "AWS_VPC_ENI_MTU", default_value = "9001", value_parser = parse_mtu)]
    pub eni_mtu: u32,

    /// MTU of pod interfaces (576-9001; default: the ENI MTU).
    #[arg(long = "pod-mtu", env = "POD_MTU", value_name = "POD_MTU", value_parser = parse_mtu)]
    pub pod_mtu: Option<u32>,

    /// Tags new ENIs with cluster.k8s.amazonaws.com/name=<this>.
    #[arg(
        long = "cluster-name",
        env = "CLUSTER_NAME",
        value_name = "CLUSTER_NAME"
    )]
    pub cluster_name: Option<String>,

    /// JSON object of extra tags for new ENIs; keys containing k8s.amazonaws.com are refused.
    #[arg(long = "additional-eni-tags", env = "ADDITIONAL_ENI_TAGS", value_name = "ADDITIONAL_ENI_TAGS",
          default_value = "{}", value_parser = parse_tags)]
    pub additional_eni_tags: Tags,

    /// Do not delete this node's leaked ENIs.
    #[arg(long = "disable-leaked-eni-cleanup", env = "DISABLE_LEAKED_ENI_CLEANUP", value_name = "DISABLE_LEAKED_ENI_CLEANUP",
          default_value = "false", value_parser = parse_bool, action = ArgAction::Set)]
    pub disable_leaked_eni_cleanup: bool,

    /// IPv6 pods (refused together with custom networking).
    #[arg(long = "enable-ipv6", env = "ENABLE_IPv6", value_name = "ENABLE_IPv6",
          default_value = "false", value_parser = parse_bool, action = ArgAction::Set)]
    pub enable_ipv6: bool,

    /// The checkpoint file.
    #[arg(
        long = "backing-store",
        env = "AWS_VPC_K8S_CNI_BACKING_STORE",
        value_name = "AWS_VPC_K8S_CNI_BACKING_STORE",
        default_value = "/var/run/aws-node/ipam.json"
    )]
    pub backing_store: PathBuf,

    /// Log level.
    #[arg(
        long = "log-level",
        env = "AWS_VPC_K8S_CNI_LOGLEVEL",
        value_name = "AWS_VPC_K8S_CNI_LOGLEVEL",
        value_enum,
        ignore_case = true,
        default_value = "DEBUG"
    )]
    pub log_level: LogLevel,

    /// Log destination: stdout, stderr or a file path.
    #[arg(
        long = "log-file",
        env = "AWS_VPC_K8S_CNI_LOG_FILE",
        value_name = "AWS_VPC_K8S_CNI_LOG_FILE",
        default_value = "stdout"
    )]
    pub log_file: String,

    /// Introspection HTTP address; loopback only.
    #[arg(long = "introspection-bind-address", env = "INTROSPECTION_BIND_ADDRESS", value_name = "INTROSPECTION_BIND_ADDRESS",
          default_value = "127.0.0.1:61679", value_parser = parse_loopback_addr)]
    pub introspection_bind_address: SocketAddr,

    /// Serve no introspection.
    #[arg(long = "disable-introspection", env = "DISABLE_INTROSPECTION", value_name = "DISABLE_INTROSPECTION",
          default_value = "false", value_parser = parse_bool, action = ArgAction::Set)]
    pub disable_introspection: bool,

    /// Serve no metrics.
    #[arg(long = "disable-metrics", env = "DISABLE_METRICS", value_name = "DISABLE_METRICS",
          default_value = "false", value_parser = parse_bool, action = ArgAction::Set)]
    pub disable_metrics: bool,

    /// This node's name (Kubernetes mode).
    #[arg(long = "node-name", env = "MY_NODE_NAME", value_name = "MY_NODE_NAME")]
    pub my_node_name: Option<String>,
}

/// A parsed list of CIDRs (a newtype so clap takes the whole comma-separated value at once).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CidrList(pub Vec<Ipv4Net>);

/// Extra ENI tags, sorted by key, and the keys refused because they use our reserved prefix
/// (ipamd warns about those at start-up).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tags {
    pub tags: BTreeMap<String, String>,
    pub refused: Vec<String>,
}

impl IpamdSettings {
    /// Checks that concern more than one setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.custom_network_cfg && self.enable_ipv6 {
            return Err(SettingsError::Conflict(
                "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true cannot be combined with ENABLE_IPv6=true: \
                 custom networking supports IPv4 pods only"
                    .to_string(),
            ));
        }
        Ok(())
    }

    pub fn pod_mtu(&self) -> u32 {
        self.pod_mtu.unwrap_or(self.eni_mtu)
    }

    pub fn selection_keys(&self) -> eniconfig::SelectionKeys {
        eniconfig::SelectionKeys::new(
            self.eni_config_annotation_def.as_deref(),
            self.eni_config_label_def.as_deref(),
        )
    }

    pub fn ip_cooldown(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.ip_cooldown_period)
    }
}

#[cfg(test)]
mod tests;
