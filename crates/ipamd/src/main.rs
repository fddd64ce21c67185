use std::process::ExitCode;

use clap::Parser;
use ipamd::cli::Cli;

fn main() -> ExitCode {
    // First, while little of the binary has been paged in (paging.rs).
    let paging = ipamd::paging::random_access_for_own_code();
    let cli = Cli::parse();
    if let Err(e) = ipamd::logging::init(&cli.settings) {
        eprintln!("ipamd: {e}");
        return ExitCode::from(2);
    }
    match paging {
        Ok(bytes) => tracing::debug!(bytes, "own code advised random access"),
        Err(e) => tracing::warn!(
            error = e,
            "own code keeps the kernel's read-ahead: more memory"
        ),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ipamd: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ipamd::app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ipamd: {e}");
            ExitCode::FAILURE
        }
    }
}
