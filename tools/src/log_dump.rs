//! `varve log dump PATH`: the batches and records of a changelog, like
//! `kafka-dump-log.sh`. A batch whose CRC fails but whose header is sane is
//! shown as invalid and stepped over; other damage ends that segment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use varve_changelog::batch::{ATTR_COMPACTED, Batch, BatchHeader};
use varve_changelog::filename::{FileKind, INDEX_SUFFIX, TIME_INDEX_SUFFIX, parse_file_name};
use varve_changelog::index::{OFFSET_ENTRY_SIZE, TIME_ENTRY_SIZE};

use crate::error::{Problem, Result, ToolError};
use crate::format::Out;
use crate::segments::{self, BadBatch, SegmentFile, SegmentScanner, Step};
use crate::store::LockState;

/// What to print.
#[derive(Clone, Debug, Default)]
pub struct DumpArgs {
    /// Skip batches that end before this offset.
    pub from: u64,
    /// Print every record.
    pub print_data: bool,
    /// Check the index files against the batches.
    pub index_check: bool,
}

/// Dumps the changelog at `path`: a store, a changelog directory, or one
/// segment file.
///
/// # Errors
/// If the path is none of these, or a read fails.
pub fn run(out: &mut Out, path: &Path, args: &DumpArgs) -> Result<()> {
    let segments = resolve(path)?;
    for segment in &segments {
        dump_segment(out, segment, args)?;
    }
    out.flush()
}

fn resolve(path: &Path) -> Result<Vec<SegmentFile>> {
    if path.is_file() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(FileKind::Segment(base_offset)) = parse_file_name(name) else {
            return Err(ToolError::Invalid(format!(
                "{} is not a segment file (expected a name like 00000000000000000000.log)",
                path.display()
            )));
        };
        return Ok(vec![SegmentFile {
            base_offset,
            path: path.to_owned(),
        }]);
    }
    let dir = segments::changelog_dir(path)?;
    if let Some(store) = dir.parent().filter(|_| dir != path) {
        LockState::probe(store)?.warn_if_live();
    }
    segments::list_segments(&dir)
}

fn dump_segment(out: &mut Out, segment: &SegmentFile, args: &DumpArgs) -> Result<()> {
    let mut scanner = SegmentScanner::open(segment)?;
    if out.json() {
        out.object(Map::from_iter([
            ("kind".to_owned(), json!("segment")),
            ("file".to_owned(), json!(segment.path.display().to_string())),
            ("base_offset".to_owned(), json!(segment.base_offset)),
            ("size_bytes".to_owned(), json!(scanner.len_bytes())),
        ]))?;
    } else {
        out.line(format!(
            "Dumping {} (base offset {}, {} bytes)",
            segment.path.display(),
            segment.base_offset,
            scanner.len_bytes()
        ))?;
    }
    let mut positions = HashMap::new();
    loop {
        match scanner.step()? {
            Step::Batch(good) => {
                positions.insert(good.position, good.batch.header().base_offset);
                if good.batch.header().next_offset() > args.from {
                    print_batch(out, good.position, good.batch.header(), true)?;
                    if args.print_data {
                        print_records(out, &good.batch)?;
                    }
                }
            }
            Step::Bad(bad) => {
                if !print_bad(out, &mut scanner, &bad)? {
                    break;
                }
            }
            Step::End {
                position,
                zero_bytes,
            } => {
                print_end(out, position, zero_bytes)?;
                break;
            }
        }
    }
    if args.index_check {
        index_check(out, segment, &positions)?;
    }
    Ok(())
}

fn print_batch(out: &mut Out, position: u64, h: &BatchHeader, valid: bool) -> Result<()> {
    let compacted = h.attributes & ATTR_COMPACTED != 0;
    if out.json() {
        return out.object(Map::from_iter([
            ("kind".to_owned(), json!("batch")),
            ("base_offset".to_owned(), json!(h.base_offset)),
            ("last_offset".to_owned(), json!(h.last_offset())),
            ("count".to_owned(), json!(h.record_count)),
            ("position".to_owned(), json!(position)),
            ("size_bytes".to_owned(), json!(h.length)),
            ("first_timestamp_ms".to_owned(), json!(h.first_timestamp_ms)),
            ("max_timestamp_ms".to_owned(), json!(h.max_timestamp_ms)),
            ("compacted".to_owned(), json!(compacted)),
            ("crc".to_owned(), json!(h.crc)),
            ("valid".to_owned(), json!(valid)),
        ]));
    }
    out.line(format!(
        "baseOffset: {} lastOffset: {} count: {} position: {position} size: {} firstTimestamp: {} maxTimestamp: {} compacted: {compacted} crc: {:#010x} isValid: {valid}",
        h.base_offset,
        h.last_offset(),
        h.record_count,
        h.length,
        h.first_timestamp_ms,
        h.max_timestamp_ms,
        h.crc
    ))
}

fn print_records(out: &mut Out, batch: &Batch) -> Result<()> {
    for item in batch.records() {
        let (offset, record) = match item {
            Ok(item) => item,
            Err(e) => {
                let what = format!("a record does not decode: {e:?}");
                return note(out, &what);
            }
        };
        let mut row = Map::new();
        row.insert("kind".into(), json!("record"));
        row.insert("offset".into(), json!(offset));
        row.insert("timestamp_ms".into(), json!(record.timestamp_ms));
        out.put_bytes(&mut row, "key", &record.key);
        match &record.value {
            Some(v) => out.put_bytes(&mut row, "value", v),
            None => {
                crate::format::put_null(&mut row, "value");
            }
        }
        let headers: Vec<Value> = record
            .headers
            .iter()
            .map(|h| {
                let mut obj = Map::new();
                obj.insert("name".into(), json!(h.key));
                out.put_bytes(&mut obj, "value", &h.value);
                Value::Object(obj)
            })
            .collect();
        if out.json() {
            row.insert("headers".into(), Value::Array(headers));
            out.object(row)?;
        } else {
            let value = record
                .value
                .as_ref()
                .map_or("(tombstone)".to_owned(), |v| out.show(v));
            let headers: Vec<String> = record
                .headers
                .iter()
                .map(|h| format!("{}={}", h.key, out.show(&h.value)))
                .collect();
            out.line(format!(
                "| offset: {offset} timestamp: {} key: {} value: {value} headers: [{}]",
                record.timestamp_ms,
                out.show(&record.key),
                headers.join(", ")
            ))?;
        }
    }
    Ok(())
}

/// Prints a bad spot; steps over it when its header allows. Returns
/// whether the dump of this segment goes on.
fn print_bad(out: &mut Out, scanner: &mut SegmentScanner, bad: &BadBatch) -> Result<bool> {
    if let Some(h) = &bad.header {
        print_batch(out, bad.position, h, false)?;
    }
    let what = format!(
        "{}:{}: {} ({} non-zero bytes from here to the end of the file)",
        scanner.path().display(),
        bad.position,
        bad.what,
        bad.tail_bytes
    );
    note(out, &what)?;
    Ok(scanner.skip_bad(bad))
}

fn print_end(out: &mut Out, position: u64, zero_bytes: u64) -> Result<()> {
    if out.json() {
        return out.object(Map::from_iter([
            ("kind".to_owned(), json!("end")),
            ("position".to_owned(), json!(position)),
            ("zero_bytes".to_owned(), json!(zero_bytes)),
        ]));
    }
    out.line(format!(
        "end of data at position {position} ({zero_bytes} zero bytes follow)"
    ))
}

fn note(out: &mut Out, what: &str) -> Result<()> {
    if out.json() {
        out.object(Map::from_iter([
            ("kind".to_owned(), json!("damage")),
            ("what".to_owned(), json!(what)),
        ]))
    } else {
        out.line(format!("DAMAGE: {what}"))
    }
}

/// Checks the segment's index files against the batch start positions
/// found by the scan (`position -> base offset`).
fn index_check(out: &mut Out, segment: &SegmentFile, batches: &HashMap<u64, u64>) -> Result<()> {
    let problems = index_problems(segment, batches)?;
    if problems.is_empty() && !out.json() {
        out.line("index check: ok")?;
    }
    for p in problems {
        note(out, &p.to_string())?;
    }
    Ok(())
}

/// Mismatches between a segment's index files and its batches.
///
/// # Errors
/// I/O errors reading the index files.
pub fn index_problems(segment: &SegmentFile, batches: &HashMap<u64, u64>) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    let base = segment.base_offset;
    let index = sibling(&segment.path, INDEX_SUFFIX);
    entry_problems(&index, OFFSET_ENTRY_SIZE, &mut problems, |i, e| {
        let relative = u64::from(u32::from_le_bytes([e[0], e[1], e[2], e[3]]));
        let position = u64::from(u32::from_le_bytes([e[4], e[5], e[6], e[7]]));
        (batches.get(&position) != Some(&(base + relative))).then(|| {
            format!(
                "entry {i} says offset {} starts at byte {position}, but no valid batch with that base offset starts there",
                base + relative
            )
        })
    })?;
    let time_index = sibling(&segment.path, TIME_INDEX_SUFFIX);
    let bases: std::collections::HashSet<u64> = batches.values().copied().collect();
    entry_problems(&time_index, TIME_ENTRY_SIZE, &mut problems, |i, e| {
        let relative = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]]));
        (!bases.contains(&(base + relative))).then(|| {
            format!(
                "entry {i} names offset {}, where no valid batch starts",
                base + relative
            )
        })
    })?;
    Ok(problems)
}

/// Checks the index file at `path`, if there is one, as a run of
/// `entry_size`-byte entries: a size that is not a whole number of entries
/// is a problem, and so is each entry `i` for which `check(i, entry)` says
/// what is wrong.
fn entry_problems(
    path: &Path,
    entry_size: usize,
    problems: &mut Vec<Problem>,
    check: impl Fn(usize, &[u8]) -> Option<String>,
) -> Result<()> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(());
    };
    if !bytes.len().is_multiple_of(entry_size) {
        let what = format!("size {} is not a multiple of {entry_size}", bytes.len());
        problems.push(Problem::at(path, 0, what));
    }
    for (i, e) in bytes.chunks_exact(entry_size).enumerate() {
        if let Some(what) = check(i, e) {
            problems.push(Problem::at(path, (i * entry_size) as u64, what));
        }
    }
    Ok(())
}

fn sibling(segment: &Path, suffix: &str) -> PathBuf {
    segment.with_extension(suffix.trim_start_matches('.'))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ToolError::io("read", path, e)),
    }
}
