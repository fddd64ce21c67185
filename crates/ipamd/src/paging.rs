//! Paging advice for ipamd's own code.
//!
//! ipamd's resident memory is mostly its binary's code pages. On a fault in a file mapping the
//! kernel maps up to 64 KiB around the page (fault-around) and reads ahead: code that runs once,
//! spread over the binary, leaves several times its size resident and in the page cache charged
//! to the pod. Advising random access for the binary's own mappings maps the pages that run and
//! no others (docs/benchmarks.md has the figures). It is advice only: no content changes, and
//! when it cannot be given ipamd logs why and runs as before, with more memory.

use std::ffi::c_void;
use std::ptr::NonNull;

use nix::sys::mman::{MmapAdvise, madvise};

/// The address ranges of `maps` (the text of `/proc/self/maps`) that map the file `exe`.
pub fn own_mappings(maps: &str, exe: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            // start-end perms offset dev inode path (the path may hold spaces)
            let mut fields = line.splitn(6, char::is_whitespace);
            let range = fields.next()?;
            let path = fields.nth(4)?.trim_start();
            if path != exe {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let (start, end) = (
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
            );
            (end > start).then_some((start, end))
        })
        .collect()
}

/// Advises random access (no fault-around, no read-ahead) for every mapping of the running
/// executable; returns the bytes advised.
pub fn random_access_for_own_code() -> Result<usize, String> {
    let exe =
        std::fs::read_link("/proc/self/exe").map_err(|e| format!("reading /proc/self/exe: {e}"))?;
    let exe = exe.to_string_lossy();
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| format!("reading /proc/self/maps: {e}"))?;
    let ranges = own_mappings(&maps, &exe);
    if ranges.is_empty() {
        return Err(format!("/proc/self/maps lists no mapping of {exe}"));
    }
    let mut advised = 0;
    for (start, end) in ranges {
        let addr = NonNull::new(start as *mut c_void)
            .ok_or_else(|| format!("a mapping of {exe} at address 0"))?;
        // SAFETY: MADV_RANDOM only changes how the kernel pages this range in; it never
        // changes, frees or moves memory, and the range is a live mapping of our own binary.
        #[allow(unsafe_code)]
        unsafe { madvise(addr, end - start, MmapAdvise::MADV_RANDOM) }
            .map_err(|e| format!("madvise(MADV_RANDOM) on {exe} {start:#x}-{end:#x}: {e}"))?;
        advised += end - start;
    }
    Ok(advised)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0000000-55d0c0400000 r--p 00000000 fd:01 1234                       /usr/bin/ipamd
55d0c0400000-55d0c0c00000 r-xp 00400000 fd:01 1234                       /usr/bin/ipamd
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000100000 r-xp 00000000 fd:01 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 r-xp 00000000 fd:01 77                         /opt/my bin/ipamd (deleted)
7f0000400000-7f0000401000 rw-p 00000000 00:00 0 
";

    #[test]
    fn only_the_executables_own_mappings() {
        assert_eq!(
            own_mappings(MAPS, "/usr/bin/ipamd"),
            vec![
                (0x55d0_c000_0000, 0x55d0_c040_0000),
                (0x55d0_c040_0000, 0x55d0_c0c0_0000)
            ]
        );
        // A replaced binary: both /proc/self/exe and maps say "(deleted)"; spaces in the path.
        assert_eq!(
            own_mappings(MAPS, "/opt/my bin/ipamd (deleted)"),
            vec![(0x7f00_0020_0000, 0x7f00_0030_0000)]
        );
        assert!(own_mappings(MAPS, "/usr/bin/other").is_empty());
        assert!(own_mappings("garbage\n\n1-0 r--p", "/usr/bin/ipamd").is_empty());
    }

    /// In this test process: every mapping of the test binary is then marked `rr` (random
    /// read advised) in /proc/self/smaps.
    #[test]
    fn the_running_binary_is_advised_random_access() {
        let advised = random_access_for_own_code().expect("advice");
        assert!(advised > 0);
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let exe = std::fs::read_link("/proc/self/exe").expect("exe");
        let exe = exe.to_string_lossy();
        let mut own = 0;
        let mut in_own = false;
        for line in smaps.lines() {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                if in_own {
                    own += 1;
                    assert!(
                        flags.split_whitespace().any(|f| f == "rr"),
                        "a mapping of {exe} without rr: {flags}"
                    );
                }
            } else if line.contains('-') && line.split_whitespace().count() >= 5 {
                in_own = line.ends_with(exe.as_ref());
            }
        }
        assert!(own > 0, "no mapping of {exe} found in smaps");
    }
}
