//! Clear messages and non-zero exits for a missing directory, a directory
//! that is not a store, and a store open in another handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{arg, make_store, ok, refused, varve};
use varve_db::{Db, Options};

const READ_COMMANDS: [&[&str]; 6] = [
    &["info"],
    &["verify"],
    &["scan"],
    &["manifest", "dump"],
    &["positions"],
    &["log", "dump"],
];

fn with_dir<'a>(command: &[&'a str], dir: &'a str) -> Vec<&'a str> {
    let mut args = command.to_vec();
    args.push(dir);
    args
}

#[test]
fn a_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for command in READ_COMMANDS {
        refused(&with_dir(command, arg(&missing)), "nope does not exist");
    }
    for args in [
        vec!["get", arg(&missing), "k"],
        vec!["put", arg(&missing), "k", "v"],
        vec!["delete", arg(&missing), "k"],
        vec!["sst", "dump", arg(&missing)],
    ] {
        refused(&args, "does not exist");
    }
    assert!(
        !missing.exists(),
        "put without --create must not create the store"
    );
}

#[test]
fn a_directory_that_is_not_a_store_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    for command in READ_COMMANDS {
        refused(&with_dir(command, arg(dir.path())), "is not a Varve store");
    }
    let put = ["put", arg(dir.path()), "k", "v", "--create"];
    refused(&put, "is not a Varve store");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing was written");
    let notes = dir.path().join("notes.txt");
    refused(&["sst", "dump", arg(&notes)], "corruption in");
}

#[test]
fn a_store_in_use_gives_a_clear_error_or_a_live_view() {
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path());
    let d = arg(dir.path());
    let db = Db::open(dir.path(), Options::default()).unwrap();
    for args in [
        vec!["get", d, "key:0001"],
        vec!["scan", d],
        vec!["info", d, "--live"],
    ] {
        let run = refused(&args, "in use");
        assert!(run.stderr.contains("LOCK"), "{args:?}: {}", run.stderr);
    }
    for args in [vec!["put", d, "k", "v"], vec!["delete", d, "k"]] {
        refused(&args, "is in use");
    }
    let fixed = dir.path().with_extension("fixed");
    refused(&["repair", d, "--to", arg(&fixed)], "in use");
    // Commands that read files directly work, and say the view may move.
    for args in [vec!["info", d], vec!["verify", d], vec!["log", "dump", d]] {
        let run = varve(&args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("may be changing"),
            "{args:?}: {}",
            run.stderr
        );
    }
    db.close().unwrap();
    ok(&["get", d, "key:0001"]);
}

#[test]
fn bad_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path());
    refused(&["get", arg(dir.path()), "zz", "--hex"], "hex");
    refused(&["frobnicate"], "");
    let help = ok(&["--help"]);
    for command in common::SUBCOMMANDS {
        assert!(
            help.contains(&format!("  {command}")),
            "{command} missing from --help"
        );
    }
}
