//! Start-up and shutdown, in order: identity, limits, where Node and ENIConfig objects come
//! from, the ENIs EC2 reports (routed again), the checkpoint, the node's datapath; then the
//! servers, readiness, the pool manager and its helpers until SIGTERM; then the last checkpoint.

use std::sync::Arc;
use std::time::Duration;

use ec2::{Ec2, InstanceIdentity, Metadata, SdkEc2};
use ipam::Datastore;
use netlink::Netlink;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cli::Cli;
use crate::datapath;
use crate::events::EventSink;
use crate::manager::Manager;
use crate::metrics::Metrics;
use crate::node::{Node, NodeState};

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

/// The instance's identity from metadata, retried (bounded) while metadata is not reachable yet.
async fn identity(metadata: &Metadata) -> Result<InstanceIdentity, AppError> {
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=10 {
        match metadata.identity().await {
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

pub async fn run(cli: Cli) -> Result<(), AppError> {
    let started = learn(cli).await?;
    let node = started.node.clone();
    let nl = Arc::new(Netlink::connect().await.map_err(startup("netlink"))?);
    let manager = Manager {
        node: node.clone(),
        ec2: started.ec2.clone(),
        nl: nl.clone(),
    };
    recover(&manager).await?;
    node_datapath(&node, &nl).await?;
    // Last before serving, so a DEL that found ipamd down is seen as late as possible.
    crate::reconcile::release_unrouted(&node, &nl).await;
    let (shutdown, tasks) = spawn(started, manager)?;
    crate::serve::wait_for_signal().await;
    stop(&node, shutdown, tasks).await
}

/// What start-up learns before it touches the node: the node's shared state and the EC2 client.
struct Started {
    node: Arc<Node>,
    ec2: Arc<SdkEc2>,
    limits: crate::limits::NodeLimits,
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
    let id = identity(&metadata).await?;
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
    let ec2 = Arc::new(
        SdkEc2::new(
            &ec2::SdkOptions {
                endpoint: settings.ec2_endpoint.clone(),
                ..cli.options.sdk_options(&id.region)
            },
            metrics.ec2.clone(),
        )
        .await,
    );
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
    Ok(Started { node, ec2, limits })
}

/// What EC2 says this instance has (each ENI routed again from its subnet as EC2 reports it),
/// then what the checkpoint says pods hold, then running pods the checkpoint does not know.
async fn recover(manager: &Manager<SdkEc2>) -> Result<(), AppError> {
    let node = &manager.node;
    let enis = manager
        .ec2
        .instance_enis(&node.identity.instance_id)
        .await
        .map_err(startup("reading the instance's ENIs"))?;
    manager.adopt_enis(&enis).await;
    crate::persist::restore(node).map_err(AppError::Startup)?;
    crate::reconcile::recover_from_host_routes(node, &manager.nl).await;
    Ok(())
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

/// The servers, readiness, the pool manager and its helpers, until the shutdown channel says
/// stop.
fn spawn(
    started: Started,
    manager: Manager<SdkEc2>,
) -> Result<(watch::Sender<bool>, Tasks), AppError> {
    let Started { node, ec2, limits } = started;
    let settings = &node.cli.settings;
    let nl = manager.nl.clone();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
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
    tasks.push(tokio::spawn(manager.run(shutdown_rx.clone())));
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
                let every = crate::manager::jittered(cleaner.node.cli.options.leaked_interval());
                tokio::select! {
                    _ = tokio::time::sleep(every) => cleaner.clean_leaked().await,
                    _ = stop.changed() => return,
                }
            }
        }));
    }
    Ok((shutdown_tx, tasks))
}

/// SIGTERM: no EC2 writes from here on, every task stopped (one deadline for all), the last
/// checkpoint written.
async fn stop(node: &Node, shutdown: watch::Sender<bool>, tasks: Tasks) -> Result<(), AppError> {
    info!("SIGTERM: stopping (no EC2 writes from here on)");
    node.lock().shutting_down = true;
    let _ = shutdown.send(true);
    // A server waiting on an idle client must not hold the exit.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    for t in tasks {
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            break;
        }
    }
    let st = node.lock();
    crate::persist::save(node, &st).map_err(startup("final checkpoint"))?;
    info!("stopped");
    Ok(())
}
