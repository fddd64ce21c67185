//! [`Ec2`] on the official AWS SDK for Rust.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    Filter, GroupIdentifier, InstanceType, NetworkInterfaceAttachmentChanges, ResourceType, Tag,
    TagSpecification,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use instance_limits::{Hypervisor, InstanceLimits};
use ipnet::Ipv4Net;

use crate::error::classify;
use crate::{
    AddressRequest, Attachment, CreateEni, Ec2, Ec2Error, Ec2Metrics, ErrorClass, NetworkInterface,
    SecurityGroup, Subnet, SubnetQuery, Vpc,
};

/// How the SDK retries failed calls (throttling among them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryMode {
    /// Exponential backoff with jitter.
    #[default]
    Standard,
    /// Standard plus a client-side rate limiter that slows down under throttling.
    Adaptive,
}

#[derive(Debug, Clone)]
pub struct SdkOptions {
    /// The region; `None` reads the SDK's usual sources (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// The EC2 endpoint (`AWS_EC2_ENDPOINT`); `None` leaves it to the SDK
    /// (`AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL`, the region's).
    pub endpoint: Option<String>,
    /// The shared-config profile for credentials and region; `None`: the SDK's default chain.
    pub profile: Option<String>,
    pub retry_mode: RetryMode,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// The SDK's retries wait a random time below `initial_backoff × 2^retry`, at most
    /// `max_backoff` (the SDK's defaults: 1 s and 20 s).
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// One attempt (connect, send, read the answer) gives up after this: a stalled connection
    /// is retried instead of holding the caller.
    pub attempt_timeout: Duration,
    /// A whole call, retries included, gives up after this, so one call can never freeze the
    /// pool manager.
    pub operation_timeout: Duration,
}

/// The defaults of [`SdkOptions`]' timeouts (ipamd's `IPAMD_EC2_ATTEMPT_TIMEOUT`,
/// `IPAMD_EC2_OPERATION_TIMEOUT`).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for SdkOptions {
    fn default() -> Self {
        SdkOptions {
            region: None,
            endpoint: None,
            profile: None,
            retry_mode: RetryMode::Standard,
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }
}

/// One SDK client per process, shared by every task.
#[derive(Clone)]
pub struct SdkEc2 {
    client: Client,
    metrics: Arc<Ec2Metrics>,
}

impl SdkEc2 {
    /// Loads the SDK's configuration (credentials, `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL`,
    /// region) with our retry policy.
    pub async fn new(options: &SdkOptions, metrics: Arc<Ec2Metrics>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &options.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &options.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let config = loader.load().await;
        Self::from_config(&config, options, metrics)
    }

    /// From an already loaded SDK configuration, with our retry policy on top.
    pub fn from_config(
        config: &aws_config::SdkConfig,
        options: &SdkOptions,
        metrics: Arc<Ec2Metrics>,
    ) -> Self {
        let retry = match options.retry_mode {
            RetryMode::Standard => RetryConfig::standard(),
            RetryMode::Adaptive => RetryConfig::adaptive(),
        }
        .with_max_attempts(options.max_attempts.max(1))
        .with_initial_backoff(options.initial_backoff)
        .with_max_backoff(options.max_backoff);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(options.attempt_timeout)
            .operation_attempt_timeout(options.attempt_timeout)
            .operation_timeout(options.operation_timeout)
            .build();
        let mut builder = aws_sdk_ec2::config::Builder::from(config);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let ec2_config = builder
            .retry_config(retry)
            .timeout_config(timeouts)
            .interceptor(crate::metrics::AttemptErrors(metrics.clone()))
            .build();
        SdkEc2 {
            client: Client::from_conf(ec2_config),
            metrics,
        }
    }

    /// Every page of a call paginated by `next_token`, each page timed and counted as one call.
    pub(crate) async fn pages<P, E, Fut>(
        &self,
        action: &'static str,
        mut request: impl FnMut(Option<String>) -> Fut,
        next_token: fn(&P) -> Option<&str>,
    ) -> Result<Vec<P>, Ec2Error>
    where
        Fut: Future<Output = Result<P, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut pages = Vec::new();
        let mut token = None;
        loop {
            let page = self.call(action, request(token.take())).await?;
            token = next_token(&page).map(str::to_string);
            pages.push(page);
            if token.is_none() {
                return Ok(pages);
            }
        }
    }

    /// The underlying SDK client (for tools that need calls beyond the trait, e.g. seeding).
    pub fn sdk(&self) -> &Client {
        &self.client
    }

    /// Times and counts one call and turns SDK errors into [`Ec2Error`].
    pub(crate) async fn call<T, E>(
        &self,
        action: &'static str,
        request: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, Ec2Error>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let result = request.await;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(v) => {
                self.metrics.record(action, None, 200, millis);
                Ok(v)
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
                let error = to_ec2_error(action, &e);
                self.metrics
                    .record(action, Some(error.code()), status, millis);
                tracing::debug!(action, code = error.code(), status, "EC2 call failed");
                Err(error)
            }
        }
    }
}

fn to_ec2_error<E>(action: &'static str, e: &SdkError<E, HttpResponse>) -> Ec2Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let Some(code) = e.code() else {
        return Ec2Error::Transport {
            action,
            message: DisplayErrorContext(e).to_string(),
        };
    };
    let message = e.message().unwrap_or_default().to_string();
    match classify(code, &message) {
        ErrorClass::Unauthorized => Ec2Error::MissingPermission {
            action,
            code: code.to_string(),
            message,
        },
        class => Ec2Error::Api {
            action,
            class,
            code: code.to_string(),
            message,
        },
    }
}

pub(crate) fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

pub(crate) fn parse_ip(v: Option<&str>) -> Option<Ipv4Addr> {
    v.and_then(|s| s.parse().ok())
}

pub(crate) fn tags_of(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

pub(crate) fn group_ids(groups: &[GroupIdentifier]) -> Vec<String> {
    groups
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect()
}

pub(crate) fn to_index(v: Option<i32>) -> u32 {
    v.and_then(|i| u32::try_from(i).ok()).unwrap_or(0)
}

fn convert_eni(eni: &aws_sdk_ec2::types::NetworkInterface) -> NetworkInterface {
    let primary_ip = parse_ip(eni.private_ip_address());
    NetworkInterface {
        id: eni.network_interface_id().unwrap_or_default().to_string(),
        mac: eni.mac_address().unwrap_or_default().to_string(),
        status: eni
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        subnet_id: eni.subnet_id().unwrap_or_default().to_string(),
        vpc_id: eni.vpc_id().unwrap_or_default().to_string(),
        availability_zone: eni.availability_zone().unwrap_or_default().to_string(),
        description: eni.description().unwrap_or_default().to_string(),
        security_groups: group_ids(eni.groups()),
        primary_ip,
        secondary_ips: eni
            .private_ip_addresses()
            .iter()
            .filter(|a| !a.primary().unwrap_or(false))
            .filter_map(|a| parse_ip(a.private_ip_address()))
            .filter(|ip| Some(*ip) != primary_ip)
            .collect(),
        prefixes: eni
            .ipv4_prefixes()
            .iter()
            .filter_map(|p| p.ipv4_prefix()?.parse().ok())
            .collect(),
        tags: tags_of(eni.tag_set()),
        attachment: eni.attachment().and_then(|a| {
            Some(Attachment {
                id: a.attachment_id()?.to_string(),
                instance_id: a.instance_id().unwrap_or_default().to_string(),
                device_index: to_index(a.device_index()),
                network_card: to_index(a.network_card_index()),
                status: a
                    .status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                delete_on_termination: a.delete_on_termination().unwrap_or(false),
            })
        }),
    }
}

impl SdkEc2 {
    async fn describe_enis(
        &self,
        action: &'static str,
        filters: Vec<Filter>,
    ) -> Result<Vec<NetworkInterface>, Ec2Error> {
        let pages = self
            .pages(
                action,
                |token| {
                    self.client
                        .describe_network_interfaces()
                        .set_filters(Some(filters.clone()))
                        .set_next_token(token)
                        .send()
                },
                |p| p.next_token(),
            )
            .await?;
        Ok(pages
            .iter()
            .flat_map(|p| p.network_interfaces())
            .map(convert_eni)
            .collect())
    }
}

impl SdkEc2 {
    /// Every subnet the filters match, all pages.
    pub(crate) async fn describe_subnets(
        &self,
        filters: Vec<Filter>,
    ) -> Result<Vec<Subnet>, Ec2Error> {
        let action = "DescribeSubnets";
        let pages = self
            .pages(
                action,
                |token| {
                    self.client
                        .describe_subnets()
                        .set_filters(Some(filters.clone()))
                        .set_next_token(token)
                        .send()
                },
                |p| p.next_token(),
            )
            .await?;
        pages
            .iter()
            .flat_map(|p| p.subnets())
            .map(|s| convert_subnet(action, s))
            .collect()
    }
}

pub(crate) fn convert_subnet(
    action: &'static str,
    s: &aws_sdk_ec2::types::Subnet,
) -> Result<Subnet, Ec2Error> {
    Ok(Subnet {
        id: s.subnet_id().unwrap_or_default().to_string(),
        vpc_id: s.vpc_id().unwrap_or_default().to_string(),
        availability_zone: s.availability_zone().unwrap_or_default().to_string(),
        cidr: s
            .cidr_block()
            .and_then(|c| c.parse().ok())
            .ok_or(Ec2Error::Incomplete {
                action,
                what: "the subnet's CIDR block",
            })?,
        available_addresses: s
            .available_ip_address_count()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        tags: tags_of(s.tags()),
    })
}

const DESCRIBE_ENIS: &str = "DescribeNetworkInterfaces";

impl Ec2 for SdkEc2 {
    async fn instance_enis(&self, instance_id: &str) -> Result<Vec<NetworkInterface>, Ec2Error> {
        self.describe_enis(
            DESCRIBE_ENIS,
            vec![filter("attachment.instance-id", &[instance_id])],
        )
        .await
    }

    async fn subnet(&self, id: &str) -> Result<Option<Subnet>, Ec2Error> {
        let action = "DescribeSubnets";
        let result = self
            .call(action, self.client.describe_subnets().subnet_ids(id).send())
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) if e.class() == ErrorClass::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        out.subnets()
            .first()
            .map(|s| convert_subnet(action, s))
            .transpose()
    }

    async fn subnets(&self, query: &SubnetQuery) -> Result<Vec<Subnet>, Ec2Error> {
        // Filters, not ids: an id that does not exist is absent instead of failing the call.
        let filters = match query {
            SubnetQuery::Ids(ids) if ids.is_empty() => return Ok(Vec::new()),
            SubnetQuery::Ids(ids) => {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                vec![filter("subnet-id", &ids)]
            }
            SubnetQuery::Zone {
                vpc_id,
                availability_zone,
            } => vec![
                filter("vpc-id", &[vpc_id]),
                filter("availability-zone", &[availability_zone]),
            ],
        };
        self.describe_subnets(filters).await
    }

    async fn security_groups(&self, ids: &[String]) -> Result<Vec<SecurityGroup>, Ec2Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Filtering by group-id returns the existing ones instead of failing on the first
        // unknown id, so one call tells which are missing.
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let out = self
            .call(
                "DescribeSecurityGroups",
                self.client
                    .describe_security_groups()
                    .filters(filter("group-id", &ids))
                    .send(),
            )
            .await?;
        Ok(out
            .security_groups()
            .iter()
            .map(|g| SecurityGroup {
                id: g.group_id().unwrap_or_default().to_string(),
                vpc_id: g.vpc_id().unwrap_or_default().to_string(),
                name: g.group_name().unwrap_or_default().to_string(),
            })
            .collect())
    }

    async fn vpc(&self, id: &str) -> Result<Option<Vpc>, Ec2Error> {
        let result = self
            .call(
                "DescribeVpcs",
                self.client.describe_vpcs().vpc_ids(id).send(),
            )
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) if e.class() == ErrorClass::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out.vpcs().first().map(|v| {
            let mut cidrs: Vec<Ipv4Net> = v
                .cidr_block()
                .and_then(|c| c.parse().ok())
                .into_iter()
                .collect();
            for assoc in v.cidr_block_association_set() {
                let associated = assoc
                    .cidr_block_state()
                    .and_then(|s| s.state())
                    .map(|s| s.as_str() == "associated")
                    .unwrap_or(false);
                if let Some(c) = assoc.cidr_block().and_then(|c| c.parse().ok())
                    && associated
                    && !cidrs.contains(&c)
                {
                    cidrs.push(c);
                }
            }
            Vpc {
                id: v.vpc_id().unwrap_or_default().to_string(),
                cidrs,
            }
        }))
    }

    async fn create_eni(&self, request: &CreateEni) -> Result<NetworkInterface, Ec2Error> {
        let action = "CreateNetworkInterface";
        let tags: Vec<Tag> = request
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let mut call = self
            .client
            .create_network_interface()
            .subnet_id(&request.subnet_id)
            .description(&request.description);
        if !request.security_groups.is_empty() {
            call = call.set_groups(Some(request.security_groups.clone()));
        }
        if !tags.is_empty() {
            call = call.tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::NetworkInterface)
                    .set_tags(Some(tags))
                    .build(),
            );
        }
        call = match request.addresses {
            AddressRequest::Secondary(0) | AddressRequest::Prefixes(0) => call,
            AddressRequest::Secondary(n) => {
                call.secondary_private_ip_address_count(i32::try_from(n).unwrap_or(i32::MAX))
            }
            AddressRequest::Prefixes(n) => {
                call.ipv4_prefix_count(i32::try_from(n).unwrap_or(i32::MAX))
            }
        };
        let out = self.call(action, call.send()).await?;
        out.network_interface()
            .map(convert_eni)
            .ok_or(Ec2Error::Incomplete {
                action,
                what: "the network interface",
            })
    }

    async fn attach_eni(
        &self,
        eni_id: &str,
        instance_id: &str,
        device_index: u32,
    ) -> Result<String, Ec2Error> {
        let action = "AttachNetworkInterface";
        let out = self
            .call(
                action,
                self.client
                    .attach_network_interface()
                    .network_interface_id(eni_id)
                    .instance_id(instance_id)
                    .device_index(i32::try_from(device_index).unwrap_or(i32::MAX))
                    .send(),
            )
            .await?;
        out.attachment_id()
            .map(str::to_string)
            .ok_or(Ec2Error::Incomplete {
                action,
                what: "the attachment id",
            })
    }

    async fn set_delete_on_termination(
        &self,
        eni_id: &str,
        attachment_id: &str,
    ) -> Result<(), Ec2Error> {
        self.call(
            "ModifyNetworkInterfaceAttribute",
            self.client
                .modify_network_interface_attribute()
                .network_interface_id(eni_id)
                .attachment(
                    NetworkInterfaceAttachmentChanges::builder()
                        .attachment_id(attachment_id)
                        .delete_on_termination(true)
                        .build(),
                )
                .send(),
        )
        .await
        .map(|_| ())
    }

    async fn assign_addresses(
        &self,
        eni_id: &str,
        request: AddressRequest,
    ) -> Result<Vec<Ipv4Net>, Ec2Error> {
        let call = self
            .client
            .assign_private_ip_addresses()
            .network_interface_id(eni_id);
        let call = match request {
            AddressRequest::Secondary(n) => {
                call.secondary_private_ip_address_count(i32::try_from(n).unwrap_or(i32::MAX))
            }
            AddressRequest::Prefixes(n) => {
                call.ipv4_prefix_count(i32::try_from(n).unwrap_or(i32::MAX))
            }
        };
        let out = self.call("AssignPrivateIpAddresses", call.send()).await?;
        let ips = out
            .assigned_private_ip_addresses()
            .iter()
            .filter_map(|a| parse_ip(a.private_ip_address()))
            .map(Ipv4Net::from);
        let prefixes = out
            .assigned_ipv4_prefixes()
            .iter()
            .filter_map(|p| p.ipv4_prefix()?.parse::<Ipv4Net>().ok());
        Ok(ips.chain(prefixes).collect())
    }

    async fn unassign_addresses(&self, eni_id: &str, blocks: &[Ipv4Net]) -> Result<(), Ec2Error> {
        let (ips, prefixes): (Vec<Ipv4Net>, Vec<Ipv4Net>) =
            blocks.iter().partition(|b| b.prefix_len() == 32);
        let mut call = self
            .client
            .unassign_private_ip_addresses()
            .network_interface_id(eni_id);
        if !ips.is_empty() {
            call = call
                .set_private_ip_addresses(Some(ips.iter().map(|b| b.addr().to_string()).collect()));
        }
        if !prefixes.is_empty() {
            call = call.set_ipv4_prefixes(Some(prefixes.iter().map(|p| p.to_string()).collect()));
        }
        self.call("UnassignPrivateIpAddresses", call.send())
            .await
            .map(|_| ())
    }

    async fn detach_eni(&self, attachment_id: &str, force: bool) -> Result<(), Ec2Error> {
        self.call(
            "DetachNetworkInterface",
            self.client
                .detach_network_interface()
                .attachment_id(attachment_id)
                .force(force)
                .send(),
        )
        .await
        .map(|_| ())
    }

    async fn delete_eni(&self, eni_id: &str) -> Result<(), Ec2Error> {
        let result = self
            .call(
                "DeleteNetworkInterface",
                self.client
                    .delete_network_interface()
                    .network_interface_id(eni_id)
                    .send(),
            )
            .await;
        match result {
            Err(e) if e.class() == ErrorClass::NotFound => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn detached_enis_tagged(
        &self,
        vpc_id: &str,
        instance_tag: &str,
        tags: &[(&str, &str)],
    ) -> Result<Vec<NetworkInterface>, Ec2Error> {
        let mut filters = vec![
            filter("vpc-id", &[vpc_id]),
            filter("tag-key", &[instance_tag]),
            filter("status", &["available"]),
        ];
        filters.extend(tags.iter().map(|(k, v)| filter(&format!("tag:{k}"), &[v])));
        self.describe_enis(DESCRIBE_ENIS, filters).await
    }

    async fn live_instances(&self, ids: &[String]) -> Result<Vec<String>, Ec2Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let action = "DescribeInstances";
        // A filter, not InstanceIds: an id that no longer exists is simply absent instead of
        // failing the whole call with InvalidInstanceID.NotFound.
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let filters = vec![
            filter("instance-id", &ids),
            filter(
                "instance-state-name",
                &["pending", "running", "shutting-down", "stopping", "stopped"],
            ),
        ];
        let pages = self
            .pages(
                action,
                |token| {
                    self.client
                        .describe_instances()
                        .set_filters(Some(filters.clone()))
                        .set_next_token(token)
                        .send()
                },
                |p| p.next_token(),
            )
            .await?;
        Ok(pages
            .iter()
            .flat_map(|p| p.reservations())
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect())
    }

    async fn instance_type_limits(&self, instance_type: &str) -> Result<InstanceLimits, Ec2Error> {
        let action = "DescribeInstanceTypes";
        let out = self
            .call(
                action,
                self.client
                    .describe_instance_types()
                    .instance_types(InstanceType::from(instance_type))
                    .send(),
            )
            .await?;
        let info = out.instance_types().first().ok_or(Ec2Error::Api {
            action,
            class: ErrorClass::NotFound,
            code: "InvalidInstanceType".to_string(),
            message: format!("EC2 does not know instance type {instance_type}"),
        })?;
        let net = info.network_info().ok_or(Ec2Error::Incomplete {
            action,
            what: "network information",
        })?;
        let default_card = to_index(net.default_network_card_index());
        let mut cards: Vec<(u32, u32)> = net
            .network_cards()
            .iter()
            .map(|c| {
                (
                    to_index(c.network_card_index()),
                    to_index(c.maximum_network_interfaces()),
                )
            })
            .collect();
        cards.sort();
        let eni_limit = cards
            .iter()
            .find(|(i, _)| *i == default_card)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| to_index(net.maximum_network_interfaces()));
        let hypervisor = match info.hypervisor().map(|h| h.as_str()) {
            Some("nitro") => Hypervisor::Nitro,
            Some("xen") => Hypervisor::Xen,
            _ => Hypervisor::Unknown,
        };
        Ok(InstanceLimits {
            instance_type: instance_type.to_string(),
            eni_limit,
            ipv4_per_eni: to_index(net.ipv4_addresses_per_interface()),
            default_network_card_index: default_card,
            network_cards: u32::try_from(cards.len().max(1)).unwrap_or(1),
            max_enis_per_card: if cards.is_empty() {
                vec![eni_limit]
            } else {
                cards.iter().map(|(_, n)| *n).collect()
            },
            hypervisor,
            bare_metal: info.bare_metal().unwrap_or(false),
            trunking_compatible: None,
            branch_interfaces: None,
            vcpus: info
                .v_cpu_info()
                .and_then(|v| v.default_v_cpus())
                .and_then(|n| u32::try_from(n).ok()),
        })
    }
}
