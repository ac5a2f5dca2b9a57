//! What a crashed workload of the log was told, shared by the power-loss
//! tests (`power_loss.rs`, `exhaustive_crash.rs`).

use std::collections::BTreeMap;

use varve_changelog::{Error, Log, Record};

/// What a workload run did, as far as its caller could tell.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The record at every offset of every batch whose append was
    /// attempted (all returned `Ok`, except perhaps the last).
    pub records: Vec<Record>,
    /// The end offset of each attempted batch, in order.
    pub batch_ends: Vec<u64>,
    /// Everything below this offset was acknowledged as durable.
    pub acked_end: u64,
    /// The largest `truncate_before(x)` (or retention start) that returned
    /// `Ok`.
    pub acked_start: u64,
    /// The largest log start any truncation or retention may have set.
    pub max_start: u64,
    /// The consumer positions acknowledged by `commit_position`.
    pub positions: BTreeMap<String, u64>,
    /// The positions a failed (or interrupted) `commit_position` tried to
    /// write.
    pub positions_attempted: Option<BTreeMap<String, u64>>,
    /// The error that stopped the workload.
    pub error: Option<Error>,
}

impl Outcome {
    /// The offset after the last attempted record.
    pub fn end(&self) -> u64 {
        self.records.len() as u64
    }

    /// Closes `log` at the end of a workload that ran to its end:
    /// everything is acknowledged as durable if the close succeeds.
    pub fn finish(mut self, log: Log) -> Self {
        let end = self.end();
        match log.close() {
            Ok(()) => self.acked_end = end,
            Err(e) => self.error = Some(e),
        }
        self
    }
}
