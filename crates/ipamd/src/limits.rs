//! The node's limits: the instance type's (the shipped table, else EC2 DescribeInstanceTypes),
//! its max pods under the settings, and the warm-pool settings built on them.
//!
//! Lifecycle: computed at every start from the settings; nothing persists.

use std::time::Duration;

use ec2::Ec2;
use instance_limits::{
    InstanceLimits, LimitsTable, MaxPods, MaxPodsError, MaxPodsOptions, max_pods,
};
use ipam::PoolSettings;
use tracing::{info, warn};

use crate::cli::Cli;

pub struct NodeLimits {
    pub instance: InstanceLimits,
    pub options: MaxPodsOptions,
    pub max_pods: MaxPods,
    pub pool: PoolSettings,
}

impl NodeLimits {
    pub async fn learn<C: Ec2>(cli: &Cli, instance_type: &str, ec2: &C) -> Result<Self, String> {
        let settings = &cli.settings;
        let instance = match LimitsTable::builtin().get(instance_type) {
            Ok(l) => l.clone(),
            Err(_) => ec2
                .instance_type_limits(instance_type)
                .await
                .map_err(|e| format!("instance type limits: {e}"))?,
        };
        let options = settings.max_pods_options();
        let max_pods = match max_pods(&instance, &options) {
            Ok(m) => m,
            Err(MaxPodsError::UnknownVcpus { .. }) => {
                warn!(
                    instance_type = instance.instance_type,
                    "vCPU count unknown: using the uncapped max pods"
                );
                let uncapped = MaxPodsOptions {
                    show_max_allowed: true,
                    ..options
                };
                max_pods(&instance, &uncapped).map_err(|e| format!("max pods: {e}"))?
            }
            Err(e) => return Err(e.to_string()),
        };
        let pool = settings.pool(
            &instance,
            &max_pods,
            Duration::from_secs(cli.options.eni_min_age),
            Duration::from_secs(cli.options.decrease_interval),
        );
        info!(
            max_pods = max_pods.max_pods,
            enis = max_pods.enis,
            custom_networking = settings.custom_network_cfg,
            "limits"
        );
        Ok(NodeLimits {
            instance,
            options,
            max_pods,
            pool,
        })
    }
}
