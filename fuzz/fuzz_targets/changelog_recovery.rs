//! libFuzzer target `changelog_recovery`: see `varve_fuzz::targets::changelog_recovery`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::changelog_recovery(data));
