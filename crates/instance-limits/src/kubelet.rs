//! The kubelet's max pods against what the node's ENIs can give addresses to. A kubelet that
//! admits more pods than that leaves the extra ones in ContainerCreating — the most common
//! custom-networking failure (the node group kept the max pods of the node's own subnet).

use crate::{MaxPods, MaxPodsOptions};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KubeletCheck {
    /// The kubelet's max pods (the Node's `status.capacity.pods`).
    pub kubelet_max_pods: u32,
    /// Pods the node can serve: pod addresses on its ENIs plus the two host-network pods.
    pub servable: u32,
    /// The `--max-pods` to set: the servable figure under the 110/250 kubelet cap.
    pub recommended: u32,
    pub too_high: bool,
    /// How `servable` comes about, for people.
    pub reason: String,
}

impl KubeletCheck {
    /// One sentence naming both figures and the `--max-pods` to set.
    pub fn message(&self) -> String {
        if self.too_high {
            format!(
                "kubelet max pods is {} but this node can serve {} pods ({}): pods beyond {} get no address and stay in ContainerCreating; set --max-pods={} for this node group (vpcctl max-pods)",
                self.kubelet_max_pods, self.servable, self.reason, self.servable, self.recommended
            )
        } else {
            format!(
                "kubelet max pods {} is within the {} pods this node can serve ({})",
                self.kubelet_max_pods, self.servable, self.reason
            )
        }
    }
}

/// How the node's figure is reached: interfaces, addresses each, and the settings behind them.
pub fn explain(result: &MaxPods, options: &MaxPodsOptions) -> String {
    let unit = if options.prefix_delegation {
        "addresses in /28 prefixes"
    } else {
        "addresses"
    };
    let mut why = Vec::new();
    if options.custom_networking {
        why.push("custom networking: the primary ENI serves no pods".to_string());
    }
    if let Some(cap) = options.max_eni.filter(|c| *c == result.enis) {
        why.push(format!("MAX_ENI={cap}"));
    }
    let tail = if why.is_empty() {
        String::new()
    } else {
        format!("; {}", why.join(", "))
    };
    format!(
        "{} of {} ENIs x {} {unit} + 2 host-network pods{tail}",
        result.pod_enis, result.enis, result.addresses_per_eni
    )
}

/// The check of a kubelet figure against the node's computed max pods.
pub fn check_kubelet(
    kubelet_max_pods: u32,
    result: &MaxPods,
    options: &MaxPodsOptions,
) -> KubeletCheck {
    KubeletCheck {
        kubelet_max_pods,
        servable: result.uncapped,
        recommended: result.max_pods,
        too_high: kubelet_max_pods > result.uncapped,
        reason: explain(result, options),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LimitsTable, max_pods};

    fn check(t: &str, options: MaxPodsOptions, kubelet: u32) -> KubeletCheck {
        let result = max_pods(LimitsTable::builtin().get(t).unwrap(), &options).unwrap();
        check_kubelet(kubelet, &result, &options)
    }

    #[test]
    fn kubelet_figures_against_the_nodes() {
        let cn = MaxPodsOptions {
            custom_networking: true,
            ..Default::default()
        };
        let pd = MaxPodsOptions {
            prefix_delegation: true,
            ..Default::default()
        };
        let two = MaxPodsOptions {
            max_eni: Some(2),
            ..Default::default()
        };
        for (t, options, kubelet, too_high, servable, recommended) in [
            // The reference document's node group kept its default 29: 9 pods without addresses.
            ("m5.large", cn, 29, true, 20, 20),
            ("m5.large", cn, 20, false, 20, 20),
            ("m5.large", cn, 17, false, 20, 20),
            ("m5.large", MaxPodsOptions::default(), 29, false, 29, 29),
            ("m5.large", MaxPodsOptions::default(), 110, true, 29, 29),
            ("m5.large", two, 29, true, 20, 20),
            // Prefix delegation: 434 servable, 110 recommended; the kubelet's 250 is servable.
            ("m5.large", pd, 250, false, 434, 110),
            ("m5.large", pd, 435, true, 434, 110),
        ] {
            let c = check(t, options, kubelet);
            assert_eq!(
                (c.too_high, c.servable, c.recommended),
                (too_high, servable, recommended),
                "{t} {options:?} kubelet {kubelet}"
            );
        }
    }

    #[test]
    fn the_message_names_both_figures_the_cause_and_the_flag() {
        let cn = MaxPodsOptions {
            custom_networking: true,
            max_eni: Some(3),
            ..Default::default()
        };
        let m = check("m5.large", cn, 29).message();
        for part in [
            "kubelet max pods is 29",
            "can serve 20 pods",
            "2 of 3 ENIs x 9 addresses + 2 host-network pods",
            "custom networking",
            "MAX_ENI=3",
            "--max-pods=20",
        ] {
            assert!(m.contains(part), "{part:?} missing: {m}");
        }
        let fine = check("m5.large", cn, 20).message();
        assert!(fine.contains("within the 20 pods"), "{fine}");
    }
}
