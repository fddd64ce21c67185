//! ipamd's checkpoint file (`ipam.json`): parsed, and what parses restores into a datastore
//! and survives a round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::checkpoint::run(data));
