//! The checkpoint file, in the existing implementation's format so a node can switch
//! implementations without losing running pods, and the atomic write that keeps it whole.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{AllocKey, Datastore, PodMetadata, Time};

pub const VERSION: &str = "vpc-cni-ipam/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: String,
    pub allocations: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(rename = "networkName")]
    pub network_name: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(rename = "ifName")]
    pub if_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// Unix nanoseconds.
    #[serde(rename = "allocationTimestamp", default)]
    pub allocation_timestamp: i64,
    #[serde(default)]
    pub metadata: EntryMetadata,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMetadata {
    #[serde(
        rename = "k8sPodNamespace",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub pod_namespace: String,
    #[serde(
        rename = "k8sPodName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub pod_name: String,
}

/// A restorable allocation read from a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restorable {
    pub key: AllocKey,
    pub ip: Ipv4Addr,
    pub assigned_at: Time,
    pub metadata: PodMetadata,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("checkpoint is not valid JSON of the vpc-cni-ipam format: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("checkpoint version is {found:?}; this ipamd reads {VERSION:?}")]
    Version { found: String },
    #[error("checkpoint entry {index} ({key}) has an invalid IPv4 address {value:?}")]
    BadAddress {
        index: usize,
        key: String,
        value: String,
    },
    #[error("checkpoint entries {first} and {second} both hold {ip}")]
    DuplicateAddress {
        first: usize,
        second: usize,
        ip: Ipv4Addr,
    },
}

impl Checkpoint {
    pub fn from_datastore(ds: &Datastore) -> Self {
        Checkpoint {
            version: VERSION.to_string(),
            allocations: ds
                .allocations()
                .map(|(key, a)| Entry {
                    network_name: key.network_name.clone(),
                    container_id: key.container_id.clone(),
                    if_name: key.if_name.clone(),
                    ipv4: Some(a.ip.to_string()),
                    ipv6: None,
                    allocation_timestamp: i64::try_from(a.assigned_at.unix_nanos())
                        .unwrap_or(i64::MAX),
                    metadata: EntryMetadata {
                        pod_namespace: a.metadata.namespace.clone(),
                        pod_name: a.metadata.name.clone(),
                    },
                })
                .collect(),
        }
    }

    /// Parses and checks a checkpoint: the version, every address, no address twice.
    pub fn parse(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let checkpoint: Checkpoint = serde_json::from_slice(bytes)?;
        if checkpoint.version != VERSION {
            return Err(CheckpointError::Version {
                found: checkpoint.version,
            });
        }
        let mut seen = std::collections::BTreeMap::new();
        for (index, r) in checkpoint.restorable()?.iter().enumerate() {
            if let Some(first) = seen.insert(r.ip, index) {
                return Err(CheckpointError::DuplicateAddress {
                    first,
                    second: index,
                    ip: r.ip,
                });
            }
        }
        Ok(checkpoint)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The IPv4 allocations (IPv6-only entries are not ours to restore).
    pub fn restorable(&self) -> Result<Vec<Restorable>, CheckpointError> {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(|(index, e)| {
                let value = e.ipv4.as_deref().filter(|v| !v.is_empty())?;
                let key = AllocKey::new(&e.network_name, &e.container_id, &e.if_name);
                Some(match value.parse::<Ipv4Addr>() {
                    Ok(ip) => Ok(Restorable {
                        key,
                        ip,
                        assigned_at: Time::from_unix_nanos(
                            u64::try_from(e.allocation_timestamp).unwrap_or(0),
                        ),
                        metadata: PodMetadata {
                            namespace: e.metadata.pod_namespace.clone(),
                            name: e.metadata.pod_name.clone(),
                        },
                    }),
                    Err(_) => Err(CheckpointError::BadAddress {
                        index,
                        key: key.to_string(),
                        value: value.to_string(),
                    }),
                })
            })
            .collect()
    }
}

/// The outcome of reading the checkpoint at start-up.
#[derive(Debug)]
pub enum Loaded {
    /// No file: a fresh node.
    Missing,
    Read(Checkpoint),
    /// The file could not be used; it was moved to `moved_to` and the state must be rebuilt.
    Quarantined {
        moved_to: PathBuf,
        error: CheckpointError,
    },
}

/// Reads the checkpoint; a file that cannot be parsed is renamed aside, never deleted.
pub fn load(path: &Path, now: Time) -> Result<Loaded, CheckpointError> {
    let io_err = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => return Err(io_err(e)),
    };
    match Checkpoint::parse(&bytes) {
        Ok(c) => Ok(Loaded::Read(c)),
        Err(error) => {
            let mut moved_to = path.as_os_str().to_owned();
            moved_to.push(format!(".corrupt-{}", now.unix_nanos()));
            let moved_to = PathBuf::from(moved_to);
            fs::rename(path, &moved_to).map_err(io_err)?;
            files::sync_parent(path).map_err(io_err)?;
            Ok(Loaded::Quarantined { moved_to, error })
        }
    }
}

/// The checkpoint lists every pod with its address: readable by root only.
pub const MODE: u32 = 0o600;

/// Writes the checkpoint so that a crash leaves either the old or the new file, never a torn one.
pub fn store(path: &Path, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    files::write_atomic(path, &checkpoint.to_json(), MODE).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint as the existing implementation writes it.
    const THEIRS: &str = r#"{"version":"vpc-cni-ipam/1","allocations":[{"networkName":"aws-cni","containerID":"6f4b1c","ifName":"eth0","ipv4":"100.64.3.7","allocationTimestamp":1700000000123456789,"metadata":{"k8sPodNamespace":"default","k8sPodName":"web-0"}},{"networkName":"aws-cni","containerID":"v6only","ifName":"eth0","ipv6":"2001:db8::5","allocationTimestamp":1700000000000000000,"metadata":{}}]}"#;

    #[test]
    fn reads_the_existing_format() {
        let c = Checkpoint::parse(THEIRS.as_bytes()).unwrap();
        let r = c.restorable().unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].key, AllocKey::new("aws-cni", "6f4b1c", "eth0"));
        assert_eq!(r[0].ip, "100.64.3.7".parse::<Ipv4Addr>().unwrap());
        assert_eq!(r[0].assigned_at.unix_nanos(), 1_700_000_000_123_456_789);
        assert_eq!(r[0].metadata.name, "web-0");
    }

    #[test]
    fn round_trips_byte_for_byte() {
        let c = Checkpoint::parse(THEIRS.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(c.to_json()).unwrap(), THEIRS);
    }

    #[test]
    fn refuses_bad_content_with_the_reason() {
        let bad_version = THEIRS.replace("vpc-cni-ipam/1", "vpc-cni-ipam/9");
        let err = Checkpoint::parse(bad_version.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("vpc-cni-ipam/9"), "{err}");
        let bad_ip = THEIRS.replace("100.64.3.7", "100.64.3.700");
        let err = Checkpoint::parse(bad_ip.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("100.64.3.700"), "{err}");
        let dup = THEIRS.replace("\"ipv6\":\"2001:db8::5\"", "\"ipv4\":\"100.64.3.7\"");
        let err = Checkpoint::parse(dup.as_bytes()).unwrap_err();
        assert!(matches!(
            err,
            CheckpointError::DuplicateAddress {
                first: 0,
                second: 1,
                ..
            }
        ));
        assert!(Checkpoint::parse(b"{\"version\":").is_err());
    }

    #[test]
    fn load_missing_then_store_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ipam.json");
        assert!(matches!(
            load(&path, Time::from_secs(1)).unwrap(),
            Loaded::Missing
        ));
        let c = Checkpoint::parse(THEIRS.as_bytes()).unwrap();
        store(&path, &c).unwrap();
        match load(&path, Time::from_secs(1)).unwrap() {
            Loaded::Read(read) => assert_eq!(read, c),
            other => panic!("expected the stored checkpoint, got {other:?}"),
        }
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ipam.json")]);
    }

    #[test]
    fn the_checkpoint_is_private_even_over_an_older_public_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        fs::write(&path, b"{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        // A temporary file left by a crash, world-readable.
        let tmp = dir
            .path()
            .join(format!("ipam.json.tmp-{}", std::process::id()));
        fs::write(&tmp, b"").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o666)).unwrap();
        store(&path, &Checkpoint::parse(THEIRS.as_bytes()).unwrap()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "checkpoint mode {mode:o}");
    }

    #[test]
    fn an_unreadable_checkpoint_is_an_error_not_a_fresh_node() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading fails with an I/O error.
        let path = dir.path().join("ipam.json");
        fs::create_dir(&path).unwrap();
        let err = load(&path, Time::from_secs(1)).unwrap_err();
        assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
        assert!(err.to_string().contains("ipam.json"), "{err}");
        assert!(path.is_dir(), "the unreadable checkpoint was touched");
    }

    #[test]
    fn corrupt_file_is_moved_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        fs::write(
            &path,
            b"{\"version\":\"vpc-cni-ipam/1\",\"allocations\":[{trunc",
        )
        .unwrap();
        match load(&path, Time::from_secs(42)).unwrap() {
            Loaded::Quarantined { moved_to, error } => {
                assert!(!path.exists());
                assert_eq!(
                    fs::read(&moved_to).unwrap(),
                    b"{\"version\":\"vpc-cni-ipam/1\",\"allocations\":[{trunc"
                );
                assert!(moved_to.to_string_lossy().ends_with(".corrupt-42000000000"));
                assert!(error.to_string().contains("not valid JSON"), "{error}");
            }
            other => panic!("expected quarantine, got {other:?}"),
        }
    }

    #[test]
    fn from_datastore_writes_every_allocation() {
        let mut ds = crate::datastore::tests::node_with_addresses(3);
        let now = Time::from_secs(100);
        let key = AllocKey::new("aws-cni", "c1", "eth0");
        let meta = PodMetadata {
            namespace: "ns".into(),
            name: "p".into(),
        };
        let a = ds.assign(&key, meta.clone(), now).unwrap();
        let c = Checkpoint::from_datastore(&ds);
        let r = Checkpoint::parse(&c.to_json())
            .unwrap()
            .restorable()
            .unwrap();
        assert_eq!(
            r,
            vec![Restorable {
                key,
                ip: a.ip,
                assigned_at: now,
                metadata: meta
            }]
        );
    }
}
