//! Instance metadata (IMDSv2, through `aws-config`'s client, which honours
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`): the node's identity at start-up, and the interfaces the
//! hypervisor reports, which ipamd reads to reconcile its pool without spending EC2 API tokens.
//!
//! Independent paths are fetched concurrently: every GET is a round trip, and start-up waits
//! for the identity.

use std::net::Ipv4Addr;
use std::time::Duration;

use aws_config::imds::Client;
use aws_config::imds::client::error::ImdsError;
use futures_util::future::{try_join, try_join_all, try_join3};
use ipnet::Ipv4Net;

/// What the node learns about itself at start-up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceIdentity {
    pub instance_id: String,
    pub instance_type: String,
    pub availability_zone: String,
    pub region: String,
    pub primary_mac: String,
    pub primary_eni_id: String,
    pub primary_ip: Ipv4Addr,
    pub subnet_id: String,
    pub subnet_cidr: Ipv4Net,
    pub vpc_id: String,
    pub vpc_cidrs: Vec<Ipv4Net>,
    pub security_groups: Vec<String>,
}

/// One attached interface as instance metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MetadataEni {
    pub mac: String,
    pub device_number: u32,
    pub interface_id: String,
    pub subnet_id: String,
    pub subnet_cidr: Ipv4Net,
    /// The ENI's addresses, its own primary first.
    pub addresses: Vec<Ipv4Addr>,
    pub prefixes: Vec<Ipv4Net>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("instance metadata {path}: {message}")]
    Fetch { path: String, message: String },
    #[error("instance metadata {path}: {value:?} is not {expected}")]
    Invalid {
        path: String,
        value: String,
        expected: &'static str,
    },
}

/// Timeouts of every metadata call (ipamd's `IPAMD_IMDS_ATTEMPT_TIMEOUT`,
/// `IPAMD_IMDS_OPERATION_TIMEOUT`): metadata is link-local and answers in milliseconds, so a
/// silent one is retried quickly and given up on after a few seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataTimeouts {
    pub attempt: Duration,
    pub operation: Duration,
}

impl Default for MetadataTimeouts {
    fn default() -> Self {
        MetadataTimeouts {
            attempt: Duration::from_secs(1),
            operation: Duration::from_secs(5),
        }
    }
}

/// An instance metadata client.
#[derive(Debug, Clone)]
pub struct Metadata {
    client: Client,
}

fn fetch_error(path: &str, e: &ImdsError) -> MetadataError {
    MetadataError::Fetch {
        path: path.to_string(),
        message: aws_sdk_ec2::error::DisplayErrorContext(e).to_string(),
    }
}

fn parse<T: std::str::FromStr>(
    path: &str,
    value: &str,
    expected: &'static str,
) -> Result<T, MetadataError> {
    value.parse().map_err(|_| MetadataError::Invalid {
        path: path.to_string(),
        value: value.to_string(),
        expected,
    })
}

fn parse_lines<T: std::str::FromStr>(
    path: &str,
    value: &str,
    expected: &'static str,
) -> Result<Vec<T>, MetadataError> {
    value
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| parse(path, l, expected))
        .collect()
}

impl Metadata {
    /// `endpoint` overrides the SDK's default (and its environment variable).
    pub fn new(endpoint: Option<&str>, timeouts: MetadataTimeouts) -> Result<Self, MetadataError> {
        let mut builder = Client::builder()
            .connect_timeout(timeouts.attempt)
            .read_timeout(timeouts.attempt)
            .operation_attempt_timeout(timeouts.attempt)
            .operation_timeout(timeouts.operation);
        if let Some(e) = endpoint {
            builder = builder.endpoint(e).map_err(|err| MetadataError::Fetch {
                path: e.to_string(),
                message: format!("not a valid endpoint: {err}"),
            })?;
        }
        Ok(Metadata {
            client: builder.build(),
        })
    }

    async fn get(&self, path: &str) -> Result<String, MetadataError> {
        let value = self
            .client
            .get(format!("/latest/meta-data/{path}"))
            .await
            .map_err(|e| fetch_error(path, &e))?;
        Ok(value.as_ref().trim().to_string())
    }

    /// A path that EC2 leaves out when it has nothing to say (`ipv4-prefix` without prefixes).
    async fn get_optional(&self, path: &str) -> Result<Option<String>, MetadataError> {
        match self.client.get(format!("/latest/meta-data/{path}")).await {
            Ok(v) => Ok(Some(v.as_ref().trim().to_string())),
            Err(ImdsError::ErrorResponse(r)) if r.response().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(fetch_error(path, &e)),
        }
    }

    /// Reads the identity.
    pub async fn identity(&self) -> Result<InstanceIdentity, MetadataError> {
        let ip_path = "local-ipv4";
        let ((instance_id, instance_type, availability_zone), (region, mac, local_ip)) = try_join(
            try_join3(
                self.get("instance-id"),
                self.get("instance-type"),
                self.get("placement/availability-zone"),
            ),
            try_join3(
                self.get("placement/region"),
                self.get("mac"),
                self.get(ip_path),
            ),
        )
        .await?;
        let primary_ip = parse(ip_path, &local_ip, "an IPv4 address")?;
        let primary_mac = mac.to_lowercase();
        let base = format!("network/interfaces/macs/{primary_mac}");
        let (cidr_path, vpc_path) = (
            format!("{base}/subnet-ipv4-cidr-block"),
            format!("{base}/vpc-ipv4-cidr-blocks"),
        );
        let ((primary_eni_id, subnet_id, vpc_id), (cidr, blocks, groups)) = try_join(
            try_join3(
                self.get(&format!("{base}/interface-id")),
                self.get(&format!("{base}/subnet-id")),
                self.get(&format!("{base}/vpc-id")),
            ),
            try_join3(
                self.get(&cidr_path),
                self.get(&vpc_path),
                self.get(&format!("{base}/security-group-ids")),
            ),
        )
        .await?;
        Ok(InstanceIdentity {
            instance_id,
            instance_type,
            availability_zone,
            region,
            primary_ip,
            primary_eni_id,
            subnet_id,
            subnet_cidr: parse(&cidr_path, &cidr, "an IPv4 CIDR")?,
            vpc_id,
            vpc_cidrs: parse_lines(&vpc_path, &blocks, "a list of IPv4 CIDRs")?,
            security_groups: groups
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect(),
            primary_mac,
        })
    }

    /// The VPC's IPv4 blocks, as seen through the interface with `mac`.
    pub async fn vpc_cidrs(&self, mac: &str) -> Result<Vec<Ipv4Net>, MetadataError> {
        let path = format!("network/interfaces/macs/{mac}/vpc-ipv4-cidr-blocks");
        parse_lines(&path, &self.get(&path).await?, "a list of IPv4 CIDRs")
    }

    /// One interface by MAC.
    pub async fn interface(&self, mac: &str) -> Result<MetadataEni, MetadataError> {
        let mac = mac.to_lowercase();
        let base = format!("network/interfaces/macs/{mac}");
        let (device_path, cidr_path, ips_path, prefix_path) = (
            format!("{base}/device-number"),
            format!("{base}/subnet-ipv4-cidr-block"),
            format!("{base}/local-ipv4s"),
            format!("{base}/ipv4-prefix"),
        );
        let ((device, interface_id, subnet_id), (cidr, ips, prefixes)) = try_join(
            try_join3(
                self.get(&device_path),
                self.get(&format!("{base}/interface-id")),
                self.get(&format!("{base}/subnet-id")),
            ),
            try_join3(
                self.get(&cidr_path),
                self.get_optional(&ips_path),
                self.get_optional(&prefix_path),
            ),
        )
        .await?;
        Ok(MetadataEni {
            device_number: parse(&device_path, &device, "a device number")?,
            interface_id,
            subnet_id,
            subnet_cidr: parse(&cidr_path, &cidr, "an IPv4 CIDR")?,
            addresses: parse_lines(
                &ips_path,
                ips.as_deref().unwrap_or_default(),
                "a list of IPv4 addresses",
            )?,
            prefixes: parse_lines(
                &prefix_path,
                prefixes.as_deref().unwrap_or_default(),
                "a list of IPv4 prefixes",
            )?,
            mac,
        })
    }

    /// The MACs of every attached interface.
    async fn macs(&self) -> Result<Vec<String>, MetadataError> {
        let listing = self.get("network/interfaces/macs/").await?;
        Ok(listing
            .lines()
            .map(|l| l.trim().trim_end_matches('/').to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// The device numbers every attached interface occupies (card 0 and others alike): where a
    /// new ENI cannot be attached, without an EC2 API call.
    pub async fn device_numbers(&self) -> Result<Vec<u32>, MetadataError> {
        let macs = self.macs().await?;
        try_join_all(macs.iter().map(|m| async move {
            let path = format!("network/interfaces/macs/{m}/device-number");
            parse(&path, &self.get(&path).await?, "a device number")
        }))
        .await
    }

    /// Every attached interface, by device number.
    pub async fn interfaces(&self) -> Result<Vec<MetadataEni>, MetadataError> {
        let macs = self.macs().await?;
        let mut enis = try_join_all(macs.iter().map(|m| self.interface(m))).await?;
        enis.sort_by_key(|e| e.device_number);
        Ok(enis)
    }

    /// The identity and the interfaces together (start-up needs both).
    pub async fn identity_and_interfaces(
        &self,
    ) -> Result<(InstanceIdentity, Vec<MetadataEni>), MetadataError> {
        try_join(self.identity(), self.interfaces()).await
    }
}

/// Reads the identity with default timeouts; `endpoint` overrides the SDK's default.
pub async fn fetch_identity(endpoint: Option<&str>) -> Result<InstanceIdentity, MetadataError> {
    Metadata::new(endpoint, MetadataTimeouts::default())?
        .identity()
        .await
}
