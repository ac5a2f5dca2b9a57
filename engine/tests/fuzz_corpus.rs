//! Replays every fuzz corpus and regression input (`fuzz/corpus/<target>/`
//! and `fuzz/regressions/<target>/`) through the same target functions the
//! fuzzers run, as an ordinary test, so CI checks them on the stable
//! toolchain. A target fails by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../fuzz/src/targets.rs"]
#[allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
mod targets;

use std::path::PathBuf;

#[test]
fn every_corpus_and_regression_input_replays() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for (name, target) in targets::TARGETS {
        for kind in ["corpus", "regressions"] {
            let dir = root.join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
            paths.sort();
            for path in paths {
                let data = std::fs::read(&path).unwrap();
                let result = std::panic::catch_unwind(|| target(&data));
                assert!(result.is_ok(), "{name}: {} panicked", path.display());
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 16, "only {replayed} inputs found");
    eprintln!("replayed {replayed} fuzz inputs");
}

/// Every target accepts the empty input and a few degenerate ones.
#[test]
fn every_target_survives_degenerate_inputs() {
    for (_, target) in targets::TARGETS {
        for data in [&b""[..], &[0u8; 64][..], &[0xff; 64][..]] {
            target(data);
        }
    }
}

/// The whole-store seeds are stores that open and hold their keys, so
/// the mutations of `store_open` start from real stores.
#[test]
fn store_open_seeds_are_stores_that_open() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/store_open");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let (fs, opts) = targets::build_store(&data);
        let db = varve_db::Db::open(targets::STORE_DIR, opts.fs(fs))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let keys = db.iter().count();
        assert!(keys >= 10, "{}: {keys} keys", path.display());
        db.close().unwrap();
        seeds += 1;
    }
    assert!(seeds >= 3, "{seeds} seeds");
}
