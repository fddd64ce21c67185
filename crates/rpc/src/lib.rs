//! The `rpc` protobuf package: `CNIBackend` with AddNetwork and DelNetwork.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("rpc");

/// Connects to ipamd at `unix:///path` or `host:port` (loopback), with a bounded connect
/// timeout so a missing daemon is reported quickly.
pub async fn connect(
    address: &str,
    timeout: std::time::Duration,
) -> Result<cni_backend_client::CniBackendClient<tonic::transport::Channel>, tonic::transport::Error>
{
    Ok(cni_backend_client::CniBackendClient::new(
        channel(address, timeout).await?,
    ))
}

/// A channel to ipamd (for the CNIBackend client or the health client).
pub async fn channel(
    address: &str,
    timeout: std::time::Duration,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let channel = if let Some(path) = address.strip_prefix("unix://") {
        let path = path.to_string();
        // The URI is required by the API but unused: the connector dials the socket.
        tonic::transport::Endpoint::from_static("http://ipamd.local")
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await?
    } else {
        tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await?
    };
    Ok(channel)
}
