use super::*;
use clap::Parser;

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
    s.validate().unwrap();
}

#[test]
fn invalid_values_name_the_variable_and_what_it_accepts() {
    for (args, variable, accepted) in [
        (
            &["--warm-ip-target", "abc"][..],
            "WARM_IP_TARGET",
            "invalid digit",
        ),
        (&["--warm-ip-target=-1"][..], "WARM_IP_TARGET", "not in 0.."),
        (
            &["--custom-network-cfg", "yes"][..],
            "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
            "expected true or false",
        ),
        (&["--max-eni", "0"][..], "MAX_ENI", "not in 1.."),
        (
            &["--veth-prefix", "eth"][..],
            "AWS_VPC_K8S_CNI_VETHPREFIX",
            "taken",
        ),
        (
            &["--veth-prefix", "toolong"][..],
            "AWS_VPC_K8S_CNI_VETHPREFIX",
            "1 to 4",
        ),
        (
            &["--eni-mtu", "100000"][..],
            "AWS_VPC_ENI_MTU",
            "576 and 9001",
        ),
        (
            &["--connmark", "0xzz"][..],
            "AWS_VPC_K8S_CNI_CONNMARK",
            "hex",
        ),
        (
            &["--exclude-snat-cidrs", "10.0.0.0/8,bogus"][..],
            "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS",
            "\"bogus\"",
        ),
        (
            &["--randomize-snat", "maybe"][..],
            "AWS_VPC_K8S_CNI_RANDOMIZESNAT",
            "prng",
        ),
        (
            &["--eni-config-sg-fallback", "none"][..],
            "ENI_CONFIG_SG_FALLBACK",
            "primary-eni",
        ),
        (
            &["--additional-eni-tags", "[1]"][..],
            "ADDITIONAL_ENI_TAGS",
            "JSON object",
        ),
        (
            &["--introspection-bind-address", "0.0.0.0:61679"][..],
            "INTROSPECTION_BIND_ADDRESS",
            "loopback",
        ),
        (
            &["--log-level", "chatty"][..],
            "AWS_VPC_K8S_CNI_LOGLEVEL",
            "DEBUG",
        ),
    ] {
        let err = parse(args).expect_err(&format!("{args:?} was accepted"));
        assert!(
            err.contains(variable),
            "{args:?}: error does not name {variable}: {err}"
        );
        assert!(
            err.contains(accepted),
            "{args:?}: error does not say {accepted:?}: {err}"
        );
    }
}

#[test]
fn values_parse() {
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
        "2",
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
        (5, 10, Some(2))
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
}

#[test]
fn custom_networking_with_ipv6_is_refused() {
    let s = parse(&["--custom-network-cfg", "true", "--enable-ipv6", "true"]).unwrap();
    let err = s.validate().unwrap_err();
    assert!(err.to_string().contains("ENABLE_IPv6"), "{err}");
}
