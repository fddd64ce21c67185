use std::io::{Read, Write};
use std::process::ExitCode;

use aws_cni::conf::{CniEnv, NetConf};

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let version = NetConf::parse(&stdin)
        .map(|c| c.cni_version)
        .unwrap_or_else(|_| "1.1.0".to_string());
    let result =
        CniEnv::from_lookup(|k| std::env::var(k).ok()).and_then(|env| aws_cni::run(&env, &stdin));
    let mut out = std::io::stdout().lock();
    match result {
        Ok(text) => {
            if !text.is_empty() {
                let _ = writeln!(out, "{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&version));
            ExitCode::FAILURE
        }
    }
}
