//! libFuzzer target `changelog_positions_decode`: see `varve_fuzz::targets::changelog_positions_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::changelog_positions_decode(data));
