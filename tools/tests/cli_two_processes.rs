//! Two real processes: one `varve load STORE -` holds the store open
//! (reading its stdin), and every other `varve` command that opens the
//! store is refused with "in use" and exit status 2, changing nothing;
//! the read-only inspection commands documented to work on an open store
//! keep working. Then the holder finishes its load normally.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{arg, manifest, ok, tables, varve};

/// A `varve load STORE -` child that holds the store open until its
/// stdin is closed.
struct Holder(Option<Child>);

impl Holder {
    fn start(store: &Path) -> Holder {
        let child = Command::new(env!("CARGO_BIN_EXE_varve"))
            .args(["load", arg(store), "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the holder");
        let holder = Holder(Some(child));
        holder.wait_for_lock(store);
        holder
    }

    /// Waits (bounded) until another process holds `store/LOCK`.
    fn wait_for_lock(&self, store: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let file = std::fs::File::open(store.join(varve_db::LOCK_FILE)).unwrap();
            match file.try_lock() {
                Err(std::fs::TryLockError::WouldBlock) => return,
                Ok(()) => drop(file),
                Err(std::fs::TryLockError::Error(e)) => panic!("lock probe: {e}"),
            }
            assert!(Instant::now() < deadline, "the holder never took the lock");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one line, closes stdin, and expects the load to succeed.
    fn finish(mut self) -> String {
        let mut child = self.0.take().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"{\"key\":\"from-holder\",\"value\":\"1\"}\n")
            .unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "holder failed: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Only if a test failed before `finish`: stop the child.
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every file under `dir` with its bytes, to show nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_command_that_opens_a_store_is_refused_while_another_process_holds_it() {
    let (tmp, store, _) = common::temp_store("store");
    let before_scan = ok(&["scan", arg(&store)]);
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "{\"key\":\"x\",\"value\":\"y\"}\n").unwrap();
    let (out, cp, new) = (
        tmp.path().join("out"),
        tmp.path().join("cp"),
        tmp.path().join("new"),
    );
    let s = arg(&store);
    let log_dir = store.join("changelog");

    let holder = Holder::start(&store);
    let files = snapshot(&store);
    let refused: Vec<Vec<&str>> = vec![
        vec!["get", s, "key-001"],
        vec!["scan", s],
        vec!["info", s, "--live"],
        vec!["put", s, "k", "v"],
        vec!["put", s, "k", "v", "--create"],
        vec!["delete", s, "k"],
        vec!["load", s, arg(&input)],
        vec!["load", s, arg(&input), "--create"],
        vec!["compact", s],
        vec!["repair", s, "--to", arg(&out)],
        vec!["checkpoint", s, arg(&cp)],
        vec!["restore", s, arg(&new)],
        vec!["restore", arg(&log_dir), arg(&new)],
        vec!["positions", s, "--delete", "shipper"],
        vec!["positions", s, "--reset", "shipper", "--to", "0"],
        vec!["positions", arg(&log_dir), "--delete", "shipper"],
    ];
    for args in &refused {
        let run = varve(args);
        assert_eq!(run.code, 2, "varve {args:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("in use") && run.stderr.contains("LOCK"),
            "varve {args:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert_eq!(snapshot(&store), files, "varve {args:?} changed the store");
    }
    for made in [&out, &cp, &new] {
        assert!(!made.exists(), "{} was created", made.display());
    }

    // The inspection commands read files directly and keep working; those
    // given the store's directory warn that it is live (`positions`
    // prints positions only).
    let table = tables(&store).pop().unwrap();
    let manifest_path = manifest(&store);
    let live: Vec<(Vec<&str>, bool)> = vec![
        (vec!["info", s], true),
        (vec!["verify", s], true),
        (vec!["log", "dump", s], true),
        (vec!["manifest", "dump", s], true),
        (vec!["positions", s], false),
        (vec!["sst", "dump", arg(&table)], false),
        (vec!["manifest", "dump", arg(&manifest_path)], false),
    ];
    for (args, warns) in &live {
        let run = varve(args);
        assert_eq!(run.code, 0, "varve {args:?}: {}", run.stderr);
        if *warns {
            assert!(
                run.stderr.contains("open in another process"),
                "varve {args:?}: {}",
                run.stderr
            );
        }
    }
    assert_eq!(snapshot(&store), files);

    assert_eq!(holder.finish(), "loaded 1 puts and 0 deletes\n");
    ok(&["verify", s]);
    assert_eq!(ok(&["get", s, "from-holder"]), "1\n");
    let after: String = ok(&["scan", s])
        .lines()
        .filter(|l| !l.starts_with("from-holder"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(after, before_scan);
}
