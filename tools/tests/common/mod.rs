//! Helpers shared by the CLI tests: running the binary, making real stores
//! with the engine, and damaging files.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;
use varve_db::testing::files_ending_with;
use varve_db::varve_changelog::fs::StdFs;
use varve_db::{Db, Options, PartitionedStore, WriteBatch, WriteOptions};

/// The contents of a store: each live key with its value.
pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Every subcommand of `varve`.
pub const SUBCOMMANDS: [&str; 16] = [
    "info",
    "verify",
    "sst",
    "log",
    "manifest",
    "positions",
    "get",
    "scan",
    "put",
    "compact",
    "delete",
    "load",
    "repair",
    "checkpoint",
    "restore",
    "completions",
];

/// What a run of `varve` gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Held by each test of a file whose tests open stores in-process beside
/// `varve` children: a child forked by one test thread inherits the store
/// locks another thread holds until it execs, so a store written there
/// could look locked to the next command.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `varve` with `args`.
pub fn varve(args: &[&str]) -> Run {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_varve"))
        .args(args)
        .output()
        .expect("run varve");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `varve` and expects exit code 0.
pub fn ok(args: &[&str]) -> String {
    let run = varve(args);
    assert_eq!(
        run.code, 0,
        "varve {args:?} failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    run.stdout
}

/// Runs `varve` and expects it to refuse (exit code 2) with `says` in its
/// error output; returns the run for further checks.
pub fn refused(args: &[&str], says: &str) -> Run {
    let run = varve(args);
    assert_eq!(
        run.code, 2,
        "varve {args:?}:\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stderr.contains(says), "varve {args:?}: {}", run.stderr);
    run
}

/// Parses every line of `text` as a JSON object.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// A path as a `&str` argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Makes a closed store in `dir` with two flushed tables (the second
/// overwrites and deletes some keys of the first) and a few writes only in
/// the changelog. Returns the live contents.
pub fn make_store(dir: &Path) -> Model {
    let mut model = BTreeMap::new();
    let db = Db::open(dir, Options::default()).unwrap();
    let put = |model: &mut Model, db: &Db, k: String, v: String| {
        db.put(k.clone(), v.clone()).unwrap();
        model.insert(k.into_bytes(), v.into_bytes());
    };
    for i in 0..300 {
        put(
            &mut model,
            &db,
            format!("key:{i:04}"),
            format!("value-{i}-{}", "x".repeat(i % 40)),
        );
    }
    db.flush().unwrap();
    for i in (0..300).step_by(7) {
        put(&mut model, &db, format!("key:{i:04}"), format!("new-{i}"));
    }
    let mut batch = WriteBatch::new();
    for i in (0..300).step_by(11) {
        batch.delete(format!("key:{i:04}"));
        model.remove(format!("key:{i:04}").as_bytes());
    }
    db.write(batch, WriteOptions::default().sync(true)).unwrap();
    db.flush().unwrap();
    put(
        &mut model,
        &db,
        "tail:a".into(),
        "only in the changelog".into(),
    );
    put(&mut model, &db, "key:0005".into(), "newest".into());
    db.delete("key:0006").unwrap();
    model.remove(&b"key:0006"[..]);
    db.changelog().commit_position("shipper", 10).unwrap();
    db.close().unwrap();
    model
}

/// A new temporary directory and the path `name` in it, for a store the
/// test makes there.
pub fn temp_path(name: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

/// A new temporary directory with the store of [`make_store`] at `name`
/// in it: the directory, the store's path and its contents.
pub fn temp_store(name: &str) -> (TempDir, PathBuf, Model) {
    let (dir, store) = temp_path(name);
    let model = make_store(&store);
    (dir, store, model)
}

/// A new temporary directory that is itself the store of [`make_store`],
/// with the store's contents.
pub fn temp_dir_store() -> (TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let model = make_store(dir.path());
    (dir, model)
}

/// The partitions of [`temp_partitioned`]'s store.
pub const PARTITIONS: u32 = 4;

/// A new temporary directory with a closed partitioned store at `orders`
/// in it: 40 keys `key:NN` = `vNN` in tables, then, only in the
/// changelogs, `key:05` overwritten and `key:06` deleted. Returns the
/// directory and the store's root.
pub fn temp_partitioned() -> (TempDir, PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("orders");
    let store = PartitionedStore::open(&root, PARTITIONS, Options::default()).unwrap();
    for i in 0..40 {
        store.put(format!("key:{i:02}"), format!("v{i}")).unwrap();
    }
    store.flush().unwrap();
    store.put("key:05", "newer, in the changelog").unwrap();
    store.delete("key:06").unwrap();
    store.close().unwrap();
    (parent, root)
}

/// What `varve scan` prints for a store holding `model`, line by line.
pub fn scan_lines(model: &Model) -> Vec<String> {
    model
        .iter()
        .map(|(k, v)| {
            format!(
                "{}\t{}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        })
        .collect()
}

/// `varve scan` of `store` prints exactly `model`.
pub fn assert_scans_as(store: &Path, model: &Model) {
    let scan = ok(&["scan", arg(store)]);
    assert_eq!(scan.lines().collect::<Vec<_>>(), scan_lines(model));
}

/// The table files of a store, by number.
pub fn tables(dir: &Path) -> Vec<PathBuf> {
    let names = files_ending_with(&StdFs, dir, ".sst").unwrap();
    names.into_iter().map(|name| dir.join(name)).collect()
}

/// The manifest file `CURRENT` names.
pub fn manifest(dir: &Path) -> PathBuf {
    let name = std::fs::read_to_string(dir.join("CURRENT")).unwrap();
    dir.join(name.trim_end())
}

/// The first changelog segment.
pub fn first_segment(dir: &Path) -> PathBuf {
    dir.join("changelog/00000000000000000000.log")
}

/// Flips every bit of the byte at `offset` of `path`.
pub fn flip_byte(path: &Path, offset: u64) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= 0xff;
    file.write_all_at(&byte, offset).unwrap();
}
