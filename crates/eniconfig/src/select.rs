use std::collections::BTreeMap;

/// The default key of both `ENI_CONFIG_ANNOTATION_DEF` and `ENI_CONFIG_LABEL_DEF`.
pub const DEFAULT_KEY: &str = "k8s.amazonaws.com/eniConfig";
/// Set by external tooling; wins over everything else.
pub const EXTERNAL_ENICONFIG_LABEL: &str = "vpc.amazonaws.com/externalEniConfig";
/// Used when nothing on the node names an ENIConfig.
pub const DEFAULT_ENICONFIG: &str = "default";

/// The node keys to look at, from `ENI_CONFIG_ANNOTATION_DEF` and `ENI_CONFIG_LABEL_DEF`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SelectionKeys {
    pub annotation: String,
    pub label: String,
}

impl SelectionKeys {
    /// An empty setting means the default key.
    pub fn new(annotation: Option<&str>, label: Option<&str>) -> Self {
        let pick = |v: Option<&str>| {
            v.map(str::trim)
                .filter(|v| !v.is_empty())
                .unwrap_or(DEFAULT_KEY)
                .to_string()
        };
        SelectionKeys {
            annotation: pick(annotation),
            label: pick(label),
        }
    }
}

impl Default for SelectionKeys {
    fn default() -> Self {
        SelectionKeys::new(None, None)
    }
}

/// Which rule chose the ENIConfig, for introspection and logs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "rule", content = "key", rename_all = "snake_case")]
pub enum Rule {
    ExternalLabel(String),
    Annotation(String),
    Label(String),
    Default,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::ExternalLabel(k) => write!(f, "node label {k}"),
            Rule::Annotation(k) => write!(f, "node annotation {k}"),
            Rule::Label(k) => write!(f, "node label {k}"),
            Rule::Default => write!(
                f,
                "no label or annotation names one: the ENIConfig named {DEFAULT_ENICONFIG}"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Selection {
    pub name: String,
    pub rule: Rule,
}

/// First match wins: the external label, the annotation, the label, then `default`. A key
/// present with an empty value names nothing and is passed over.
pub fn select(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    keys: &SelectionKeys,
) -> Selection {
    let named = |map: &BTreeMap<String, String>, key: &str| {
        map.get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let candidates = [
        (
            named(labels, EXTERNAL_ENICONFIG_LABEL),
            Rule::ExternalLabel(EXTERNAL_ENICONFIG_LABEL.to_string()),
        ),
        (
            named(annotations, &keys.annotation),
            Rule::Annotation(keys.annotation.clone()),
        ),
        (named(labels, &keys.label), Rule::Label(keys.label.clone())),
    ];
    candidates
        .into_iter()
        .find_map(|(name, rule)| name.map(|name| Selection { name, rule }))
        .unwrap_or_else(|| Selection {
            name: DEFAULT_ENICONFIG.to_string(),
            rule: Rule::Default,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ZONE: &str = "topology.kubernetes.io/zone";

    #[test]
    fn label_by_zone_as_the_reference_document_sets_it() {
        let keys = SelectionKeys::new(None, Some(ZONE));
        let s = select(&map(&[(ZONE, "us-west-2a")]), &map(&[]), &keys);
        assert_eq!(
            s,
            Selection {
                name: "us-west-2a".into(),
                rule: Rule::Label(ZONE.into())
            }
        );
        assert_eq!(s.rule.to_string(), "node label topology.kubernetes.io/zone");
    }

    #[test]
    fn annotation_overrides_the_label() {
        // The reference document's warning: an annotation with the default key wins.
        let keys = SelectionKeys::new(Some(""), Some(ZONE));
        let s = select(
            &map(&[(ZONE, "us-west-2a")]),
            &map(&[(DEFAULT_KEY, "subnet1Config")]),
            &keys,
        );
        assert_eq!(s.name, "subnet1Config");
        assert_eq!(s.rule, Rule::Annotation(DEFAULT_KEY.into()));
    }

    #[test]
    fn external_label_wins_over_everything() {
        let keys = SelectionKeys::default();
        let s = select(
            &map(&[(EXTERNAL_ENICONFIG_LABEL, "ext"), (DEFAULT_KEY, "lbl")]),
            &map(&[(DEFAULT_KEY, "ann")]),
            &keys,
        );
        assert_eq!(s.name, "ext");
        assert!(matches!(s.rule, Rule::ExternalLabel(_)));
    }

    #[test]
    fn default_when_nothing_names_one_and_empty_values_are_skipped() {
        let keys = SelectionKeys::default();
        let s = select(
            &map(&[(DEFAULT_KEY, " ")]),
            &map(&[(DEFAULT_KEY, "")]),
            &keys,
        );
        assert_eq!(
            s,
            Selection {
                name: "default".into(),
                rule: Rule::Default
            }
        );
        let s = select(&map(&[("other", "x")]), &map(&[]), &keys);
        assert_eq!(s.name, "default");
    }

    #[test]
    fn custom_keys() {
        let keys = SelectionKeys::new(Some("example.com/ann"), Some("example.com/lbl"));
        let s = select(
            &map(&[(DEFAULT_KEY, "ignored")]),
            &map(&[(DEFAULT_KEY, "ignored")]),
            &keys,
        );
        assert_eq!(s.rule, Rule::Default);
        let s = select(&map(&[("example.com/lbl", "b")]), &map(&[]), &keys);
        assert_eq!(s.name, "b");
    }

    proptest! {
        #[test]
        fn first_match_wins(ext in proptest::option::of("[a-z]{1,5}"), ann in proptest::option::of("[a-z]{1,5}"), lbl in proptest::option::of("[a-z]{1,5}")) {
            let mut labels = BTreeMap::new();
            let mut annotations = BTreeMap::new();
            if let Some(v) = &ext { labels.insert(EXTERNAL_ENICONFIG_LABEL.to_string(), v.clone()); }
            if let Some(v) = &ann { annotations.insert(DEFAULT_KEY.to_string(), v.clone()); }
            if let Some(v) = &lbl { labels.insert(ZONE.to_string(), v.clone()); }
            let s = select(&labels, &annotations, &SelectionKeys::new(None, Some(ZONE)));
            let expected = ext.or(ann).or(lbl).unwrap_or_else(|| "default".to_string());
            prop_assert_eq!(s.name, expected);
        }
    }
}

/// Zone names (`us-west-2a`, `eu-central-1b`, `us-gov-west-1a`, local zones `us-west-2-lax-1a`):
/// an ENIConfig named after one must use a subnet in that zone, since nodes pick it by their zone.
pub fn is_zone_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts.last().is_some_and(|last| {
            let digits = last.trim_end_matches(|c: char| c.is_ascii_lowercase());
            !digits.is_empty()
                && digits.len() < last.len()
                && digits.chars().all(|c| c.is_ascii_digit())
        })
}

#[cfg(test)]
mod zone_tests {
    use super::is_zone_name;

    #[test]
    fn zone_names() {
        for z in [
            "us-west-2a",
            "eu-central-1b",
            "us-gov-west-1a",
            "us-west-2-lax-1a",
            "ap-southeast-4c",
        ] {
            assert!(is_zone_name(z), "{z}");
        }
        for n in [
            "default",
            "us-west-2",
            "pods-blue",
            "group1-pods",
            "us-west-a",
            "x-y-1",
            "subnet1Config",
        ] {
            assert!(!is_zone_name(n), "{n}");
        }
    }
}
