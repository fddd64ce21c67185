//! The start-up review of an environment against the existing implementation: what we do not
//! support (warned or refused), what we do not know (a typo), and where our behaviour or default
//! differs. Pure: the environment comes in as a map; ipamd logs, counts and serves the findings.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::{CATALOG, Fate, lookup};
use crate::parse::{Value, ipv6_entries};

/// Prefixes of the existing implementation's variables: a name with one of them that nobody
/// knows is most likely a typo.
pub const WATCHED_PREFIXES: &[&str] = &["AWS_VPC_", "ENI_CONFIG_", "WARM_"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Running on would give pods another network than asked for: ipamd stays not ready.
    Refused,
    /// Known, not supported: ipamd runs on without it.
    Unsupported,
    /// Not a variable of ours or of the existing implementation.
    Unknown,
    /// Our default differs from upstream's and applies.
    DefaultDiffers,
    /// Accepted without effect, or a detail of how a value is read.
    Note,
}

impl FindingKind {
    /// Refusals and warnings are counted in a metric; notes are only logged.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            FindingKind::Refused | FindingKind::Unsupported | FindingKind::Unknown
        )
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            FindingKind::Refused => "refused",
            FindingKind::Unsupported => "unsupported",
            FindingKind::Unknown => "unknown",
            FindingKind::DefaultDiffers => "default_differs",
            FindingKind::Note => "note",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub variable: String,
    /// The value as set; None when the finding is about an unset variable.
    pub value: Option<String>,
    pub kind: FindingKind,
    pub message: String,
}

impl Finding {
    fn new(variable: &str, value: Option<&str>, kind: FindingKind, message: String) -> Self {
        Finding {
            variable: variable.to_string(),
            value: value.map(str::to_string),
            kind,
            message,
        }
    }
}

/// Reviews `env` (name → value). `ours` are the names of our own variables beyond the catalog
/// (ipamd's flags), so they are not taken for typos.
pub fn review(env: &BTreeMap<String, String>, ours: &BTreeSet<String>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, value) in env {
        if let Some(var) = lookup(name) {
            review_known(var, value, &mut out);
        } else if WATCHED_PREFIXES.iter().any(|p| name.starts_with(p)) && !ours.contains(name) {
            let hint = closest(name, ours)
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default();
            out.push(Finding::new(
                name,
                Some(value),
                FindingKind::Unknown,
                format!("{name} is not a variable of ipamd or of the existing implementation and is ignored{hint}"),
            ));
        }
    }
    defaults(env, &mut out);
    endpoint_overrides(env, &mut out);
    out.sort_by(|a, b| (a.kind, &a.variable).cmp(&(b.kind, &b.variable)));
    out
}

fn review_known(var: &crate::catalog::Variable, value: &str, out: &mut Vec<Finding>) {
    if value.is_empty() {
        return;
    }
    let name = var.name;
    match var.fate {
        Fate::NotSupported { when, refuse } => match when.fires(value) {
            Ok(false) => {}
            Ok(true) if refuse => out.push(Finding::new(
                name,
                Some(value),
                FindingKind::Refused,
                format!("{name}={value} is not supported and refused: {}", var.note),
            )),
            Ok(true) => out.push(Finding::new(
                name,
                Some(value),
                FindingKind::Unsupported,
                format!("{name}={value} is not supported: {}", var.note),
            )),
            Err(e) => out.push(Finding::new(
                name,
                Some(value),
                FindingKind::Unsupported,
                format!(
                    "{name}={value:?}: {e}; upstream would read it as {}; not supported either way: {}",
                    var.upstream_default, var.note
                ),
            )),
        },
        Fate::NoEffect => out.push(Finding::new(
            name,
            Some(value),
            FindingKind::Note,
            format!("{name}={value} has no effect: {}", var.note),
        )),
        Fate::Same | Fate::Different | Fate::Ours => {
            if matches!(
                name,
                "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS" | "AWS_EXTERNAL_SERVICE_CIDRS"
            ) {
                let v6 = ipv6_entries(value);
                if !v6.is_empty() {
                    out.push(Finding::new(
                        name,
                        Some(value),
                        FindingKind::Note,
                        format!(
                            "{name}: IPv6 entries skipped (IPv4 pods only): {}",
                            v6.join(", ")
                        ),
                    ));
                }
            }
            if name == "HOST_CNI_BIN_PATH" {
                out.push(Finding::new(
                    name,
                    Some(value),
                    FindingKind::Note,
                    format!("{name}={value} is used by the init container (vpcctl install-cni), which must see it too (kubectl set env and our chart set it there)"),
                ));
            }
        }
    }
}

fn is_set(env: &BTreeMap<String, String>, name: &str) -> bool {
    env.get(name).is_some_and(|v| !v.is_empty())
}

fn flag(env: &BTreeMap<String, String>, name: &'static str, default: bool) -> bool {
    Value {
        variable: name,
        text: env.get(name).map(String::as_str),
    }
    .boolean(default)
    .unwrap_or(default)
}

/// Our defaults that differ from upstream's, said when they apply.
fn defaults(env: &BTreeMap<String, String>, out: &mut Vec<Finding>) {
    let custom = flag(env, "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", false);
    // Ours; said whenever it is in force (our manifests write it out), not only when unset.
    let fallback = env
        .get("ENI_CONFIG_SG_FALLBACK")
        .filter(|v| !v.is_empty())
        .map(|v| v.to_ascii_lowercase());
    if custom && fallback.as_deref().is_none_or(|v| v == "vpc-default") {
        out.push(Finding::new(
            "ENI_CONFIG_SG_FALLBACK",
            fallback.as_deref(),
            FindingKind::DefaultDiffers,
            "ENI_CONFIG_SG_FALLBACK is vpc-default: an ENIConfig without securityGroups gives pod ENIs the VPC's default security group, as the reference document says; upstream's code copies the primary ENI's groups instead (set ENI_CONFIG_SG_FALLBACK=primary-eni for that)".to_string(),
        ));
    }
    if !is_set(env, "AWS_VPC_K8S_CNI_LOG_FILE") {
        out.push(Finding::new(
            "AWS_VPC_K8S_CNI_LOG_FILE",
            None,
            FindingKind::DefaultDiffers,
            "AWS_VPC_K8S_CNI_LOG_FILE unset: logging to stdout; upstream logs to /host/var/log/aws-routed-eni/ipamd.log (set it to that path for the file)".to_string(),
        ));
    }
    if custom
        && flag(env, "ENABLE_SUBNET_DISCOVERY", true)
        && is_set(env, "ENABLE_SUBNET_DISCOVERY")
    {
        out.push(Finding::new(
            "ENABLE_SUBNET_DISCOVERY",
            env.get("ENABLE_SUBNET_DISCOVERY").map(String::as_str),
            FindingKind::Note,
            "ENABLE_SUBNET_DISCOVERY has no effect under custom networking: pod ENIs go to the ENIConfig's subnets (as upstream)".to_string(),
        ));
    }
}

/// AWS_EC2_ENDPOINT beside the SDK's own endpoint variables.
fn endpoint_overrides(env: &BTreeMap<String, String>, out: &mut Vec<Finding>) {
    let Some(ours) = env.get("AWS_EC2_ENDPOINT").filter(|v| !v.is_empty()) else {
        return;
    };
    for sdk in ["AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL"] {
        if let Some(theirs) = env.get(sdk).filter(|v| !v.is_empty() && *v != ours) {
            out.push(Finding::new(
                "AWS_EC2_ENDPOINT",
                Some(ours),
                FindingKind::Note,
                format!("AWS_EC2_ENDPOINT={ours} is used for EC2; {sdk}={theirs} is not"),
            ));
        }
    }
}

/// The known name nearest to `name` (at most a third of its letters off), for typo hints.
fn closest(name: &str, ours: &BTreeSet<String>) -> Option<String> {
    let candidates = CATALOG
        .iter()
        .map(|v| v.name.to_string())
        .chain(ours.iter().cloned());
    candidates
        .map(|c| (distance(name, &c), c))
        .filter(|(d, _)| *d <= name.len().div_ceil(3))
        .min()
        .map(|(_, c)| c)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("WARM_IP_TARGET", "WARM_IP_TARGET"), 0);
        assert_eq!(distance("WARM_IP_TAGRET", "WARM_IP_TARGET"), 2);
        assert_eq!(distance("", "abc"), 3);
    }
}
