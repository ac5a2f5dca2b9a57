//! A sorted run: the records of one stretch of a restore, copied into an
//! arena of large blocks (no skiplist: nothing reads them before they are
//! in tables), sorted by key with the newest version of each key first,
//! and written as tables holding only that newest version.
//!
//! Keeping only the newest version is what a flush through the drop rules
//! does when no snapshot is older than the run, and no snapshot exists
//! during a restore. Tombstones are kept: a table written earlier (by this
//! restore, a resumed one, or a checkpoint) may hold their keys.
//!
//! Each record is laid out in the arena as a 24-byte header (sequence
//! number and timestamp as `u64`/`i64`, key and value lengths as `u32`,
//! little-endian; [`TOMBSTONE`] as the value length of a delete), then
//! its key, then its value, so that reading a record back touches one
//! stretch of memory. The sort moves 24-byte [`Slot`]s, not records, and
//! most of its comparisons are of two integers. Blocks are anonymous
//! mappings of small pages, recycled from run to run.

use std::cmp::Ordering;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use varve_changelog::RecordRef;

use crate::error::{Error, Result};
use crate::key::{InternalKeyRef, SeqNo, ValueKind};
use crate::prefetch::prefetch_read;
use crate::sst::{TableBuilder, TableInfo};
use crate::ttl::{ValueFormat, stored_value};

/// Bytes of a record's header in the arena.
const HEADER_BYTES: usize = 24;

/// The value length that marks a tombstone.
const TOMBSTONE: u32 = u32::MAX;

/// The largest block of the arena; a record larger than a block gets a
/// block of its own.
const MAX_BLOCK_BYTES: usize = 4 << 20;

/// The smallest block of the arena.
const MIN_BLOCK_BYTES: usize = 64 << 10;

/// Blocks are whole pages.
const PAGE_BYTES: usize = 4096;

/// How many records ahead of the one being written the table writer asks
/// the processor to load: enough to cover a memory access's latency with
/// the work on the records in between.
const PREFETCH_AHEAD: usize = 16;

/// How much of a record the table writer prefetches: the header, key and
/// value of a typical record of a state store (a few cache lines).
const PREFETCH_BYTES: usize = 192;

/// The most tables one run is cut into.
const MAX_PARTS: usize = 64;

/// A run to be sorted of at least this many bytes is sorted and written
/// on two threads.
const PARALLEL_SORT_BYTES: usize = 8 << 20;

/// Keys sampled for each part when cutting a run to be sorted.
const SAMPLES_PER_PART: usize = 64;

/// A record's place in the sort: the first 16 bytes of its key as two
/// big-endian numbers, zero-padded, and where the record starts in the
/// arena (block index in the high 32 bits, byte position in the low),
/// which grows with the order records were pushed in.
#[derive(Clone, Copy, Debug)]
struct Slot {
    high: u64,
    low: u64,
    at: u64,
}

/// The memory a record of a run takes besides its key and value bytes:
/// its header in the arena and its slot in the sort order (what
/// `docs/STATE.md` counts).
#[cfg(test)]
const RECORD_OVERHEAD_BYTES: usize = HEADER_BYTES + std::mem::size_of::<Slot>();

/// One block of the arena: a mapping and how much of it is used.
struct Block {
    map: memmap2::MmapMut,
    used: usize,
}

/// A record read back from the arena.
struct RunRecord<'a> {
    key: &'a [u8],
    /// `None` for a tombstone.
    value: Option<&'a [u8]>,
    seqno: SeqNo,
    timestamp_ms: i64,
}

/// Records gathered for one or more tables.
pub(super) struct SortedRun {
    blocks: Vec<Block>,
    /// The size of a new block (a larger record gets one of its size).
    block_bytes: usize,
    /// Bytes of the arena that records fill.
    used_bytes: usize,
    slots: Vec<Slot>,
    /// Whether each key pushed is greater than the one before (then the
    /// run is already in order, with one version per key).
    ascending: bool,
    pool: BlockPool,
}

impl SortedRun {
    /// An empty run that will be written once it holds about
    /// `run_size_bytes` (which sizes its blocks), taking blocks from
    /// `pool` before it maps new ones. Maps nothing until the first push.
    pub(super) fn new(run_size_bytes: usize, pool: &BlockPool) -> Self {
        SortedRun::with_blocks_of(block_bytes_for(run_size_bytes), pool.clone())
    }

    fn with_blocks_of(block_bytes: usize, pool: BlockPool) -> Self {
        SortedRun {
            blocks: Vec::new(),
            block_bytes,
            used_bytes: 0,
            slots: Vec::new(),
            ascending: true,
            pool,
        }
    }

    /// Adds `stored` as the write of sequence number `offset + 1` (as
    /// [`insert_all`](crate::write::insert_all) numbers them).
    ///
    /// # Errors
    /// [`Error::KeyTooLarge`] or [`Error::ValueTooLarge`] for a record the
    /// store would not take from a write; an I/O error if the arena cannot
    /// map another block.
    pub(super) fn push(&mut self, record: RecordRef<'_>) -> Result<()> {
        let key = record.key;
        let value = record.value;
        crate::batch::check_key(key)?;
        if let Some(v) = value {
            crate::batch::check_value(v)?;
        }
        let value_len = value.map_or(0, <[u8]>::len);
        let len = HEADER_BYTES + key.len() + value_len;
        let (block, pos) = self
            .reserve(len)
            .map_err(|e| Error::io("map", "memory for a restore run", e))?;
        let (high, low) = key_prefix(key);
        let slot = Slot {
            high,
            low,
            at: ((block as u64) << 32) | pos as u64,
        };
        if self.ascending
            && let Some(last) = self.slots.last()
        {
            let order = (last.high, last.low)
                .cmp(&(high, low))
                .then_with(|| self.record(last.at).key.cmp(key));
            self.ascending = order.is_lt();
        }
        let written = &mut self.blocks[block];
        let out = &mut written.map[pos..pos + len];
        let (header, body) = out.split_at_mut(HEADER_BYTES);
        header[..8].copy_from_slice(&(record.offset + 1).to_le_bytes());
        header[8..16].copy_from_slice(&record.timestamp_ms.to_le_bytes());
        // Both lengths fit: the limits checked above are far below 4 GiB.
        header[16..20].copy_from_slice(&(key.len() as u32).to_le_bytes());
        let value_field = value.map_or(TOMBSTONE, |v| v.len() as u32);
        header[20..24].copy_from_slice(&value_field.to_le_bytes());
        let (key_out, value_out) = body.split_at_mut(key.len());
        key_out.copy_from_slice(key);
        if let Some(v) = value {
            value_out.copy_from_slice(v);
        }
        written.used = pos + len;
        self.used_bytes += len;
        self.slots.push(slot);
        Ok(())
    }

    /// Room for `len` bytes: the block index and byte position.
    fn reserve(&mut self, len: usize) -> io::Result<(usize, usize)> {
        if let Some(last) = self.blocks.last()
            && last.map.len() - last.used >= len
        {
            return Ok((self.blocks.len() - 1, last.used));
        }
        if len <= self.block_bytes
            && let Some(block) = self.pool.take()
        {
            self.blocks.push(block);
            return Ok((self.blocks.len() - 1, 0));
        }
        let size = len.max(self.block_bytes).next_multiple_of(PAGE_BYTES);
        // Small pages: a restore touches each page of a block first as it
        // copies records in, and on virtual machines the kernel hands out
        // fresh huge pages far slower than small ones (a 1M-record run in
        // random order spent up to half its time zeroing them, and its
        // time varied twofold between processes).
        let map = memmap2::MmapOptions::new().len(size).map_anon()?;
        self.blocks.push(Block { map, used: 0 });
        Ok((self.blocks.len() - 1, 0))
    }

    /// The record at `at` (a slot's position).
    fn record(&self, at: u64) -> RunRecord<'_> {
        let block = &self.blocks[(at >> 32) as usize];
        let bytes = &block.map[at as u32 as usize..block.used];
        let field = |from: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[from..from + 8]);
            raw
        };
        let lengths = field(16);
        let key_len = u32::from_le_bytes([lengths[0], lengths[1], lengths[2], lengths[3]]);
        let value_len = u32::from_le_bytes([lengths[4], lengths[5], lengths[6], lengths[7]]);
        let key_end = HEADER_BYTES + key_len as usize;
        let value = (value_len != TOMBSTONE).then(|| &bytes[key_end..key_end + value_len as usize]);
        RunRecord {
            key: &bytes[HEADER_BYTES..key_end],
            value,
            seqno: SeqNo(u64::from_le_bytes(field(0))),
            timestamp_ms: i64::from_le_bytes(field(8)),
        }
    }

    /// Asks the processor to load the start of the record at `at`.
    fn prefetch(&self, at: u64) {
        if let Some(block) = self.blocks.get((at >> 32) as usize)
            && let Some(start) = block.map.get(at as u32 as usize..)
        {
            for line in (0..PREFETCH_BYTES).step_by(64) {
                if let Some(rest) = start.get(line..) {
                    prefetch_read(rest.as_ptr());
                }
            }
        }
    }

    /// About how many bytes of memory the run takes: what its records
    /// fill of its arena (headers, keys and values) and the capacity of
    /// its sort order. The unused rest of the last block is not counted:
    /// no page of it is touched until a record lands there.
    pub(super) fn size_bytes(&self) -> usize {
        self.used_bytes + self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    /// Whether the run's keys were pushed in increasing order: its tables
    /// then overlap no earlier run's unless their key ranges meet, and it
    /// needs no sort.
    pub(super) fn is_ascending(&self) -> bool {
        self.ascending
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// How many tables the run is written as, for tables of about
    /// `target_bytes` (at least one). A run to be sorted of 8 MiB or more
    /// is cut into an even number, so that the two threads that sort and
    /// write its parts get as many each; once `cuts` holds keys (an
    /// earlier run's, see [`write_tables`](Self::write_tables)), a run to
    /// be sorted is cut at them.
    pub(super) fn table_count(&self, target_bytes: u64, cuts: &[Vec<u8>]) -> usize {
        if !self.ascending && !cuts.is_empty() {
            return cuts.len() + 1;
        }
        let count = (self.used_bytes as u64)
            .div_ceil(target_bytes.max(1))
            .max(1);
        let count = usize::try_from(count).unwrap_or(MAX_PARTS).min(MAX_PARTS);
        if !self.ascending && self.used_bytes >= PARALLEL_SORT_BYTES {
            count.next_multiple_of(2).min(MAX_PARTS)
        } else {
            count
        }
    }

    /// The order of two slots' keys.
    fn key_order(&self, a: &Slot, b: &Slot) -> Ordering {
        (a.high, a.low)
            .cmp(&(b.high, b.low))
            .then_with(|| self.record(a.at).key.cmp(self.record(b.at).key))
    }

    /// Internal-key order: key ascending, then newest (latest pushed)
    /// first.
    fn internal_order(&self, a: &Slot, b: &Slot) -> Ordering {
        self.key_order(a, b).then_with(|| b.at.cmp(&a.at))
    }

    /// Cuts `slots` into at most `parts` stretches that cover it in
    /// order, with every version of a key in one stretch and every key of
    /// a stretch below every key of the next once each is sorted. A run
    /// pushed in key order is cut by count. Any other is cut at the keys in
    /// `cuts`, which, if empty, first get up to `parts - 1` keys sampled
    /// from this run (quantiles, so stretches of about equal count); each
    /// slot is moved, in place, to the stretch its key falls in. Every
    /// unsorted run of a restore is thus cut at the same keys, and each
    /// stretch's tables overlap no other stretch's. Returns the
    /// stretches' ends.
    fn partition(&self, slots: &mut [Slot], parts: usize, cuts: &mut Vec<Vec<u8>>) -> Vec<usize> {
        let len = slots.len();
        if self.ascending {
            // Keys increase: any cut is between two keys.
            let mut ends: Vec<usize> = (1..=parts).map(|p| len * p / parts).collect();
            ends.dedup();
            ends.retain(|&e| e > 0);
            return ends;
        }
        if cuts.is_empty() {
            *cuts = self
                .splitters(slots, parts)
                .iter()
                .map(|s| self.record(s.at).key.to_vec())
                .collect();
        }
        if cuts.is_empty() {
            return vec![len];
        }
        let prefixes: Vec<(u64, u64)> = cuts.iter().map(|c| key_prefix(c)).collect();
        // The stretch of each slot: how many cuts sort at or below its key
        // (a key equal to a cut goes with the keys above it).
        let bucket_of = |slot: &Slot| {
            prefixes
                .iter()
                .zip(cuts.iter())
                .take_while(|(prefix, cut)| {
                    (**prefix)
                        .cmp(&(slot.high, slot.low))
                        .then_with(|| cut.as_slice().cmp(self.record(slot.at).key))
                        .is_le()
                })
                .count() as u8
        };
        let mut buckets: Vec<u8> = slots.iter().map(bucket_of).collect();
        let mut ends = vec![0usize; cuts.len() + 1];
        for &b in &buckets {
            ends[b as usize] += 1;
        }
        let mut next = Vec::with_capacity(ends.len());
        let mut sum = 0;
        for end in &mut ends {
            next.push(sum);
            sum += *end;
            *end = sum;
        }
        // Swap each slot into its stretch: every swap puts one slot in
        // its final stretch.
        for b in 0..ends.len() {
            while next[b] < ends[b] {
                let i = next[b];
                let target = buckets[i] as usize;
                if target == b {
                    next[b] += 1;
                } else {
                    let j = next[target];
                    slots.swap(i, j);
                    buckets.swap(i, j);
                    next[target] += 1;
                }
            }
        }
        ends.retain(|&e| e > 0);
        ends.dedup();
        ends
    }

    /// Up to `parts - 1` distinct keys, in order, that cut `slots` into
    /// stretches of about equal count: quantiles of a sample of evenly
    /// spaced slots.
    fn splitters(&self, slots: &[Slot], parts: usize) -> Vec<Slot> {
        if parts < 2 || slots.len() < 2 * parts {
            return Vec::new();
        }
        let samples = (parts * SAMPLES_PER_PART).min(slots.len());
        let mut sample: Vec<Slot> = (0..samples)
            .map(|i| slots[i * slots.len() / samples])
            .collect();
        sample.sort_unstable_by(|a, b| self.key_order(a, b));
        let mut splitters: Vec<Slot> = (1..parts).map(|p| sample[samples * p / parts]).collect();
        splitters.dedup_by(|a, b| self.key_order(a, b).is_eq());
        splitters
    }

    /// Sorts the run and writes the newest version of each key to the
    /// tables `builders` make, values stored in `format`: the records are
    /// cut into one stretch per builder (each holding all versions of
    /// its keys, at the keys in `cuts`, which the first unsorted run
    /// fills; see [`partition`](Self::partition)), and the stretches
    /// are sorted and written at the same time on up to two threads. Each
    /// table is synced; the caller syncs the directory. A builder left
    /// with no records is dropped unused (`None` in its place). The run
    /// is left empty, its arena's blocks kept in its pool.
    ///
    /// # Errors
    /// Table write and sync errors (the caller removes the tables).
    pub(super) fn write_tables(
        &mut self,
        builders: Vec<TableBuilder>,
        format: ValueFormat,
        cuts: &mut Vec<Vec<u8>>,
    ) -> Result<Vec<Option<TableInfo>>> {
        let empty = SortedRun::with_blocks_of(self.block_bytes, self.pool.clone());
        let mut run = std::mem::replace(self, empty);
        let mut slots = std::mem::take(&mut run.slots);
        let ends = run.partition(&mut slots, builders.len().min(MAX_PARTS), cuts);
        let run = &run;
        let unused = builders.len() - ends.len();
        let mut builders = builders.into_iter();
        // Each thread takes a contiguous half of the stretches.
        let half = ends.len().div_ceil(2);
        let cut = ends[half - 1];
        let (first_slots, second_slots) = slots.split_at_mut(cut);
        let first: Vec<_> = stretches(first_slots, &ends[..half], 0)
            .zip(builders.by_ref())
            .collect();
        let second: Vec<_> = stretches(second_slots, &ends[half..], cut)
            .zip(builders.by_ref())
            .collect();
        let (first, second) = std::thread::scope(|scope| {
            let helper = (!second.is_empty()).then(|| {
                std::thread::Builder::new()
                    .name("varve-restore-writer-2".into())
                    .spawn_scoped(scope, move || run.write_each(second, format))
            });
            let first = run.write_each(first, format);
            let second = match helper {
                Some(Ok(handle)) => match handle.join() {
                    Ok(result) => result,
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Some(Err(e)) => Err(Error::io("spawn", "a restore writer thread", e)),
                None => Ok(Vec::new()),
            };
            (first, second)
        });
        let mut infos: Vec<Option<TableInfo>> = first?.into_iter().map(Some).collect();
        infos.extend(second?.into_iter().map(Some));
        infos.extend((0..unused).map(|_| None));
        Ok(infos)
    }

    /// Sorts each stretch and writes it with its builder, in turn.
    fn write_each(
        &self,
        jobs: Vec<(&mut [Slot], TableBuilder)>,
        format: ValueFormat,
    ) -> Result<Vec<TableInfo>> {
        jobs.into_iter()
            .map(|(slots, builder)| {
                if !self.ascending {
                    slots.sort_unstable_by(|a, b| self.internal_order(a, b));
                }
                self.write_stretch(builder, slots, format)
            })
            .collect()
    }

    /// Writes the newest version of each key of `slots` (sorted) with
    /// `builder`, and finishes (and syncs) the table.
    fn write_stretch(
        &self,
        mut builder: TableBuilder,
        slots: &[Slot],
        format: ValueFormat,
    ) -> Result<TableInfo> {
        self.add_newest(&mut builder, slots, format)?;
        builder.finish()
    }

    /// Adds the records of a run pushed in key order to `builder`, whose
    /// keys so far are all below them: the table the writer keeps open
    /// across such runs. The run keeps its records.
    ///
    /// # Errors
    /// Table write errors.
    pub(super) fn add_in_order(
        &self,
        builder: &mut TableBuilder,
        format: ValueFormat,
    ) -> Result<()> {
        debug_assert!(self.ascending, "only a run in key order is added as it is");
        self.add_newest(builder, &self.slots, format)
    }

    /// The first key pushed and the last (for a run in key order, its
    /// smallest and largest).
    pub(super) fn key_bounds(&self) -> Option<(&[u8], &[u8])> {
        let first = self.slots.first()?;
        let last = self.slots.last()?;
        Some((self.record(first.at).key, self.record(last.at).key))
    }

    /// Adds the newest version of each key of `slots` (sorted) to
    /// `builder`.
    fn add_newest(
        &self,
        builder: &mut TableBuilder,
        slots: &[Slot],
        format: ValueFormat,
    ) -> Result<()> {
        let mut stored = Vec::new();
        let mut previous: Option<&[u8]> = None;
        for (i, slot) in slots.iter().enumerate() {
            // The records are scattered through the arena in push order:
            // loading them ahead keeps several misses in flight.
            if let Some(ahead) = slots.get(i + PREFETCH_AHEAD) {
                self.prefetch(ahead.at);
            }
            let record = self.record(slot.at);
            if previous == Some(record.key) {
                continue;
            }
            previous = Some(record.key);
            let kind = match record.value {
                Some(_) => ValueKind::Put,
                None => ValueKind::Delete,
            };
            let key = InternalKeyRef {
                user_key: record.key,
                seqno: record.seqno,
                kind,
            };
            match record.value {
                Some(v) => builder.add(
                    key,
                    stored_value(v, record.timestamp_ms, format, &mut stored),
                )?,
                None => builder.add(key, &[])?,
            }
        }
        Ok(())
    }
}

impl Drop for SortedRun {
    /// Gives the arena's blocks of the usual size to the pool, for the
    /// next run (up to what one run holds).
    fn drop(&mut self) {
        let mut pool = self.pool.blocks.lock();
        let room = self.pool.max_blocks.saturating_sub(pool.len());
        let reusable = std::mem::take(&mut self.blocks)
            .into_iter()
            .filter(|b| b.map.len() == self.block_bytes);
        pool.extend(reusable.take(room).map(|mut b| {
            b.used = 0;
            b
        }));
    }
}

/// The stretches of `slots` that end at `ends` (positions in the whole
/// run's slots, `offset` being where `slots` starts in them).
fn stretches<'a>(
    slots: &'a mut [Slot],
    ends: &[usize],
    offset: usize,
) -> impl Iterator<Item = &'a mut [Slot]> {
    let mut rest = slots;
    let mut from = offset;
    let mut out = Vec::with_capacity(ends.len());
    for &end in ends {
        let (stretch, tail) = std::mem::take(&mut rest).split_at_mut(end - from);
        out.push(stretch);
        rest = tail;
        from = end;
    }
    out.into_iter()
}

/// Arena blocks of runs already written, kept for the runs after them:
/// a restore then maps (and the kernel zeroes) about two runs' memory
/// once, instead of every run's again, and unmaps nothing in between.
///
/// Before the first run is written the pool is also kept a few blocks
/// ahead of the run being gathered by the otherwise idle writer thread
/// ([`prefault`](Self::prefault)), so that the kernel's page faults and
/// zeroing of fresh memory happen there rather than where records are
/// copied in.
#[derive(Clone)]
pub(super) struct BlockPool {
    blocks: Arc<Mutex<Vec<Block>>>,
    /// The most blocks the pool keeps: about one run's.
    max_blocks: usize,
    /// The size of a run's usual block.
    block_bytes: usize,
}

impl BlockPool {
    /// A pool for runs of about `run_size_bytes`.
    pub(super) fn new(run_size_bytes: usize) -> Self {
        let block_bytes = block_bytes_for(run_size_bytes);
        BlockPool {
            blocks: Arc::default(),
            max_blocks: run_size_bytes / block_bytes + 1,
            block_bytes,
        }
    }

    fn take(&self) -> Option<Block> {
        self.blocks.lock().pop()
    }

    /// Whether the pool holds fewer than `ahead` blocks (and fewer than a
    /// run's): a block [`prefault`](Self::prefault) adds is then taken by
    /// the run being gathered soon.
    pub(super) fn wants(&self, ahead: usize) -> bool {
        let held = self.blocks.lock().len();
        held < ahead.min(self.max_blocks)
    }

    /// Maps a block of the usual size, touches every page of it, and adds
    /// it to the pool.
    ///
    /// # Errors
    /// The mapping's error (the caller may go on without: a run maps the
    /// blocks it needs itself).
    pub(super) fn prefault(&self) -> io::Result<()> {
        let mut map = memmap2::MmapOptions::new()
            .len(self.block_bytes)
            .map_anon()?;
        map.fill(0);
        self.blocks.lock().push(Block { map, used: 0 });
        Ok(())
    }
}

/// The size of the usual block of a run of about `run_size_bytes`.
fn block_bytes_for(run_size_bytes: usize) -> usize {
    (run_size_bytes / 16)
        .clamp(MIN_BLOCK_BYTES, MAX_BLOCK_BYTES)
        .next_multiple_of(PAGE_BYTES)
}

/// The first 16 bytes of `key` as two big-endian numbers, zero-padded.
/// Zero padding keeps the order: where two padded prefixes differ, the
/// keys differ there the same way or one is a prefix of the other; where
/// they are equal the keys themselves decide.
fn key_prefix(key: &[u8]) -> (u64, u64) {
    let mut raw = [0u8; 16];
    let n = key.len().min(16);
    raw[..n].copy_from_slice(&key[..n]);
    let [
        h0,
        h1,
        h2,
        h3,
        h4,
        h5,
        h6,
        h7,
        l0,
        l1,
        l2,
        l3,
        l4,
        l5,
        l6,
        l7,
    ] = raw;
    (
        u64::from_be_bytes([h0, h1, h2, h3, h4, h5, h6, h7]),
        u64::from_be_bytes([l0, l1, l2, l3, l4, l5, l6, l7]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use varve_changelog::StoredRecord;

    fn record(key: &[u8], offset: u64) -> StoredRecord {
        StoredRecord {
            offset,
            record: varve_changelog::Record {
                key: Bytes::copy_from_slice(key),
                value: None,
                timestamp_ms: 0,
                headers: Vec::new(),
            },
        }
    }

    fn run_of(keys: &[&[u8]], run_size_bytes: usize) -> SortedRun {
        let mut run = SortedRun::new(run_size_bytes, &BlockPool::new(run_size_bytes));
        for (offset, key) in (0..).zip(keys) {
            run.push(record(key, offset).as_ref()).unwrap();
        }
        run
    }

    /// The run's records in internal-key order: key and sequence number.
    fn sorted(run: &mut SortedRun) -> Vec<(Vec<u8>, u64)> {
        let mut slots = std::mem::take(&mut run.slots);
        if !run.ascending {
            slots.sort_unstable_by(|a, b| run.internal_order(a, b));
        }
        let out = slots
            .iter()
            .map(|s| {
                let r = run.record(s.at);
                (r.key.to_vec(), r.seqno.0)
            })
            .collect();
        run.slots = slots;
        out
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_record_takes_the_48_bytes_docs_state_md_counts() {
        assert_eq!(RECORD_OVERHEAD_BYTES, 48);
    }

    #[test]
    fn the_order_is_by_key_then_newest_first_whatever_the_key_lengths() {
        let keys: [&[u8]; 10] = [
            b"b",
            b"a\0",
            b"a",
            b"",
            b"a",
            b"0123456789abcdefZ",
            b"0123456789abcdef",
            b"0123456789abcdefA",
            b"a\0\0",
            b"0123456789abcdefZ",
        ];
        let mut run = run_of(&keys, 0);
        let mut want: Vec<(Vec<u8>, u64)> = keys.iter().map(|k| k.to_vec()).zip(1..).collect();
        want.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        assert_eq!(sorted(&mut run), want);
    }

    #[test]
    fn a_run_pushed_in_key_order_is_ascending_and_keeps_its_order() {
        let mut run = run_of(&[b"a", b"a\0", b"b", b"ba"], 0);
        assert!(run.is_ascending());
        let seqnos: Vec<u64> = sorted(&mut run).iter().map(|r| r.1).collect();
        assert_eq!(seqnos, [1, 2, 3, 4]);
        // A repeated key (an overwrite) is not ascending: the sort then
        // puts its newest version first.
        run.push(record(b"ba", 4).as_ref()).unwrap();
        assert!(!run.is_ascending());
        let seqnos: Vec<u64> = sorted(&mut run).iter().map(|r| r.1).collect();
        assert_eq!(seqnos, [1, 2, 3, 5, 4]);
    }

    #[test]
    fn records_read_back_as_pushed_across_blocks_and_oversized_records() {
        let mut run = SortedRun::new(0, &BlockPool::new(0));
        let big = vec![7u8; MIN_BLOCK_BYTES * 3];
        let values: Vec<Option<Vec<u8>>> = (0..2000u32)
            .map(|i| match i % 7 {
                0 => None,
                3 => Some(big.clone()),
                _ => Some(vec![i as u8; (i % 300) as usize]),
            })
            .collect();
        for (i, value) in values.iter().enumerate() {
            let mut stored = record(format!("k{i:05}").as_bytes(), i as u64);
            stored.record.value = value.as_deref().map(Bytes::copy_from_slice);
            stored.record.timestamp_ms = -(i as i64);
            run.push(stored.as_ref()).unwrap();
        }
        assert!(run.blocks.len() > 2, "{} blocks", run.blocks.len());
        assert!(run.is_ascending());
        for (i, slot) in run.slots.iter().enumerate() {
            let r = run.record(slot.at);
            assert_eq!(r.key, format!("k{i:05}").as_bytes());
            assert_eq!(r.value, values[i].as_deref());
            assert_eq!((r.seqno.0, r.timestamp_ms), (i as u64 + 1, -(i as i64)));
        }
        let used: usize = run.blocks.iter().map(|b| b.used).sum();
        let record_bytes: usize = values
            .iter()
            .map(|v| 24 + 6 + v.as_ref().map_or(0, Vec::len))
            .sum();
        assert_eq!((run.used_bytes, used), (record_bytes, record_bytes));
        assert!(run.size_bytes() >= used + run.slots.len() * std::mem::size_of::<Slot>());
    }

    #[test]
    fn oversized_keys_and_values_are_refused_with_their_typed_errors() {
        let mut run = SortedRun::new(0, &BlockPool::new(0));
        let key = vec![1u8; crate::MAX_KEY_SIZE_BYTES + 1];
        let err = run.push(record(&key, 0).as_ref()).unwrap_err();
        assert!(matches!(err, Error::KeyTooLarge { .. }), "{err}");
        let mut stored = record(b"k", 1);
        stored.record.value = Some(Bytes::from(vec![0u8; crate::MAX_VALUE_SIZE_BYTES + 1]));
        let err = run.push(stored.as_ref()).unwrap_err();
        assert!(matches!(err, Error::ValueTooLarge { .. }), "{err}");
        assert!(run.is_empty());
    }

    /// Checks that `ends` cut `slots` into stretches that each hold
    /// every version of their keys, all below the next stretch's keys.
    fn check_stretches(run: &SortedRun, slots: &[Slot], ends: &[usize]) {
        assert_eq!(ends.last(), Some(&slots.len()));
        let mut from = 0;
        let mut previous_max: Option<Vec<u8>> = None;
        for &end in ends {
            assert!(end > from, "empty stretch in {ends:?}");
            let keys: Vec<&[u8]> = slots[from..end]
                .iter()
                .map(|s| run.record(s.at).key)
                .collect();
            let (min, max) = (keys.iter().min().unwrap(), keys.iter().max().unwrap());
            if let Some(p) = &previous_max {
                assert!(&p[..] < *min, "stretches overlap at {end}");
            }
            previous_max = Some(max.to_vec());
            from = end;
        }
    }

    #[test]
    fn partitions_keep_every_version_of_a_key_together_and_in_key_order() {
        let mut rng = varve_changelog::testing::Rng::new(5);
        // Random keys, many of them written many times, of every length
        // from empty to past the 16-byte prefix; and one key holding
        // most of the run.
        let mut keys: Vec<Vec<u8>> = (0..5000)
            .map(|_| {
                let len = rng.below(24) as usize;
                let mut key = vec![b'k'; len];
                if let Some(last) = key.last_mut() {
                    *last = b'a' + rng.below(4) as u8;
                }
                key
            })
            .collect();
        keys.extend(std::iter::repeat_n(b"hot".to_vec(), 4000));
        for parts in [1, 2, 3, 4, 8, 64] {
            let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let mut run = run_of(&refs, 0);
            assert!(!run.is_ascending());
            let mut slots = std::mem::take(&mut run.slots);
            let ends = run.partition(&mut slots, parts, &mut Vec::new());
            assert!(ends.len() <= parts, "{} stretches for {parts}", ends.len());
            check_stretches(&run, &slots, &ends);
            let mut seqnos: Vec<u64> = slots.iter().map(|s| run.record(s.at).seqno.0).collect();
            seqnos.sort_unstable();
            assert!(
                seqnos.iter().copied().eq(1..=keys.len() as u64),
                "a slot lost or repeated"
            );
        }
        // Distinct random keys are cut into stretches of about equal count.
        let distinct: Vec<Vec<u8>> = (0..20_000u64)
            .map(|_| rng.next_u64().to_be_bytes().to_vec())
            .collect();
        let refs: Vec<&[u8]> = distinct.iter().map(Vec::as_slice).collect();
        let mut run = run_of(&refs, 0);
        let mut slots = std::mem::take(&mut run.slots);
        let mut cuts = Vec::new();
        let ends = run.partition(&mut slots, 4, &mut cuts);
        assert_eq!(cuts.len(), 3);
        assert_eq!(ends.len(), 4);
        check_stretches(&run, &slots, &ends);
        let mut from = 0;
        for end in ends {
            assert!(
                (3500..6500).contains(&(end - from)),
                "stretch of {}",
                end - from
            );
            from = end;
        }
        // A run pushed in key order is cut by count.
        let mut run = run_of(&[b"a", b"b", b"c", b"d"], 0);
        let mut slots = std::mem::take(&mut run.slots);
        assert_eq!(run.partition(&mut slots, 2, &mut Vec::new()), [2, 4]);
        assert_eq!(run.partition(&mut slots, 8, &mut Vec::new()), [1, 2, 3, 4]);
    }

    #[test]
    fn a_written_runs_blocks_go_to_the_pool_and_the_next_run_takes_them() {
        let pool = BlockPool::new(1 << 20);
        let mut run = SortedRun::new(1 << 20, &pool);
        let value = vec![3u8; 1000];
        for i in 0..500u64 {
            let mut stored = record(&i.to_be_bytes(), i);
            stored.record.value = Some(Bytes::copy_from_slice(&value));
            run.push(stored.as_ref()).unwrap();
        }
        let blocks = run.blocks.len();
        assert!(blocks >= 2, "{blocks} blocks");
        drop(run);
        assert_eq!(pool.blocks.lock().len(), blocks);
        let mut next = SortedRun::new(1 << 20, &pool);
        next.push(record(b"x", 0).as_ref()).unwrap();
        assert_eq!(pool.blocks.lock().len(), blocks - 1);
        assert_eq!(next.record(next.slots[0].at).key, b"x");
    }

    #[test]
    fn blocks_touched_ahead_wait_in_the_pool_until_a_run_takes_them() {
        let pool = BlockPool::new(1 << 20);
        assert!(pool.wants(2));
        pool.prefault().unwrap();
        pool.prefault().unwrap();
        assert!(!pool.wants(2), "two blocks ahead are enough");
        assert!(pool.wants(3));
        let lens: Vec<usize> = pool.blocks.lock().iter().map(|b| b.map.len()).collect();
        assert_eq!(lens, [block_bytes_for(1 << 20); 2]);
        let mut run = SortedRun::new(1 << 20, &pool);
        run.push(record(b"k", 0).as_ref()).unwrap();
        assert_eq!(
            pool.blocks.lock().len(),
            1,
            "the run took a prefaulted block"
        );
        assert_eq!(run.record(run.slots[0].at).key, b"k");
        // A pool never wants more than a run's blocks.
        let small = BlockPool::new(0);
        for _ in 0..small.max_blocks {
            small.prefault().unwrap();
        }
        assert!(!small.wants(usize::MAX));
    }
}
