//! libFuzzer target `changelog_meta_decode`: see `varve_fuzz::targets::changelog_meta_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::changelog_meta_decode(data));
