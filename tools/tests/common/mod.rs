//! Helpers shared by the CLI tests: running the binary, making real stores
//! with the engine, and damaging files.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use varve_db::{Db, Options, WriteBatch, WriteOptions};

/// What a run of `varve` gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
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
pub fn make_store(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    let db = Db::open(dir, Options::default()).unwrap();
    let put = |model: &mut BTreeMap<Vec<u8>, Vec<u8>>, db: &Db, k: String, v: String| {
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

/// The table files of a store, by number.
pub fn tables(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    out.sort();
    out
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
