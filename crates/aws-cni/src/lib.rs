//! aws-cni, the CNI plugin: asks ipamd for an address and builds the pod's veth, address,
//! routes and neighbour entry and the node's route and rules; tears them down on DEL.

pub mod commands;
pub mod conf;
pub mod error;
pub mod log;
pub mod pod;
pub mod result;

use conf::{CniEnv, NetConf};
use error::CniError;

/// Runs one invocation; returns what goes to stdout, or the error to print there.
pub fn run(env: &CniEnv, stdin: &[u8]) -> Result<String, CniError> {
    if env.command == "VERSION" {
        let version = NetConf::parse(stdin).ok().map(|c| c.cni_version);
        return Ok(commands::version(version.as_deref()));
    }
    let conf = NetConf::parse(stdin)?;
    let log = log::Log::open(&conf.log_file, &conf.log_level);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(error::Code::Io, format!("tokio runtime: {e}")))?;
    runtime.block_on(async {
        match env.command.as_str() {
            "ADD" => commands::add(env, &conf, &log).await,
            "DEL" => commands::del(env, &conf, &log).await,
            "CHECK" => commands::check(env, &conf).await,
            "STATUS" => commands::status(&conf).await,
            "GC" => commands::gc(&conf, &log).await,
            other => Err(CniError::new(
                error::Code::InvalidEnv,
                format!("CNI_COMMAND {other:?} is not ADD, DEL, CHECK, STATUS, GC or VERSION"),
            )),
        }
    })
}
