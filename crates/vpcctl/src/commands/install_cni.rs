//! `vpcctl install-cni`: the DaemonSet's init step. Copies the plugin into the host's CNI bin
//! directory atomically (temporary file beside the target, fsync, rename), so a runtime never
//! executes a half-written binary; with `--primary-rp-filter`, also loosens the primary
//! interface's rp_filter, which ipamd's unprivileged container cannot (its /proc/sys is
//! read-only) and without which it does not report ready.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::CliError;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "/app/aws-cni")]
    from: PathBuf,
    #[arg(long, default_value = "/host/opt/cni/bin/aws-cni")]
    to: PathBuf,
    /// Also set `net.ipv4.conf.<primary>.rp_filter=2` (loose), the primary interface being the
    /// one with the MAC instance metadata names. Needs a privileged container on the host's
    /// network.
    #[arg(long)]
    primary_rp_filter: bool,
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

fn loosen_primary_rp_filter() -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("tokio runtime: {e}")))?;
    let id = runtime
        .block_on(ec2::fetch_identity(None))
        .map_err(|e| CliError::Failed(format!("the primary interface: {e}")))?;
    let interface = interface_with_mac(&id.primary_mac)?;
    let path = format!("/proc/sys/net/ipv4/conf/{interface}/rp_filter");
    std::fs::write(&path, "2").map_err(|e| {
        CliError::Failed(format!(
            "setting {path} to 2 (loose): {e}; the init container must be privileged"
        ))
    })?;
    println!(
        "net.ipv4.conf.{interface}.rp_filter = 2 (primary interface {})",
        id.primary_mac
    );
    Ok(())
}

pub fn run(args: &Args) -> Result<(), CliError> {
    let fail = |what: &str, e: std::io::Error| {
        CliError::Failed(format!(
            "install {} -> {}: {what}: {e}",
            args.from.display(),
            args.to.display()
        ))
    };
    let bytes = std::fs::read(&args.from).map_err(|e| fail("read", e))?;
    let dir = args
        .to
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(|e| fail("create the directory", e))?;
    let name = args
        .to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &args.to)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    println!("installed {} ({} bytes)", args.to.display(), bytes.len());
    if args.primary_rp_filter {
        loosen_primary_rp_filter()?;
    }
    Ok(())
}
