//! libFuzzer target `restore_marker_decode`: see `varve_fuzz::targets::restore_marker_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::restore_marker_decode(data));
