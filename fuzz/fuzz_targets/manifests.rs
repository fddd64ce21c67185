//! The manifests ipamd reads (Node and ENIConfig objects, YAML or JSON, several documents).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::manifests::run(data));
