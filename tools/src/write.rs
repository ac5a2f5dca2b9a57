//! `varve put`, `varve delete` and `varve load`: ldb-style writes through
//! the engine, for operators and for making test stores. Every write is
//! synced before the command returns.

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{Map, Value};
use varve_db::internals::version::parse_file_name;
use varve_db::varve_changelog::LogOptions;
use varve_db::{Db, MAX_KEY_SIZE_BYTES, MAX_VALUE_SIZE_BYTES, WriteBatch, WriteOptions};

use crate::error::{Result, ToolError};
use varve_db::varve_changelog::partitioner::partition_for_key;

use crate::format::{Out, arg_bytes, get_bytes, object, quoted};
use crate::progress::Progress;

/// Bytes of keys and values (plus [`LOAD_RECORD_OVERHEAD_BYTES`] each)
/// that `load` gathers into one batch: half the changelog's batch limit
/// (16 MiB by default; the engine keeps the changelog's default), so the
/// encoded batch always fits. A record larger than this (values go up to
/// 8 MiB) is written in a batch of its own.
pub fn load_batch_bytes() -> usize {
    LogOptions::default().max_batch_size_bytes / 2
}

/// What one record is counted as beyond its key and value: more than
/// its framing in a changelog batch (lengths, offset and time deltas).
const LOAD_RECORD_OVERHEAD_BYTES: usize = 64;

/// Opens the store for writing with the options it recorded (its TTL and
/// compression); creates it only when `create` is set.
///
/// # Errors
/// [`ToolError::Missing`] if `dir` is missing and `create` is off, the
/// engine's errors (`Locked`, `NotAStore`, corruption) otherwise.
pub fn open_for_write(dir: &Path, create: bool) -> Result<Db> {
    if !create && !dir.exists() {
        return Err(ToolError::Missing(dir.to_owned()));
    }
    let opts = crate::open::write_options(dir)?.create_if_missing(create);
    Ok(Db::open(dir, opts)?)
}

/// With `--partition P` on a partitioned store's root: `(P, partitions)`.
/// A write there must hold only keys the store routes to `P`, or reads
/// through the root would never find them.
pub type Route = Option<(u32, u32)>;

/// Refuses a key the store routes to another partition than the one the
/// write goes to.
///
/// # Errors
/// [`ToolError::Invalid`] naming the key's partition.
fn check_route(key: &[u8], route: Route) -> Result<()> {
    let Some((p, n)) = route else {
        return Ok(());
    };
    let home = partition_for_key(key, n);
    if home == p {
        return Ok(());
    }
    Err(ToolError::Invalid(format!(
        "key {} belongs to partition {home}, not {p}: the store routes every key to one \
         partition (drop --partition to write through the root's routing, or use \
         varve_db::PartitionedStore)",
        quoted(key)
    )))
}

fn commit(db: &Db, batch: WriteBatch) -> Result<()> {
    Ok(db.write(batch, WriteOptions::default().sync(true))?)
}

/// Sets `key` to `value`.
///
/// # Errors
/// As [`open_for_write`], and write errors.
pub fn put(
    out: &mut Out,
    dir: &Path,
    key: &str,
    value: &str,
    create: bool,
    route: Route,
) -> Result<()> {
    let key = arg_bytes(key, out.style.hex)?;
    check_route(&key, route)?;
    let value = arg_bytes(value, out.style.hex)?;
    let db = open_for_write(dir, create)?;
    let mut batch = WriteBatch::new();
    batch.put(key.clone(), value.clone());
    commit(&db, batch)?;
    db.close()?;
    report_write(out, "put", &key, Some(&value))
}

/// With `--json`, says what a `put` or `delete` wrote (text output stays
/// silent on success, as for `cp`).
fn report_write(out: &mut Out, op: &str, key: &[u8], value: Option<&[u8]>) -> Result<()> {
    if !out.json() {
        return Ok(());
    }
    let mut obj = object([("ok", Value::from(true)), ("op", Value::from(op))]);
    out.put_bytes(&mut obj, "key", key);
    if let Some(value) = value {
        out.put_bytes(&mut obj, "value", value);
    }
    out.object(obj)?;
    out.flush()
}

/// Deletes `key` (a tombstone is written whether or not it exists).
///
/// # Errors
/// As [`put`].
pub fn delete(out: &mut Out, dir: &Path, key: &str, route: Route) -> Result<()> {
    let key = arg_bytes(key, out.style.hex)?;
    check_route(&key, route)?;
    let db = open_for_write(dir, false)?;
    let mut batch = WriteBatch::new();
    batch.delete(key.clone());
    commit(&db, batch)?;
    db.close()?;
    report_write(out, "delete", &key, None)
}

/// Writes every line of `file` (`-` for stdin): one JSON object a line with
/// `key` (or `key_hex`) and `value` (or `value_hex`; `null` deletes). Lines
/// are written in batches of about [`load_batch_bytes`]; a bad line (bad
/// JSON, a key or value over the engine's limits) stops the load before
/// its batch is written, and the error names the line. With `create`, a
/// store this load created is removed again if the load fails.
///
/// # Errors
/// As [`put`], and [`ToolError::Invalid`] for a bad line.
pub fn load(out: &mut Out, dir: &Path, file: &Path, create: bool, route: Route) -> Result<()> {
    let quiet = out.style.quiet;
    let (reader, progress): (Box<dyn BufRead>, Progress) = if file == Path::new("-") {
        let spinner = Progress::spinner("loading standard input", quiet);
        (Box::new(BufReader::new(std::io::stdin())), spinner)
    } else {
        let f = std::fs::File::open(file).map_err(|e| ToolError::io("open", file, e))?;
        let size = f.metadata().map_or(0, |m| m.len());
        let bar = Progress::bar(
            size,
            "{bar:40} {bytes}/{total_bytes} ({eta} left) {msg}",
            quiet,
        );
        (Box::new(BufReader::new(f)), bar)
    };
    let created = if create {
        NewStore::before_open(dir)
    } else {
        NewStore::Existed
    };
    let loaded = open_for_write(dir, create).and_then(|db| {
        let counts = load_lines(&db, reader, file, route, &progress)?;
        progress.message("closing the store");
        db.close()?;
        progress.finish();
        Ok(counts)
    });
    match loaded {
        Ok((puts, deletes)) => report_load(out, puts, deletes),
        Err(e) => Err(created.remove_after(dir, e)),
    }
}

/// Reads, checks and writes every line; returns the puts and deletes.
fn load_lines(
    db: &Db,
    reader: Box<dyn BufRead>,
    file: &Path,
    route: Route,
    progress: &Progress,
) -> Result<(u64, u64)> {
    let budget = load_batch_bytes();
    let mut batch = WriteBatch::new();
    let mut batch_bytes = 0usize;
    let (mut puts, mut deletes) = (0u64, 0u64);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| ToolError::io("read", file, e))?;
        progress.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let at_line =
            |e: ToolError| ToolError::Invalid(format!("{}:{}: {e}", file.display(), i + 1));
        let (key, value) = parse_line(&line).map_err(at_line)?;
        check_sizes(&key, value.as_deref()).map_err(at_line)?;
        check_route(&key, route).map_err(at_line)?;
        let size = key.len() + value.as_ref().map_or(0, Vec::len) + LOAD_RECORD_OVERHEAD_BYTES;
        if !batch.is_empty() && batch_bytes + size > budget {
            commit(db, std::mem::take(&mut batch))?;
            batch_bytes = 0;
            progress.message(format!("{} records written", puts + deletes));
        }
        batch_bytes += size;
        match value {
            Some(value) => {
                batch.put(key, value);
                puts += 1;
            }
            None => {
                batch.delete(key);
                deletes += 1;
            }
        }
    }
    if !batch.is_empty() {
        commit(db, batch)?;
    }
    Ok((puts, deletes))
}

/// Refuses a key or value over the engine's limits, as a write would.
fn check_sizes(key: &[u8], value: Option<&[u8]>) -> Result<()> {
    if key.len() > MAX_KEY_SIZE_BYTES {
        return Err(ToolError::Invalid(
            varve_db::Error::KeyTooLarge {
                size_bytes: key.len(),
                max_bytes: MAX_KEY_SIZE_BYTES,
            }
            .to_string(),
        ));
    }
    match value {
        Some(v) if v.len() > MAX_VALUE_SIZE_BYTES => Err(ToolError::Invalid(
            varve_db::Error::ValueTooLarge {
                size_bytes: v.len(),
                max_bytes: MAX_VALUE_SIZE_BYTES,
            }
            .to_string(),
        )),
        _ => Ok(()),
    }
}

/// What `load --create` found before opening, so a failed load removes
/// only what it created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NewStore {
    /// `dir` was missing: the load creates it.
    Dir,
    /// `dir` was an empty directory: the load fills it.
    Contents,
    /// `dir` held something (a store): nothing is removed.
    Existed,
}

impl NewStore {
    fn before_open(dir: &Path) -> NewStore {
        match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => NewStore::Dir,
            Ok(meta) if meta.is_dir() => {
                let empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
                if empty {
                    NewStore::Contents
                } else {
                    NewStore::Existed
                }
            }
            _ => NewStore::Existed,
        }
    }

    /// Removes the store a failed load created (only entries a store
    /// writes, never following links), and says so in the error.
    fn remove_after(self, dir: &Path, error: ToolError) -> ToolError {
        if self == NewStore::Existed || std::fs::symlink_metadata(dir).is_err() {
            return error;
        }
        match remove_store_entries(dir, self == NewStore::Dir) {
            Ok(()) => ToolError::Invalid(format!(
                "{error}; nothing was loaded: the new store {} was removed",
                dir.display()
            )),
            Err(cleanup) => ToolError::Invalid(format!(
                "{error}; removing the new store {} failed too: {cleanup}",
                dir.display()
            )),
        }
    }
}

/// Removes the regular files a store writes in `dir` (and its
/// `changelog/`), then `dir` itself when `and_dir` and it is empty.
fn remove_store_entries(dir: &Path, and_dir: bool) -> Result<()> {
    let log_dir = dir.join(varve_db::CHANGELOG_DIR);
    if std::fs::symlink_metadata(&log_dir).is_ok_and(|m| m.is_dir()) {
        remove_files(&log_dir, |_| true)?;
        std::fs::remove_dir(&log_dir).map_err(|e| ToolError::io("remove", &log_dir, e))?;
    }
    remove_files(dir, |name| parse_file_name(name).is_some())?;
    if and_dir {
        std::fs::remove_dir(dir).map_err(|e| ToolError::io("remove", dir, e))?;
    }
    Ok(())
}

/// Removes the regular files (not links, not directories) of `dir` whose
/// names `pick` accepts.
fn remove_files(dir: &Path, pick: impl Fn(&str) -> bool) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| ToolError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ToolError::io("list", dir, e))?;
        let path = entry.path();
        let is_file = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
        if is_file && entry.file_name().to_str().is_some_and(&pick) {
            std::fs::remove_file(&path).map_err(|e| ToolError::io("remove", &path, e))?;
        }
    }
    Ok(())
}

fn report_load(out: &mut Out, puts: u64, deletes: u64) -> Result<()> {
    if out.json() {
        out.object(object([
            ("puts", Value::from(puts)),
            ("deletes", Value::from(deletes)),
        ]))?;
    } else {
        out.line(format!("loaded {puts} puts and {deletes} deletes"))?;
    }
    out.flush()
}

/// Parses one `load` line into a key and a value (`None` = delete).
///
/// # Errors
/// [`ToolError::Invalid`] describing what is wrong with the line.
pub fn parse_line(line: &str) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| ToolError::Invalid(format!("not a JSON object: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ToolError::Invalid("not a JSON object".into()));
    };
    check_fields(&obj)?;
    let key = match get_bytes(&obj, "key")? {
        Some(Some(key)) => key,
        _ => {
            return Err(ToolError::Invalid(
                "missing \"key\" (or \"key_hex\")".into(),
            ));
        }
    };
    match get_bytes(&obj, "value")? {
        Some(value) => Ok((key, value)),
        None => Err(ToolError::Invalid(
            "missing \"value\" (or \"value_hex\"; null deletes the key)".into(),
        )),
    }
}

fn check_fields(obj: &Map<String, Value>) -> Result<()> {
    const KNOWN: [&str; 4] = ["key", "key_hex", "value", "value_hex"];
    match obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        Some(unknown) => Err(ToolError::Invalid(format!("unknown field {unknown:?}"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_load_lines() {
        let (k, v) = parse_line(r#"{"key":"a","value":"1"}"#).unwrap();
        assert_eq!((k, v), (b"a".to_vec(), Some(b"1".to_vec())));
        let (k, v) = parse_line(r#"{"key_hex":"00ff","value":null}"#).unwrap();
        assert_eq!((k, v), (vec![0, 255], None));
        assert!(parse_line(r#"{"key":"a"}"#).is_err());
        assert!(parse_line(r#"{"value":"a"}"#).is_err());
        assert!(parse_line(r#"{"key":"a","value":"b","x":1}"#).is_err());
        assert!(parse_line("[1]").is_err());
        assert!(parse_line("{").is_err());
    }
}
