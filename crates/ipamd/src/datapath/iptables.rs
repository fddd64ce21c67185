//! Which iptables ipamd writes its rules with: the one kube-proxy and the kubelet use on this
//! host, chosen as the existing implementation chooses it (its image runs Kubernetes'
//! iptables-wrapper): the kubelet's `KUBE-IPTABLES-HINT` / `KUBE-KUBELET-CANARY` chain in the
//! mangle table of iptables-nft, then of iptables-legacy; else the backend holding more rules
//! (legacy from 10 rules on); else nft. SNAT in one backend while kube-proxy's rules sit in the
//! other would mix two rule sets in one datapath. Chosen once per process and logged once.

use std::sync::OnceLock;

use tracing::info;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Nft,
    Legacy,
}

impl Backend {
    pub fn iptables(&self) -> &'static str {
        match self {
            Backend::Nft => "iptables-nft",
            Backend::Legacy => "iptables-legacy",
        }
    }

    pub fn restore(&self) -> &'static str {
        match self {
            Backend::Nft => "iptables-nft-restore",
            Backend::Legacy => "iptables-legacy-restore",
        }
    }

    fn save(&self) -> &'static str {
        match self {
            Backend::Nft => "iptables-nft-save",
            Backend::Legacy => "iptables-legacy-save",
        }
    }
}

/// Chains the kubelet creates in the mangle table of the backend it uses (1.17+, 1.24+).
const KUBELET_HINTS: &[&str] = &["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"];

/// What `iptables-*-save` printed for each backend (empty when it could not run).
#[derive(Debug, Default)]
pub struct Saved<'a> {
    pub nft_mangle: &'a str,
    pub legacy_mangle: &'a str,
    pub nft_all: &'a str,
    pub legacy_all: &'a str,
}

fn has_hint(save: &str) -> bool {
    save.lines().any(|l| {
        l.strip_prefix(':')
            .and_then(|chain| chain.split_whitespace().next())
            .is_some_and(|chain| KUBELET_HINTS.contains(&chain))
    })
}

fn rules(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with("-A ")).count()
}

/// Pure: the backend and why.
pub fn choose(saved: &Saved) -> (Backend, String) {
    if has_hint(saved.nft_mangle) {
        return (
            Backend::Nft,
            "the kubelet's hint chain is in iptables-nft".into(),
        );
    }
    if has_hint(saved.legacy_mangle) {
        return (
            Backend::Legacy,
            "the kubelet's hint chain is in iptables-legacy".into(),
        );
    }
    let (legacy, nft) = (rules(saved.legacy_all), rules(saved.nft_all));
    // Upstream's wrapper: legacy from 10 rules on, or when it holds more; nft otherwise.
    let chosen = if legacy >= 10 || legacy > nft {
        Backend::Legacy
    } else {
        Backend::Nft
    };
    (
        chosen,
        format!("no kubelet hint chain; {legacy} rules in iptables-legacy, {nft} in iptables-nft"),
    )
}

fn save(backend: Backend, table: Option<&str>) -> String {
    let mut args = vec![backend.save()];
    if let Some(t) = table {
        args.extend(["-t", t]);
    }
    command::run(&args, None).unwrap_or_default()
}

/// The backend of this host, looked at once.
pub fn backend() -> Backend {
    static CHOSEN: OnceLock<Backend> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let (nft_mangle, legacy_mangle) = (
            save(Backend::Nft, Some("mangle")),
            save(Backend::Legacy, Some("mangle")),
        );
        let (nft_all, legacy_all) = (save(Backend::Nft, None), save(Backend::Legacy, None));
        let (chosen, why) = choose(&Saved {
            nft_mangle: &nft_mangle,
            legacy_mangle: &legacy_mangle,
            nft_all: &nft_all,
            legacy_all: &legacy_all,
        });
        info!(
            backend = chosen.iptables(),
            reason = why,
            "iptables backend"
        );
        chosen
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HINT: &str = "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n";
    const CANARY: &str = "*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n";

    fn with_rules(n: usize) -> String {
        let mut s = String::from("*nat\n:KUBE-SERVICES - [0:0]\n");
        for i in 0..n {
            s.push_str(&format!(
                "-A KUBE-SERVICES -d 10.100.0.{i}/32 -j KUBE-SVC-X\n"
            ));
        }
        s.push_str("COMMIT\n");
        s
    }

    #[test]
    fn as_the_iptables_wrapper_chooses() {
        let (few, many, eleven) = (with_rules(3), with_rules(40), with_rules(11));
        for (saved, want) in [
            // The kubelet's hint decides, nft first.
            (
                Saved {
                    nft_mangle: HINT,
                    legacy_all: &many,
                    ..Default::default()
                },
                Backend::Nft,
            ),
            (
                Saved {
                    legacy_mangle: CANARY,
                    nft_all: &many,
                    ..Default::default()
                },
                Backend::Legacy,
            ),
            (
                Saved {
                    nft_mangle: CANARY,
                    legacy_mangle: HINT,
                    ..Default::default()
                },
                Backend::Nft,
            ),
            // No hint: kube-proxy's rules decide.
            (
                Saved {
                    legacy_all: &many,
                    nft_all: &few,
                    ..Default::default()
                },
                Backend::Legacy,
            ),
            (
                Saved {
                    legacy_all: &few,
                    nft_all: &many,
                    ..Default::default()
                },
                Backend::Nft,
            ),
            (
                Saved {
                    legacy_all: &eleven,
                    nft_all: &many,
                    ..Default::default()
                },
                Backend::Legacy,
            ),
            (
                Saved {
                    legacy_all: &few,
                    ..Default::default()
                },
                Backend::Legacy,
            ),
            // Nothing anywhere (or no iptables at all): nft.
            (Saved::default(), Backend::Nft),
            (
                Saved {
                    legacy_all: &few,
                    nft_all: &few,
                    ..Default::default()
                },
                Backend::Nft,
            ),
        ] {
            assert_eq!(choose(&saved).0, want, "{saved:?}");
        }
    }

    #[test]
    fn a_hint_is_a_chain_not_a_mention() {
        let mention =
            "*mangle\n-A PREROUTING -m comment --comment KUBE-IPTABLES-HINT -j ACCEPT\nCOMMIT\n";
        assert!(!has_hint(mention));
        assert!(has_hint(HINT));
    }
}
