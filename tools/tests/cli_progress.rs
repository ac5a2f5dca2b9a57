//! Progress bars on `load`, `compact` and `repair`: drawn on stderr only
//! when it is a terminal, never with `--quiet`, and never when piped, so
//! scripted runs (these tests) get clean, parseable output. The terminal
//! case runs the binary under `script(1)`, which gives it a pseudo-terminal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{arg, flip_byte, json_lines, tables, varve};

/// A file of `n` load lines.
fn load_file(path: &Path, n: usize) {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "{{\"key\":\"k{i:06}\",\"value\":\"{}\"}}\n",
            "v".repeat(40)
        ));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn piped_runs_print_no_progress_and_parseable_output() {
    let (dir, store, _) = common::temp_store("store");
    let s = arg(&store);
    let lines = dir.path().join("lines.json");
    load_file(&lines, 3000);
    let load = varve(&["load", s, arg(&lines), "--json"]);
    assert_eq!(load.code, 0, "{}", load.stderr);
    assert_eq!(load.stderr, "");
    assert_eq!(json_lines(&load.stdout)[0]["puts"], 3000);
    let compact = varve(&["compact", s, "--json"]);
    assert_eq!(compact.code, 0, "{}", compact.stderr);
    assert_eq!(compact.stderr, "");
    json_lines(&compact.stdout);
    flip_byte(&tables(&store)[0], 10);
    let to = dir.path().join("repaired");
    let repair = varve(&["repair", s, "--to", arg(&to), "--json"]);
    assert_eq!(repair.code, 0, "{}", repair.stderr);
    assert_eq!(repair.stderr, "");
    json_lines(&repair.stdout);
    // --quiet also silences verify's `checked N/M` lines.
    let verify = varve(&["verify", arg(&to), "--quiet"]);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    assert_eq!(verify.stderr, "");
}

/// Runs `varve ARGS` on a pseudo-terminal; everything it wrote there.
/// `None` when `script(1)` is not installed.
fn on_a_terminal(args: &[&str]) -> Option<String> {
    let line = std::iter::once(env!("CARGO_BIN_EXE_varve"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .ok()?;
    assert!(output.status.success(), "{line}: {output:?}");
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn a_terminal_gets_a_load_bar_unless_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let lines = dir.path().join("lines.json");
    load_file(&lines, 5000);
    let (s, l) = (arg(&store), arg(&lines));
    let Some(drawn) = on_a_terminal(&["load", s, l, "--create"]) else {
        eprintln!("script(1) is not installed: the terminal case is not run");
        return;
    };
    // The bar counts bytes of the input file, then is cleared.
    assert!(drawn.contains(" B/") || drawn.contains("KiB/"), "{drawn:?}");
    assert!(drawn.contains("\u{1b}["), "{drawn:?}");
    assert!(
        drawn.contains("loaded 5000 puts and 0 deletes"),
        "{drawn:?}"
    );
    let quiet = on_a_terminal(&["load", s, l, "--quiet"]).unwrap();
    assert_eq!(quiet.trim_end(), "loaded 5000 puts and 0 deletes");
    let quiet = on_a_terminal(&["compact", s, "-q", "--json"]).unwrap();
    assert!(!quiet.contains('\u{1b}'), "{quiet:?}");
    json_lines(quiet.trim_end());
}
