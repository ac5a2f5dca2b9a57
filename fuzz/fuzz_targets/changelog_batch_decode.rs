//! libFuzzer target `changelog_batch_decode`: see `varve_fuzz::targets::changelog_batch_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::changelog_batch_decode(data));
