//! EC2 network limits per instance type (compiled in from `data/instance-limits.csv`) and the
//! max-pods arithmetic of `custom-networking.md`. Pure: no I/O.

mod kubelet;
mod max_pods;
mod table;

pub use kubelet::{KubeletCheck, check_kubelet, explain};
pub use max_pods::{MaxPods, MaxPodsError, MaxPodsOptions, max_pods};
pub use table::{Hypervisor, InstanceLimits, LimitsError, LimitsTable};
