//! libFuzzer target `sst_block_decode`: see `varve_fuzz::targets::sst_block_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::sst_block_decode(data));
