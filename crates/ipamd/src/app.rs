//! Start-up and shutdown: identity, limits, ENIs from EC2, checkpoint restore, the node's
//! datapath, then the servers and the pool manager until SIGTERM.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use ec2::{Ec2, InstanceIdentity, Metadata, SdkEc2};
use instance_limits::{LimitsTable, MaxPodsError, MaxPodsOptions, max_pods};
use ipam::checkpoint::{self, Loaded};
use ipam::{Datastore, Time};
use netlink::Netlink;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::cli::Cli;
use crate::datapath;
use crate::events::EventSink;
use crate::manager::Manager;
use crate::metrics::Metrics;
use crate::node::{Node, NodeState};
use crate::server::Backend;
use crate::source::ObjectsRx;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Settings(String),
    #[error("instance metadata: {0}")]
    Identity(String),
    #[error("{0}")]
    Startup(String),
}

fn startup<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> AppError {
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

/// Kubernetes mode: the API server (waited for, bounded) feeds the Node and the ENIConfigs;
/// Events go to the Node; the agent holding the Lease writes ENIConfig status.
async fn kubernetes<C: ec2::Ec2 + 'static>(
    cli: &Cli,
    id: &ec2::InstanceIdentity,
    ec2: Arc<C>,
) -> Result<(ObjectsRx, EventSink), AppError> {
    let Some(node_name) = cli.settings.my_node_name.clone() else {
        return Err(AppError::Settings(
            "Kubernetes mode needs MY_NODE_NAME (the DaemonSet sets it from spec.nodeName); for standalone mode pass --manifests DIR (IPAMD_MANIFESTS)".into(),
        ));
    };
    let client = cluster::connect(cli.options.kubeconfig.as_deref(), cluster::Retry::default())
        .await
        .map_err(|e| AppError::Startup(e.to_string()))?;
    let objects = cluster::watch_objects(client.clone(), &node_name);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(cluster::publish_node_events(
        client.clone(),
        node_name.clone(),
        rx,
    ));
    let leader = cluster::elect(
        client.clone(),
        cluster::Election {
            namespace: cli.options.lease_namespace.clone(),
            identity: node_name,
            duration: Duration::from_secs(15),
            period: Duration::from_secs(5),
        },
    );
    tokio::spawn(cluster::run_writer(
        client,
        crate::facts::Ec2Facts(ec2),
        id.vpc_id.clone(),
        leader,
        objects.clone(),
        Duration::from_secs(cli.options.eniconfig_status_interval.max(5)),
    ));
    Ok((objects, EventSink::kubernetes(tx)))
}

pub async fn run(cli: Cli) -> Result<(), AppError> {
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
    let limits = match LimitsTable::builtin().get(&id.instance_type) {
        Ok(l) => l.clone(),
        Err(_) => ec2
            .instance_type_limits(&id.instance_type)
            .await
            .map_err(startup("instance type limits"))?,
    };
    let options = settings.max_pods_options();
    let pods = match max_pods(&limits, &options) {
        Ok(m) => m,
        Err(MaxPodsError::UnknownVcpus { .. }) => {
            warn!(
                instance_type = limits.instance_type,
                "vCPU count unknown: using the uncapped max pods"
            );
            max_pods(
                &limits,
                &MaxPodsOptions {
                    show_max_allowed: true,
                    ..options
                },
            )
            .map_err(startup("max pods"))?
        }
        Err(e) => return Err(AppError::Settings(e.to_string())),
    };
    let pool = settings.pool(
        &limits,
        &pods,
        Duration::from_secs(cli.options.eni_min_age),
        Duration::from_secs(cli.options.decrease_interval),
    );
    metrics.eni_max.set(i64::from(pods.enis));
    metrics.ip_max.set(i64::from(pods.max_pods));
    info!(
        max_pods = pods.max_pods,
        enis = pods.enis,
        custom_networking = settings.custom_network_cfg,
        "limits"
    );

    let (objects, events) = match cli.options.manifests.clone() {
        Some(dir) => (
            crate::source::standalone(dir, settings.my_node_name.clone()),
            EventSink::default(),
        ),
        None => kubernetes(&cli, &id, ec2.clone()).await?,
    };
    let ds = Datastore::new(settings.ip_cooldown(), pods.max_pods as usize);
    let node = Arc::new(Node {
        cli: cli.clone(),
        identity: id.clone(),
        limits,
        max_pods: pods.max_pods,
        pool,
        state: std::sync::Mutex::new(NodeState::new(ds)),
        wake: tokio::sync::Notify::new(),
        reconcile_now: tokio::sync::Notify::new(),
        metadata,
        metrics,
        objects,
        events,
        vpc_blocks: std::sync::RwLock::new(id.vpc_cidrs.clone()),
    });
    let nl = Arc::new(Netlink::connect().await.map_err(startup("netlink"))?);

    let manager = Manager {
        node: node.clone(),
        ec2: ec2.clone(),
        nl: nl.clone(),
    };
    // What EC2 says this instance has (each ENI routed again from its subnet as EC2 reports
    // it), then what the checkpoint says pods hold.
    let enis = ec2
        .instance_enis(&id.instance_id)
        .await
        .map_err(startup("reading the instance's ENIs"))?;
    manager.adopt_enis(&enis).await;
    restore_checkpoint(&node)?;
    crate::reconcile::recover_from_host_routes(&node, &nl).await;

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
    datapath::node::setup(&nl, settings, &primary_link, id.primary_ip, &id.vpc_cidrs)
        .await
        .map_err(startup("the node's datapath"))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    tasks.push(tokio::spawn(serve_grpc(
        node.clone(),
        shutdown_rx.clone(),
        health_reporter.clone(),
        health_service,
    )?));
    if !settings.disable_introspection {
        tasks.push(tokio::spawn(serve_http(
            settings.introspection_bind_address,
            crate::introspection::router(node.clone()),
            shutdown_rx.clone(),
        )));
    }
    if !settings.disable_metrics {
        tasks.push(tokio::spawn(serve_http(
            cli.options.metrics_bind_address,
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
        pods.clone(),
        options,
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(write_cni_config_when_ready(
        node.clone(),
        health_reporter,
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

    wait_for_signal().await;
    info!("SIGTERM: stopping (no EC2 writes from here on)");
    node.lock().shutting_down = true;
    let _ = shutdown_tx.send(true);
    // One deadline for all tasks: a server waiting on an idle client must not hold the exit.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    for t in tasks {
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            break;
        }
    }
    let st = node.lock();
    crate::persist::save(&node, &st).map_err(startup("final checkpoint"))?;
    info!("stopped");
    Ok(())
}

/// Restores the checkpoint; a file that cannot be parsed is moved aside and reported, and
/// allocations whose address is not on this node are dropped and reported. A file that cannot
/// be read at all stops start-up: it may hold every running pod, and is never overwritten.
fn restore_checkpoint(node: &Node) -> Result<(), AppError> {
    let path = &node.cli.settings.backing_store;
    let mut st = node.lock();
    match checkpoint::load(path, Time::now()) {
        Ok(Loaded::Missing) => info!(path = %path.display(), "no checkpoint: a fresh node"),
        Ok(Loaded::Quarantined { moved_to, error }) => {
            error!(path = %path.display(), moved_to = %moved_to.display(), error = %error, "the checkpoint is unusable: moved aside, state rebuilt from EC2");
            node.metrics.errors.with_label_values(&["checkpoint"]).inc();
        }
        Ok(Loaded::Read(c)) => match c.restorable() {
            Ok(entries) => {
                let (mut kept, mut dropped) = (0, 0);
                for r in entries {
                    match st
                        .ds
                        .restore(&r.key, r.ip, r.metadata.clone(), r.assigned_at)
                    {
                        Ok(_) => kept += 1,
                        Err(e) => {
                            dropped += 1;
                            warn!(key = %r.key, ip = %r.ip, error = %e, "dropping a checkpointed allocation");
                        }
                    }
                }
                info!(kept, dropped, "checkpoint restored");
            }
            Err(e) => error!(error = %e, "checkpoint entries"),
        },
        Err(e) => {
            return Err(AppError::Startup(format!(
                "{e}: ipamd will not overwrite a checkpoint it cannot read (it lists the running \
                 pods); fix the file or move it aside, then restart"
            )));
        }
    }
    crate::persist::save(node, &st).map_err(startup("writing the checkpoint"))
}

async fn wait_for_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

type CniServer = rpc::cni_backend_server::CniBackendServer<Backend>;

fn serve_grpc<H: tonic_health::pb::health_server::Health>(
    node: Arc<Node>,
    shutdown: watch::Receiver<bool>,
    health_reporter: tonic_health::server::HealthReporter,
    health: tonic_health::pb::health_server::HealthServer<H>,
) -> Result<impl std::future::Future<Output = ()>, AppError> {
    let address = node.cli.options.grpc_address.clone();
    let node_for_health = node.clone();
    let backend = rpc::cni_backend_server::CniBackendServer::new(Backend { node });
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(backend);
    enum Listener {
        Unix(tokio::net::UnixListener),
        Tcp(tokio::net::TcpListener),
    }
    let listener = if let Some(path) = address.strip_prefix("unix://") {
        let path = std::path::PathBuf::from(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(startup("gRPC socket directory"))?;
        }
        let _ = std::fs::remove_file(&path);
        let l = tokio::net::UnixListener::bind(&path)
            .map_err(|e| AppError::Startup(format!("gRPC socket {}: {e}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
            .map_err(startup("gRPC socket mode"))?;
        Listener::Unix(l)
    } else {
        let addr: SocketAddr = address.parse().map_err(|_| {
            AppError::Settings(format!(
                "IPAMD_GRPC_ADDRESS {address:?} is neither unix:///path nor host:port"
            ))
        })?;
        if !addr.ip().is_loopback() {
            return Err(AppError::Settings(format!(
                "IPAMD_GRPC_ADDRESS {addr}: gRPC over TCP is served on loopback only"
            )));
        }
        let std_listener = std::net::TcpListener::bind(addr).map_err(startup("gRPC address"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(startup("gRPC address"))?;
        Listener::Tcp(
            tokio::net::TcpListener::from_std(std_listener).map_err(startup("gRPC address"))?,
        )
    };
    info!(address, "serving gRPC");
    // rpc.CNIBackend is SERVING only while an ADD would get an address (the plugin's STATUS);
    // the overall service ("") stays SERVING while ipamd runs (liveness).
    let status_node = node_for_health;
    let mut status_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let readiness = status_node.lock().can_serve(Time::now());
            let serving = readiness.is_ok();
            if last != Some(serving) {
                info!(serving, reason = readiness.err(), "rpc.CNIBackend health");
                if serving {
                    health_reporter.set_serving::<CniServer>().await;
                } else {
                    health_reporter.set_not_serving::<CniServer>().await;
                }
                last = Some(serving);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = status_stop.changed() => return,
            }
        }
    });
    Ok(async move {
        let result = match listener {
            Listener::Unix(l) => {
                router
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::UnixListenerStream::new(l),
                        shutdown_signal(shutdown),
                    )
                    .await
            }
            Listener::Tcp(l) => {
                router
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(l),
                        shutdown_signal(shutdown),
                    )
                    .await
            }
        };
        if let Err(e) = result {
            error!(error = %e, "gRPC server");
        }
    })
}

async fn serve_http(addr: SocketAddr, router: axum::Router, shutdown: watch::Receiver<bool>) {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            info!(%addr, "serving HTTP");
            if let Err(e) = axum::serve(l, router)
                .with_graceful_shutdown(shutdown_signal(shutdown))
                .await
            {
                error!(%addr, error = %e, "HTTP server");
            }
        }
        Err(e) => error!(%addr, error = %e, "cannot listen"),
    }
}

/// Writes the CNI config once the pool holds an address and custom networking is satisfied.
async fn write_cni_config_when_ready(
    node: Arc<Node>,
    health: tonic_health::server::HealthReporter,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let ready = node.lock().can_serve(Time::now()).is_ok();
        if ready {
            // Ready to the runtime implies ready to the plugin's STATUS.
            health.set_serving::<CniServer>().await;
            match crate::cniconf::write(&node) {
                Ok(()) => {
                    node.lock().network_ready = true;
                    info!(path = %crate::cniconf::path(&node).display(), "network-ready: CNI config written");
                    return;
                }
                Err(e) => error!(error = %e, "writing the CNI config"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
