//! libFuzzer target `positions_roundtrip`: see `varve_fuzz::targets::positions_roundtrip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::positions_roundtrip(data));
