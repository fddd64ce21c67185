//! The node's identity from instance metadata (IMDSv2, through `aws-config`'s client, which
//! honours `AWS_EC2_METADATA_SERVICE_ENDPOINT`).

use std::net::Ipv4Addr;

use aws_config::imds::Client;
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

async fn get(client: &Client, path: &str) -> Result<String, MetadataError> {
    let value = client
        .get(format!("/latest/meta-data/{path}"))
        .await
        .map_err(|e| MetadataError::Fetch {
            path: path.to_string(),
            message: aws_sdk_ec2::error::DisplayErrorContext(&e).to_string(),
        })?;
    Ok(value.as_ref().trim().to_string())
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

/// Reads the identity; `endpoint` overrides the SDK's default (and its environment variable).
pub async fn fetch_identity(endpoint: Option<&str>) -> Result<InstanceIdentity, MetadataError> {
    let mut builder = Client::builder();
    if let Some(e) = endpoint {
        builder = builder.endpoint(e).map_err(|err| MetadataError::Fetch {
            path: e.to_string(),
            message: format!("not a valid endpoint: {err}"),
        })?;
    }
    let client = builder.build();
    let instance_id = get(&client, "instance-id").await?;
    let instance_type = get(&client, "instance-type").await?;
    let availability_zone = get(&client, "placement/availability-zone").await?;
    let region = get(&client, "placement/region").await?;
    let primary_mac = get(&client, "mac").await?.to_lowercase();
    let ip_path = "local-ipv4";
    let primary_ip = parse(ip_path, &get(&client, ip_path).await?, "an IPv4 address")?;
    let base = format!("network/interfaces/macs/{primary_mac}");
    let primary_eni_id = get(&client, &format!("{base}/interface-id")).await?;
    let subnet_id = get(&client, &format!("{base}/subnet-id")).await?;
    let vpc_id = get(&client, &format!("{base}/vpc-id")).await?;
    let cidr_path = format!("{base}/subnet-ipv4-cidr-block");
    let subnet_cidr = parse(&cidr_path, &get(&client, &cidr_path).await?, "an IPv4 CIDR")?;
    let vpc_path = format!("{base}/vpc-ipv4-cidr-blocks");
    let vpc_cidrs = get(&client, &vpc_path)
        .await?
        .lines()
        .map(|l| parse(&vpc_path, l.trim(), "a list of IPv4 CIDRs"))
        .collect::<Result<Vec<Ipv4Net>, _>>()?;
    let security_groups = get(&client, &format!("{base}/security-group-ids"))
        .await?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    Ok(InstanceIdentity {
        instance_id,
        instance_type,
        availability_zone,
        region,
        primary_mac,
        primary_eni_id,
        primary_ip,
        subnet_id,
        subnet_cidr,
        vpc_id,
        vpc_cidrs,
        security_groups,
    })
}
