//! `varve put`, `varve delete` and `varve load`: ldb-style writes through
//! the engine, for operators and for making test stores. Every write is
//! synced before the command returns.

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{Map, Value};
use varve::{Db, Options, WriteBatch, WriteOptions};

use crate::error::{Result, ToolError};
use crate::format::{Out, arg_bytes, get_bytes, object};

/// Records written per batch by `load`.
const LOAD_BATCH_RECORDS: usize = 1000;

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
    let opts = Options {
        create_if_missing: create,
        ..crate::open::write_options(dir)?
    };
    Ok(Db::open(dir, opts)?)
}

fn commit(db: &Db, batch: WriteBatch) -> Result<()> {
    Ok(db.write(batch, WriteOptions { sync: true })?)
}

/// Sets `key` to `value`.
///
/// # Errors
/// As [`open_for_write`], and write errors.
pub fn put(out: &Out, dir: &Path, key: &str, value: &str, create: bool) -> Result<()> {
    let key = arg_bytes(key, out.style.hex)?;
    let value = arg_bytes(value, out.style.hex)?;
    let db = open_for_write(dir, create)?;
    let mut batch = WriteBatch::new();
    batch.put(key, value);
    commit(&db, batch)?;
    Ok(db.close()?)
}

/// Deletes `key` (a tombstone is written whether or not it exists).
///
/// # Errors
/// As [`put`].
pub fn delete(out: &Out, dir: &Path, key: &str) -> Result<()> {
    let key = arg_bytes(key, out.style.hex)?;
    let db = open_for_write(dir, false)?;
    let mut batch = WriteBatch::new();
    batch.delete(key);
    commit(&db, batch)?;
    Ok(db.close()?)
}

/// Writes every line of `file` (`-` for stdin): one JSON object a line with
/// `key` (or `key_hex`) and `value` (or `value_hex`; `null` deletes). Lines
/// are written in batches of [`LOAD_BATCH_RECORDS`]; a bad line stops the
/// load before its batch is written, and the error names the line.
///
/// # Errors
/// As [`put`], and [`ToolError::Invalid`] for a bad line.
pub fn load(out: &mut Out, dir: &Path, file: &Path, create: bool) -> Result<()> {
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(file).map_err(|e| ToolError::io("open", file, e))?;
        Box::new(BufReader::new(f))
    };
    let db = open_for_write(dir, create)?;
    let mut batch = WriteBatch::new();
    let (mut puts, mut deletes) = (0u64, 0u64);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| ToolError::io("read", file, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) = parse_line(&line)
            .map_err(|e| ToolError::Invalid(format!("{}:{}: {e}", file.display(), i + 1)))?;
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
        if batch.len() >= LOAD_BATCH_RECORDS {
            commit(&db, std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        commit(&db, batch)?;
    }
    db.close()?;
    report_load(out, puts, deletes)
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
