//! ipamd's handling of the plugin's AddNetwork/DelNetwork requests, without its EC2 side: each
//! request is decoded from protobuf bytes, keyed as the server keys it, and applied to the pure
//! datastore, whose invariants and checkpoint round trip are checked after every request.
//! Input: frames of [kind byte][length byte][request bytes].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::grpc_requests::run(data));
