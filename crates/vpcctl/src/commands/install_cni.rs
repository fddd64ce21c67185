//! `vpcctl install-cni`: the DaemonSet's init step. Copies the plugin into the host's CNI bin
//! directory atomically (temporary file beside the target, fsync, rename), so a runtime never
//! executes a half-written binary.

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
    Ok(())
}
