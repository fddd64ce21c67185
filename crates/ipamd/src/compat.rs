//! The existing implementation's settings beyond their parsing: the start-up review of ipamd's
//! environment (each refused, unsupported or unknown variable said once, counted in
//! `awscni_unsupported_env{variable,kind}` and listed at `/v1/compat`), the refusal that keeps
//! the node not ready, and the pool actions the settings hold back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use clap::CommandFactory;
use ipam::PoolAction;
use ipamd_settings::{Finding, FindingKind, IpamdSettings, review};
use prometheus::{IntGaugeVec, Opts, Registry};
use tracing::{error, info, warn};

use crate::cli::Cli;
use crate::node::Node;

pub const METRIC: &str = "awscni_unsupported_env";

/// The Event reason when a setting keeps the node not ready.
pub const REFUSED_EVENT: &str = "UnsupportedSetting";

/// Every variable ipamd reads (its flags' environment names), so none is taken for a typo.
pub fn own_variables() -> BTreeSet<String> {
    Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// The review of this process's environment, made once.
pub fn findings() -> &'static [Finding] {
    static FINDINGS: OnceLock<Vec<Finding>> = OnceLock::new();
    FINDINGS.get_or_init(|| {
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        review(&env, &own_variables())
    })
}

/// Says every finding once — refusals as errors, the other warnings as warnings, the rest as
/// information — and counts the warnings in [`METRIC`].
pub fn announce(findings: &[Finding], registry: &Registry) -> Result<(), prometheus::Error> {
    let gauge = IntGaugeVec::new(
        Opts::new(
            METRIC,
            "Settings of the existing implementation that ipamd refuses, does not support or does not know (1 each)",
        ),
        &["variable", "kind"],
    )?;
    registry.register(Box::new(gauge.clone()))?;
    for f in findings {
        let value = f.value.as_deref().unwrap_or("");
        match f.kind {
            FindingKind::Refused => error!(variable = f.variable, value, "{}", f.message),
            FindingKind::Unsupported | FindingKind::Unknown => {
                warn!(variable = f.variable, value, "{}", f.message)
            }
            FindingKind::DefaultDiffers | FindingKind::Note => {
                info!(variable = f.variable, "{}", f.message)
            }
        }
        if f.kind.is_warning() {
            gauge
                .with_label_values(&[f.variable.as_str(), f.kind.as_str()])
                .set(1);
        }
    }
    Ok(())
}

/// Why the node must stay not ready: a setting asks for a network we would not give its pods.
pub fn refusal(findings: &[Finding]) -> Option<String> {
    let refused: Vec<&str> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::Refused)
        .map(|f| f.message.as_str())
        .collect();
    (!refused.is_empty()).then(|| refused.join("; "))
}

/// Why the settings hold `action` back now, if they do: no EC2 writes at all under
/// `DISABLE_NETWORK_RESOURCE_PROVISIONING`, no ENI detached from a cordoned node unless
/// `AWS_MANAGE_ENIS_NON_SCHEDULABLE`.
pub fn held(settings: &IpamdSettings, cordoned: bool, action: &PoolAction) -> Option<&'static str> {
    let writes = !matches!(action, PoolAction::Steady | PoolAction::AtCapacity { .. });
    if writes && settings.disable_network_resource_provisioning {
        return Some("DISABLE_NETWORK_RESOURCE_PROVISIONING=true: no EC2 writes");
    }
    if matches!(action, PoolAction::ReleaseEni { .. })
        && cordoned
        && !settings.manage_enis_non_schedulable
    {
        return Some(
            "the node is cordoned and AWS_MANAGE_ENIS_NON_SCHEDULABLE is false: no ENI is detached",
        );
    }
    None
}

/// [`held`] for the node as it is now.
pub fn held_now(node: &Node, action: &PoolAction) -> Option<&'static str> {
    let cordoned = node
        .objects
        .borrow()
        .node
        .as_ref()
        .is_some_and(|n| n.unschedulable);
    held(&node.cli.settings, cordoned, action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> IpamdSettings {
        let map: BTreeMap<&str, &str> = vars.iter().copied().collect();
        IpamdSettings::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap()
    }

    #[test]
    fn held_actions() {
        let release = PoolAction::ReleaseEni {
            eni_id: "eni-1".into(),
        };
        let create = PoolAction::CreateEni { slots: 9 };
        let plain = settings(&[]);
        let no_writes = settings(&[("DISABLE_NETWORK_RESOURCE_PROVISIONING", "true")]);
        let manage = settings(&[("AWS_MANAGE_ENIS_NON_SCHEDULABLE", "true")]);
        for (s, cordoned, action, held_back) in [
            (&plain, false, &create, false),
            (&plain, false, &release, false),
            (&plain, true, &release, true),
            (&plain, true, &create, false),
            (&manage, true, &release, false),
            (&no_writes, false, &create, true),
            (&no_writes, false, &release, true),
            (&no_writes, false, &PoolAction::Steady, false),
        ] {
            assert_eq!(
                held(s, cordoned, action).is_some(),
                held_back,
                "{action:?} cordoned={cordoned}"
            );
        }
    }

    #[test]
    fn every_warning_is_counted_and_refusals_joined() {
        let findings = vec![
            Finding {
                variable: "ENABLE_POD_ENI".into(),
                value: Some("true".into()),
                kind: FindingKind::Unsupported,
                message: "ENABLE_POD_ENI=true is not supported".into(),
            },
            Finding {
                variable: "ENABLE_IPv6".into(),
                value: Some("true".into()),
                kind: FindingKind::Refused,
                message: "ENABLE_IPv6=true is refused".into(),
            },
            Finding {
                variable: "AWS_VPC_K8S_CNI_LOG_FILE".into(),
                value: None,
                kind: FindingKind::DefaultDiffers,
                message: "stdout".into(),
            },
        ];
        let registry = Registry::new();
        announce(&findings, &registry).unwrap();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains(
                r#"awscni_unsupported_env{kind="unsupported",variable="ENABLE_POD_ENI"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"awscni_unsupported_env{kind="refused",variable="ENABLE_IPv6"} 1"#),
            "{text}"
        );
        assert!(!text.contains("AWS_VPC_K8S_CNI_LOG_FILE"), "{text}");
        assert_eq!(
            refusal(&findings).as_deref(),
            Some("ENABLE_IPv6=true is refused")
        );
        assert_eq!(refusal(&findings[..1]), None);
    }

    #[test]
    fn ipamds_own_variables_are_known() {
        let ours = own_variables();
        for v in [
            "WARM_IP_TARGET",
            "AWS_VPC_K8S_PLUGIN_LOG_FILE",
            "IPAMD_MANIFESTS",
            "AWS_VPC_CNI_NODE_PORT_SUPPORT",
        ] {
            assert!(ours.contains(v), "{v} missing from {ours:?}");
        }
    }
}
