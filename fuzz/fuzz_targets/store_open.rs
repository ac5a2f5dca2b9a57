//! libFuzzer target `store_open`: see `varve_fuzz::targets::store_open`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::store_open(data));
