//! libFuzzer target `ttl_manifest_decode`: see `varve_fuzz::targets::ttl_manifest_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::ttl_manifest_decode(data));
