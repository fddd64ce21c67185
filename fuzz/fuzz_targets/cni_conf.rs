//! The plugin's inputs: the network configuration on stdin and the `CNI_*` environment.
//! Input: the configuration, then after a NUL byte `NAME=value` lines for the environment.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::cni_conf::run(data));
