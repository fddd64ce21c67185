//! Removes everything a run made (or a crashed run left): processes in its namespaces, the
//! namespaces, its emulator, its state directory. Keeps going past failures and reports them.

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cmd;
use crate::state::state_dir;

fn signal(pid: i32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid), sig);
}

/// Exists and is not a zombie (whose parent has yet to reap it).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Processes (other than this one) whose command line (NUL-separated) satisfies `f`.
pub(crate) fn pids_matching(f: impl Fn(&str) -> bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| f(&String::from_utf8_lossy(&c)))
                .unwrap_or(false)
        })
        .collect()
}

/// Processes whose command line mentions `needle` (the run's state directory).
fn pids_mentioning(needle: &str) -> Vec<i32> {
    pids_matching(|cmdline| cmdline.replace('\0', " ").contains(needle))
}

pub(crate) fn terminate(pids: &[i32]) {
    for p in pids {
        signal(*p, Signal::SIGTERM);
    }
    for _ in 0..30 {
        if pids.iter().all(|p| !alive(*p)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for p in pids {
        signal(*p, Signal::SIGKILL);
    }
}

/// Sweeps the run `prefix`; `except` is a pid to spare (the daemon sweeping its own run).
pub fn sweep(prefix: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let namespaces = match cmd::namespaces_with_prefix(&format!("{prefix}-")) {
        Ok(n) => n,
        Err(e) => {
            errors.push(e.to_string());
            Vec::new()
        }
    };
    let mut in_namespaces = Vec::new();
    for ns in &namespaces {
        if let Ok(out) = cmd::run(&["ip", "netns", "pids", ns]) {
            in_namespaces.extend(out.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    terminate(&in_namespaces);
    let dir = state_dir(prefix);
    terminate(&pids_mentioning(&format!("{}/", dir.display())));
    // What a node's containerd left: its containers (in the run's pod cgroups), then the
    // sandbox namespaces and root filesystems mounted under the state directory.
    errors.extend(crate::containerd::sweep_cgroups(prefix));
    errors.extend(crate::containerd::unmount_under(&dir));
    errors.extend(crate::containerd::sweep_cni_cache(&dir));
    errors.extend(crate::containerd::sweep_shim_sockets(&dir));
    for ns in &namespaces {
        if let Err(e) = cmd::run(&["ip", "netns", "del", ns]) {
            errors.push(e.to_string());
        }
    }
    if Path::new(&dir).exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        errors.push(format!("remove {}: {e}", dir.display()));
    }
    errors
}
