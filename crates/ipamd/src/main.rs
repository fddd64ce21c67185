use std::process::ExitCode;

use clap::Parser;
use ipamd::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = ipamd::logging::init(&cli.settings) {
        eprintln!("ipamd: {e}");
        return ExitCode::from(2);
    }
    ipamd::memory::limit_arenas();
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
    match runtime.block_on(Box::pin(ipamd::app::run(cli))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ipamd: {e}");
            ExitCode::FAILURE
        }
    }
}
