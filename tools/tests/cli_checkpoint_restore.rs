//! `varve checkpoint` and `varve restore`: copies that open with the same
//! contents, restores equal to their source, and refused targets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{arg, json_lines, ok, refused};
use varve_changelog::{Log, LogOptions, Record};
use varve_db::{ChangelogRetention, Db, Options};

fn source_options() -> Options {
    Options::default()
        .memtable_size_bytes(16 << 10)
        .changelog_retention(ChangelogRetention::UntilShipped)
}

/// Writes `from..to` (overwrites, and every sixth a delete) and closes.
fn write(dir: &Path, from: u64, to: u64) {
    let db = Db::open(dir, source_options()).unwrap();
    db.changelog().commit_position("keep-all", 0).unwrap();
    for i in from..to {
        let key = format!("key-{:03}", (i * 37) % 300);
        if i % 6 == 5 {
            db.delete(key).unwrap();
        } else {
            db.put(key, format!("value-{i}")).unwrap();
        }
    }
    db.close().unwrap();
}

#[test]
fn checkpoint_then_restore_with_and_without_it() {
    let (_serial, tmp) = (common::serial(), tempfile::tempdir().unwrap());
    let src = tmp.path().join("src");
    let cp = tmp.path().join("cp");
    write(&src, 0, 1000);
    let text = ok(&["checkpoint", arg(&src), arg(&cp)]);
    assert!(text.contains("at changelog offset 1000"), "{text}");
    let at_checkpoint = ok(&["scan", arg(&src)]);
    assert_eq!(ok(&["scan", arg(&cp)]), at_checkpoint);
    write(&src, 1000, 1600);
    let full = ok(&["scan", arg(&src)]);
    assert_ne!(full, at_checkpoint);

    let plain = tmp.path().join("plain");
    let text = ok(&["restore", arg(&src), arg(&plain)]);
    assert!(text.starts_with("restored 1600 records"), "{text}");
    assert_eq!(ok(&["scan", arg(&plain)]), full);
    ok(&["verify", arg(&plain)]);

    let from_cp = tmp.path().join("from-cp");
    let json = json_lines(&ok(&[
        "restore",
        "--json",
        &format!("{}/changelog", arg(&src)),
        arg(&from_cp),
        "--from-checkpoint",
        arg(&cp),
    ]));
    assert_eq!(json[0]["start_offset"], 1000);
    assert_eq!(json[0]["end_offset"], 1600);
    assert_eq!(json[0]["records"], 600);
    assert_eq!(ok(&["scan", arg(&from_cp)]), full);
}

/// `--progress-json` prints a `start` line, `progress` lines whose
/// offsets increase and whose checkpoint (`flushed_offset`) follows, and
/// an `end` line with the report, on stderr even when it is not a
/// terminal; stdout keeps the report alone.
#[test]
fn progress_as_json_lines_on_stderr() {
    let (_serial, tmp) = (common::serial(), tempfile::tempdir().unwrap());
    let src = tmp.path().join("src");
    // 6 MB: six polls of the source, and 1 MiB runs within an 18 MiB
    // budget (16 MiB of it kept for reading and writing): six checkpoints.
    let db = Db::open(&src, source_options()).unwrap();
    db.changelog().commit_position("keep-all", 0).unwrap();
    for i in 0..3000u64 {
        let key = format!("key-{:04}", (i * 7919) % 3000);
        db.put(key, vec![b'a' + (i % 26) as u8; 2000]).unwrap();
    }
    db.close().unwrap();
    let new = tmp.path().join("new");
    let run = common::varve(&[
        "restore",
        "--json",
        "--progress-json",
        "--memory-budget",
        "18M",
        arg(&src),
        arg(&new),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = &json_lines(&run.stdout)[0];
    let lines = json_lines(&run.stderr);
    let (first, last) = (&lines[0], &lines[lines.len() - 1]);
    assert_eq!(first["event"], "start");
    assert_eq!(
        (&first["start_offset"], &first["end_offset"]),
        (&0.into(), &3000.into())
    );
    let progress: Vec<_> = lines[1..lines.len() - 1].iter().collect();
    assert!(
        progress.iter().all(|p| p["event"] == "progress"),
        "{lines:?}"
    );
    let at =
        |name: &str| -> Vec<u64> { progress.iter().map(|p| p[name].as_u64().unwrap()).collect() };
    let (offsets, flushed) = (at("offset"), at("flushed_offset"));
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    assert!(flushed.windows(2).all(|w| w[0] <= w[1]), "{flushed:?}");
    assert!(flushed.iter().zip(&offsets).all(|(f, o)| f <= o));
    assert!(flushed.iter().any(|f| (1..3000).contains(f)), "{flushed:?}");
    assert_eq!((offsets.last(), flushed.last()), (Some(&3000), Some(&3000)));
    assert_eq!(at("end_offset").last(), Some(&3000));
    assert_eq!(last["event"], "end");
    for field in ["start_offset", "end_offset", "records", "bytes", "resumed"] {
        assert_eq!(last[field], report[field], "{field}");
    }
    assert_eq!(ok(&["scan", arg(&new)]), ok(&["scan", arg(&src)]));
}

#[test]
fn refused_targets_and_unfinished_restores() {
    let (_serial, tmp) = (common::serial(), tempfile::tempdir().unwrap());
    let src = tmp.path().join("src");
    write(&src, 0, 50);
    // A non-empty target is refused, for both commands.
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("file"), b"x").unwrap();
    for command in ["checkpoint", "restore"] {
        refused(&[command, arg(&src), arg(&full)], "not empty");
    }
    // So is the source itself (`cli_targets.rs` has the other cases).
    refused(&["checkpoint", arg(&src), arg(&src)], "inside the store");
    refused(&["restore", arg(&src), arg(&src)], "");
    let (nope, x) = (tmp.path().join("nope"), tmp.path().join("x"));
    refused(&["restore", arg(&nope), arg(&x)], "does not exist");
    // A store marked as an unfinished restore does not open.
    std::fs::write(src.join(varve_db::restore::MARKER_FILE), b"").unwrap();
    refused(&["put", arg(&src), "k", "v"], "unfinished restore");
}

/// A changelog directory of no store (written with the changelog crate
/// alone, so holding its own `LOCK` file) restores key by key, and one
/// held open by a writer is refused without creating the target.
#[test]
fn restore_from_a_changelog_of_no_store() {
    let (_serial, tmp) = (common::serial(), tempfile::tempdir().unwrap());
    let log_dir = tmp.path().join("orders-log");
    let log = Log::open(&log_dir, LogOptions::default().segment_size_bytes(64 << 10)).unwrap();
    let mut model = std::collections::BTreeMap::new();
    for batch in 0..40u64 {
        let records: Vec<Record> = (0..50u64)
            .map(|i| {
                let n = batch * 50 + i;
                let key = format!("order-{:04}", (n * 7919) % 700);
                let value =
                    (n % 9 != 4).then(|| format!("state-{n}-{}", "x".repeat((n % 300) as usize)));
                match &value {
                    Some(v) => model.insert(key.clone(), v.clone()),
                    None => model.remove(&key),
                };
                Record {
                    key: key.into_bytes().into(),
                    value: value.map(|v| v.into_bytes().into()),
                    timestamp_ms: n as i64,
                    headers: Vec::new(),
                }
            })
            .collect();
        log.append(&records).unwrap();
    }
    assert!(
        log.segment_base_offsets().len() > 3,
        "the log rolls segments"
    );

    let held = tmp.path().join("while-held");
    refused(&["restore", arg(&log_dir), arg(&held)], "already open");
    assert!(!held.exists(), "a refused restore creates nothing");
    log.close().unwrap();

    let restored = tmp.path().join("restored");
    let text = ok(&["restore", arg(&log_dir), arg(&restored)]);
    assert!(text.starts_with("restored 2000 records"), "{text}");
    ok(&["verify", arg(&restored)]);
    let db = Db::open(&restored, Options::default()).unwrap();
    let got: std::collections::BTreeMap<String, String> = db
        .iter()
        .map(|kv| {
            let (key, value) = kv.unwrap();
            (
                String::from_utf8(key.to_vec()).unwrap(),
                String::from_utf8(value.to_vec()).unwrap(),
            )
        })
        .collect();
    assert_eq!(got, model);
    assert_eq!(db.changelog().next_offset(), 2000);
}

/// A source that is no changelog (an empty directory, one of other
/// files, a file) is refused, and nothing is written to it or made in
/// the target: opening it as a log would have created a changelog inside
/// it and restored an empty store.
#[test]
fn restore_refuses_a_source_that_is_not_a_changelog_and_writes_nothing() {
    let (_serial, tmp) = (common::serial(), tempfile::tempdir().unwrap());
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "not a changelog").unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for source in [&empty, &other, &file] {
        let before = listing(source);
        let target = tmp.path().join("target");
        refused(
            &["restore", arg(source), arg(&target)],
            "neither a store nor a changelog directory",
        );
        assert_eq!(
            listing(source),
            before,
            "{} was written to",
            source.display()
        );
        assert!(!target.exists(), "a refused restore made its target");
    }
}

/// The names in `path` (none for a file).
fn listing(path: &Path) -> Vec<String> {
    if !path.is_dir() {
        return Vec::new();
    }
    let mut names: Vec<String> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
