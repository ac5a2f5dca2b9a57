//! `varve checkpoint` and `varve restore`: copies that open with the same
//! contents, restores equal to their source, and refused targets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{arg, json_lines, ok, refused};
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
