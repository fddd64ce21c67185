//! Shared with the other crates' testbed tests.

#![allow(dead_code, unused_imports)]

pub use testsupport::testbed::*;
