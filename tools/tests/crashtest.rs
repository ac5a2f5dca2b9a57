//! Runs the `crashtest` binary: a child process writing sync batches is
//! killed with `SIGKILL` at random moments and the store is verified after
//! each kill. `VARVE_KILL_CYCLES` sets the number of kills (default 100);
//! `VARVE_KILL_SEED` the seed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn killed_writers_lose_no_acknowledged_batch() {
    let cycles = std::env::var("VARVE_KILL_CYCLES").unwrap_or_else(|_| "100".into());
    let seed = std::env::var("VARVE_KILL_SEED").unwrap_or_else(|_| "7".into());
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crashtest"))
        .args(["run", "--dir"])
        .arg(dir.path())
        .args(["--cycles", &cycles, "--seed", &seed])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "crashtest failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    assert!(
        stdout.contains(&format!("\"kill_cycles\": {cycles}")),
        "{stdout}"
    );
}

#[test]
fn bad_arguments_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_crashtest"))
        .args(["run", "--cycles", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
