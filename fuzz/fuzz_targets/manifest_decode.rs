//! libFuzzer target `manifest_decode`: see `varve_fuzz::targets::manifest_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::manifest_decode(data));
