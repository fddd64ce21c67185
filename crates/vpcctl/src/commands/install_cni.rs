//! `vpcctl install-cni`: the DaemonSet's init step. Copies the plugin into the host's CNI bin
//! directory atomically (temporary file beside the target, fsync, rename), so a runtime never
//! executes a half-written binary. The directory is upstream's `HOST_CNI_BIN_PATH`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
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
}

pub fn run(args: &Args) -> Result<(), CliError> {
    let to = args
        .to
        .clone()
        .unwrap_or_else(|| args.bin_dir.join("aws-cni"));
    install(&args.from, &to)
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
    let dir = to
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(|e| fail("create the directory", e))?;
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
        std::fs::rename(&tmp, to)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    println!("installed {} ({} bytes)", to.display(), bytes.len());
    Ok(())
}
