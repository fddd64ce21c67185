//! `vpcctl install-cni`: the DaemonSet's init step. Copies the plugin into the host's CNI bin
//! directory atomically (temporary file beside the target, fsync, rename), so a runtime never
//! executes a half-written binary. The directory is upstream's `HOST_CNI_BIN_PATH`. With
//! `--primary-rp-filter`, also sets the primary interface's rp_filter (loose; strict when
//! `AWS_VPC_CNI_NODE_PORT_SUPPORT=false`), which ipamd's unprivileged container cannot (its
//! /proc/sys is read-only) and without which, loose, it does not report ready.

use std::path::PathBuf;

use crate::CliError;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "/app/aws-cni")]
    from: PathBuf,
    /// The host's CNI bin directory as mounted in the container; the plugin goes in as aws-cni.
    #[arg(
        long,
        env = "HOST_CNI_BIN_PATH",
        value_name = "HOST_CNI_BIN_PATH",
        default_value = "/host/opt/cni/bin"
    )]
    bin_dir: PathBuf,
    /// The destination file itself (instead of <bin-dir>/aws-cni).
    #[arg(long)]
    to: Option<PathBuf>,
    /// Also set the primary interface's rp_filter (the interface with the MAC instance metadata
    /// names): loose (2), or strict (1) when AWS_VPC_CNI_NODE_PORT_SUPPORT is false, as
    /// upstream. Needs a privileged container on the host's network.
    #[arg(long)]
    primary_rp_filter: bool,
    /// Upstream's NodePort support switch (Go booleans; empty: true): decides the rp_filter.
    #[arg(
        long,
        env = "AWS_VPC_CNI_NODE_PORT_SUPPORT",
        value_name = "AWS_VPC_CNI_NODE_PORT_SUPPORT"
    )]
    node_port_support: Option<String>,
}

/// The interface of the node's namespace with this MAC (from /sys/class/net).
fn interface_with_mac(mac: &str) -> Result<String, CliError> {
    let entries = std::fs::read_dir("/sys/class/net")
        .map_err(|e| CliError::Failed(format!("listing /sys/class/net: {e}")))?;
    for entry in entries.flatten() {
        let address = std::fs::read_to_string(entry.path().join("address")).unwrap_or_default();
        if address.trim().eq_ignore_ascii_case(mac) {
            return Ok(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Err(CliError::Failed(format!(
        "no interface has the primary MAC {mac} that instance metadata names"
    )))
}

/// The primary interface's rp_filter value: "2" (loose), "1" (strict) without NodePort support.
fn rp_filter_value(node_port_support: Option<&str>) -> Result<&'static str, CliError> {
    match node_port_support.filter(|v| !v.is_empty()) {
        None => Ok("2"),
        Some(v) => match ipamd_settings::parse_bool(v) {
            Ok(true) => Ok("2"),
            Ok(false) => Ok("1"),
            Err(e) => Err(CliError::Input(format!(
                "AWS_VPC_CNI_NODE_PORT_SUPPORT={v:?}: {e}"
            ))),
        },
    }
}

fn set_primary_rp_filter(value: &str) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("tokio runtime: {e}")))?;
    let id = runtime
        .block_on(ec2::fetch_identity(None))
        .map_err(|e| CliError::Failed(format!("the primary interface: {e}")))?;
    let interface = interface_with_mac(&id.primary_mac)?;
    let path = format!("/proc/sys/net/ipv4/conf/{interface}/rp_filter");
    std::fs::write(&path, value).map_err(|e| {
        CliError::Failed(format!(
            "setting {path} to {value}: {e}; the init container must be privileged"
        ))
    })?;
    println!(
        "net.ipv4.conf.{interface}.rp_filter = {value} (primary interface {})",
        id.primary_mac
    );
    Ok(())
}

pub fn run(args: &Args) -> Result<(), CliError> {
    let to = args
        .to
        .clone()
        .unwrap_or_else(|| args.bin_dir.join("aws-cni"));
    let rp_filter = rp_filter_value(args.node_port_support.as_deref())?;
    install(&args.from, &to)?;
    if args.primary_rp_filter {
        set_primary_rp_filter(rp_filter)?;
    }
    Ok(())
}

fn install(from: &std::path::Path, to: &std::path::Path) -> Result<(), CliError> {
    let fail = |what: &str, e: std::io::Error| {
        CliError::Failed(format!(
            "install {} -> {}: {what}: {e}",
            from.display(),
            to.display()
        ))
    };
    let bytes = std::fs::read(from).map_err(|e| fail("read", e))?;
    files::write_atomic(to, &bytes, 0o755).map_err(|e| fail("write", e))?;
    println!("installed {} ({} bytes)", to.display(), bytes.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rp_filter_follows_node_port_support() {
        for (v, want) in [
            (None, Some("2")),
            (Some(""), Some("2")),
            (Some("true"), Some("2")),
            (Some("F"), Some("1")),
            (Some("false"), Some("1")),
            (Some("off"), None),
        ] {
            assert_eq!(super::rp_filter_value(v).ok(), want, "{v:?}");
        }
    }
}
