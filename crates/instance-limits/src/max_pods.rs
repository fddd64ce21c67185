use crate::InstanceLimits;

/// Addresses in one delegated /28 prefix.
pub const ADDRESSES_PER_PREFIX: u32 = 16;
/// Host-network pods (aws-node, kube-proxy) that take no pod address.
const HOST_NETWORK_PODS: u32 = 2;
/// The kubelet-friendly caps: 110 pods up to 30 vCPUs, 250 above.
const SMALL_NODE_CAP: u32 = 110;
const LARGE_NODE_CAP: u32 = 250;
const SMALL_NODE_MAX_VCPUS: u32 = 30;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaxPodsOptions {
    /// The primary ENI serves no pods.
    pub custom_networking: bool,
    /// Slots hold /28 prefixes instead of single addresses.
    pub prefix_delegation: bool,
    /// `MAX_ENI` / `--cni-max-eni`: caps the interface count.
    pub max_eni: Option<u32>,
    /// Skip the 110/250 kubelet cap.
    pub show_max_allowed: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaxPodsError {
    #[error(
        "instance type {0} cannot use prefix delegation: it is neither a Nitro instance nor bare metal"
    )]
    PrefixDelegationUnsupported(String),
    #[error(
        "instance type {instance_type}: its vCPU count is unknown, so the {SMALL_NODE_CAP}/{LARGE_NODE_CAP} \
         kubelet cap cannot be chosen for {uncapped} pods; use --show-max-allowed for the uncapped figure"
    )]
    UnknownVcpus {
        instance_type: String,
        uncapped: u32,
    },
    #[error("the ENI cap (MAX_ENI / --cni-max-eni) must be at least 1, got 0")]
    ZeroMaxEni,
}

/// The figure and how it was reached, for `--json` and introspection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MaxPods {
    pub max_pods: u32,
    /// Before the 110/250 cap.
    pub uncapped: u32,
    /// The cap that applied, if it lowered the figure.
    pub cap_applied: Option<u32>,
    /// Interfaces counted (the instance limit, or `MAX_ENI` when lower).
    pub enis: u32,
    /// Interfaces that carry pod addresses.
    pub pod_enis: u32,
    /// Pod addresses per pod-carrying interface.
    pub addresses_per_eni: u32,
}

pub fn max_pods(
    limits: &InstanceLimits,
    options: &MaxPodsOptions,
) -> Result<MaxPods, MaxPodsError> {
    if options.prefix_delegation && !limits.supports_prefix_delegation() {
        return Err(MaxPodsError::PrefixDelegationUnsupported(
            limits.instance_type.clone(),
        ));
    }
    let enis = match options.max_eni {
        Some(0) => return Err(MaxPodsError::ZeroMaxEni),
        Some(cap) => cap.min(limits.eni_limit),
        None => limits.eni_limit,
    };
    let pod_enis = if options.custom_networking {
        enis - 1
    } else {
        enis
    };
    let slots = limits.ipv4_per_eni.saturating_sub(1);
    let addresses_per_eni = if options.prefix_delegation {
        slots * ADDRESSES_PER_PREFIX
    } else {
        slots
    };
    let uncapped = pod_enis * addresses_per_eni + HOST_NETWORK_PODS;
    let mut result = MaxPods {
        max_pods: uncapped,
        uncapped,
        cap_applied: None,
        enis,
        pod_enis,
        addresses_per_eni,
    };
    if options.show_max_allowed || uncapped <= SMALL_NODE_CAP {
        return Ok(result);
    }
    let cap = match limits.vcpus {
        Some(v) if v <= SMALL_NODE_MAX_VCPUS => SMALL_NODE_CAP,
        Some(_) => LARGE_NODE_CAP,
        None => {
            return Err(MaxPodsError::UnknownVcpus {
                instance_type: limits.instance_type.clone(),
                uncapped,
            });
        }
    };
    if uncapped > cap {
        result.max_pods = cap;
        result.cap_applied = Some(cap);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LimitsTable;
    use proptest::prelude::*;

    fn pods(t: &str, options: MaxPodsOptions) -> u32 {
        max_pods(LimitsTable::builtin().get(t).unwrap(), &options)
            .unwrap()
            .max_pods
    }

    fn cn() -> MaxPodsOptions {
        MaxPodsOptions {
            custom_networking: true,
            ..Default::default()
        }
    }

    #[test]
    fn hand_checked_values() {
        // The reference document: m5.large has 3 ENIs x 10 addresses.
        assert_eq!(pods("m5.large", MaxPodsOptions::default()), 29);
        assert_eq!(pods("m5.large", cn()), 20);
        // t3.small: 3 x 4.
        assert_eq!(pods("t3.small", MaxPodsOptions::default()), 11);
        assert_eq!(pods("t3.small", cn()), 8);
        // Prefix delegation: 3 x (9 x 16) + 2 = 434, capped at 110 (2 vCPUs).
        let pd = MaxPodsOptions {
            prefix_delegation: true,
            ..Default::default()
        };
        assert_eq!(pods("m5.large", pd), 110);
        let pd_uncapped = MaxPodsOptions {
            show_max_allowed: true,
            ..pd
        };
        assert_eq!(pods("m5.large", pd_uncapped), 434);
        let pd_cn_uncapped = MaxPodsOptions {
            custom_networking: true,
            ..pd_uncapped
        };
        assert_eq!(pods("m5.large", pd_cn_uncapped), 290);
        // m5.24xlarge: 15 x 50 -> 737 uncapped, 96 vCPUs -> 250.
        assert_eq!(pods("m5.24xlarge", MaxPodsOptions::default()), 250);
        assert_eq!(
            pods(
                "m5.24xlarge",
                MaxPodsOptions {
                    show_max_allowed: true,
                    ..Default::default()
                }
            ),
            737
        );
        // m5.4xlarge: 8 x 30 -> 234, 16 vCPUs -> 110.
        assert_eq!(pods("m5.4xlarge", MaxPodsOptions::default()), 110);
    }

    #[test]
    fn max_eni_caps_the_interface_count() {
        let two = MaxPodsOptions {
            max_eni: Some(2),
            ..Default::default()
        };
        assert_eq!(pods("m5.large", two), 2 * 9 + 2);
        assert_eq!(
            pods(
                "m5.large",
                MaxPodsOptions {
                    custom_networking: true,
                    ..two
                }
            ),
            9 + 2
        );
        // A cap above the limit changes nothing.
        assert_eq!(
            pods(
                "m5.large",
                MaxPodsOptions {
                    max_eni: Some(8),
                    ..Default::default()
                }
            ),
            29
        );
        let zero = MaxPodsOptions {
            max_eni: Some(0),
            ..Default::default()
        };
        let err = max_pods(LimitsTable::builtin().get("m5.large").unwrap(), &zero).unwrap_err();
        assert_eq!(err, MaxPodsError::ZeroMaxEni);
    }

    #[test]
    fn prefix_delegation_on_xen_is_refused_by_name() {
        let xen = LimitsTable::builtin()
            .iter()
            .find(|l| l.hypervisor == crate::Hypervisor::Xen && !l.bare_metal)
            .unwrap();
        let pd = MaxPodsOptions {
            prefix_delegation: true,
            ..Default::default()
        };
        let err = max_pods(xen, &pd).unwrap_err();
        assert!(err.to_string().contains(&xen.instance_type), "{err}");
    }

    #[test]
    fn unknown_vcpus_is_an_error_only_when_a_cap_is_needed() {
        let mut limits = LimitsTable::builtin().get("m5.24xlarge").unwrap().clone();
        limits.vcpus = None;
        let err = max_pods(&limits, &MaxPodsOptions::default()).unwrap_err();
        assert!(
            matches!(err, MaxPodsError::UnknownVcpus { uncapped: 737, .. }),
            "{err}"
        );
        let uncapped = MaxPodsOptions {
            show_max_allowed: true,
            ..Default::default()
        };
        assert_eq!(max_pods(&limits, &uncapped).unwrap().max_pods, 737);
        let mut small = LimitsTable::builtin().get("m5.large").unwrap().clone();
        small.vcpus = None;
        assert_eq!(
            max_pods(&small, &MaxPodsOptions::default())
                .unwrap()
                .max_pods,
            29
        );
    }

    proptest! {
        #[test]
        fn custom_networking_never_gives_more(
            index in 0usize..1391, pd in any::<bool>(), max_eni in proptest::option::of(1u32..20)
        ) {
            let table = LimitsTable::builtin();
            let limits = table.iter().nth(index % table.len()).unwrap();
            prop_assume!(!pd || limits.supports_prefix_delegation());
            let base = MaxPodsOptions { prefix_delegation: pd, max_eni, show_max_allowed: true, ..Default::default() };
            let off = max_pods(limits, &base).unwrap();
            let on = max_pods(limits, &MaxPodsOptions { custom_networking: true, ..base }).unwrap();
            // Custom networking removes exactly one interface's addresses.
            prop_assert_eq!(off.max_pods - on.max_pods, off.addresses_per_eni);
            prop_assert!(on.max_pods >= HOST_NETWORK_PODS);
            let capped = max_pods(limits, &MaxPodsOptions { show_max_allowed: false, ..base });
            if let Ok(capped) = capped {
                prop_assert!(capped.max_pods <= off.max_pods);
                prop_assert!(capped.max_pods <= LARGE_NODE_CAP);
            }
        }
    }
}
