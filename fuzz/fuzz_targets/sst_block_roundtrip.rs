//! libFuzzer target `sst_block_roundtrip`: see `varve_fuzz::targets::sst_block_roundtrip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::sst_block_roundtrip(data));
