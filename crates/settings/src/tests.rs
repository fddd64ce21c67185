use std::collections::{BTreeMap, BTreeSet};

use clap::Parser;
use serde_json::{Value as Json, json};

use super::*;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    settings: IpamdSettings,
}

fn parse(args: &[&str]) -> Result<IpamdSettings, String> {
    Cli::try_parse_from(std::iter::once("ipamd").chain(args.iter().copied()))
        .map(|c| c.settings)
        .map_err(|e| e.to_string())
}

fn from_env(vars: &[(&str, &str)]) -> Result<IpamdSettings, SettingsError> {
    let map: BTreeMap<&str, &str> = vars.iter().copied().collect();
    IpamdSettings::from_lookup(|k| map.get(k).map(|v| v.to_string()))
}

fn findings(vars: &[(&str, &str)]) -> Vec<Finding> {
    let env: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ours: BTreeSet<String> = RawSettings::VARIABLES
        .iter()
        .map(|s| s.to_string())
        .collect();
    review(&env, &ours)
}

#[test]
fn defaults_are_the_existing_implementations() {
    let s = parse(&[]).unwrap();
    assert!(!s.custom_network_cfg);
    assert_eq!(s.warm_eni_target, 1);
    assert_eq!(
        (s.warm_ip_target, s.minimum_ip_target, s.warm_prefix_target),
        (0, 0, 0)
    );
    assert_eq!(s.max_eni, None);
    assert_eq!(s.ip_cooldown_period, 30);
    assert_eq!(s.connmark, 0x80);
    assert_eq!(s.veth_prefix, "eni");
    assert_eq!((s.eni_mtu, s.pod_mtu()), (9001, 9001));
    assert_eq!(s.randomize_snat, RandomizeSnat::Prng);
    assert_eq!(s.eni_config_sg_fallback, SgFallback::VpcDefault);
    assert_eq!(
        s.backing_store,
        PathBuf::from("/var/run/aws-node/ipam.json")
    );
    assert_eq!(s.introspection_bind_address.to_string(), "127.0.0.1:61679");
    assert_eq!(s.log_level, LogLevel::Debug);
    assert_eq!(s.selection_keys(), eniconfig::SelectionKeys::default());
    assert!(s.node_port_support && s.enable_ipv4 && !s.enable_ipv6);
    assert!(s.leaked_eni_cleanup());
    s.validate().unwrap();
}

/// What a variable set to a value gives.
enum Expect {
    /// The setting (by its field name in introspection) has this value; nothing to say.
    Field(&'static str, Json),
    /// The setting has this value and the review says this.
    FieldAnd(&'static str, Json, FindingKind),
    /// Refused at start-up: the error names the variable and says this.
    Error(&'static str),
    /// Not a setting of ours: the review says this.
    Finding(FindingKind),
    /// Not a setting of ours, and nothing to say about this value.
    Quiet,
}

/// Every variable of the existing implementation, with the values and spellings that matter.
#[rustfmt::skip]
const TABLE: &[(&str, &str, Expect)] = &[
    ("ADDITIONAL_ENI_TAGS", r#"{"team":"net"}"#, Expect::Field("additional_eni_tags", Json::Null)),
    ("ADDITIONAL_ENI_TAGS", "", Expect::Field("additional_eni_tags", Json::Null)),
    ("ADDITIONAL_ENI_TAGS", "[1]", Expect::Error("JSON object")),
    ("ANNOTATE_POD_IP", "true", Expect::Finding(FindingKind::Unsupported)),
    ("ANNOTATE_POD_IP", "false", Expect::Quiet),
    ("AWS_EC2_ENDPOINT", "localhost:8080", Expect::Field("ec2_endpoint", Json::Null)),
    ("AWS_EC2_ENDPOINT", "ftp://x", Expect::Error("http:// or https://")),
    ("AWS_EXTERNAL_SERVICE_CIDRS", "10.1.0.0/16,fd00::/64", Expect::FieldAnd("external_service_cidrs", Json::Null, FindingKind::Note)),
    ("AWS_EXTERNAL_SERVICE_CIDRS", "10.1.0.0/16,bogus", Expect::Error("\"bogus\" is not a CIDR")),
    ("AWS_MANAGE_ENIS_NON_SCHEDULABLE", "T", Expect::Field("manage_enis_non_schedulable", Json::Bool(true))),
    ("AWS_MANAGE_ENIS_NON_SCHEDULABLE", "", Expect::Field("manage_enis_non_schedulable", Json::Bool(false))),
    ("AWS_VPC_CNI_NODE_PORT_SUPPORT", "0", Expect::Field("node_port_support", Json::Bool(false))),
    ("AWS_VPC_CNI_NODE_PORT_SUPPORT", "", Expect::Field("node_port_support", Json::Bool(true))),
    ("AWS_VPC_CNI_NODE_PORT_SUPPORT", "yes", Expect::Error("expected true or false")),
    ("AWS_VPC_ENI_MTU", "1500", Expect::Field("eni_mtu", Json::Null)),
    ("AWS_VPC_ENI_MTU", "", Expect::Field("eni_mtu", Json::Null)),
    ("AWS_VPC_ENI_MTU", "100000", Expect::Error("576 and 9001")),
    ("AWS_VPC_K8S_CNI_BACKING_STORE", "/tmp/ipam.json", Expect::Field("backing_store", Json::Null)),
    ("AWS_VPC_K8S_CNI_BACKING_STORE", "", Expect::Field("backing_store", Json::Null)),
    ("AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER", "false", Expect::Finding(FindingKind::Note)),
    ("AWS_VPC_K8S_CNI_CONNMARK", "128", Expect::Field("connmark", Json::Null)),
    ("AWS_VPC_K8S_CNI_CONNMARK", "0xzz", Expect::Error("hex")),
    ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "True", Expect::FieldAnd("custom_network_cfg", Json::Bool(true), FindingKind::DefaultDiffers)),
    ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "1", Expect::Field("custom_network_cfg", Json::Bool(true))),
    ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "", Expect::Field("custom_network_cfg", Json::Bool(false))),
    ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "yes", Expect::Error("expected true or false")),
    ("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "10.1.0.0/16, 192.168.0.0/24", Expect::Field("exclude_snat_cidrs", Json::Null)),
    ("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "10.1.0.0/16,fd00::/8", Expect::FieldAnd("exclude_snat_cidrs", Json::Null, FindingKind::Note)),
    ("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "10.0.0.0/8,bogus", Expect::Error("\"bogus\" is not a CIDR")),
    ("AWS_VPC_K8S_CNI_EXTERNALSNAT", "t", Expect::Field("external_snat", Json::Bool(true))),
    ("AWS_VPC_K8S_CNI_LOGLEVEL", "info", Expect::Field("log_level", Json::Null)),
    ("AWS_VPC_K8S_CNI_LOGLEVEL", "FATAL", Expect::Field("log_level", Json::Null)),
    ("AWS_VPC_K8S_CNI_LOGLEVEL", "chatty", Expect::Error("DEBUG, INFO, WARN, ERROR or FATAL")),
    ("AWS_VPC_K8S_CNI_LOG_FILE", "/host/var/log/aws-routed-eni/ipamd.log", Expect::Field("log_file", Json::Null)),
    ("AWS_VPC_K8S_CNI_LOG_FILE", "", Expect::FieldAnd("log_file", Json::Null, FindingKind::DefaultDiffers)),
    ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "hashrandom", Expect::Field("randomize_snat", Json::Null)),
    ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "", Expect::Field("randomize_snat", Json::Null)),
    ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "maybe", Expect::Error("prng, hashrandom or none")),
    ("AWS_VPC_K8S_CNI_VETHPREFIX", "", Expect::Field("veth_prefix", Json::Null)),
    ("AWS_VPC_K8S_CNI_VETHPREFIX", "eth", Expect::Error("taken")),
    ("AWS_VPC_K8S_CNI_VETHPREFIX", "toolong", Expect::Error("1 to 4")),
    // Ours in cli.rs (the plugin's settings written into the CNI config).
    ("AWS_VPC_K8S_PLUGIN_LOG_FILE", "/var/log/aws-routed-eni/plugin.log", Expect::Quiet),
    ("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "DEBUG", Expect::Quiet),
    ("CLUSTER_ENDPOINT", "https://ABCD.gr7.us-west-2.eks.amazonaws.com", Expect::Field("cluster_endpoint", Json::Null)),
    ("CLUSTER_NAME", "", Expect::Field("cluster_name", Json::Null)),
    ("CLUSTER_NAME", "prod", Expect::Field("cluster_name", Json::Null)),
    ("DISABLE_INTROSPECTION", "true", Expect::Field("disable_introspection", Json::Bool(true))),
    ("DISABLE_LEAKED_ENI_CLEANUP", "true", Expect::Field("disable_leaked_eni_cleanup", Json::Bool(true))),
    ("DISABLE_METRICS", "F", Expect::Field("disable_metrics", Json::Bool(false))),
    ("DISABLE_NETWORK_RESOURCE_PROVISIONING", "true", Expect::Field("disable_network_resource_provisioning", Json::Bool(true))),
    ("DISABLE_POD_V6", "true", Expect::Finding(FindingKind::Unsupported)),
    ("DISABLE_POD_V6", "false", Expect::Quiet),
    ("DISABLE_TCP_EARLY_DEMUX", "true", Expect::Finding(FindingKind::Note)),
    ("ENABLE_BANDWIDTH_PLUGIN", "true", Expect::Finding(FindingKind::Unsupported)),
    ("ENABLE_BANDWIDTH_PLUGIN", "false", Expect::Quiet),
    ("ENABLE_IMDS_ONLY_MODE", "true", Expect::Finding(FindingKind::Unsupported)),
    ("ENABLE_IMDS_ONLY_MODE", "false", Expect::Quiet),
    ("ENABLE_IPv4", "false", Expect::FieldAnd("enable_ipv4", Json::Bool(false), FindingKind::Refused)),
    ("ENABLE_IPv4", "true", Expect::Field("enable_ipv4", Json::Bool(true))),
    ("ENABLE_IPv6", "true", Expect::FieldAnd("enable_ipv6", Json::Bool(true), FindingKind::Refused)),
    ("ENABLE_IPv6", "false", Expect::Field("enable_ipv6", Json::Bool(false))),
    ("ENABLE_MULTI_NIC", "true", Expect::Finding(FindingKind::Unsupported)),
    ("ENABLE_MULTI_NIC", "false", Expect::Quiet),
    ("ENABLE_NFTABLES", "true", Expect::Finding(FindingKind::Note)),
    ("ENABLE_POD_ENI", "true", Expect::Finding(FindingKind::Unsupported)),
    ("ENABLE_POD_ENI", "TRUE", Expect::Finding(FindingKind::Unsupported)),
    ("ENABLE_POD_ENI", "false", Expect::Quiet),
    ("ENABLE_POD_ENI", "sure", Expect::Finding(FindingKind::Unsupported)),
    ("ENABLE_PREFIX_DELEGATION", "true", Expect::Field("enable_prefix_delegation", Json::Bool(true))),
    ("ENABLE_SUBNET_DISCOVERY", "true", Expect::Field("enable_subnet_discovery", Json::Bool(true))),
    ("ENABLE_SUBNET_DISCOVERY", "false", Expect::Field("enable_subnet_discovery", Json::Bool(false))),
    ("ENABLE_SUBNET_DISCOVERY", "", Expect::Field("enable_subnet_discovery", Json::Bool(true))),
    ("ENABLE_SUBNET_DISCOVERY", "maybe", Expect::Error("ENABLE_SUBNET_DISCOVERY")),
    ("ENABLE_V4_EGRESS", "true", Expect::Finding(FindingKind::Note)),
    ("ENABLE_V6_EGRESS", "true", Expect::Finding(FindingKind::Unsupported)),
    ("ENABLE_V6_EGRESS", "false", Expect::Quiet),
    ("ENI_CONFIG_ANNOTATION_DEF", "", Expect::Field("eni_config_annotation_def", Json::Null)),
    ("ENI_CONFIG_LABEL_DEF", "topology.kubernetes.io/zone", Expect::Field("eni_config_label_def", Json::Null)),
    ("ENI_CONFIG_SG_FALLBACK", "primary-eni", Expect::Field("eni_config_sg_fallback", Json::Null)),
    ("ENI_CONFIG_SG_FALLBACK", "none", Expect::Error("vpc-default or primary-eni")),
    ("HOST_CNI_BIN_PATH", "/host/opt/cni/bin", Expect::Finding(FindingKind::Note)),
    ("HOST_CNI_CONFDIR_PATH", "/host/etc/cni/net.d", Expect::Field("host_cni_confdir_path", Json::Null)),
    ("INTROSPECTION_BIND_ADDRESS", "127.0.0.1:7000", Expect::Field("introspection_bind_address", Json::Null)),
    ("INTROSPECTION_BIND_ADDRESS", "0.0.0.0:61679", Expect::Error("loopback")),
    ("INTROSPECTION_BIND_ADDRESS", "unix:/var/run/aws-node/introspection.sock", Expect::Error("unix socket is not supported")),
    ("IP_COOLDOWN_PERIOD", "-5", Expect::Field("ip_cooldown_period", Json::Null)),
    ("IP_COOLDOWN_PERIOD", "", Expect::Field("ip_cooldown_period", Json::Null)),
    ("IP_COOLDOWN_PERIOD", "30s", Expect::Error("whole number")),
    ("MANAGE_UNTAGGED_ENI", "false", Expect::Finding(FindingKind::Unsupported)),
    ("MANAGE_UNTAGGED_ENI", "true", Expect::Quiet),
    ("MAX_ENI", "-1", Expect::Field("max_eni", Json::Null)),
    ("MAX_ENI", "0", Expect::Field("max_eni", Json::Null)),
    ("MAX_ENI", "", Expect::Field("max_eni", Json::Null)),
    ("MAX_ENI", "2", Expect::Field("max_eni", Json::Null)),
    ("MAX_ENI", "two", Expect::Error("whole number")),
    ("MINIMUM_IP_TARGET", "-3", Expect::Field("minimum_ip_target", Json::Null)),
    ("MINIMUM_IP_TARGET", "10", Expect::Field("minimum_ip_target", Json::Null)),
    ("MY_NODE_NAME", "ip-10-0-1-5.us-west-2.compute.internal", Expect::Field("my_node_name", Json::Null)),
    ("NETWORK_POLICY_ENFORCING_MODE", "standard", Expect::Finding(FindingKind::Unsupported)),
    ("NETWORK_POLICY_ENFORCING_MODE", "strict", Expect::Finding(FindingKind::Unsupported)),
    ("NETWORK_POLICY_ENFORCING_MODE", "none", Expect::Quiet),
    ("POD_MTU", "", Expect::Field("pod_mtu", Json::Null)),
    ("POD_MTU", "1500", Expect::Field("pod_mtu", Json::Null)),
    ("POD_MTU", "70000", Expect::Error("576 and 9001")),
    ("POD_SECURITY_GROUP_ENFORCING_MODE", "standard", Expect::Finding(FindingKind::Note)),
    ("VPC_CNI_VERSION", "v1.21.1", Expect::Finding(FindingKind::Note)),
    ("VPC_ID", "vpc-0c8f9d6d4b8038dd1", Expect::Finding(FindingKind::Note)),
    ("WARM_ENI_TARGET", "-1", Expect::Field("warm_eni_target", Json::Null)),
    ("WARM_ENI_TARGET", "0", Expect::Field("warm_eni_target", Json::Null)),
    ("WARM_ENI_TARGET", "", Expect::Field("warm_eni_target", Json::Null)),
    ("WARM_ENI_TARGET", "lots", Expect::Error("whole number")),
    ("WARM_IP_TARGET", "0", Expect::Field("warm_ip_target", Json::Null)),
    ("WARM_IP_TARGET", "-1", Expect::Field("warm_ip_target", Json::Null)),
    ("WARM_IP_TARGET", "5", Expect::Field("warm_ip_target", Json::Null)),
    ("WARM_IP_TARGET", "5000000000", Expect::Error("at most 4294967295")),
    ("WARM_PREFIX_TARGET", "-2", Expect::Field("warm_prefix_target", Json::Null)),
    ("WARM_PREFIX_TARGET", "1", Expect::Field("warm_prefix_target", Json::Null)),
    // Typos of the existing implementation's names.
    ("WARM_IP_TAGRET", "5", Expect::Finding(FindingKind::Unknown)),
    ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK", "true", Expect::Finding(FindingKind::Unknown)),
    ("ENI_CONFIG_LABEL", "topology.kubernetes.io/zone", Expect::Finding(FindingKind::Unknown)),
    // Not a prefix we watch: somebody else's.
    ("HOME", "/root", Expect::Quiet),
];

/// The value the parsed setting must have, for rows that name only the field (`Json::Null`).
fn wanted(variable: &str, value: &str) -> Option<Json> {
    Some(match (variable, value) {
        ("ADDITIONAL_ENI_TAGS", "") => json!({"tags": {}, "refused": []}),
        ("ADDITIONAL_ENI_TAGS", _) => json!({"tags": {"team": "net"}, "refused": []}),
        ("AWS_EC2_ENDPOINT", _) => json!("https://localhost:8080"),
        ("AWS_EXTERNAL_SERVICE_CIDRS", _) => json!(["10.1.0.0/16"]),
        ("AWS_VPC_ENI_MTU", "") => json!(9001),
        ("AWS_VPC_ENI_MTU", _) => json!(1500),
        ("AWS_VPC_K8S_CNI_BACKING_STORE", "") => json!("/var/run/aws-node/ipam.json"),
        ("AWS_VPC_K8S_CNI_BACKING_STORE", _) => json!("/tmp/ipam.json"),
        ("AWS_VPC_K8S_CNI_CONNMARK", _) => json!(128),
        ("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "10.1.0.0/16,fd00::/8") => json!(["10.1.0.0/16"]),
        ("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", _) => json!(["10.1.0.0/16", "192.168.0.0/24"]),
        ("AWS_VPC_K8S_CNI_LOGLEVEL", "info") => json!("INFO"),
        ("AWS_VPC_K8S_CNI_LOGLEVEL", _) => json!("FATAL"),
        ("AWS_VPC_K8S_CNI_LOG_FILE", "") => json!("stdout"),
        ("AWS_VPC_K8S_CNI_LOG_FILE", v) => json!(v),
        ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "") => json!("prng"),
        ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", v) => json!(v),
        ("AWS_VPC_K8S_CNI_VETHPREFIX", _) => json!("eni"),
        ("CLUSTER_ENDPOINT", v) => json!(v),
        ("CLUSTER_NAME", "") => Json::Null,
        ("CLUSTER_NAME", v) => json!(v),
        ("ENI_CONFIG_ANNOTATION_DEF", _) => Json::Null,
        ("ENI_CONFIG_LABEL_DEF", v) => json!(v),
        ("ENI_CONFIG_SG_FALLBACK", v) => json!(v),
        ("HOST_CNI_CONFDIR_PATH", v) => json!(v),
        ("INTROSPECTION_BIND_ADDRESS", v) => json!(v),
        ("IP_COOLDOWN_PERIOD", "") => json!(30),
        ("IP_COOLDOWN_PERIOD", _) => json!(0),
        ("MAX_ENI", "2") => json!(2),
        ("MAX_ENI", _) => Json::Null,
        ("MINIMUM_IP_TARGET", "10") => json!(10),
        ("MINIMUM_IP_TARGET", _) => json!(0),
        ("MY_NODE_NAME", v) => json!(v),
        ("POD_MTU", "") => Json::Null,
        ("POD_MTU", _) => json!(1500),
        ("WARM_ENI_TARGET", "0") => json!(0),
        ("WARM_ENI_TARGET", _) => json!(1),
        ("WARM_IP_TARGET", "5") => json!(5),
        ("WARM_IP_TARGET", _) => json!(0),
        ("WARM_PREFIX_TARGET", "1") => json!(1),
        ("WARM_PREFIX_TARGET", _) => json!(0),
        _ => return None,
    })
}

#[test]
fn every_variable_reads_as_upstream_reads_it() {
    for (variable, value, expect) in TABLE {
        let row = format!("{variable}={value:?}");
        let parsed = from_env(&[(variable, value)]);
        let all = findings(&[(variable, value)]);
        let said: Vec<&Finding> = all.iter().filter(|f| f.variable == *variable).collect();
        let check_field = |field: &str, want: &Json| {
            let s = parsed
                .as_ref()
                .unwrap_or_else(|e| panic!("{row}: refused: {e}"));
            let got = &serde_json::to_value(s).unwrap()[field];
            let want = match want {
                Json::Null => wanted(variable, value)
                    .unwrap_or_else(|| panic!("{row}: no expected value for {field}")),
                w => w.clone(),
            };
            assert_eq!(got, &want, "{row}: {field}");
        };
        match expect {
            Expect::Field(field, want) => {
                check_field(field, want);
                let loud: Vec<_> = said.iter().filter(|f| f.kind.is_warning()).collect();
                assert!(loud.is_empty(), "{row}: unexpected warnings {loud:?}");
            }
            Expect::FieldAnd(field, want, kind) => {
                check_field(field, want);
                assert!(
                    all.iter().any(|f| f.kind == *kind),
                    "{row}: expected a {kind:?} finding, got {all:?}"
                );
            }
            Expect::Error(text) => {
                let e = parsed
                    .err()
                    .unwrap_or_else(|| panic!("{row}: accepted"))
                    .to_string();
                assert!(e.contains(variable), "{row}: error does not name it: {e}");
                assert!(e.contains(text), "{row}: error does not say {text:?}: {e}");
            }
            Expect::Finding(kind) => {
                parsed.unwrap_or_else(|e| panic!("{row}: refused: {e}"));
                let found = said.iter().find(|f| f.kind == *kind);
                let f = found.unwrap_or_else(|| panic!("{row}: expected {kind:?}, got {said:?}"));
                assert!(f.message.contains(variable), "{row}: {}", f.message);
            }
            Expect::Quiet => {
                parsed.unwrap_or_else(|e| panic!("{row}: refused: {e}"));
                assert!(said.is_empty(), "{row}: unexpected {said:?}");
            }
        }
    }
}

#[test]
fn the_table_covers_every_variable_of_the_catalog_and_of_ours() {
    let tested: BTreeSet<&str> = TABLE.iter().map(|(v, _, _)| *v).collect();
    for v in CATALOG {
        assert!(tested.contains(v.name), "{} has no row", v.name);
    }
    for v in RawSettings::VARIABLES {
        assert!(tested.contains(v), "{v} has no row");
    }
}

#[test]
fn typos_are_named_with_the_nearest_known_variable() {
    let f = findings(&[("WARM_IP_TAGRET", "5")]);
    let unknown = f.iter().find(|f| f.kind == FindingKind::Unknown).unwrap();
    assert!(
        unknown.message.contains("did you mean WARM_IP_TARGET?"),
        "{}",
        unknown.message
    );
    // Far from anything: named, no guess.
    let f = findings(&[("AWS_VPC_SOMETHING_ELSE_ENTIRELY", "x")]);
    assert!(
        f.iter()
            .any(|f| f.kind == FindingKind::Unknown && !f.message.contains("did you mean")),
        "{f:?}"
    );
}

#[test]
fn differing_defaults_are_said_only_when_they_apply() {
    let custom = [("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true")];
    let said = |vars: &[(&str, &str)]| -> Vec<String> {
        findings(vars)
            .into_iter()
            .filter(|f| f.kind == FindingKind::DefaultDiffers)
            .map(|f| f.variable)
            .collect()
    };
    assert!(said(&custom).contains(&"ENI_CONFIG_SG_FALLBACK".to_string()));
    // Written out as our manifests do: still said.
    let explicit = [
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
        ("ENI_CONFIG_SG_FALLBACK", "vpc-default"),
    ];
    assert!(said(&explicit).contains(&"ENI_CONFIG_SG_FALLBACK".to_string()));
    // Subnet discovery is upstream's default and ours: nothing to say about it unset.
    assert!(!said(&custom).contains(&"ENABLE_SUBNET_DISCOVERY".to_string()));
    let chosen = [
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
        ("ENI_CONFIG_SG_FALLBACK", "primary-eni"),
        ("AWS_VPC_K8S_CNI_LOG_FILE", "stdout"),
    ];
    assert!(said(&chosen).is_empty(), "{:?}", said(&chosen));
    let plain: [(&str, &str); 0] = [];
    assert_eq!(said(&plain), vec!["AWS_VPC_K8S_CNI_LOG_FILE"]);
}

#[test]
fn ec2_endpoint_beside_the_sdks_is_said() {
    let f = findings(&[
        ("AWS_EC2_ENDPOINT", "http://127.0.0.1:5000"),
        ("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:6000"),
    ]);
    assert!(
        f.iter().any(|f| f.variable == "AWS_EC2_ENDPOINT"
            && f.message
                .contains("AWS_ENDPOINT_URL_EC2=http://127.0.0.1:6000 is not")),
        "{f:?}"
    );
    let same = findings(&[
        ("AWS_EC2_ENDPOINT", "http://127.0.0.1:5000"),
        ("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:5000"),
    ]);
    assert!(!same.iter().any(|f| f.variable == "AWS_EC2_ENDPOINT"));
}

#[test]
fn flags_and_environment_read_the_same() {
    let s = parse(&[
        "--custom-network-cfg",
        "true",
        "--eni-config-label-def",
        "topology.kubernetes.io/zone",
        "--warm-ip-target",
        "5",
        "--minimum-ip-target",
        "10",
        "--max-eni",
        "-1",
        "--exclude-snat-cidrs",
        "10.1.0.0/16, 192.168.0.0/24",
        "--connmark",
        "128",
        "--pod-mtu",
        "1500",
        "--randomize-snat",
        "hashrandom",
        "--log-level",
        "info",
        "--additional-eni-tags",
        r#"{"team":"net","k8s.amazonaws.com/x":"y"}"#,
    ])
    .unwrap();
    assert!(s.custom_network_cfg);
    assert_eq!(s.selection_keys().label, "topology.kubernetes.io/zone");
    assert_eq!(s.selection_keys().annotation, eniconfig::DEFAULT_KEY);
    assert_eq!(
        (s.warm_ip_target, s.minimum_ip_target, s.max_eni),
        (5, 10, None)
    );
    assert_eq!(s.exclude_snat_cidrs.0.len(), 2);
    assert_eq!(s.connmark, 0x80);
    assert_eq!((s.eni_mtu, s.pod_mtu()), (9001, 1500));
    assert_eq!(s.log_level, LogLevel::Info);
    assert_eq!(s.additional_eni_tags.tags.len(), 1);
    assert_eq!(
        s.additional_eni_tags.refused,
        vec!["k8s.amazonaws.com/x".to_string()]
    );
    // A bad value is a usage error naming the variable.
    let e = parse(&["--warm-ip-target", "abc"]).unwrap_err();
    assert!(
        e.contains("WARM_IP_TARGET=\"abc\": expected a whole number"),
        "{e}"
    );
}

#[test]
fn custom_networking_with_ipv6_is_refused() {
    let s = parse(&["--custom-network-cfg", "true", "--enable-ipv6", "true"]).unwrap();
    let err = s.validate().unwrap_err();
    assert!(err.to_string().contains("ENABLE_IPv6"), "{err}");
}

#[test]
fn no_provisioning_means_no_leaked_eni_cleanup() {
    let s = from_env(&[("DISABLE_NETWORK_RESOURCE_PROVISIONING", "true")]).unwrap();
    assert!(!s.leaked_eni_cleanup());
}

#[test]
fn the_readme_table_is_the_catalogs() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let begin = "<!-- variables:begin -->\n";
    let end = "<!-- variables:end -->";
    let start = readme
        .find(begin)
        .expect("README has no variables:begin marker")
        + begin.len();
    let stop = readme[start..].find(end).expect("no variables:end marker") + start;
    assert_eq!(
        &readme[start..stop],
        markdown_table(),
        "README's variable table differs from the catalog: replace it with markdown_table()'s output"
    );
}
