//! Relays from a node's own loopback/link-local addresses to the emulator's unix sockets, so
//! nodes reach EC2 and their instance metadata without any route out of the simulated world.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("relay {addr} in {netns}: {message}")]
    Listen {
        netns: String,
        addr: SocketAddr,
        message: String,
    },
}

/// Opens a listener inside `netns`; the socket stays there and is served from anywhere.
pub fn listen_in(netns: &str, addr: SocketAddr) -> Result<std::net::TcpListener, RelayError> {
    let fail = |message: String| RelayError::Listen {
        netns: netns.to_string(),
        addr,
        message,
    };
    let ns = netns::Netns::named(netns).map_err(|e| fail(e.to_string()))?;
    let listener = ns
        .run(|| std::net::TcpListener::bind(addr))
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| fail(e.to_string()))?;
    Ok(listener)
}

/// Forwards every connection to the unix socket `target` until the task is dropped.
pub async fn serve(listener: std::net::TcpListener, target: PathBuf) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::UnixStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
