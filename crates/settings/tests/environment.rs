//! The settings come from the environment, as in the DaemonSet. One test in its own process so
//! setting variables cannot race other tests.

#![allow(clippy::unwrap_used)]

use clap::Parser;
use ipamd_settings::IpamdSettings;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    settings: IpamdSettings,
}

fn with_env(vars: &[(&str, &str)]) -> Result<IpamdSettings, String> {
    for (k, v) in vars {
        // SAFETY: this test binary runs a single test on a single thread.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(k, v)
        };
    }
    let result = Cli::try_parse_from(["ipamd"])
        .map(|c| c.settings)
        .map_err(|e| e.to_string());
    for (k, _) in vars {
        #[allow(unsafe_code)]
        unsafe {
            std::env::remove_var(k)
        };
    }
    result
}

#[test]
fn environment_variables_set_and_validate() {
    let s = with_env(&[
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
        ("ENI_CONFIG_LABEL_DEF", "topology.kubernetes.io/zone"),
        ("WARM_IP_TARGET", "3"),
    ])
    .unwrap();
    assert!(s.custom_network_cfg);
    assert_eq!(s.warm_ip_target, 3);
    assert_eq!(s.selection_keys().label, "topology.kubernetes.io/zone");

    let err = with_env(&[("WARM_IP_TARGET", "lots")]).unwrap_err();
    assert!(err.contains("WARM_IP_TARGET"), "{err}");

    // An empty value means the default key, as the existing implementation reads it.
    let s = with_env(&[("ENI_CONFIG_ANNOTATION_DEF", "")]).unwrap();
    assert_eq!(s.selection_keys().annotation, "k8s.amazonaws.com/eniConfig");
}
