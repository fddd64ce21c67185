//! The servers: gRPC for the plugin (with its health service) and HTTP for introspection and
//! metrics, each stopped by the shutdown channel.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{error, info};

use crate::app::{AppError, startup};
use crate::node::Node;
use crate::server::Backend;

/// SIGTERM (or ^C).
pub async fn wait_for_signal() {
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

/// The plugin's gRPC service (`CNIBackend`, `GarbageCollect`) and `grpc.health.v1` on the unix
/// socket (0660), or on a loopback TCP address when configured.
pub fn grpc<H: tonic_health::pb::health_server::Health>(
    node: Arc<Node>,
    shutdown: watch::Receiver<bool>,
    health: tonic_health::pb::health_server::HealthServer<H>,
) -> Result<impl std::future::Future<Output = ()>, AppError> {
    let address = node.cli.options.grpc_address.clone();
    let backend = rpc::cni_backend_server::CniBackendServer::new(Backend {
        forget: crate::forget::Forgetter::start(node.clone()),
        node,
    });
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

/// Introspection or metrics over HTTP until shutdown.
pub async fn http(addr: SocketAddr, router: axum::Router, shutdown: watch::Receiver<bool>) {
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
