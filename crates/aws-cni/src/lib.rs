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

/// What goes to stdout: the result, or the error object in the CNI version the runtime asked for.
pub struct Outcome {
    pub cni_version: String,
    pub result: Result<String, CniError>,
}

/// The version an error is written in when the configuration cannot tell.
const FALLBACK_VERSION: &str = "1.1.0";

/// Runs one invocation: the network configuration parsed once, then the command.
pub fn run(lookup: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let conf = NetConf::parse(stdin);
    let cni_version = conf
        .as_ref()
        .map(|c| c.cni_version.clone())
        .unwrap_or_else(|_| FALLBACK_VERSION.to_string());
    let result = CniEnv::from_lookup(lookup).and_then(|env| {
        if env.command == "VERSION" {
            let version = conf.as_ref().ok().map(|c| c.cni_version.as_str());
            return Ok(commands::version(version));
        }
        dispatch(&env, &conf.map_err(|e| e.clone())?)
    });
    Outcome {
        cni_version,
        result,
    }
}

fn dispatch(env: &CniEnv, conf: &NetConf) -> Result<String, CniError> {
    let log = log::Log::open(&conf.log_file, &conf.log_level);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(error::Code::Io, format!("tokio runtime: {e}")))?;
    runtime.block_on(async {
        match env.command.as_str() {
            "ADD" => commands::add(env, conf, &log).await,
            "DEL" => commands::del(env, conf, &log).await,
            "CHECK" => commands::check(env, conf).await,
            "STATUS" => commands::status(conf).await,
            "GC" => commands::gc(conf, &log).await,
            other => Err(CniError::new(
                error::Code::InvalidEnv,
                format!("CNI_COMMAND {other:?} is not ADD, DEL, CHECK, STATUS, GC or VERSION"),
            )),
        }
    })
}
