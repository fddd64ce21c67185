//! `ipamd`'s settings: the environment variables of the existing implementation, with the same
//! names, defaults and reading of values (empty means default, Go's booleans, the "unset"
//! spellings), each also a `--flag`. Two layers: clap collects every variable as text
//! ([`RawSettings`]), then one pure conversion reads them as upstream does ([`IpamdSettings`]).
//! Invalid values are refused with a message naming the variable and what it accepts; nothing
//! falls back silently to a default. [`CATALOG`] has the fate of every upstream variable and
//! [`review`] the start-up warnings.

mod catalog;
mod compat;
mod parse;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgMatches, Args, Command, FromArgMatches};
use ipnet::Ipv4Net;

pub use catalog::{CATALOG, Fate, Trigger, Variable, lookup, markdown_table};
pub use compat::{Finding, FindingKind, WATCHED_PREFIXES, review};
pub use parse::{SettingsError, atoi, parse_bool};
use parse::{
    Value, parse_cidrs, parse_connmark, parse_endpoint, parse_loopback_addr, parse_mtu, parse_tags,
    parse_veth_prefix,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SgFallback {
    /// CreateNetworkInterface without groups: EC2 applies the VPC's default security group.
    VpcDefault,
    /// Copy the primary ENI's groups (what the older implementation's code did).
    PrimaryEni,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RandomizeSnat {
    /// `--random-fully`
    Prng,
    /// `--random`
    Hashrandom,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    /// Upstream's highest level; ours logs errors (there is no fatal level).
    Fatal,
}

/// Declares [`RawSettings`]: one text field per variable, also a `--flag`, plus the list of the
/// variables' names. The doc comment is the `--help` text (defaults are upstream's).
macro_rules! raw_settings {
    ($( $(#[$doc:meta])* $field:ident: $long:literal = $env:literal; )*) => {
        /// Every variable as the environment (or the command line) gives it, unparsed.
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct RawSettings {
            $( $(#[$doc])* #[arg(long = $long, env = $env, value_name = $env, allow_negative_numbers = true)] pub $field: Option<String>, )*
        }

        impl RawSettings {
            /// The names of every variable the settings read.
            pub const VARIABLES: &'static [&'static str] = &[$($env),*];

            /// From any source of variables (the environment, a DaemonSet's env, a test's map).
            pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> RawSettings {
                RawSettings { $($field: get($env)),* }
            }
        }
    };
}

raw_settings! {
    /// Custom networking: pod ENIs in the subnet and security groups of the node's ENIConfig [default: false].
    custom_network_cfg: "custom-network-cfg" = "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG";
    /// Node label whose value names the ENIConfig [default: k8s.amazonaws.com/eniConfig].
    eni_config_label_def: "eni-config-label-def" = "ENI_CONFIG_LABEL_DEF";
    /// Node annotation whose value names the ENIConfig; wins over the label [default: k8s.amazonaws.com/eniConfig].
    eni_config_annotation_def: "eni-config-annotation-def" = "ENI_CONFIG_ANNOTATION_DEF";
    /// Security groups for pod ENIs when the ENIConfig lists none: vpc-default or primary-eni [default: vpc-default].
    eni_config_sg_fallback: "eni-config-sg-fallback" = "ENI_CONFIG_SG_FALLBACK";
    /// Whole ENIs of free addresses to keep ready; negative: the default [default: 1].
    warm_eni_target: "warm-eni-target" = "WARM_ENI_TARGET";
    /// Free addresses to keep ready; overrides WARM_ENI_TARGET; 0 or negative: unset [default: unset].
    warm_ip_target: "warm-ip-target" = "WARM_IP_TARGET";
    /// Addresses to hold at least; 0 or negative: unset [default: unset].
    minimum_ip_target: "minimum-ip-target" = "MINIMUM_IP_TARGET";
    /// Assign /28 prefixes instead of single addresses (Nitro or bare metal) [default: false].
    enable_prefix_delegation: "enable-prefix-delegation" = "ENABLE_PREFIX_DELEGATION";
    /// Free prefixes to keep ready under prefix delegation; negative: 0 [default: 0].
    warm_prefix_target: "warm-prefix-target" = "WARM_PREFIX_TARGET";
    /// Cap on the instance's interfaces, the primary included; 0 or negative: none [default: unset].
    max_eni: "max-eni" = "MAX_ENI";
    /// Seconds a released address waits before it is handed out again; negative: 0 [default: 30].
    ip_cooldown_period: "ip-cooldown-period" = "IP_COOLDOWN_PERIOD";
    /// Pods' traffic to outside the VPC is translated elsewhere (a NAT gateway): no SNAT rules [default: false].
    external_snat: "external-snat" = "AWS_VPC_K8S_CNI_EXTERNALSNAT";
    /// Comma-separated IPv4 CIDRs that pods reach without SNAT [default: none].
    exclude_snat_cidrs: "exclude-snat-cidrs" = "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS";
    /// SNAT port randomisation: prng (--random-fully), hashrandom (--random) or none [default: prng].
    randomize_snat: "randomize-snat" = "AWS_VPC_K8S_CNI_RANDOMIZESNAT";
    /// Connection mark for pod connections that need the primary interface, hex or decimal [default: 0x80].
    connmark: "connmark" = "AWS_VPC_K8S_CNI_CONNMARK";
    /// Prefix of host-side veth names: at most 4 characters, not eth, lo or vlan [default: eni].
    veth_prefix: "veth-prefix" = "AWS_VPC_K8S_CNI_VETHPREFIX";
    /// MTU of pod ENIs, 576-9001 [default: 9001].
    eni_mtu: "eni-mtu" = "AWS_VPC_ENI_MTU";
    /// MTU of pod interfaces, 576-9001 [default: the ENI MTU].
    pod_mtu: "pod-mtu" = "POD_MTU";
    /// Tags new ENIs with cluster.k8s.amazonaws.com/name=<this> [default: unset].
    cluster_name: "cluster-name" = "CLUSTER_NAME";
    /// JSON object of extra tags for new ENIs; keys containing k8s.amazonaws.com are skipped [default: {}].
    additional_eni_tags: "additional-eni-tags" = "ADDITIONAL_ENI_TAGS";
    /// Do not delete this node's leaked ENIs [default: false].
    disable_leaked_eni_cleanup: "disable-leaked-eni-cleanup" = "DISABLE_LEAKED_ENI_CLEANUP";
    /// IPv4 pods; false is refused (ipamd stays not ready) [default: true].
    enable_ipv4: "enable-ipv4" = "ENABLE_IPv4";
    /// IPv6 pods: not supported; true is refused (ipamd stays not ready; with custom networking it does not start) [default: false].
    enable_ipv6: "enable-ipv6" = "ENABLE_IPv6";
    /// The checkpoint file [default: /var/run/aws-node/ipam.json].
    backing_store: "backing-store" = "AWS_VPC_K8S_CNI_BACKING_STORE";
    /// Log level: DEBUG, INFO, WARN, ERROR or FATAL, any case [default: DEBUG].
    log_level: "log-level" = "AWS_VPC_K8S_CNI_LOGLEVEL";
    /// Log destination: stdout, stderr or a file path [default: stdout].
    log_file: "log-file" = "AWS_VPC_K8S_CNI_LOG_FILE";
    /// Introspection HTTP address; loopback only [default: 127.0.0.1:61679].
    introspection_bind_address: "introspection-bind-address" = "INTROSPECTION_BIND_ADDRESS";
    /// Serve no introspection [default: false].
    disable_introspection: "disable-introspection" = "DISABLE_INTROSPECTION";
    /// Serve no metrics [default: false].
    disable_metrics: "disable-metrics" = "DISABLE_METRICS";
    /// This node's name (Kubernetes mode).
    my_node_name: "node-name" = "MY_NODE_NAME";
    /// NodePort support on the primary interface: its mark rule and loose rp_filter [default: true].
    node_port_support: "node-port-support" = "AWS_VPC_CNI_NODE_PORT_SUPPORT";
    /// Comma-separated IPv4 CIDRs routed through the main table, before the pods' ENI tables [default: none].
    external_service_cidrs: "external-service-cidrs" = "AWS_EXTERNAL_SERVICE_CIDRS";
    /// EC2 endpoint URL; wins over the SDK's AWS_ENDPOINT_URL_EC2 [default: the SDK's].
    ec2_endpoint: "ec2-endpoint" = "AWS_EC2_ENDPOINT";
    /// No EC2 writes: only the ENIs and addresses already attached serve pods [default: false].
    disable_network_resource_provisioning: "disable-network-resource-provisioning" = "DISABLE_NETWORK_RESOURCE_PROVISIONING";
    /// Detach ENIs also while the node is cordoned [default: false].
    manage_enis_non_schedulable: "manage-enis-non-schedulable" = "AWS_MANAGE_ENIS_NON_SCHEDULABLE";
    /// Where the CNI config is written; wins over CNI_CONF_DIR [default: CNI_CONF_DIR].
    host_cni_confdir_path: "host-cni-confdir-path" = "HOST_CNI_CONFDIR_PATH";
    /// The API server's URL instead of the in-cluster service address [default: in-cluster].
    cluster_endpoint: "cluster-endpoint" = "CLUSTER_ENDPOINT";
    /// Without custom networking, pod ENIs may also go to subnets of the node's zone tagged kubernetes.io/role/cni [default: true].
    enable_subnet_discovery: "enable-subnet-discovery" = "ENABLE_SUBNET_DISCOVERY";
}

/// Every setting, read as the existing implementation reads it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IpamdSettings {
    pub custom_network_cfg: bool,
    pub eni_config_label_def: Option<String>,
    pub eni_config_annotation_def: Option<String>,
    pub eni_config_sg_fallback: SgFallback,
    pub warm_eni_target: u32,
    /// 0: unset.
    pub warm_ip_target: u32,
    /// 0: unset.
    pub minimum_ip_target: u32,
    pub enable_prefix_delegation: bool,
    pub warm_prefix_target: u32,
    /// At least 1 when set.
    pub max_eni: Option<u32>,
    pub ip_cooldown_period: u64,
    pub external_snat: bool,
    pub exclude_snat_cidrs: CidrList,
    pub randomize_snat: RandomizeSnat,
    pub connmark: u32,
    pub veth_prefix: String,
    pub eni_mtu: u32,
    pub pod_mtu: Option<u32>,
    pub cluster_name: Option<String>,
    pub additional_eni_tags: Tags,
    pub disable_leaked_eni_cleanup: bool,
    pub enable_ipv4: bool,
    pub enable_ipv6: bool,
    pub backing_store: PathBuf,
    pub log_level: LogLevel,
    pub log_file: String,
    pub introspection_bind_address: SocketAddr,
    pub disable_introspection: bool,
    pub disable_metrics: bool,
    pub my_node_name: Option<String>,
    pub node_port_support: bool,
    pub external_service_cidrs: CidrList,
    pub ec2_endpoint: Option<String>,
    pub disable_network_resource_provisioning: bool,
    pub manage_enis_non_schedulable: bool,
    pub host_cni_confdir_path: Option<PathBuf>,
    pub cluster_endpoint: Option<String>,
    /// Subnet discovery; custom networking takes precedence when both are on.
    pub enable_subnet_discovery: bool,
}

/// A parsed list of CIDRs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CidrList(pub Vec<Ipv4Net>);

/// Extra ENI tags, sorted by key, and the keys refused because they use our reserved prefix
/// (ipamd warns about those at start-up).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tags {
    pub tags: BTreeMap<String, String>,
    pub refused: Vec<String>,
}

fn val<'a>(variable: &'static str, text: &'a Option<String>) -> Value<'a> {
    Value {
        variable,
        text: text.as_deref(),
    }
}

/// An enumerated value, any case.
fn enumerated(variable: &'static str, text: &Option<String>) -> Option<String> {
    val(variable, text).given().map(str::to_ascii_lowercase)
}

impl TryFrom<&RawSettings> for IpamdSettings {
    type Error = SettingsError;

    fn try_from(r: &RawSettings) -> Result<Self, SettingsError> {
        let eni_mtu =
            val("AWS_VPC_ENI_MTU", &r.eni_mtu).with(node_contract::DEFAULT_MTU, parse_mtu)?;
        Ok(IpamdSettings {
            custom_network_cfg: val("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", &r.custom_network_cfg)
                .boolean(false)?,
            eni_config_label_def: val("ENI_CONFIG_LABEL_DEF", &r.eni_config_label_def).text(),
            eni_config_annotation_def: val(
                "ENI_CONFIG_ANNOTATION_DEF",
                &r.eni_config_annotation_def,
            )
            .text(),
            eni_config_sg_fallback: match enumerated(
                "ENI_CONFIG_SG_FALLBACK",
                &r.eni_config_sg_fallback,
            )
            .as_deref()
            {
                None | Some("vpc-default") => SgFallback::VpcDefault,
                Some("primary-eni") => SgFallback::PrimaryEni,
                Some(_) => {
                    return Err(val("ENI_CONFIG_SG_FALLBACK", &r.eni_config_sg_fallback)
                        .invalid("expected vpc-default or primary-eni"));
                }
            },
            warm_eni_target: val("WARM_ENI_TARGET", &r.warm_eni_target).count(1)?,
            warm_ip_target: val("WARM_IP_TARGET", &r.warm_ip_target).count(0)?,
            minimum_ip_target: val("MINIMUM_IP_TARGET", &r.minimum_ip_target).count(0)?,
            enable_prefix_delegation: val("ENABLE_PREFIX_DELEGATION", &r.enable_prefix_delegation)
                .boolean(false)?,
            warm_prefix_target: val("WARM_PREFIX_TARGET", &r.warm_prefix_target).count(0)?,
            max_eni: val("MAX_ENI", &r.max_eni).cap()?,
            ip_cooldown_period: val("IP_COOLDOWN_PERIOD", &r.ip_cooldown_period)
                .integer()?
                .map_or(30, |n| u64::try_from(n).unwrap_or(0)),
            external_snat: val("AWS_VPC_K8S_CNI_EXTERNALSNAT", &r.external_snat).boolean(false)?,
            exclude_snat_cidrs: val("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", &r.exclude_snat_cidrs)
                .with(CidrList::default(), parse_cidrs)?,
            randomize_snat: match enumerated("AWS_VPC_K8S_CNI_RANDOMIZESNAT", &r.randomize_snat)
                .as_deref()
            {
                None | Some("prng") => RandomizeSnat::Prng,
                Some("hashrandom") => RandomizeSnat::Hashrandom,
                Some("none") => RandomizeSnat::None,
                Some(_) => {
                    return Err(val("AWS_VPC_K8S_CNI_RANDOMIZESNAT", &r.randomize_snat)
                        .invalid("expected prng, hashrandom or none"));
                }
            },
            connmark: val("AWS_VPC_K8S_CNI_CONNMARK", &r.connmark).with(0x80, parse_connmark)?,
            veth_prefix: val("AWS_VPC_K8S_CNI_VETHPREFIX", &r.veth_prefix).with(
                node_contract::DEFAULT_VETH_PREFIX.to_string(),
                parse_veth_prefix,
            )?,
            eni_mtu,
            pod_mtu: val("POD_MTU", &r.pod_mtu).with(None, |v| parse_mtu(v).map(Some))?,
            cluster_name: val("CLUSTER_NAME", &r.cluster_name).text(),
            additional_eni_tags: val("ADDITIONAL_ENI_TAGS", &r.additional_eni_tags)
                .with(Tags::default(), parse_tags)?,
            disable_leaked_eni_cleanup: val(
                "DISABLE_LEAKED_ENI_CLEANUP",
                &r.disable_leaked_eni_cleanup,
            )
            .boolean(false)?,
            enable_ipv4: val("ENABLE_IPv4", &r.enable_ipv4).boolean(true)?,
            enable_ipv6: val("ENABLE_IPv6", &r.enable_ipv6).boolean(false)?,
            backing_store: val("AWS_VPC_K8S_CNI_BACKING_STORE", &r.backing_store)
                .text()
                .map_or_else(
                    || PathBuf::from("/var/run/aws-node/ipam.json"),
                    PathBuf::from,
                ),
            log_level: match enumerated("AWS_VPC_K8S_CNI_LOGLEVEL", &r.log_level).as_deref() {
                None | Some("debug") => LogLevel::Debug,
                Some("info") => LogLevel::Info,
                Some("warn") => LogLevel::Warn,
                Some("error") => LogLevel::Error,
                Some("fatal") => LogLevel::Fatal,
                Some(_) => {
                    return Err(val("AWS_VPC_K8S_CNI_LOGLEVEL", &r.log_level)
                        .invalid("expected DEBUG, INFO, WARN, ERROR or FATAL (any case)"));
                }
            },
            log_file: val("AWS_VPC_K8S_CNI_LOG_FILE", &r.log_file)
                .text()
                .unwrap_or_else(|| "stdout".to_string()),
            introspection_bind_address: val(
                "INTROSPECTION_BIND_ADDRESS",
                &r.introspection_bind_address,
            )
            .with(
                SocketAddr::from(([127, 0, 0, 1], node_contract::INTROSPECTION_PORT)),
                parse_loopback_addr,
            )?,
            disable_introspection: val("DISABLE_INTROSPECTION", &r.disable_introspection)
                .boolean(false)?,
            disable_metrics: val("DISABLE_METRICS", &r.disable_metrics).boolean(false)?,
            my_node_name: val("MY_NODE_NAME", &r.my_node_name).text(),
            node_port_support: val("AWS_VPC_CNI_NODE_PORT_SUPPORT", &r.node_port_support)
                .boolean(true)?,
            external_service_cidrs: val("AWS_EXTERNAL_SERVICE_CIDRS", &r.external_service_cidrs)
                .with(CidrList::default(), parse_cidrs)?,
            ec2_endpoint: val("AWS_EC2_ENDPOINT", &r.ec2_endpoint)
                .with(None, |v| parse_endpoint(v).map(Some))?,
            disable_network_resource_provisioning: val(
                "DISABLE_NETWORK_RESOURCE_PROVISIONING",
                &r.disable_network_resource_provisioning,
            )
            .boolean(false)?,
            manage_enis_non_schedulable: val(
                "AWS_MANAGE_ENIS_NON_SCHEDULABLE",
                &r.manage_enis_non_schedulable,
            )
            .boolean(false)?,
            host_cni_confdir_path: val("HOST_CNI_CONFDIR_PATH", &r.host_cni_confdir_path)
                .text()
                .map(PathBuf::from),
            cluster_endpoint: val("CLUSTER_ENDPOINT", &r.cluster_endpoint)
                .with(None, |v| parse_endpoint(v).map(Some))?,
            enable_subnet_discovery: val("ENABLE_SUBNET_DISCOVERY", &r.enable_subnet_discovery)
                .boolean(true)?,
        })
    }
}

// clap sees the raw layer; the conversion runs right after parsing, so a bad value is a usage
// error naming the variable, exactly like a malformed flag.
impl Args for IpamdSettings {
    fn augment_args(cmd: Command) -> Command {
        RawSettings::augment_args(cmd)
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        RawSettings::augment_args_for_update(cmd)
    }
}

impl FromArgMatches for IpamdSettings {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let raw = RawSettings::from_arg_matches(matches)?;
        IpamdSettings::try_from(&raw)
            .map_err(|e| clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}")))
    }
    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl IpamdSettings {
    /// From any source of variables, e.g. a DaemonSet's environment or a test's table.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        IpamdSettings::try_from(&RawSettings::from_lookup(get))
    }

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

    /// What max pods depends on, as these settings give it.
    pub fn max_pods_options(&self) -> instance_limits::MaxPodsOptions {
        instance_limits::MaxPodsOptions {
            custom_networking: self.custom_network_cfg,
            prefix_delegation: self.enable_prefix_delegation,
            max_eni: self.max_eni,
            show_max_allowed: false,
        }
    }

    /// The warm-pool settings of a node with these limits and max pods (`ipam.md`): what
    /// ipamd runs, and what capacity planning simulates.
    pub fn pool(
        &self,
        limits: &instance_limits::InstanceLimits,
        pods: &instance_limits::MaxPods,
        eni_min_age: std::time::Duration,
        decrease_interval: std::time::Duration,
    ) -> ipam::PoolSettings {
        ipam::PoolSettings {
            warm_eni_target: self.warm_eni_target as usize,
            warm_ip_target: self.warm_ip_target as usize,
            minimum_ip_target: self.minimum_ip_target as usize,
            warm_prefix_target: self.warm_prefix_target as usize,
            prefix_delegation: self.enable_prefix_delegation,
            slots_per_eni: usize::try_from(limits.ipv4_per_eni.saturating_sub(1)).unwrap_or(0),
            max_enis: pods.enis as usize,
            max_pods: pods.max_pods as usize,
            eni_min_age,
            decrease_interval,
        }
    }

    pub fn ip_cooldown(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.ip_cooldown_period)
    }

    /// The leaked-ENI clean-up runs (off when asked, and when ipamd may not write to EC2).
    pub fn leaked_eni_cleanup(&self) -> bool {
        !self.disable_leaked_eni_cleanup && !self.disable_network_resource_provisioning
    }
}

#[cfg(test)]
mod tests;
