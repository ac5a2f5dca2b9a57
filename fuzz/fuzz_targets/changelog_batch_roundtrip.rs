//! libFuzzer target `changelog_batch_roundtrip`: see `varve_fuzz::targets::changelog_batch_roundtrip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::changelog_batch_roundtrip(data));
