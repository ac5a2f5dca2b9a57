//! libFuzzer target `sst_table_decode`: see `varve_fuzz::targets::sst_table_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::sst_table_decode(data));
