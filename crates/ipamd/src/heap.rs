//! ipamd's heap after a burst. glibc keeps what a burst of requests freed (110 concurrent ADDs leave
//! about 3 MB of free heap behind, one gRPC connection's buffers each) until the top of its arena
//! is free, which in a long-lived daemon is seldom; ipamd hands it back to the kernel once it is
//! idle again. One arena for every thread: ipamd's handful of threads hardly contend, and each
//! extra arena would keep its own free memory.
//!
//! Lifecycle: nothing is kept; a restart begins with a fresh heap. Builds on another C library
//! leave the allocator as it is (both functions do nothing there).
#![allow(unsafe_code)]

use std::time::Duration;

use tokio::sync::watch;
use tracing::debug;

/// How often the free heap is looked at; a trim runs only when there is enough to give back.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);
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

/// The process's resident anonymous memory in bytes (`RssAnon` of /proc/self/status).
fn resident_anon() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("RssAnon:"))?;
    kb.trim().strip_suffix("kB")?.trim().parse::<usize>().ok().map(|k| k * 1024)
}

/// Every [`TRIM_INTERVAL`], trims when at least [`TRIM_ABOVE`] is free, until told to stop.
pub async fn keep_trimmed(mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TRIM_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        if free_bytes().is_some_and(|free| free >= TRIM_ABOVE) {
            let returned = trim();
            debug!(returned_bytes = returned, "free heap returned to the kernel");
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// What a burst leaves: many small blocks freed while a later one still holds the arena's
    /// top, so glibc cannot shrink the heap by itself.
    #[test]
    fn a_trim_returns_the_memory_a_burst_freed() {
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 2048]).collect();
        let pin = vec![1u8; 2048];
        drop(blocks);
        let free = free_bytes().expect("glibc reports its free heap");
        assert!(free >= 4 << 20, "8 MB freed but the allocator holds {free} B free");
        let returned = trim().expect("RssAnon is readable");
        assert!(returned >= 4 << 20, "8 MB freed, trim returned only {returned} B");
        assert_eq!(pin[2047], 1);
    }
}
