//! `vpcctl`: the operator's CLI.

mod commands;
mod custom_networking;
mod store;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vpcctl",
    version,
    about = "Operate the VPC CNI: max pods, status, ENIConfig checks, custom networking setup"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The kubelet --max-pods for an instance type.
    MaxPods(commands::max_pods::Args),
    /// A running node's ENIs, pool, targets and ENIConfig (from its introspection).
    Status(commands::status::Args),
    /// Set a VPC up for custom networking: plan (print) or apply the reference procedure.
    CustomNetworking(custom_networking::Args),
    /// Check ENIConfigs against EC2 (exit 1 when one is invalid).
    Validate(commands::validate::Args),
    /// Probe ipamd's gRPC health service (exit 0 when SERVING).
    Health(commands::health::Args),
    /// Print the ENIConfig CustomResourceDefinition (apiextensions.k8s.io/v1).
    Crd(commands::crd::Args),
    /// Copy the CNI plugin into the host's CNI bin directory atomically.
    InstallCni(commands::install_cni::Args),
}

/// Failures by kind: bad input exits 2 (like a usage error), anything else 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Input(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("{0}")]
    Failed(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let result = match cli.command {
        Command::MaxPods(args) => commands::max_pods::run(&args, &mut out),
        Command::Health(args) => commands::health::run(&args),
        Command::Status(args) => commands::status::run(&args, &mut out),
        Command::CustomNetworking(args) => custom_networking::run(&args, &mut out),
        Command::Validate(args) => commands::validate::run(&args, &mut out),
        Command::InstallCni(args) => commands::install_cni::run(&args),
        Command::Crd(args) => commands::crd::run(&args, &mut out),
    };
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpcctl: {e}");
            match e {
                CliError::Input(_) => ExitCode::from(2),
                CliError::Output(_) | CliError::Failed(_) => ExitCode::from(1),
            }
        }
    }
}
