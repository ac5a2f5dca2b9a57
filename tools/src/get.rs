//! `varve get DIR KEY`: the value of one key, read through the engine's
//! read-only open. On a partitioned store's root the key's partition is
//! read.

use std::path::Path;

use varve::varve_changelog::partitioner::partition_for_key;
use varve::{ReadOnlyDb, partition_dir};

use crate::error::{Result, ToolError};
use crate::format::{Out, arg_bytes, object};
use crate::open;

/// Prints the value of `key`; [`ToolError::NotFound`] if it has none.
///
/// # Errors
/// The store is missing, not a store, in use or damaged; the key is not
/// found.
pub fn run(out: &mut Out, dir: &Path, key: &str) -> Result<()> {
    let key = arg_bytes(key, out.style.hex)?;
    let db = open_for_key(dir, &key)?;
    let value = db.get(&key)?;
    if out.json() {
        let mut obj = object([]);
        out.put_bytes(&mut obj, "key", &key);
        match &value {
            Some(v) => out.put_bytes(&mut obj, "value", v),
            None => {
                obj.insert("value".into(), serde_json::Value::Null);
            }
        }
        out.object(obj)?;
    } else if let Some(v) = &value {
        let shown = out.show(v);
        out.line(shown)?;
    }
    out.flush()?;
    value.map(|_| ()).ok_or(ToolError::NotFound)
}

/// The store in `dir`, or the partition that holds `key` if `dir` is a
/// partitioned store's root.
fn open_for_key(dir: &Path, key: &[u8]) -> Result<ReadOnlyDb> {
    match open::partitions(dir)? {
        Some(n) => open::read_only(&partition_dir(dir, partition_for_key(key, n))),
        None => open::read_only(dir),
    }
}
