//! JSON log lines to stdout, stderr or a file, at `AWS_VPC_K8S_CNI_LOGLEVEL`.

use std::fs::OpenOptions;
use std::sync::Mutex;

use ipamd_settings::{IpamdSettings, LogLevel};
use tracing::Level;

pub fn init(settings: &IpamdSettings) -> Result<(), String> {
    let level = match settings.log_level {
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warn => Level::WARN,
        LogLevel::Error => Level::ERROR,
    };
    let builder = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(false)
        .with_target(false);
    let result = match settings.log_file.as_str() {
        "stdout" => builder.with_writer(std::io::stdout).try_init(),
        "stderr" => builder.with_writer(std::io::stderr).try_init(),
        path => {
            if let Some(dir) = std::path::Path::new(path).parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("AWS_VPC_K8S_CNI_LOG_FILE {path}: {e}"))?;
            builder.with_writer(Mutex::new(file)).try_init()
        }
    };
    result.map_err(|e| format!("logging: {e}"))
}
