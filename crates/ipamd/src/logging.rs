//! JSON log lines to stdout, stderr or a file, at `AWS_VPC_K8S_CNI_LOGLEVEL`.

use std::sync::Mutex;

use ipamd_settings::{IpamdSettings, LogLevel};
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init(settings: &IpamdSettings) -> Result<(), String> {
    let level = match settings.log_level {
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warn => Level::WARN,
        // No fatal level: errors are the closest.
        LogLevel::Error | LogLevel::Fatal => Level::ERROR,
    };
    // Ours at the chosen level; the SDK's and the HTTP stack's chatter only from WARN.
    let filter = Targets::new()
        .with_default(Level::WARN.min(level))
        .with_target("ipamd", level)
        .with_target("ec2", level)
        .with_target("ipam", level);
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false);
    let result = match settings.log_file.as_str() {
        "stdout" => tracing_subscriber::registry()
            .with(layer.with_writer(std::io::stdout).with_filter(filter))
            .try_init(),
        "stderr" => tracing_subscriber::registry()
            .with(layer.with_writer(std::io::stderr).with_filter(filter))
            .try_init(),
        path => {
            let file = files::open_private_log(std::path::Path::new(path))
                .map_err(|e| format!("AWS_VPC_K8S_CNI_LOG_FILE {path}: {e}"))?;
            tracing_subscriber::registry()
                .with(layer.with_writer(Mutex::new(file)).with_filter(filter))
                .try_init()
        }
    };
    result.map_err(|e| format!("logging: {e}"))
}
