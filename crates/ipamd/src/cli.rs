//! ipamd's command line: the existing implementation's environment (`IpamdSettings`) plus the
//! few settings of ours, each also an environment variable so a DaemonSet or the testbed
//! configures ipamd through its environment alone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ipamd_settings::IpamdSettings;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ipamd",
    version,
    about = "The VPC CNI node agent (IPAM daemon)"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: IpamdSettings,
    #[command(flatten)]
    pub options: Options,
}

#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct Options {
    /// Standalone mode: read the Node and ENIConfig objects from this directory (watched).
    #[arg(long, env = "IPAMD_MANIFESTS", value_name = "IPAMD_MANIFESTS")]
    pub manifests: Option<PathBuf>,

    /// Kubernetes mode (no --manifests): this kubeconfig instead of the in-cluster service
    /// account (or KUBECONFIG / ~/.kube/config when not in a pod).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubernetes mode: the namespace of the Lease that elects the one ENIConfig status writer.
    #[arg(
        long,
        env = "POD_NAMESPACE",
        value_name = "POD_NAMESPACE",
        default_value = "kube-system"
    )]
    pub lease_namespace: String,

    /// Kubernetes mode: how often the elected writer re-checks every ENIConfig's status against
    /// EC2 (seconds; two EC2 calls per ENIConfig, on that one node); a changed ENIConfig is
    /// checked at once. Hourly, so the status's free-address count may be up to an hour old:
    /// a node at rest makes hardly any EC2 call (docs/benchmarks.md).
    #[arg(
        long,
        env = "ENICONFIG_STATUS_INTERVAL",
        value_name = "ENICONFIG_STATUS_INTERVAL",
        value_parser = clap::value_parser!(u64).range(1..),
        default_value = "3600"
    )]
    pub eniconfig_status_interval: u64,

    /// gRPC address for the plugin: unix:///path (mode 0660) or a loopback host:port.
    #[arg(
        long,
        env = "IPAMD_GRPC_ADDRESS",
        value_name = "IPAMD_GRPC_ADDRESS",
        default_value = node_contract::GRPC_ADDRESS
    )]
    pub grpc_address: String,

    /// Where the CNI config is written once the node is network-ready.
    #[arg(
        long,
        env = "CNI_CONF_DIR",
        value_name = "CNI_CONF_DIR",
        default_value = "/etc/cni/net.d"
    )]
    pub cni_conf_dir: PathBuf,

    /// Prometheus metrics address.
    #[arg(
        long,
        env = "METRICS_BIND_ADDRESS",
        value_name = "METRICS_BIND_ADDRESS",
        default_value = node_contract::METRICS_ADDRESS
    )]
    pub metrics_bind_address: SocketAddr,

    /// The plugin's log file, written into the CNI config.
    #[arg(
        long,
        env = "AWS_VPC_K8S_PLUGIN_LOG_FILE",
        value_name = "AWS_VPC_K8S_PLUGIN_LOG_FILE",
        default_value = "/var/log/aws-routed-eni/plugin.log"
    )]
    pub plugin_log_file: String,

    /// The plugin's log level, written into the CNI config.
    #[arg(
        long,
        env = "AWS_VPC_K8S_PLUGIN_LOG_LEVEL",
        value_name = "AWS_VPC_K8S_PLUGIN_LOG_LEVEL",
        default_value = "DEBUG"
    )]
    pub plugin_log_level: String,

    /// How often leaked ENIs are looked for (seconds, on average: each wait is drawn between
    /// half and one and a half of it, so a fleet started together spreads its scans).
    #[arg(
        long,
        env = "LEAKED_ENI_CLEANUP_INTERVAL",
        value_name = "LEAKED_ENI_CLEANUP_INTERVAL",
        value_parser = clap::value_parser!(u64).range(1..),
        default_value = "3600"
    )]
    pub leaked_eni_cleanup_interval: u64,

    /// A detached ENI of ours younger than this (seconds) is not a leak yet.
    #[arg(
        long,
        env = "LEAKED_ENI_MIN_AGE",
        value_name = "LEAKED_ENI_MIN_AGE",
        default_value = "300"
    )]
    pub leaked_eni_min_age: u64,

    /// An ENI younger than this (seconds) is never released.
    #[arg(
        long,
        env = "IPAMD_ENI_MIN_AGE",
        value_name = "IPAMD_ENI_MIN_AGE",
        default_value = "60"
    )]
    pub eni_min_age: u64,

    /// At most one pool decrease this often (seconds).
    #[arg(
        long,
        env = "IPAMD_DECREASE_INTERVAL",
        value_name = "IPAMD_DECREASE_INTERVAL",
        default_value = "30"
    )]
    pub decrease_interval: u64,

    /// How often the VPC's CIDR blocks are re-read from instance metadata, and how long what
    /// DescribeSubnets said about the subnets pod ENIs may go to (ENIConfig subnets, subnet
    /// discovery) is trusted (seconds, jittered by up to 10 %). Subnets are re-read only when an
    /// ENI is about to be created: a node at rest makes no DescribeSubnets call.
    #[arg(
        long,
        env = "IPAMD_VPC_REFRESH_INTERVAL",
        value_name = "IPAMD_VPC_REFRESH_INTERVAL",
        value_parser = clap::value_parser!(u64).range(1..),
        default_value = "60"
    )]
    pub vpc_refresh_interval: u64,

    /// Prefix delegation: when no candidate subnet has a free aligned /28 (EC2's
    /// InsufficientCidrBlocks), give that ENI single addresses instead, said by a
    /// `PrefixFallback` event and `awscni_prefix_fallback_total`; false leaves such a subnet
    /// alone like a full one.
    #[arg(
        long,
        env = "IPAMD_PREFIX_FALLBACK",
        value_name = "IPAMD_PREFIX_FALLBACK",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub prefix_fallback: bool,

    /// How long a subnet that reported no free addresses is left alone (seconds).
    #[arg(
        long,
        env = "IPAMD_SUBNET_FULL_BACKOFF",
        value_name = "IPAMD_SUBNET_FULL_BACKOFF",
        value_parser = clap::value_parser!(u64).range(1..),
        default_value = "120"
    )]
    pub subnet_full_backoff: u64,

    /// How often the pool is reconciled with the instance (seconds): ENIs and addresses read
    /// from instance metadata (no EC2 API call), a DescribeNetworkInterfaces only to confirm a
    /// difference.
    #[arg(
        long,
        env = "IPAMD_RECONCILE_INTERVAL",
        value_name = "IPAMD_RECONCILE_INTERVAL",
        value_parser = clap::value_parser!(u64).range(1..),
        default_value = "60"
    )]
    pub reconcile_interval: u64,

    /// One EC2 API attempt gives up after this (seconds) and is retried.
    #[arg(
        long,
        env = "IPAMD_EC2_ATTEMPT_TIMEOUT",
        value_name = "IPAMD_EC2_ATTEMPT_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..),
        default_value = "10"
    )]
    pub ec2_attempt_timeout: u64,

    /// One EC2 API call, retries included, gives up after this (seconds).
    #[arg(
        long,
        env = "IPAMD_EC2_OPERATION_TIMEOUT",
        value_name = "IPAMD_EC2_OPERATION_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..),
        default_value = "30"
    )]
    pub ec2_operation_timeout: u64,

    /// One instance-metadata attempt gives up after this (milliseconds) and is retried.
    #[arg(
        long,
        env = "IPAMD_IMDS_ATTEMPT_TIMEOUT_MS",
        value_name = "IPAMD_IMDS_ATTEMPT_TIMEOUT_MS",
        value_parser = clap::value_parser!(u64).range(1..),
        default_value = "2000"
    )]
    pub imds_attempt_timeout_ms: u64,

    /// One instance-metadata read, retries included, gives up after this (milliseconds).
    #[arg(
        long,
        env = "IPAMD_IMDS_OPERATION_TIMEOUT_MS",
        value_name = "IPAMD_IMDS_OPERATION_TIMEOUT_MS",
        value_parser = clap::value_parser!(u64).range(1..),
        default_value = "10000"
    )]
    pub imds_operation_timeout_ms: u64,

    /// How the SDK retries a failed EC2 call: `standard` (jittered exponential back-off) or
    /// `adaptive` (the same, plus a client-side rate limiter that slows every call down after
    /// throttling). A call still throttled after the SDK's retries waits the node's shared
    /// back-off and is tried again either way.
    #[arg(
        long,
        env = "IPAMD_EC2_RETRY_MODE",
        value_name = "IPAMD_EC2_RETRY_MODE",
        value_enum,
        default_value = "standard"
    )]
    pub ec2_retry_mode: Ec2RetryMode,

    /// How often the pool is re-checked when nothing wakes it (seconds).
    #[arg(
        long,
        env = "IPAMD_POOL_INTERVAL",
        value_name = "IPAMD_POOL_INTERVAL",
        value_parser = clap::value_parser!(u64).range(1..),
        default_value = "5"
    )]
    pub pool_interval: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ec2RetryMode {
    Standard,
    Adaptive,
}

impl Options {
    pub fn leaked_interval(&self) -> Duration {
        Duration::from_secs(self.leaked_eni_cleanup_interval)
    }
    pub fn leaked_min_age(&self) -> Duration {
        Duration::from_secs(self.leaked_eni_min_age)
    }
    pub fn pool_interval(&self) -> Duration {
        Duration::from_secs(self.pool_interval)
    }
    pub fn subnet_full_backoff(&self) -> Duration {
        Duration::from_secs(self.subnet_full_backoff)
    }
    pub fn vpc_refresh_interval(&self) -> Duration {
        Duration::from_secs(self.vpc_refresh_interval)
    }
    pub fn reconcile_interval(&self) -> Duration {
        Duration::from_secs(self.reconcile_interval)
    }
    /// The timeouts and retries of every EC2 call. Three attempts with short pauses (up to 2 s
    /// rather than the SDK's 20 s): a call still throttled after them waits the node's shared
    /// back-off (`pacing.rs`), which keeps a fleet's retries out of step.
    pub fn sdk_options(&self, region: &str) -> ec2::SdkOptions {
        ec2::SdkOptions {
            region: Some(region.to_string()),
            attempt_timeout: Duration::from_secs(self.ec2_attempt_timeout),
            operation_timeout: Duration::from_secs(self.ec2_operation_timeout),
            retry_mode: match self.ec2_retry_mode {
                Ec2RetryMode::Standard => ec2::RetryMode::Standard,
                Ec2RetryMode::Adaptive => ec2::RetryMode::Adaptive,
            },
            max_attempts: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            ..Default::default()
        }
    }
    /// The timeouts of every instance-metadata call.
    pub fn metadata_timeouts(&self) -> ec2::MetadataTimeouts {
        ec2::MetadataTimeouts {
            attempt: Duration::from_millis(self.imds_attempt_timeout_ms),
            operation: Duration::from_millis(self.imds_operation_timeout_ms),
        }
    }
}
