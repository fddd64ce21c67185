//! The testbed drives namespaces with iproute2 and iptables, as a person would; every failure
//! names the command and what it printed.

pub use command::CommandError as CmdError;

/// Runs `args[0]` with the rest; returns stdout.
pub fn run(args: &[&str]) -> Result<String, CmdError> {
    command::run(args, None)
}

pub fn run_with_input(args: &[&str], input: Option<&str>) -> Result<String, CmdError> {
    command::run(args, input)
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
