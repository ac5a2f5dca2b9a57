//! libFuzzer target `db_model`: see `varve_fuzz::targets::db_model`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::db_model(data));
