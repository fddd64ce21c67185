//! Network namespaces: a handle compared by (device, inode), and two safe ways to work inside
//! one — a dedicated thread ([`Netns::run`]) or a guard that always switches back
//! ([`Netns::enter`]). Sockets opened inside stay in that namespace and can be used from
//! anywhere afterwards.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

/// Where `ip netns add NAME` puts its bind mount.
pub const NAMED_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot switch this thread into network namespace {path}: {source}")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("the thread working in network namespace {path} panicked")]
    Panicked { path: PathBuf },
}

#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetnsError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(Netns { file, path })
    }

    /// A namespace made by `ip netns add NAME`.
    pub fn named(name: &str) -> Result<Self, NetnsError> {
        Self::open(Path::new(NAMED_DIR).join(name))
    }

    /// The calling thread's namespace.
    pub fn current() -> Result<Self, NetnsError> {
        Self::open("/proc/thread-self/ns/net")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// (device, inode): equal for two handles of the same namespace.
    pub fn id(&self) -> Result<(u64, u64), NetnsError> {
        let m = self.file.metadata().map_err(|source| NetnsError::Open {
            path: self.path.clone(),
            source,
        })?;
        Ok((m.dev(), m.ino()))
    }

    fn switch_to(&self) -> Result<(), NetnsError> {
        setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
            path: self.path.clone(),
            source,
        })
    }

    /// Runs `f` on a fresh thread inside this namespace; the caller's thread never switches.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.switch_to()?;
                    Ok(f())
                })
                .join()
                .map_err(|_| NetnsError::Panicked {
                    path: self.path.clone(),
                })?
        })
    }

    /// Switches the calling thread into this namespace until the guard drops.
    pub fn enter(&self) -> Result<NetnsGuard, NetnsError> {
        let original = Netns::current()?;
        self.switch_to()?;
        Ok(NetnsGuard { original })
    }
}

/// Switches back on drop, on every path out (early returns and unwinding included).
#[must_use = "the thread switches back when the guard drops"]
pub struct NetnsGuard {
    original: Netns,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = self.original.switch_to() {
            // A thread left in a pod's namespace would do the node's work there: stop instead.
            eprintln!("fatal: {e}");
            std::process::abort();
        }
    }
}
