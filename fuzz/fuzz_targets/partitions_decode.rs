//! libFuzzer target `partitions_decode`: see `varve_fuzz::targets::partitions_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| varve_fuzz::targets::partitions_decode(data));
