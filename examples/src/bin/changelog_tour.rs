//! A tour of the changelog: append, flush, reopen, read, tail, compact,
//! and consumer positions, with the rates it reaches.

use std::time::Instant;

use varve_changelog::{Log, LogOptions, Record, Result, SyncPolicy};

const RECORDS: u64 = 200_000;
const BATCH: u64 = 100;

fn main() -> Result<()> {
    let dir =
        tempfile::tempdir().map_err(|e| varve_changelog::Error::io("create temp dir", ".", e))?;
    let opts = LogOptions::default().segment_size_bytes(4 << 20);
    println!("changelog in {}", dir.path().display());

    let log = Log::open(dir.path(), opts.clone())?;
    let started = Instant::now();
    for b in 0..RECORDS / BATCH {
        let batch: Vec<Record> = (0..BATCH)
            .map(|i| {
                let n = b * BATCH + i;
                Record::put(format!("order-{:010}", n % 20_000), format!("{n:0100}"))
            })
            .collect();
        log.append(&batch)?;
    }
    log.sync()?;
    let secs = started.elapsed().as_secs_f64();
    let (segments, bytes) = log.size();
    println!(
        "appended {RECORDS} records ({:.1} MB) in {secs:.2}s: {:.0} records/s, {segments} segments",
        bytes as f64 / 1e6,
        RECORDS as f64 / secs
    );
    log.commit_position("tour-reader", 0)?;
    log.close()?;

    let log = Log::open(dir.path(), opts)?;
    println!(
        "reopened: offsets [{}, {}), recovery cut nothing: {}",
        log.log_start_offset(),
        log.next_offset(),
        log.recovery_report().truncated_at.is_none()
    );
    let started = Instant::now();
    let mut count = 0u64;
    for record in log.reader(0)? {
        let record = record?;
        assert_eq!(record.offset, count, "offsets are dense");
        count += 1;
    }
    println!(
        "read {count} records back in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    log.commit_position("tour-reader", count)?;

    log.roll()?;
    let report = log.clean()?;
    println!(
        "compaction kept the latest record of each key: removed {} records, {:.1} MB -> {:.1} MB",
        report.records_removed,
        report.bytes_before as f64 / 1e6,
        report.bytes_after as f64 / 1e6
    );
    let latest = log.reader(0)?.count();
    println!(
        "{latest} records remain (one per key); position of tour-reader = {:?}",
        log.position("tour-reader")
    );

    let durable = LogOptions::default().sync_policy(SyncPolicy::Always);
    drop(log);
    let log = Log::open(dir.path(), durable)?;
    let started = Instant::now();
    for i in 0..200 {
        log.append(&[Record::put("sync", format!("{i}"))])?;
    }
    println!(
        "durable appends: {:.0}/s (each fdatasync'ed before returning)",
        200.0 / started.elapsed().as_secs_f64()
    );
    log.close()
}
