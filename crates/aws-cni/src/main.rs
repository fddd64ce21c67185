use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let outcome = aws_cni::run(|k| std::env::var(k).ok(), &stdin);
    let mut out = std::io::stdout().lock();
    match outcome.result {
        Ok(text) => {
            if !text.is_empty() {
                let _ = writeln!(out, "{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&outcome.cni_version));
            ExitCode::FAILURE
        }
    }
}
