//! `varve get DIR KEY`: the value of one key, read through the engine's
//! read-only open. On a partitioned store's root the key is routed to its
//! partition with the store's own partitioner (Kafka's default: murmur2 of
//! the key), and the partition is named: on stderr in text, as
//! `"partition"` in JSON.

use std::path::Path;

use varve_db::varve_changelog::partitioner::partition_for_key;
use varve_db::{ReadOnlyDb, partition_dir};

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
    let (db, partition) = open_for_key(dir, &key)?;
    let value = db.get(&key)?;
    if let (Some((p, n)), false) = (partition, out.json()) {
        eprintln!("partition {p} of {n} ({})", partition_dir(dir, p).display());
    }
    if out.json() {
        let mut obj = object([]);
        out.put_bytes(&mut obj, "key", &key);
        if let Some((p, _)) = partition {
            obj.insert("partition".into(), serde_json::Value::from(p));
        }
        match &value {
            Some(v) => out.put_bytes(&mut obj, "value", v),
            None => crate::format::put_null(&mut obj, "value"),
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
/// partitioned store's root (with that partition and the number of
/// partitions).
fn open_for_key(dir: &Path, key: &[u8]) -> Result<(ReadOnlyDb, Option<(u32, u32)>)> {
    match open::partitions(dir)? {
        Some(n) => {
            let p = partition_for_key(key, n);
            Ok((open::read_only(&partition_dir(dir, p))?, Some((p, n))))
        }
        None => Ok((open::read_only(dir)?, None)),
    }
}
