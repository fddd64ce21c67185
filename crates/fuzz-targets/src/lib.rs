//! The bodies of the fuzz targets, one module each, for every parser of untrusted input. Each
//! `run` panics on a broken invariant. `fuzz/` runs them under libFuzzer (`make fuzz`); the
//! seeds test runs every committed seed (`fuzz/seeds/<target>`) through them in `make test`.

// The targets assert their invariants: a panic is the finding.
#![allow(clippy::unwrap_used)]

pub mod checkpoint;
pub mod cni_conf;
pub mod grpc_requests;
pub mod manifests;

/// A target: the name of its seed directory, and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: [Target; 4] = [
    ("cni_conf", cni_conf::run),
    ("checkpoint", checkpoint::run),
    ("manifests", manifests::run),
    ("grpc_requests", grpc_requests::run),
];
