//! `vpcctl health`: the DaemonSet's probe. Asks ipamd's `grpc.health.v1` service over its unix
//! socket (kubelet's own gRPC probe needs TCP, which ipamd does not open by default).

use std::time::Duration;

use crate::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// ipamd's gRPC socket (or a loopback host:port).
    #[arg(long, default_value = node_contract::GRPC_SOCKET)]
    socket: String,
    /// The service to ask about: "" (ipamd is alive) or "rpc.CNIBackend" (an ADD would get an
    /// address now).
    #[arg(long, default_value = "")]
    service: String,
    /// Seconds to wait for an answer.
    #[arg(long, default_value = "5")]
    timeout: u64,
}

pub fn run(args: &Args) -> Result<(), CliError> {
    let address = if args.socket.starts_with('/') {
        format!("unix://{}", args.socket)
    } else {
        args.socket.clone()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("tokio runtime: {e}")))?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let status = runtime.block_on(async {
        let channel = rpc::channel(&address, timeout)
            .await
            .map_err(|e| CliError::Failed(format!("ipamd is not reachable at {address}: {e}")))?;
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let answer = client
            .check(tonic_health::pb::HealthCheckRequest {
                service: args.service.clone(),
            })
            .await
            .map_err(|e| {
                CliError::Failed(format!(
                    "health check of {:?}: {}",
                    args.service,
                    e.message()
                ))
            })?;
        Ok::<_, CliError>(answer.into_inner().status)
    })?;
    if status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        println!("SERVING");
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "ipamd answers NOT SERVING for {:?} (status {status})",
            args.service
        )))
    }
}
