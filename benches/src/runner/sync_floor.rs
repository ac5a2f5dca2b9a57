//! The `syncfloor` workload: the floor under `fillsync`. One thread
//! writes `num` records of an entry's size (key + value bytes) one after
//! another into a file that was written with zeros and synced beforehand,
//! and makes each durable with `fdatasync` before the next, as a
//! write-ahead log that preallocates its segments could at best. A synced
//! put of any engine writes at least as much and waits for at least one
//! such sync, so `fillsync` with one thread is judged against this figure
//! measured in the same run. The engine is not used.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::workloads::Context;
use super::{Outcome, secs_since};
use crate::engines::{EngineError, Result};

/// Bytes written at a time while preallocating.
const ZERO_CHUNK: usize = 1 << 20;

/// Runs the workload; the file is removed afterwards.
pub(crate) fn run(ctx: &Context<'_>) -> Result<Outcome> {
    let config = ctx.config;
    let entry_bytes = config.key_size + config.value_size;
    let path = ctx.log_dir.with_extension("sync-floor");
    let failed = |what: &str, e: std::io::Error| {
        EngineError::Failed(format!("{what} {}: {e}", path.display()))
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| failed("create", e))?;
    let total = u64::try_from(entry_bytes)
        .ok()
        .and_then(|entry| entry.checked_mul(config.num))
        .ok_or_else(|| EngineError::Failed("--num times the entry size overflows".into()))?;
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut left = total;
    while left > 0 {
        let n = usize::try_from(left).map_or(ZERO_CHUNK, |left| left.min(ZERO_CHUNK));
        file.write_all(&zeros[..n])
            .map_err(|e| failed("preallocate", e))?;
        left -= n as u64;
    }
    file.sync_all().map_err(|e| failed("sync", e))?;

    let mut record = vec![0u8; entry_bytes];
    let mut outcome = Outcome {
        threads: 1,
        ..Outcome::default()
    };
    let start = Instant::now();
    for i in 0..config.num {
        record[..8].copy_from_slice(&i.to_be_bytes());
        let op = Instant::now();
        file.write_all_at(&record, i * entry_bytes as u64)
            .map_err(|e| failed("write", e))?;
        file.sync_data().map_err(|e| failed("fdatasync", e))?;
        outcome
            .latency
            .record_ns(u64::try_from(op.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    outcome.secs = secs_since(start);
    drop(file);
    std::fs::remove_file(&path).map_err(|e| failed("remove", e))?;
    outcome.ops = config.num;
    outcome.bytes = total;
    outcome.user_bytes_written = total;
    outcome.note = Some(format!(
        "{entry_bytes}-byte records, each written and fdatasync'd in place in a \
         preallocated file (the write amplification counts the preallocation)"
    ));
    Ok(outcome)
}
