//! vpc-testbed: AWS on one machine. An EC2 + instance-metadata emulator, and a VPC made of
//! network namespaces (nodes, a router that is the VPC fabric, an internet, a NAT gateway)
//! that follows the emulator's state the way EC2's hypervisor and network would.

pub mod agents;
pub mod cmd;
pub mod config;
pub mod containerd;
pub mod cri;
pub mod daemon;
pub mod demo;
pub mod emulator;
pub mod fabric;
pub mod network;
pub mod pods;
pub mod relay;
pub mod seed;
pub mod state;
pub mod sweep;

/// Testbed failures, each naming the step.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Emulator(#[from] emulator::EmulatorError),
    #[error(transparent)]
    Seed(#[from] seed::SeedError),
    #[error(transparent)]
    Cmd(#[from] cmd::CmdError),
    #[error(transparent)]
    Relay(#[from] relay::RelayError),
    #[error(transparent)]
    Containerd(#[from] containerd::ContainerdError),
    #[error(transparent)]
    Cri(#[from] cri::CriError),
    #[error("{0}")]
    Other(String),
}
