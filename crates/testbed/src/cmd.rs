//! The testbed drives namespaces with iproute2 and iptables, as a person would; every failure
//! names the command and what it printed.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {message}")]
pub struct CmdError {
    pub command: String,
    pub message: String,
}

fn render(args: &[&str]) -> String {
    args.join(" ")
}

/// Runs `args[0]` with the rest; returns stdout.
pub fn run(args: &[&str]) -> Result<String, CmdError> {
    run_with_input(args, None)
}

pub fn run_with_input(args: &[&str], input: Option<&str>) -> Result<String, CmdError> {
    let fail = |message: String| CmdError {
        command: render(args),
        message,
    };
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| fail("empty command".into()))?;
    let mut child = Command::new(program)
        .args(rest)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(fail(format!("{} ({stderr})", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n NS ...`
pub fn ip(ns: &str, args: &[&str]) -> Result<String, CmdError> {
    let mut full = vec!["ip", "-n", ns];
    full.extend_from_slice(args);
    run(&full)
}

/// `ip netns exec NS ...`
pub fn in_ns(ns: &str, args: &[&str]) -> Result<String, CmdError> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    run(&full)
}

pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), CmdError> {
    in_ns(ns, &["sysctl", "-q", "-w", &format!("{key}={value}")]).map(|_| ())
}

/// Named namespaces whose names start with `prefix`.
pub fn namespaces_with_prefix(prefix: &str) -> Result<Vec<String>, CmdError> {
    Ok(run(&["ip", "netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect())
}
