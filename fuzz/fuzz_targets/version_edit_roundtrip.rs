//! libFuzzer target `version_edit_roundtrip`: see `varve_fuzz::targets::version_edit_roundtrip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::version_edit_roundtrip(data));
