//! A client for the API server: in-cluster, `KUBECONFIG`, or an explicit kubeconfig file; and a
//! bounded, logged wait until the server answers (nodes often start before it is reachable).

use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error(
        "no Kubernetes configuration (in-cluster service account, KUBECONFIG or ~/.kube/config): {0}"
    )]
    Infer(String),
    #[error("Kubernetes client for {server}: {message}")]
    Client { server: String, message: String },
    #[error("API server {server} did not answer after {attempts} attempts: {last}")]
    Unreachable {
        server: String,
        attempts: u32,
        last: String,
    },
}

/// How long to wait for the API server.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_pause: Duration,
    pub max_pause: Duration,
}

impl Default for Retry {
    /// About three minutes in all.
    fn default() -> Self {
        Retry {
            attempts: 12,
            first_pause: Duration::from_millis(500),
            max_pause: Duration::from_secs(30),
        }
    }
}

pub async fn config(kubeconfig: Option<&Path>) -> Result<Config, ConnectError> {
    match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| ConnectError::Kubeconfig {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| ConnectError::Kubeconfig {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })
        }
        None => {
            let config = Config::infer()
                .await
                .map_err(|e| ConnectError::Infer(e.to_string()))?;
            let endpoint = std::env::var(CLUSTER_ENDPOINT).ok();
            with_endpoint(config, endpoint.as_deref())
        }
    }
}

/// Upstream's variable for the API server's own address, used instead of the in-cluster
/// service's (which needs kube-proxy's rules first).
pub const CLUSTER_ENDPOINT: &str = "CLUSTER_ENDPOINT";

/// The inferred configuration pointed at `endpoint` when one is given (non-empty); the
/// credentials and CA stay the in-cluster ones.
pub fn with_endpoint(mut config: Config, endpoint: Option<&str>) -> Result<Config, ConnectError> {
    if let Some(e) = endpoint.filter(|e| !e.is_empty()) {
        config.cluster_url = e.parse().map_err(|err| ConnectError::Client {
            server: e.to_string(),
            message: format!("{CLUSTER_ENDPOINT} is not a URL: {err}"),
        })?;
        info!(endpoint = e, "API server from {CLUSTER_ENDPOINT}");
    }
    Ok(config)
}

/// A client whose API server has answered.
pub async fn connect(kubeconfig: Option<&Path>, retry: Retry) -> Result<Client, ConnectError> {
    let config = config(kubeconfig).await?;
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| ConnectError::Client {
        server: server.clone(),
        message: e.to_string(),
    })?;
    wait_for_api(&client, &server, retry).await?;
    Ok(client)
}

/// Asks for the server's version until it answers, `retry.attempts` times at most, logging each
/// failure with the pause before the next.
pub async fn wait_for_api(client: &Client, server: &str, retry: Retry) -> Result<(), ConnectError> {
    let mut pause = retry.first_pause;
    let mut last = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        match client.apiserver_version().await {
            Ok(v) => {
                info!(
                    server,
                    version = v.git_version,
                    attempt,
                    "API server reachable"
                );
                return Ok(());
            }
            Err(e) => {
                last = e.to_string();
                if attempt < retry.attempts {
                    warn!(server, attempt, of = retry.attempts, pause = ?pause, error = last, "API server not reachable yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(retry.max_pause);
                }
            }
        }
    }
    Err(ConnectError::Unreachable {
        server: server.to_string(),
        attempts: retry.attempts.max(1),
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_endpoint_replaces_only_the_address() {
        let base = Config::new("https://10.100.0.1:443".parse().unwrap());
        let c = with_endpoint(
            base.clone(),
            Some("https://ABCD.gr7.us-west-2.eks.amazonaws.com"),
        )
        .unwrap();
        assert_eq!(
            c.cluster_url.to_string(),
            "https://ABCD.gr7.us-west-2.eks.amazonaws.com/"
        );
        assert_eq!(c.default_namespace, base.default_namespace);
        let same = with_endpoint(base.clone(), Some("")).unwrap();
        assert_eq!(same.cluster_url, base.cluster_url);
        assert!(with_endpoint(base, Some("not a url")).is_err());
    }
}
