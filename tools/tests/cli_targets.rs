//! The targets of `varve restore`, `varve checkpoint` and `varve repair
//! --to`, on real files and links: a restore never removes what it did
//! not write and never follows a link; a checkpoint or repair target
//! inside the source (once links are resolved) is refused, and the source
//! still opens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use common::{Model, arg, make_store, ok, refused, serial, temp_store, varve};
use varve_db::{Db, Options};

fn no_create() -> Options {
    Options::default().create_if_missing(false)
}

/// A link `link` beside the store in `tmp`, to `to`.
fn link_to(tmp: &TempDir, to: &Path) -> PathBuf {
    let link = tmp.path().join("link");
    symlink(to, &link).unwrap();
    link
}

/// The source opens and holds `model`.
fn assert_opens(dir: &Path, model: &Model) {
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
    let _serial = serial();
    let (tmp, src, _) = temp_store("src");
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("keep.txt"), b"precious").unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("RESTORING"), b"").unwrap();
    std::fs::write(target.join("notes.txt"), b"mine").unwrap();
    symlink(&other, target.join("linked")).unwrap();
    let run = refused(
        &["restore", arg(&src), arg(&target)],
        "nothing was modified",
    );
    assert!(
        run.stderr.contains(arg(&target.join("RESTORING"))),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(other.join("keep.txt")).unwrap(), b"precious");
    assert_eq!(std::fs::read(target.join("notes.txt")).unwrap(), b"mine");
    assert!(target.join("linked").is_symlink());
    // Without the bare marker the directory is simply not empty.
    std::fs::remove_file(target.join("RESTORING")).unwrap();
    refused(&["restore", arg(&src), arg(&target)], "not empty");
    assert_eq!(std::fs::read(other.join("keep.txt")).unwrap(), b"precious");
}

#[test]
fn restore_resumes_only_from_the_source_it_started_from() {
    let _serial = serial();
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
    refused(&["restore", arg(&b), arg(&target)], "is from source");
    let out = ok(&["restore", arg(&a), arg(&target)]);
    assert!(out.contains("resumed"), "{out}");
}

#[test]
fn checkpoint_into_the_store_is_refused_directly_or_through_a_link() {
    let _serial = serial();
    let (tmp, src, model) = temp_store("src");
    let link = link_to(&tmp, &src.join("changelog"));
    let targets = [
        src.join("changelog/cp"),
        src.join("cp"),
        src.clone(),
        link.join("cp"),
        tmp.path().join("x/../src/changelog/cp"),
    ];
    for target in &targets {
        refused(
            &["checkpoint", arg(&src), arg(target)],
            "is inside the store",
        );
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
    let _serial = serial();
    let (tmp, src, model) = temp_store("src");
    let link = link_to(&tmp, &src);
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
    let _serial = serial();
    let (tmp, src, model) = temp_store("src");
    let link = link_to(&tmp, &src);
    // Given as its changelog, the store around it is the source too.
    let (changelog, copy) = (src.join("changelog"), link.join("changelog/copy"));
    for (source, target) in [(&src, &copy), (&changelog, &src.join("copy"))] {
        refused(
            &["restore", arg(source), arg(target)],
            "is inside the store",
        );
        assert!(!target.exists(), "{target:?}");
    }
    assert_opens(&src, &model);
}
