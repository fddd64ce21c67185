//! `vpcctl crd`: the ENIConfig CustomResourceDefinition generated from the Rust type.

use std::io::Write;

use crate::CliError;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let yaml = cluster::crd_yaml().map_err(|e| CliError::Failed(format!("CRD to YAML: {e}")))?;
    out.write_all(yaml.as_bytes())?;
    Ok(())
}
