//! Prometheus metrics under the existing implementation's names, plus ours.

use ec2::Ec2Metrics;
use ipam::Stats;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub ec2: std::sync::Arc<Ec2Metrics>,
    pub eni_max: IntGauge,
    pub ip_max: IntGauge,
    pub eni_allocated: IntGauge,
    pub total_ips: IntGauge,
    pub assigned_ips: IntGauge,
    pub total_prefixes: IntGauge,
    pub add_requests: IntCounter,
    pub del_requests: IntCounterVec,
    pub errors: IntCounterVec,
    pub no_available: IntCounter,
    pub force_removed_enis: IntCounter,
    pub force_removed_ips: IntCounter,
    pub reconcile: IntCounterVec,
    pub build_info: IntGaugeVec,
    /// Ours: free addresses EC2 reports per subnet we use.
    pub subnet_free: IntGaugeVec,
    /// Ours: 1 for the ENIConfig state in force.
    pub eniconfig_state: IntGaugeVec,
    /// Ours: 1 while a subnet that reported no free addresses is left alone.
    pub subnet_backoff: IntGaugeVec,
    /// Ours: ENIs (or assigns) given single addresses because no candidate subnet had a free
    /// /28 under prefix delegation, per subnet.
    pub prefix_fallback: IntCounterVec,
    /// Ours: subnets new pod ENIs may go to (1), labelled with how they were found
    /// (`node`, `eniconfig`, `discovered`).
    pub subnet_candidate: IntGaugeVec,
    /// Ours: 1 while the node cannot serve pods, labelled with why (`datapath`, `target`,
    /// `pool`).
    pub not_ready: IntGaugeVec,
    /// Ours: EC2 calls still throttled after the SDK's retries, tried again after the node's
    /// shared back-off (`pacing.rs`), by action.
    pub throttle_retries: IntCounterVec,
}

fn gauge(r: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(r: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new();
        let m = Metrics {
            ec2: std::sync::Arc::new(Ec2Metrics::new(&r)?),
            eni_max: gauge(&r, "awscni_eni_max", "ENIs the instance can have")?,
            ip_max: gauge(&r, "awscni_ip_max", "Pod addresses the node can have")?,
            eni_allocated: gauge(&r, "awscni_eni_allocated", "ENIs attached")?,
            total_ips: gauge(&r, "awscni_total_ip_addresses", "Pod addresses in the pool")?,
            assigned_ips: gauge(&r, "awscni_assigned_ip_addresses", "Pod addresses assigned")?,
            total_prefixes: gauge(&r, "awscni_total_ipv4_prefixes", "Delegated prefixes")?,
            add_requests: counter(&r, "awscni_add_ip_req_count", "AddNetwork requests")?,
            del_requests: counter_vec(
                &r,
                "awscni_del_ip_req_count",
                "DelNetwork requests",
                &["reason"],
            )?,
            errors: counter_vec(&r, "awscni_ipamd_error_count", "ipamd errors", &["fn"])?,
            no_available: counter(
                &r,
                "awscni_no_available_ip_addresses",
                "ADDs that found no free address",
            )?,
            force_removed_enis: counter(
                &r,
                "awscni_force_removed_enis",
                "ENIs removed with pods on them",
            )?,
            force_removed_ips: counter(
                &r,
                "awscni_force_removed_ips",
                "Addresses removed while assigned",
            )?,
            reconcile: counter_vec(
                &r,
                "awscni_reconcile_count",
                "Reconciliations with EC2",
                &["fn"],
            )?,
            build_info: gauge_vec(&r, "awscni_build_info", "Build", &["version"])?,
            subnet_free: gauge_vec(
                &r,
                "awscni_subnet_available_ip_addresses",
                "Free addresses per subnet",
                &["subnet"],
            )?,
            eniconfig_state: gauge_vec(
                &r,
                "awscni_eniconfig_state",
                "ENIConfig in force and its state",
                &["eniconfig", "state"],
            )?,
            subnet_backoff: gauge_vec(
                &r,
                "awscni_subnet_full_backoff",
                "1 while the subnet is left alone because it reported no free addresses",
                &["subnet"],
            )?,
            prefix_fallback: counter_vec(
                &r,
                "awscni_prefix_fallback_total",
                "Pod ENIs or assigns given secondary addresses because no candidate subnet had a free /28",
                &["subnet"],
            )?,
            subnet_candidate: gauge_vec(
                &r,
                "awscni_subnet_candidate",
                "1 for each subnet new pod ENIs may go to, by how it was found",
                &["subnet", "source"],
            )?,
            not_ready: gauge_vec(
                &r,
                "awscni_node_not_ready",
                "1 while the node cannot give a new pod a working address",
                &["reason"],
            )?,
            throttle_retries: counter_vec(
                &r,
                "awscni_ec2_throttle_backoff_count",
                "EC2 calls still throttled after the SDK's retries, tried again after the node's shared back-off",
                &["api"],
            )?,
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(m)
    }

    pub fn observe_pool(&self, stats: &Stats, enis: usize) {
        let set = |g: &IntGauge, v: usize| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        set(&self.total_ips, stats.total);
        set(&self.assigned_ips, stats.assigned);
        set(&self.total_prefixes, stats.total_prefixes);
        set(&self.eni_allocated, enis);
    }

    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
