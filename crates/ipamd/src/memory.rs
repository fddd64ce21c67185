//! ipamd's resident memory after start-up and after bursts.
//!
//! The heap: glibc keeps what a burst of requests freed (110 concurrent ADDs leave about 3 MB of
//! free heap behind, one gRPC connection's buffers each) until the top of its arena is free, which
//! in a long-lived daemon is seldom; ipamd hands it back to the kernel within [`TRIM_INTERVAL`].
//! One arena for every thread: ipamd's handful of threads hardly contend, and each extra arena
//! would keep its own free memory.
//!
//! The code: the kernel keeps every code page a process touched mapped for the rest of its life,
//! and maps page-cache folios whole (64 kB and more), so after start-up (argument and settings
//! parsing, the SDK's configuration chain, instance metadata, the ENIConfig checks) or a burst of
//! pods nearly all of ipamd's 7 MB of code stays resident though little of it runs again. Once
//! the node is network-ready, and again whenever an interval has passed without a pod ADD after
//! some, ipamd unmaps its code and constant pages ([`release_code`]), a working-set trim: they
//! stay in the page cache, and what runs again is mapped again on its next call, by minor faults
//! without I/O (a fraction of a millisecond on the first ADD after a quiet spell); what does not
//! is plain page cache the kernel may reclaim first.
//!
//! Lifecycle: nothing is kept; a restart begins with a fresh heap and maps its code anew. On
//! another C library the allocator is left as it is (the heap functions do nothing there).
#![allow(unsafe_code)]

use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

/// How often the free heap is looked at; a trim runs only when there is enough to give back.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(5);
/// Free heap worth a trim (below it, the pages would soon be faulted back in anyway).
pub const TRIM_ABOVE: usize = 512 * 1024;

/// One malloc arena for the whole process; called before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Bytes the allocator holds free (in all arenas), if this C library says.
pub fn free_bytes() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes the arenas' locks and returns a plain struct.
        let info = unsafe { libc::mallinfo2() };
        Some(info.fordblks)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Gives the allocator's free pages back to the kernel; the bytes given back, if known.
pub fn trim() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let before = resident_anon();
        // SAFETY: malloc_trim takes the arenas' locks itself; 0 keeps no extra pad at the top.
        unsafe { libc::malloc_trim(0) };
        Some(before?.saturating_sub(resident_anon()?))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// The process's resident anonymous memory in bytes.
fn resident_anon() -> Option<usize> {
    status_bytes("RssAnon")
}

/// A `… kB` field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    kb.trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<usize>()
        .ok()
        .map(|k| k * 1024)
}

/// Unmaps the process's read-only file pages: code and constants of ipamd and of its shared
/// libraries. Only mappings that hold no anonymous page are touched: those are never written, so
/// nothing but the mapping is lost (the pages stay in the page cache and are mapped again on
/// use). A mapping with a page of its own (relocated data made read-only, a debugger's
/// breakpoint, a uprobe) is left alone. Returns the bytes that were mapped, or what failed.
pub fn release_code() -> Result<usize, String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")
        .map_err(|e| format!("reading /proc/self/smaps: {e}"))?;
    let mut released = 0;
    for (start, end) in releasable_mappings(&smaps) {
        // SAFETY: the range is one whole read-only, private file mapping of this process holding
        // no anonymous page; MADV_DONTNEED only drops its page table entries.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("madvise of {start:#x}-{end:#x}: {e}"));
        }
        released += end - start;
    }
    Ok(released)
}

/// The read-only (`r-xp`, `r--p`) file mappings of a `/proc/<pid>/smaps` listing whose
/// `Anonymous` is 0, as address ranges.
fn releasable_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        if let Some(anon) = line.strip_prefix("Anonymous:") {
            if let Some(range) = current.take()
                && anon.trim() == "0 kB"
            {
                out.push(range);
            }
            continue;
        }
        if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.ends_with(':'))
        {
            continue;
        }
        // A mapping's header: "start-end perms offset dev inode path".
        current = None;
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms), Some(path)) = (fields.next(), fields.next(), fields.nth(3))
        else {
            continue;
        };
        if !matches!(perms, "r-xp" | "r--p") || !path.starts_with('/') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        if let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) {
            current = Some((start, end));
        }
    }
    out
}

/// Every [`TRIM_INTERVAL`]: trims the heap when at least [`TRIM_ABOVE`] more is free than the
/// last trim left (what it could not return is fragments of pages in use), and releases the code
/// once start-up is over (the node was network-ready once) whenever an interval passed without a
/// pod ADD, once per quiet spell. Until told to stop.
pub async fn keep_trimmed(
    node: std::sync::Arc<crate::node::Node>,
    ready: watch::Receiver<crate::readiness::Readiness>,
    mut stop: watch::Receiver<bool>,
) {
    let mut adds = node.metrics.add_requests.get();
    let (mut started, mut released) = (false, false);
    let mut left_free = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TRIM_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        // A node at its max pods is not ready, yet quiet: readiness only marks start-up's end.
        started = started || ready.borrow().is_ok();
        let now = node.metrics.add_requests.get();
        let quiet = now == adds;
        adds = now;
        if !quiet {
            released = false;
        } else if started && !released {
            released = true;
            match release_code() {
                Ok(bytes) => debug!(bytes, "code pages unmapped (a quiet spell)"),
                Err(e) => warn!(error = e, "code pages left mapped"),
            }
        }
        match free_bytes() {
            Some(free) if free >= left_free + TRIM_ABOVE => {
                let returned = trim();
                left_free = free_bytes().unwrap_or(0);
                debug!(
                    returned_bytes = returned,
                    "free heap returned to the kernel"
                );
            }
            Some(free) => left_free = left_free.min(free),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_file_mappings_without_pages_of_their_own_are_released() {
        let smaps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fe:01 123 /usr/bin/ipamd
Rss:                 900 kB
Anonymous:             0 kB
55d0a0100000-55d0a0800000 r-xp 00100000 fe:01 123 /usr/bin/ipamd
Anonymous:             0 kB
55d0a0800000-55d0a0900000 r--p 00800000 fe:01 123 /usr/bin/ipamd
Anonymous:           548 kB
55d0a0900000-55d0a0901000 rw-p 00900000 fe:01 123 /usr/bin/ipamd
Anonymous:             4 kB
7f0000000000-7f0000021000 rw-p 00000000 00:00 0
Anonymous:           132 kB
7f0000100000-7f0000200000 r-xp 00026000 fe:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             4 kB
7f0000200000-7f0000210000 r-xp 00126000 fe:01 456 /usr/lib/x86_64-linux-gnu/libm.so.6
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
7ffd00010000-7ffd00011000 r-xp 00000000 00:00 0
Anonymous:             0 kB
";
        assert_eq!(
            releasable_mappings(smaps),
            vec![
                (0x55d0a0000000, 0x55d0a0100000),
                (0x55d0a0100000, 0x55d0a0800000),
                (0x7f0000200000, 0x7f0000210000)
            ],
            "relocated data, writable data, a libc with a uprobe's page, anonymous memory and \
             the vdso stay"
        );
    }

    /// The process keeps running its code after the release: the pages come back on use.
    #[test]
    fn code_released_runs_again() {
        let resident_file = || status_bytes("RssFile").expect("RssFile in /proc/self/status");
        let file_before = resident_file();
        let released = release_code().expect("madvise of the test's own code");
        let file_after = resident_file();
        assert!(released > 0, "nothing was released");
        assert!(
            file_after < file_before,
            "code pages still mapped: RssFile {file_before} B before, {file_after} B after"
        );
        // Code and constants come back on use: parsing, formatting and the allocator run again.
        let again: u64 = format!("{}", 40 + 2).parse().unwrap();
        assert_eq!(again, 42);
    }

    /// What a burst leaves: many small blocks freed while a later one still holds the arena's
    /// top, so glibc cannot shrink the heap by itself.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_trim_returns_the_memory_a_burst_freed() {
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 2048]).collect();
        let pin = vec![1u8; 2048];
        drop(blocks);
        let free = free_bytes().expect("glibc reports its free heap");
        assert!(
            free >= 4 << 20,
            "8 MB freed but the allocator holds {free} B free"
        );
        let returned = trim().expect("RssAnon is readable");
        assert!(
            returned >= 4 << 20,
            "8 MB freed, trim returned only {returned} B"
        );
        assert_eq!(pin[2047], 1);
    }
}
