//! Every environment variable of the existing implementation (the `aws-node` container, its init
//! container, the Helm chart's and the EKS add-on's `env`), and what ours does with it. The
//! README's variable table is generated from this list (a test keeps them equal), and the
//! start-up review ([`crate::review`]) warns from it.

/// What ours does with a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Same name, meaning, values and default.
    Same,
    /// Supported, with the difference the note states (and how to get upstream's behaviour).
    Different,
    /// Known, not supported: [`Trigger`] says which values ask for what we do not do, and
    /// whether we refuse them (not ready) or warn and run on.
    NotSupported { when: Trigger, refuse: bool },
    /// Accepted and without effect, as upstream in an IPv4 cluster (deprecated no-ops,
    /// informational values, settings of features that are off).
    NoEffect,
    /// Ours, not upstream's.
    Ours,
}

/// Which values of a not-supported variable ask for the feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A true boolean (Go's ParseBool spellings).
    True,
    /// A false boolean.
    False,
    /// Any value but these.
    NotIn(&'static [&'static str]),
}

impl Trigger {
    /// Whether `value` (set, non-empty) asks for the unsupported feature; `Err` when a boolean
    /// trigger gets something that is not a boolean.
    pub fn fires(&self, value: &str) -> Result<bool, String> {
        match self {
            Trigger::True => crate::parse_bool(value),
            Trigger::False => crate::parse_bool(value).map(|b| !b),
            Trigger::NotIn(allowed) => Ok(!allowed.contains(&value)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Trigger::True => "true".to_string(),
            Trigger::False => "false".to_string(),
            Trigger::NotIn(allowed) => format!("not {}", allowed.join("/")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    /// Upstream's default ("" when unset by default).
    pub upstream_default: &'static str,
    pub fate: Fate,
    /// What ours does, why, and how to get upstream's behaviour where it differs.
    pub note: &'static str,
}

const fn v(
    name: &'static str,
    upstream_default: &'static str,
    fate: Fate,
    note: &'static str,
) -> Variable {
    Variable {
        name,
        upstream_default,
        fate,
        note,
    }
}

const SAME: Fate = Fate::Same;
const DIFFERENT: Fate = Fate::Different;
const NO_EFFECT: Fate = Fate::NoEffect;
const fn unsupported(when: Trigger) -> Fate {
    Fate::NotSupported {
        when,
        refuse: false,
    }
}
const fn refused(when: Trigger) -> Fate {
    Fate::NotSupported { when, refuse: true }
}

/// Sorted by name.
#[rustfmt::skip]
pub const CATALOG: &[Variable] = &[
    v("ADDITIONAL_ENI_TAGS", "{}", SAME, "JSON object of tags for new ENIs; keys containing `k8s.amazonaws.com` are skipped with a warning"),
    v("ANNOTATE_POD_IP", "false", unsupported(Trigger::True), "pods are not annotated with `vpc.amazonaws.com/pod-ips`"),
    v("AWS_EC2_ENDPOINT", "", SAME, "EC2 endpoint URL (a bare host gets `https://`); wins over the SDK's `AWS_ENDPOINT_URL_EC2`/`AWS_ENDPOINT_URL`, said at start-up when both are set"),
    v("AWS_EXTERNAL_SERVICE_CIDRS", "", SAME, "IPv4 CIDRs routed through the main table (rule priority 1535, before the pods' ENI rules); IPv6 entries skipped with a warning"),
    v("AWS_MANAGE_ENIS_NON_SCHEDULABLE", "false", SAME, "false: on a cordoned node (`spec.unschedulable` or the `node.kubernetes.io/unschedulable` taint) no ENI is detached"),
    v("AWS_VPC_CNI_NODE_PORT_SUPPORT", "true", SAME, "false: no NodePort mark rule on the primary interface and `rp_filter` strict (1) instead of loose (2), set by the privileged init container, which sees the variable too (`kubectl set env`, our chart)"),
    v("AWS_VPC_ENI_MTU", "9001", SAME, "576 to 9001"),
    v("AWS_VPC_K8S_CNI_BACKING_STORE", "/var/run/aws-node/ipam.json", SAME, "the checkpoint, in upstream's format"),
    v("AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER", "true", NO_EFFECT, "deprecated upstream (v1.12.1) and a no-op there too; `rp_filter` follows `AWS_VPC_CNI_NODE_PORT_SUPPORT`"),
    v("AWS_VPC_K8S_CNI_CONNMARK", "0x80", SAME, "hex or decimal"),
    v("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "false", SAME, "custom networking"),
    v("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "", SAME, "IPv4 CIDRs reached without SNAT; IPv6 entries skipped with a warning"),
    v("AWS_VPC_K8S_CNI_EXTERNALSNAT", "false", SAME, "true: no SNAT rules"),
    v("AWS_VPC_K8S_CNI_LOGLEVEL", "DEBUG", SAME, "DEBUG, INFO, WARN, ERROR, FATAL in any case (FATAL logs errors: there is no fatal level)"),
    v("AWS_VPC_K8S_CNI_LOG_FILE", "/host/var/log/aws-routed-eni/ipamd.log", DIFFERENT, "ours defaults to `stdout` (JSON lines for `kubectl logs`), said at start-up; set `/host/var/log/aws-routed-eni/ipamd.log` for upstream's file (our DaemonSet mounts that path too)"),
    v("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "prng", SAME, "prng, hashrandom or none"),
    v("AWS_VPC_K8S_CNI_VETHPREFIX", "eni", SAME, "at most 4 characters, not eth, lo or vlan"),
    v("AWS_VPC_K8S_PLUGIN_LOG_FILE", "/var/log/aws-routed-eni/plugin.log", SAME, "written into the CNI config for the plugin"),
    v("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "DEBUG", SAME, "written into the CNI config for the plugin"),
    v("CLUSTER_ENDPOINT", "", SAME, "API server URL used instead of the in-cluster service address"),
    v("CLUSTER_NAME", "", SAME, "tags new ENIs `cluster.k8s.amazonaws.com/name`"),
    v("DISABLE_INTROSPECTION", "false", SAME, ""),
    v("DISABLE_LEAKED_ENI_CLEANUP", "false", SAME, "also off under `DISABLE_NETWORK_RESOURCE_PROVISIONING=true`, as upstream"),
    v("DISABLE_METRICS", "false", SAME, ""),
    v("DISABLE_NETWORK_RESOURCE_PROVISIONING", "false", DIFFERENT, "true: no EC2 writes at all (no ENI created, attached or detached, no address assigned or released, no leaked-ENI clean-up), only what is attached serves pods; ours still reads the ENIs with EC2 Describe calls where upstream reads instance metadata only"),
    v("DISABLE_POD_V6", "false", unsupported(Trigger::True), "IPv6 is not disabled inside pods"),
    v("DISABLE_TCP_EARLY_DEMUX", "false", NO_EFFECT, "init container; matters only for security groups for pods (not supported)"),
    v("ENABLE_BANDWIDTH_PLUGIN", "false", unsupported(Trigger::True), "the bandwidth plugin is not chained into `10-aws.conflist`"),
    v("ENABLE_IMDS_ONLY_MODE", "false", unsupported(Trigger::True), "ENIs are always read from EC2 (`DISABLE_NETWORK_RESOURCE_PROVISIONING=true` gives the no-EC2-writes part)"),
    v("ENABLE_IPv4", "true", refused(Trigger::False), "IPv4 is the only family served: ipamd stays not ready and says why"),
    v("ENABLE_IPv6", "false", refused(Trigger::True), "IPv6 pods are not supported: ipamd stays not ready and says why (with custom networking it does not start)"),
    v("ENABLE_MULTI_NIC", "false", unsupported(Trigger::True), "only network card 0 serves pods"),
    v("ENABLE_NFTABLES", "false", NO_EFFECT, "deprecated upstream (v1.13.2); as upstream now, the host's kubelet/kube-proxy rules choose iptables-legacy or iptables-nft, logged at start-up"),
    v("ENABLE_POD_ENI", "false", unsupported(Trigger::True), "no trunk ENI, no security groups per pod: pods get the node's or the ENIConfig's network"),
    v("ENABLE_PREFIX_DELEGATION", "false", SAME, "/28 prefixes instead of single addresses (Nitro and bare metal)"),
    v("ENABLE_SUBNET_DISCOVERY", "true", DIFFERENT, "without custom networking, new pod ENIs go to the subnet of the node's zone with the most free addresses among its own and those tagged `kubernetes.io/role/cni` (not `0`; `0` excludes the node's own too), with the primary ENI's groups; a subnet tagged `kubernetes.io/cluster/<name>` only for that `CLUSTER_NAME` (unset: never); the list is re-read at most every `IPAMD_VPC_REFRESH_INTERVAL` and only when an ENI is needed, where upstream calls DescribeSubnets for every new ENI"),
    v("ENABLE_V4_EGRESS", "true", NO_EFFECT, "IPv6 clusters only"),
    v("ENABLE_V6_EGRESS", "false", unsupported(Trigger::True), "pods get no IPv6 egress interface"),
    v("ENI_CONFIG_ANNOTATION_DEF", "k8s.amazonaws.com/eniConfig", SAME, "empty: the default key"),
    v("ENI_CONFIG_LABEL_DEF", "k8s.amazonaws.com/eniConfig", SAME, "empty: the default key"),
    v("ENI_CONFIG_SG_FALLBACK", "", Fate::Ours, "ENIConfig without `securityGroups`: `vpc-default` (default: the VPC's default group, as the reference document says) or `primary-eni` (the primary ENI's groups, as upstream's code does); said at start-up under custom networking when in force"),
    v("HOST_CNI_BIN_PATH", "/host/opt/cni/bin", SAME, "where the init container (`vpcctl install-cni`) puts `aws-cni`"),
    v("HOST_CNI_CONFDIR_PATH", "/host/etc/cni/net.d", SAME, "where ipamd writes `10-aws.conflist` (wins over our `CNI_CONF_DIR`, default `/etc/cni/net.d`); our DaemonSet mounts the host's `/etc/cni/net.d` at both paths"),
    v("INTROSPECTION_BIND_ADDRESS", "127.0.0.1:61679", DIFFERENT, "loopback `host:port` only: `unix:` sockets and other addresses are refused"),
    v("IP_COOLDOWN_PERIOD", "30", SAME, "seconds; negative: 0"),
    v("MANAGE_UNTAGGED_ENI", "true", unsupported(Trigger::False), "ENIs attached by others are managed unless tagged `node.k8s.amazonaws.com/no_manage=true`"),
    v("MAX_ENI", "", SAME, "unset, 0 or negative: the instance type's limit"),
    v("MINIMUM_IP_TARGET", "", SAME, "0 or negative: unset"),
    v("MY_NODE_NAME", "", SAME, "from the downward API"),
    v("NETWORK_POLICY_ENFORCING_MODE", "standard", unsupported(Trigger::NotIn(&["none"])), "network policies are not enforced"),
    v("POD_MTU", "", SAME, "576 to 9001; unset: `AWS_VPC_ENI_MTU`"),
    v("POD_SECURITY_GROUP_ENFORCING_MODE", "strict", NO_EFFECT, "matters only with `ENABLE_POD_ENI` (not supported)"),
    v("VPC_CNI_VERSION", "", NO_EFFECT, "informational (set by upstream's chart)"),
    v("VPC_ID", "", NO_EFFECT, "the VPC is read from instance metadata"),
    v("WARM_ENI_TARGET", "1", SAME, "negative: 1"),
    v("WARM_IP_TARGET", "", SAME, "0 or negative: unset"),
    v("WARM_PREFIX_TARGET", "0", SAME, "negative: 0"),
];

/// The catalog entry of `name`.
pub fn lookup(name: &str) -> Option<&'static Variable> {
    CATALOG
        .binary_search_by(|v| v.name.cmp(name))
        .ok()
        .map(|i| &CATALOG[i])
}

impl Fate {
    fn label(&self) -> String {
        match self {
            Fate::Same => "same".to_string(),
            Fate::Different => "different".to_string(),
            Fate::NotSupported { when, refuse } => format!(
                "not supported ({} {})",
                if *refuse {
                    "refused when"
                } else {
                    "warned when"
                },
                when.describe()
            ),
            Fate::NoEffect => "no effect".to_string(),
            Fate::Ours => "ours".to_string(),
        }
    }
}

/// The README's table: one row per variable.
pub fn markdown_table() -> String {
    let mut t = String::from(
        "| variable | upstream default | ours | what ours does |\n| --- | --- | --- | --- |\n",
    );
    for v in CATALOG {
        let default = if v.upstream_default.is_empty() {
            "unset".to_string()
        } else {
            format!("`{}`", v.upstream_default)
        };
        t.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            v.name,
            default,
            v.fate.label(),
            v.note
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_unique() {
        for pair in CATALOG.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} then {}",
                pair[0].name,
                pair[1].name
            );
        }
        assert_eq!(lookup("MAX_ENI").map(|v| v.upstream_default), Some(""));
        assert!(lookup("MAX_ENIS").is_none());
    }

    #[test]
    fn every_difference_says_what_ours_does() {
        for v in CATALOG {
            if !matches!(v.fate, Fate::Same) {
                assert!(!v.note.is_empty(), "{} has no note", v.name);
            }
            assert!(!v.note.contains('|'), "{}: a | breaks the table", v.name);
        }
    }
}
