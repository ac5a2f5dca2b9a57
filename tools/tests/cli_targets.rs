//! The targets of `varve restore`, `varve checkpoint` and `varve repair
//! --to`, on real files and links: a restore never removes what it did
//! not write and never follows a link; a checkpoint or repair target
//! inside the source (once links are resolved) is refused, and the source
//! still opens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::{arg, make_store, ok, varve};
use varve_db::{Db, Options};

/// Held by each test: a `varve` child forked by one test thread holds the
/// store locks this process has open until it execs.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn no_create() -> Options {
    Options::default().create_if_missing(false)
}

/// The source opens and holds `model`.
fn assert_opens(dir: &Path, model: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>) {
    let db = Db::open(dir, no_create()).unwrap();
    let got: Vec<(Vec<u8>, Vec<u8>)> = db
        .iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect();
    let want: Vec<_> = model.clone().into_iter().collect();
    assert_eq!(got, want);
    db.close().unwrap();
}

#[test]
fn restore_refuses_a_bare_marker_and_never_follows_a_link() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_store(&src);
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("keep.txt"), b"precious").unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("RESTORING"), b"").unwrap();
    std::fs::write(target.join("notes.txt"), b"mine").unwrap();
    symlink(&other, target.join("linked")).unwrap();
    let run = varve(&["restore", arg(&src), arg(&target)]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(arg(&target.join("RESTORING"))),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("nothing was modified"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(other.join("keep.txt")).unwrap(), b"precious");
    assert_eq!(std::fs::read(target.join("notes.txt")).unwrap(), b"mine");
    assert!(target.join("linked").is_symlink());
    // Without the bare marker the directory is simply not empty.
    std::fs::remove_file(target.join("RESTORING")).unwrap();
    let run = varve(&["restore", arg(&src), arg(&target)]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("not empty"), "{}", run.stderr);
    assert_eq!(std::fs::read(other.join("keep.txt")).unwrap(), b"precious");
}

#[test]
fn restore_resumes_only_from_the_source_it_started_from() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    make_store(&a);
    make_store(&b);
    let target = tmp.path().join("target");
    ok(&["restore", arg(&a), arg(&target)]);
    // Mark it unfinished again, as if the restore had been interrupted:
    // the marker of a restore from `a`, written by the library.
    std::fs::remove_dir_all(&target).unwrap();
    let log = varve_db::varve_changelog::Log::open(
        a.join("changelog"),
        varve_db::varve_changelog::LogOptions::default(),
    )
    .unwrap();
    let name = a.join("changelog").canonicalize().unwrap();
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let opts = varve_db::RestoreOptions::default()
        .source_name(name.display().to_string())
        .cancel_flag(cancel);
    let err = varve_db::restore(
        &target,
        &mut varve_db::varve_changelog::LogSource::new(&log),
        opts,
    )
    .unwrap_err();
    assert!(matches!(err, varve_db::Error::Cancelled), "{err}");
    drop(log);
    let run = varve(&["restore", arg(&b), arg(&target)]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is from source"), "{}", run.stderr);
    let out = ok(&["restore", arg(&a), arg(&target)]);
    assert!(out.contains("resumed"), "{out}");
}

#[test]
fn checkpoint_into_the_store_is_refused_directly_or_through_a_link() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let model = make_store(&src);
    let link = tmp.path().join("link");
    symlink(src.join("changelog"), &link).unwrap();
    let targets = [
        src.join("changelog/cp"),
        src.join("cp"),
        src.clone(),
        link.join("cp"),
        tmp.path().join("x/../src/changelog/cp"),
    ];
    for target in &targets {
        let run = varve(&["checkpoint", arg(&src), arg(target)]);
        assert_eq!(run.code, 2, "{target:?}: {}", run.stderr);
        assert!(run.stderr.contains("is inside the store"), "{}", run.stderr);
        assert_opens(&src, &model);
    }
    assert!(!src.join("changelog/cp").exists() && !src.join("cp").exists());
    // Beside the store, through a link to its parent, is fine.
    let parent_link = tmp.path().join("parent");
    symlink(tmp.path(), &parent_link).unwrap();
    ok(&["checkpoint", arg(&src), arg(&parent_link.join("cp"))]);
    assert_opens(&tmp.path().join("cp"), &model);
    assert_opens(&src, &model);
}

#[test]
fn repair_into_the_store_through_a_link_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let model = make_store(&src);
    let link = tmp.path().join("link");
    symlink(&src, &link).unwrap();
    for target in [link.join("fixed"), src.join("fixed"), link.clone()] {
        let run = varve(&["repair", arg(&src), "--to", arg(&target)]);
        assert_eq!(run.code, 2, "{target:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("is inside the store") || run.stderr.contains("not empty"),
            "{}",
            run.stderr
        );
        assert!(!src.join("fixed").exists());
        assert_opens(&src, &model);
    }
    ok(&["repair", arg(&src), "--to", arg(&tmp.path().join("fixed"))]);
    assert_opens(&tmp.path().join("fixed"), &model);
}

#[test]
fn restore_into_its_own_source_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let model = make_store(&src);
    let link = tmp.path().join("link");
    symlink(&src, &link).unwrap();
    let run = varve(&["restore", arg(&src), arg(&link.join("changelog/copy"))]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is inside the store"), "{}", run.stderr);
    assert!(!src.join("changelog/copy").exists());
    // Given as its changelog, the store around it is the source too.
    let run = varve(&[
        "restore",
        arg(&src.join("changelog")),
        arg(&src.join("copy")),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is inside the store"), "{}", run.stderr);
    assert!(!src.join("copy").exists());
    assert_opens(&src, &model);
}
