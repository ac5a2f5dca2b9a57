//! `varve verify`: a clean store passes; a flipped byte in a table, a
//! changelog segment, the manifest or `log.meta` is reported as
//! `file:offset: what` with a non-zero exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{arg, flip_byte, json_lines, ok, tables, temp_dir_store, varve};

#[test]
fn a_clean_store_verifies() {
    let (dir, _) = temp_dir_store();
    let text = ok(&["verify", arg(dir.path())]);
    assert!(text.trim_end().ends_with(": ok"), "{text}");
    let run = varve(&["verify", arg(dir.path()), "--json"]);
    assert_eq!(run.code, 0);
    assert!(
        json_lines(&run.stdout)
            .iter()
            .all(|o| o["kind"] != "problem")
    );
    // Not a terminal: plain progress lines on stderr.
    assert!(run.stderr.contains("checked "), "{}", run.stderr);
    assert_checked_files_exist(&run.stderr);
    // A store with no consumer positions has no positions file, and
    // verify does not claim to have checked one.
    let fresh = tempfile::tempdir().unwrap();
    varve_db::Db::open(fresh.path(), varve_db::Options::default())
        .unwrap()
        .close()
        .unwrap();
    let run = varve(&["verify", arg(fresh.path())]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("positions"), "{}", run.stderr);
    assert_checked_files_exist(&run.stderr);
}

/// Every "checked N/M PATH" progress line names a file that exists.
fn assert_checked_files_exist(stderr: &str) {
    for line in stderr.lines().filter(|l| l.starts_with("checked ")) {
        let path = line.split_whitespace().last().unwrap_or("");
        assert!(std::path::Path::new(path).exists(), "{line}");
    }
}

/// Runs verify, expects exit 1 and a problem line starting with `prefix`.
fn expect_problem(dir: &Path, prefix: &str) {
    let run = varve(&["verify", arg(dir)]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.lines().any(|l| l.starts_with(prefix)),
        "no line starts with {prefix:?}:\n{}",
        run.stdout
    );
    assert!(run.stderr.contains("problem(s) found"), "{}", run.stderr);
    let json = json_lines(&varve(&["verify", arg(dir), "--json"]).stdout);
    assert!(json.iter().any(|o| o["kind"] == "problem"));
}

/// Where a case of [`a_flipped_byte_in_a_table_the_manifest_or_log_meta_is_found`]
/// damages a store: the file, the byte it flips, and the offset verify
/// reports (the start of what the byte belongs to).
type Damage = fn(&Path) -> (PathBuf, u64, u64);

#[test]
fn a_flipped_byte_in_a_table_the_manifest_or_log_meta_is_found() {
    let cases: [Damage; 3] = [
        |store| (tables(store)[0].clone(), 10, 0),
        |store| {
            let dump = json_lines(&ok(&["manifest", "dump", arg(store), "--json"]));
            let last = dump
                .iter()
                .filter_map(|o| o["record_offset"].as_u64())
                .max()
                .unwrap();
            (common::manifest(store), last + 10, last)
        },
        |store| (store.join("changelog/log.meta"), 14, 28),
    ];
    for damage in cases {
        let (dir, _) = temp_dir_store();
        let (file, flipped, reported) = damage(dir.path());
        flip_byte(&file, flipped);
        // The expected prefix names the file, and so the case.
        expect_problem(dir.path(), &format!("{}:{reported}: ", file.display()));
    }
}

#[test]
fn a_flipped_byte_in_a_segment_is_found() {
    let (dir, _) = temp_dir_store();
    let segment = common::first_segment(dir.path());
    let dump = json_lines(&ok(&["log", "dump", arg(&segment), "--json"]));
    let batch = dump.iter().filter(|o| o["kind"] == "batch").nth(3).unwrap();
    let position = batch["position"].as_u64().unwrap();
    let size = batch["size_bytes"].as_u64().unwrap();
    flip_byte(&segment, position + 50);
    expect_problem(
        dir.path(),
        &format!("{}:{position}: CRC mismatch", segment.display()),
    );
    // log dump marks the batch invalid and goes on past it.
    let text = ok(&["log", "dump", arg(&segment)]);
    assert!(
        text.contains(&format!("position: {position} size: {size}")),
        "{text}"
    );
    assert!(text.contains("isValid: false"), "{text}");
    assert!(text.contains("baseOffset: 4 "), "{text}");
}

#[test]
fn a_missing_table_is_named_with_the_manifest_record() {
    let (dir, _) = temp_dir_store();
    let table = tables(dir.path())[1].clone();
    std::fs::remove_file(&table).unwrap();
    let name = table.file_name().unwrap().to_str().unwrap().to_owned();
    let run = varve(&["verify", arg(dir.path())]);
    assert_eq!(run.code, 1);
    let manifest = common::manifest(dir.path());
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{}:", manifest.display()))
                && l.contains(&format!("{name} is listed but missing"))),
        "{}",
        run.stdout
    );
}

/// Writes three synced batches of 1,000 keys and leaves the store as a
/// killed writer would (not closed, so `log.meta`'s recovery point is
/// still 0). Returns the batches' byte positions in the first segment,
/// then the end of the data.
fn killed_writer_store(dir: &std::path::Path) -> Vec<u64> {
    use varve_db::{Db, Options, WriteBatch, WriteOptions};
    let db = Db::open(dir, Options::default()).unwrap();
    for b in 0..3 {
        let mut batch = WriteBatch::new();
        for i in 0..1000 {
            batch.put(format!("b{b}-{i:04}"), vec![b'v'; 100]);
        }
        db.write(batch, WriteOptions::default().sync(true)).unwrap();
    }
    // No close: the store stays as a SIGKILL leaves it (and locked, which
    // verify does not mind).
    std::mem::forget(db);
    let segment = common::first_segment(dir);
    let dump = json_lines(&ok(&["log", "dump", arg(&segment), "--json"]));
    let mut positions: Vec<u64> = dump
        .iter()
        .filter(|o| o["kind"] == "batch")
        .map(|o| o["position"].as_u64().unwrap())
        .collect();
    let last = dump.iter().rfind(|o| o["kind"] == "batch").unwrap();
    positions.push(last["position"].as_u64().unwrap() + last["size_bytes"].as_u64().unwrap());
    positions
}

#[test]
fn damage_to_acknowledged_data_after_a_kill_is_a_problem_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let positions = killed_writer_store(dir.path());
    assert_eq!(positions.len(), 4);
    let segment = common::first_segment(dir.path());
    flip_byte(&segment, positions[0] + 5000);
    let run = varve(&["verify", arg(dir.path())]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.lines().any(|l| l.starts_with(&format!(
            "{}:{}: ",
            segment.display(),
            positions[0]
        )) && l.contains("damaged durable data, not a torn tail")),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("nothing after it"), "{}", run.stdout);
}

#[test]
fn a_real_torn_tail_after_a_kill_is_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let positions = killed_writer_store(dir.path());
    let segment = common::first_segment(dir.path());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(positions[2] + 1000).unwrap();
    let run = varve(&["verify", arg(dir.path())]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("torn tail"), "{}", run.stdout);
}

#[test]
fn a_batch_beyond_the_seqno_range_is_found() {
    use varve_db::varve_changelog::{Log, LogOptions, Record, StoredRecord};
    let (dir, _) = temp_dir_store();
    let log = Log::open(dir.path().join("changelog"), LogOptions::default()).unwrap();
    let offset = 1 << 57;
    let record = StoredRecord {
        offset,
        record: Record::put("far", "away"),
    };
    log.append_at(&[record]).unwrap();
    log.sync().unwrap();
    let (segment, position) = log.batch_location(offset).unwrap().unwrap();
    log.close().unwrap();
    expect_problem(dir.path(), &format!("{}:{position}: ", segment.display()));
    let text = varve(&["verify", arg(dir.path())]).stdout;
    assert!(text.contains("sequence-number range"), "{text}");
}

#[test]
fn damaged_segment_indexes_are_found_entry_by_entry() {
    use varve_db::{ChangelogRetention, Db, Options};
    // Small segments, all kept: the first is rolled and so has its indexes.
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .changelog_segment_size_bytes(64 << 10)
        .changelog_retention(ChangelogRetention::UntilShipped);
    let db = Db::open(dir.path(), opts).unwrap();
    db.changelog().commit_position("keep-all", 0).unwrap();
    for i in 0..2000 {
        db.put(format!("key:{i:05}"), "v".repeat(100)).unwrap();
    }
    db.close().unwrap();
    let segment = common::first_segment(dir.path());
    let index = segment.with_extension("index");
    let time_index = segment.with_extension("timeindex");
    for file in [&index, &time_index] {
        let len = std::fs::metadata(file).unwrap().len();
        assert!(len > 0, "{file:?} has no entries");
    }
    // The first offset index entry points at the wrong byte; the time
    // index gets a torn entry at its end.
    flip_byte(&index, 4);
    let mut torn = std::fs::read(&time_index).unwrap();
    let whole = torn.len();
    torn.extend_from_slice(&[0; 5]);
    std::fs::write(&time_index, &torn).unwrap();
    let run = varve(&["verify", arg(dir.path())]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let wants = [
        format!("{}:0: entry 0 says offset ", index.display()),
        format!(
            "{}:0: size {} is not a multiple of 12",
            time_index.display(),
            whole + 5
        ),
    ];
    for want in wants {
        assert!(
            run.stdout.lines().any(|l| l.starts_with(&want)),
            "no line starts with {want:?}:\n{}",
            run.stdout
        );
    }
}
