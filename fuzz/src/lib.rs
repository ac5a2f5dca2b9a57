//! Varve's fuzz targets as plain functions (see `targets`), shared by the
//! libFuzzer binaries in `fuzz_targets/`, the stable driver `run` and the
//! corpus replay test of the engine.

pub mod targets;
