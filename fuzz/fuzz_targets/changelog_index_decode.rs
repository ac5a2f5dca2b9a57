//! libFuzzer target `changelog_index_decode`: see `varve_fuzz::targets::changelog_index_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::changelog_index_decode(data));
