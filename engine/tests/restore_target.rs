//! A restore's target, on real files: a restore removes only what its
//! marker proves it wrote. Foreign files, a bare `RESTORING`, links and
//! subdirectories are refused with `Error::NotOwned` naming the path, and
//! left untouched; links are never followed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use varve_changelog::fs::PathKind;

use varve_db::restore::MARKER_FILE;
use varve_db::testing::BrokenSource;
use varve_db::varve_changelog::LogSource;
use varve_db::varve_changelog::fs::{FileSystem, MemFs, read_file};
use varve_db::{Db, Error, Options, RestoreOptions, RestoreReport};

/// A closed-over source store at `dir/src` with `n` puts.
fn source(dir: &Path, n: u64) -> Db {
    let db = Db::open(dir.join("src"), Options::default()).unwrap();
    for i in 0..n {
        db.put(format!("k{i:03}"), format!("v{i}")).unwrap();
    }
    db
}

/// A directory beside the target with files a restore must never touch.
fn precious(dir: &Path) -> PathBuf {
    let other = dir.join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("keep.txt"), b"precious").unwrap();
    std::fs::write(other.join("000001.sst"), b"not a table of yours").unwrap();
    other
}

fn assert_intact(other: &Path) {
    assert_eq!(std::fs::read(other.join("keep.txt")).unwrap(), b"precious");
    assert!(other.join("000001.sst").exists());
}

/// Restores `src`'s changelog into `target` with the default options.
fn restore_from(src: &Db, target: &Path) -> Result<RestoreReport, Error> {
    varve_db::restore(
        target,
        &mut LogSource::new(src.changelog()),
        RestoreOptions::default(),
    )
}

fn refused_path(err: &Error) -> &Path {
    match err {
        Error::NotOwned { path, .. } => path,
        other => panic!("expected NotOwned, got {other}"),
    }
}

fn interrupted(target: &Path, name: &str) {
    let opts = RestoreOptions::default().source_name(name);
    let err = varve_db::restore(target, &mut BrokenSource, opts).unwrap_err();
    assert!(matches!(err, Error::Source(_)), "{err}");
    assert!(target.join(MARKER_FILE).exists());
}

#[test]
fn a_bare_marker_beside_foreign_files_and_a_link_is_refused_and_nothing_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path(), 20);
    let other = precious(tmp.path());
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join(MARKER_FILE), b"").unwrap();
    std::fs::write(target.join("notes.txt"), b"mine").unwrap();
    symlink(&other, target.join("linked")).unwrap();
    let err = restore_from(&src, &target).unwrap_err();
    assert_eq!(refused_path(&err), target.join(MARKER_FILE));
    assert!(err.to_string().contains("RESTORING"), "{err}");
    assert_intact(&other);
    assert_eq!(std::fs::read(target.join("notes.txt")).unwrap(), b"mine");
    assert!(target.join("linked").is_symlink());
    assert_eq!(std::fs::read(target.join(MARKER_FILE)).unwrap(), b"");
}

#[test]
fn a_bare_marker_alone_is_refused_too() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path(), 5);
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join(MARKER_FILE), b"someone else's").unwrap();
    let err = restore_from(&src, &target).unwrap_err();
    assert_eq!(refused_path(&err), target.join(MARKER_FILE));
    assert_eq!(
        std::fs::read(target.join(MARKER_FILE)).unwrap(),
        b"someone else's"
    );
}

#[test]
fn an_interrupted_restore_resumes_but_refuses_foreign_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path(), 30);
    let other = precious(tmp.path());
    let target = tmp.path().join("target");
    interrupted(&target, "src");
    let resume = |name: &str| {
        varve_db::restore(
            &target,
            &mut LogSource::new(src.changelog()),
            RestoreOptions::default().source_name(name),
        )
    };
    let refused_then_removed = |entry: &Path| {
        let err = resume("src").unwrap_err();
        assert_eq!(refused_path(&err), entry, "{err}");
        assert_intact(&other);
        if entry.is_symlink() || entry.is_file() {
            std::fs::remove_file(entry).unwrap();
        } else {
            std::fs::remove_dir_all(entry).unwrap();
        }
    };
    std::fs::write(target.join("notes.txt"), b"mine").unwrap();
    refused_then_removed(&target.join("notes.txt"));
    symlink(&other, target.join("linked")).unwrap();
    refused_then_removed(&target.join("linked"));
    // A link named like a table: the store would delete it as obsolete.
    symlink(other.join("000001.sst"), target.join("000009.sst")).unwrap();
    refused_then_removed(&target.join("000009.sst"));
    std::fs::create_dir(target.join("sub")).unwrap();
    std::fs::write(target.join("sub/file"), b"x").unwrap();
    refused_then_removed(&target.join("sub"));
    symlink(&other, target.join("changelog/linked")).unwrap();
    refused_then_removed(&target.join("changelog/linked"));
    // Another source's records are not mixed in.
    let err = resume("another").unwrap_err();
    assert_eq!(refused_path(&err), target.join(MARKER_FILE));
    assert!(err.to_string().contains("\"src\""), "{err}");
    let report = resume("src").unwrap();
    assert!(report.resumed);
    drop(src);
    let db = Db::open(&target, Options::default()).unwrap();
    assert_eq!(db.get("k029").unwrap().as_deref(), Some(&b"v29"[..]));
    assert_intact(&other);
}

#[test]
fn a_restore_interrupted_before_its_store_removes_only_the_files_it_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path(), 30);
    let other = precious(tmp.path());
    let target = tmp.path().join("target");
    interrupted(&target, "");
    // As if it had crashed before writing CURRENT.
    std::fs::remove_file(target.join("CURRENT")).unwrap();
    std::fs::remove_dir_all(target.join("changelog")).unwrap();
    // A listed name that is a link: refused, not followed.
    std::fs::remove_file(target.join("MANIFEST-000001")).unwrap();
    symlink(other.join("keep.txt"), target.join("MANIFEST-000001")).unwrap();
    let err = restore_from(&src, &target).unwrap_err();
    assert_eq!(refused_path(&err), target.join("MANIFEST-000001"));
    std::fs::remove_file(target.join("MANIFEST-000001")).unwrap();
    // A table the marker does not list.
    std::fs::write(target.join("000005.sst"), b"foreign").unwrap();
    let err = restore_from(&src, &target).unwrap_err();
    assert_eq!(refused_path(&err), target.join("000005.sst"));
    assert_eq!(
        std::fs::read(target.join("000005.sst")).unwrap(),
        b"foreign"
    );
    std::fs::remove_file(target.join("000005.sst")).unwrap();
    assert_intact(&other);
    let report = restore_from(&src, &target).unwrap();
    assert!(!report.resumed);
    assert_eq!(report.records, 30);
}

#[test]
fn a_file_named_like_the_marker_temp_is_the_only_leftover_a_new_restore_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path(), 3);
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    symlink(tmp.path().join("src"), target.join("RESTORING.tmp")).unwrap();
    let err = restore_from(&src, &target).unwrap_err();
    assert_eq!(refused_path(&err), target.join("RESTORING.tmp"));
    std::fs::remove_file(target.join("RESTORING.tmp")).unwrap();
    std::fs::write(target.join("RESTORING.tmp"), b"torn").unwrap();
    restore_from(&src, &target).unwrap();
}

/// Every file and directory under `dir` on `fs`, with file bytes.
fn tree(fs: &MemFs, dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for name in fs.list_dir(&d).unwrap() {
            let path = d.join(name);
            if fs.kind(&path).unwrap() == Some(PathKind::Dir) {
                out.push((path.clone(), None));
                stack.push(path);
            } else {
                out.push((path.clone(), Some(read_file(fs, &path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_bit_flip_of_a_marker_is_refused_and_removes_nothing() {
    for with_store in [true, false] {
        let fs = MemFs::new();
        let target = Path::new("/t");
        let opts = || {
            RestoreOptions::default()
                .store_options(Options::default().fs(Arc::new(fs.clone())))
                .source_name("/data/changelog")
        };
        assert!(varve_db::restore(target, &mut BrokenSource, opts()).is_err());
        if !with_store {
            // As if it had crashed before its store existed.
            fs.remove_file(&target.join("CURRENT")).unwrap();
            let log_dir = target.join("changelog");
            for name in fs.list_dir(&log_dir).unwrap() {
                fs.remove_file(&log_dir.join(name)).unwrap();
            }
            fs.remove_dir(&log_dir).unwrap();
        }
        let marker = target.join(MARKER_FILE);
        let good = read_file(&fs, &marker).unwrap();
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            fs.write_all(&marker, &bad).unwrap();
            let before = tree(&fs, target);
            let err = varve_db::restore(target, &mut BrokenSource, opts()).unwrap_err();
            assert_eq!(refused_path(&err), marker, "bit {bit}: {err}");
            assert_eq!(tree(&fs, target), before, "bit {bit} changed the target");
        }
        // The intact marker is accepted again: resumed or started over.
        fs.write_all(&marker, &good).unwrap();
        let err = varve_db::restore(target, &mut BrokenSource, opts()).unwrap_err();
        assert!(matches!(err, Error::Source(_)), "{err}");
    }
}
