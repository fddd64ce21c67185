//! Start-up and shutdown, in order: identity and attached interfaces (instance metadata, read
//! concurrently), limits, where Node and ENIConfig objects come from, the checkpoint; then at
//! once the ENIs EC2 reports (routed again) and where pod ENIs go (the ENIConfig checked
//! against EC2); the pool manager, so a fresh node's first ENI is on its way while the node's
//! datapath is set up; then the servers and readiness until SIGTERM; then the last checkpoint.

use std::sync::Arc;
use std::time::Duration;

use ec2::{Ec2, InstanceIdentity, Metadata, MetadataEni, NetworkInterface, SdkEc2};
use ipam::Datastore;
use ipam::checkpoint::Restorable;
use netlink::Netlink;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cli::Cli;
use crate::datapath;
use crate::events::EventSink;
use crate::manager::Manager;
use crate::metrics::Metrics;
use crate::node::{Node, NodeState};
use crate::pacing::Paced;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Settings(String),
    #[error("instance metadata: {0}")]
    Identity(String),
    #[error("{0}")]
    Startup(String),
}

pub(crate) fn startup<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> AppError {
    move |e| AppError::Startup(format!("{what}: {e}"))
}

/// The instance's identity and attached interfaces from metadata, retried (bounded) while
/// metadata is not reachable yet.
async fn identity(metadata: &Metadata) -> Result<(InstanceIdentity, Vec<MetadataEni>), AppError> {
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=10 {
        match metadata.identity_and_interfaces().await {
            Ok(id) => return Ok(id),
            Err(e) if attempt == 10 => return Err(AppError::Identity(e.to_string())),
            Err(e) => {
                warn!(attempt, error = %e, "instance metadata not reachable yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
    Err(AppError::Identity("unreachable".into()))
}

/// EC2 as ipamd calls it: the SDK client behind the node's shared back-off.
pub type NodeEc2 = Paced<SdkEc2>;

pub async fn run(cli: Cli) -> Result<(), AppError> {
    let started = learn(cli).await?;
    let node = started.node.clone();
    let nl = Arc::new(Netlink::connect().await.map_err(startup("netlink"))?);
    let manager = Manager {
        node: node.clone(),
        ec2: started.ec2.clone(),
        nl: nl.clone(),
    };
    let saved = crate::persist::read(&node).map_err(AppError::Startup)?;
    // Independent: what is attached, and where new ENIs go (the ENIConfig read from EC2).
    let (recovered, ()) = tokio::join!(
        recover(&manager, &started.interfaces, &saved),
        manager.refresh_target()
    );
    recovered?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    // The first ENI does not wait for the node's own datapath; no pod is served before it.
    let mut tasks = vec![tokio::spawn(manager.run(shutdown_rx.clone()))];
    if let Err(e) = node_datapath(&node, &nl).await {
        stop_tasks(&node, &shutdown, tasks).await;
        return Err(e);
    }
    // Last before serving, so a DEL that found ipamd down is seen as late as possible.
    crate::reconcile::release_unrouted(&node, &nl).await;
    tasks.extend(spawn(started, nl, &shutdown_rx)?);
    crate::serve::wait_for_signal().await;
    stop(&node, shutdown, tasks).await
}

/// What start-up learns before it touches the node: the node's shared state, the EC2 client and
/// the interfaces instance metadata lists.
struct Started {
    node: Arc<Node>,
    ec2: Arc<NodeEc2>,
    limits: crate::limits::NodeLimits,
    interfaces: Vec<MetadataEni>,
}

/// Settings, identity, limits, and where the Node and ENIConfig objects come from.
async fn learn(cli: Cli) -> Result<Started, AppError> {
    let settings = &cli.settings;
    settings
        .validate()
        .map_err(|e| AppError::Settings(e.to_string()))?;
    for key in &settings.additional_eni_tags.refused {
        warn!(
            tag = key,
            "ADDITIONAL_ENI_TAGS: tag keys containing k8s.amazonaws.com are reserved and ignored"
        );
    }
    let metadata = Metadata::new(None, cli.options.metadata_timeouts())
        .map_err(|e| AppError::Identity(e.to_string()))?;
    let (id, interfaces) = identity(&metadata).await?;
    info!(
        instance = id.instance_id,
        instance_type = id.instance_type,
        az = id.availability_zone,
        vpc = id.vpc_id,
        "instance identity"
    );
    let metrics = Metrics::new().map_err(startup("metrics"))?;
    crate::compat::announce(crate::compat::findings(), &metrics.registry)
        .map_err(startup("metrics"))?;
    let sdk = SdkEc2::new(
        &ec2::SdkOptions {
            endpoint: settings.ec2_endpoint.clone(),
            ..cli.options.sdk_options(&id.region)
        },
        metrics.ec2.clone(),
    )
    .await;
    let ec2 = Arc::new(Paced::new(
        sdk,
        crate::pacing::POLICY,
        Some(metrics.throttle_retries.clone()),
    ));
    let limits = crate::limits::NodeLimits::learn(&cli, &id.instance_type, ec2.as_ref())
        .await
        .map_err(AppError::Settings)?;
    metrics.eni_max.set(i64::from(limits.max_pods.enis));
    metrics.ip_max.set(i64::from(limits.max_pods.max_pods));
    let (objects, events) = match cli.options.manifests.clone() {
        Some(dir) => (
            crate::source::standalone(dir, settings.my_node_name.clone()),
            EventSink::default(),
        ),
        None => crate::source::kubernetes(&cli, &id, ec2.clone())
            .await
            .map_err(AppError::Startup)?,
    };
    let ds = Datastore::new(settings.ip_cooldown(), limits.max_pods.max_pods as usize);
    let node = Arc::new(Node {
        identity: id.clone(),
        limits: limits.instance.clone(),
        max_pods: limits.max_pods.max_pods,
        pool: limits.pool.clone(),
        state: std::sync::Mutex::new(NodeState::new(ds)),
        wake: tokio::sync::Notify::new(),
        reconcile_now: tokio::sync::Notify::new(),
        changed: tokio::sync::Notify::new(),
        metadata,
        metrics,
        objects,
        events,
        vpc_blocks: std::sync::RwLock::new(id.vpc_cidrs.clone()),
        cli,
    });
    Ok(Started {
        node,
        ec2,
        limits,
        interfaces,
    })
}

/// What EC2 says this instance has (each ENI routed again from its subnet as EC2 reports it),
/// then what the checkpoint says pods hold, then running pods the checkpoint does not know.
async fn recover(
    manager: &Manager<NodeEc2>,
    interfaces: &[MetadataEni],
    saved: &[Restorable],
) -> Result<(), AppError> {
    let node = &manager.node;
    let enis = match fresh_primary(node, interfaces, saved) {
        Some(primary) => {
            info!(
                "a fresh node: only the primary ENI is attached (instance metadata), no pod to recover"
            );
            vec![primary]
        }
        None => manager
            .ec2
            .instance_enis(&node.identity.instance_id)
            .await
            .map_err(startup("reading the instance's ENIs"))?,
    };
    manager.adopt_enis(&enis).await;
    crate::persist::restore(node, saved).map_err(AppError::Startup)?;
    crate::reconcile::recover_from_host_routes(node, &manager.nl).await;
    Ok(())
}

/// A fresh custom-networking node — instance metadata lists the primary ENI alone and the
/// checkpoint holds no pod — needs no DescribeNetworkInterfaces at start: the primary serves no
/// pod, whatever its tags, and what the pool needs of it is in metadata. Its attachment id is
/// left empty: the primary is never detached. Any other node asks EC2 (tags decide which ENIs
/// are ipamd's; an ENI attached moments before a crash may not be in metadata yet, and a
/// checkpoint's pods must not be dropped for it).
fn fresh_primary(
    node: &Node,
    interfaces: &[MetadataEni],
    saved: &[Restorable],
) -> Option<NetworkInterface> {
    let id = &node.identity;
    let [only] = interfaces else {
        return None;
    };
    if !node.custom_networking() || !saved.is_empty() || only.interface_id != id.primary_eni_id {
        return None;
    }
    Some(NetworkInterface {
        id: only.interface_id.clone(),
        mac: only.mac.clone(),
        status: "in-use".into(),
        subnet_id: only.subnet_id.clone(),
        vpc_id: id.vpc_id.clone(),
        availability_zone: id.availability_zone.clone(),
        description: String::new(),
        security_groups: id.security_groups.clone(),
        primary_ip: Some(id.primary_ip),
        secondary_ips: only.addresses.iter().skip(1).copied().collect(),
        prefixes: only.prefixes.clone(),
        tags: Default::default(),
        attachment: Some(ec2::Attachment {
            id: String::new(),
            instance_id: id.instance_id.clone(),
            device_index: only.device_number,
            network_card: 0,
            status: "attached".into(),
            delete_on_termination: true,
        }),
    })
}

/// The node's own datapath: rp_filter, SNAT and connmark, the connmark rule.
async fn node_datapath(node: &Node, nl: &Netlink) -> Result<(), AppError> {
    let (id, settings) = (&node.identity, &node.cli.settings);
    let primary_link = nl
        .link_by_mac(&netlink::parse_mac(&id.primary_mac).map_err(startup("primary MAC"))?)
        .await
        .map_err(startup("primary interface"))?
        .ok_or_else(|| {
            AppError::Startup(format!(
                "no interface with the primary MAC {} on this node",
                id.primary_mac
            ))
        })?;
    // Replies that arrive on another ENI must not be dropped (loose), unless NodePort support
    // is off (strict, as upstream).
    node.lock().datapath_problem =
        datapath::node::set_rp_filter(&primary_link.name, settings.node_port_support);
    datapath::node::setup(nl, settings, &primary_link, id.primary_ip, &id.vpc_cidrs)
        .await
        .map_err(startup("the node's datapath"))
}

type Tasks = Vec<tokio::task::JoinHandle<()>>;

/// The servers, readiness and the pool manager's helpers, until the shutdown channel says stop.
fn spawn(
    started: Started,
    nl: Arc<Netlink>,
    shutdown_rx: &watch::Receiver<bool>,
) -> Result<Tasks, AppError> {
    let Started {
        node, ec2, limits, ..
    } = started;
    let settings = &node.cli.settings;
    let mut tasks = Vec::new();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    tasks.push(tokio::spawn(crate::serve::grpc(
        node.clone(),
        shutdown_rx.clone(),
        health_service,
    )?));
    let (ready_tx, ready_rx) = watch::channel(Err("starting".to_string()));
    tasks.push(tokio::spawn(crate::readiness::track(
        node.clone(),
        ready_tx,
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::memory::keep_trimmed(
        node.clone(),
        ready_rx.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::readiness::health(
        ready_rx.clone(),
        health_reporter.clone(),
    )));
    tasks.push(tokio::spawn(crate::readiness::write_cni_config(
        node.clone(),
        ready_rx,
        health_reporter,
    )));
    if !settings.disable_introspection {
        tasks.push(tokio::spawn(crate::serve::http(
            settings.introspection_bind_address,
            crate::introspection::router(node.clone()),
            shutdown_rx.clone(),
        )));
    }
    if !settings.disable_metrics {
        tasks.push(tokio::spawn(crate::serve::http(
            node.cli.options.metrics_bind_address,
            crate::introspection::metrics_router(node.clone()),
            shutdown_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(crate::reconcile::follow_vpc_blocks(
        node.clone(),
        nl.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::capacity::watch(
        node.clone(),
        limits.max_pods.clone(),
        limits.options,
        shutdown_rx.clone(),
    )));
    if settings.leaked_eni_cleanup() {
        let cleaner = Manager {
            node: node.clone(),
            ec2,
            nl,
        };
        let mut stop = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                // Spread over the interval: a fleet started together does not scan together.
                let every = crate::manager::spread(cleaner.node.cli.options.leaked_interval());
                tokio::select! {
                    _ = tokio::time::sleep(every) => cleaner.clean_leaked().await,
                    _ = stop.changed() => return,
                }
            }
        }));
    }
    Ok(tasks)
}

/// SIGTERM: no EC2 writes from here on, every task stopped (one deadline for all), the last
/// checkpoint written.
async fn stop(node: &Node, shutdown: watch::Sender<bool>, tasks: Tasks) -> Result<(), AppError> {
    info!("SIGTERM: stopping (no EC2 writes from here on)");
    stop_tasks(node, &shutdown, tasks).await;
    let st = node.lock();
    crate::persist::save(node, &st).map_err(startup("final checkpoint"))?;
    info!("stopped");
    Ok(())
}

/// No EC2 writes from here on; every task told to stop and given one deadline.
async fn stop_tasks(node: &Node, shutdown: &watch::Sender<bool>, tasks: Tasks) {
    node.lock().shutting_down = true;
    let _ = shutdown.send(true);
    // A server waiting on an idle client must not hold the exit.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    for t in tasks {
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            break;
        }
    }
}
