//! `Log::open` on a missing directory creates it; the new directory's entry
//! in its parent must be durable before the open returns, or a power loss
//! right after a synced append takes the whole log with it.
//!
//! `MemFs` models an unsynced `mkdir` like any other unsynced directory
//! operation (issue 15, item 4), which is how this was found.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use varve_changelog::fs::{CrashMode, MemFs};
use varve_changelog::{Log, LogOptions, Record};

// Fails until `recovery::prepare_dir` syncs the parent of every directory
// it creates (the change is described in issue 15, item 4); the engine
// syncs the store directory itself after opening its changelog.
#[test]
fn a_synced_append_to_a_new_log_survives_power_loss() {
    let fs = MemFs::new();
    fs.create_dir_durably(Path::new("/data")).unwrap();
    let dir = Path::new("/data/log");
    let log = Log::open(dir, LogOptions::default().fs(Arc::new(fs.clone()))).unwrap();
    log.append(&[Record::put("k", "v")]).unwrap();
    log.sync().unwrap();
    drop(log);
    fs.crash(CrashMode::DropAll, 0);
    let log = Log::open(dir, LogOptions::default().fs(Arc::new(fs.clone()))).unwrap();
    assert_eq!(log.next_offset(), 1, "the synced record was lost");
}
