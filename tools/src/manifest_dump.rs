//! `varve manifest dump DIR|FILE`: every record of a manifest, then the
//! state the records build.

use std::path::Path;

use serde_json::{Map, Value, json};
use varve_db::internals::version::{TableMeta, VersionEdit};

use crate::error::Result;
use crate::format::Out;
use crate::store::{self, LockState, Manifest};

/// Prints the manifest `CURRENT` names in the store `path` (or the manifest
/// file `path`).
///
/// # Errors
/// If the store or the manifest cannot be read; damage is reported with
/// the file and the record's offset.
pub fn run(out: &mut Out, path: &Path) -> Result<()> {
    let manifest = if path.is_dir() {
        store::check_store_dir(path)?;
        LockState::probe(path)?.warn_if_live();
        Manifest::load(path)?
    } else if path.exists() {
        Manifest::load_file(path)?
    } else {
        return Err(crate::error::ToolError::Missing(path.to_owned()));
    };
    if !out.json() {
        out.line(format!("manifest {}", manifest.path.display()))?;
    }
    for (offset, edit) in &manifest.scan.edits {
        let record = edit_json(*offset, edit, out);
        if out.json() {
            out.object(record)?;
        } else {
            print_edit(out, &record)?;
        }
    }
    if let Some(tail) = manifest.scan.torn_tail {
        let what = format!(
            "torn final record of {} bytes at {} (an unacknowledged edit; ignored)",
            tail.len_bytes, tail.offset
        );
        emit_note(out, &what)?;
    }
    print_state(out, &manifest)?;
    out.flush()
}

fn edit_json(offset: u64, edit: &VersionEdit, out: &Out) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("record_offset".into(), json!(offset));
    let scalars = [
        ("engine_format", edit.engine_format.map(u64::from)),
        ("flushed_offset", edit.flushed_offset),
        ("next_file_number", edit.next_file_number.map(|n| n.0)),
        ("last_seqno", edit.last_seqno.map(|s| s.0)),
    ];
    for (name, value) in scalars {
        if let Some(v) = value {
            r.insert(name.into(), json!(v));
        }
    }
    let deleted: Vec<Value> = edit
        .deleted
        .iter()
        .map(|(level, n)| json!({"level": level.0, "number": n.0}))
        .collect();
    let added: Vec<Value> = edit
        .added
        .iter()
        .map(|(level, t)| table_json(level.0, t, out))
        .collect();
    r.insert("deleted".into(), Value::Array(deleted));
    r.insert("added".into(), Value::Array(added));
    r
}

/// A table as the manifest records it.
pub fn table_json(level: u8, t: &TableMeta, out: &Out) -> Value {
    let mut obj = Map::new();
    obj.insert("level".into(), json!(level));
    obj.insert("number".into(), json!(t.number.0));
    obj.insert("size_bytes".into(), json!(t.size_bytes));
    out.put_bytes(&mut obj, "smallest_key", t.smallest_user_key());
    out.put_bytes(&mut obj, "largest_key", t.largest_user_key());
    obj.insert("seqno_min".into(), json!(t.min_seqno.0));
    obj.insert("seqno_max".into(), json!(t.max_seqno.0));
    obj.insert("entries".into(), json!(t.entry_count));
    obj.insert("tombstones".into(), json!(t.tombstone_count));
    Value::Object(obj)
}

fn print_edit(out: &mut Out, r: &Map<String, Value>) -> Result<()> {
    let mut fields = Vec::new();
    for name in [
        "engine_format",
        "flushed_offset",
        "next_file_number",
        "last_seqno",
    ] {
        if let Some(v) = r.get(name) {
            fields.push(format!("{name}={v}"));
        }
    }
    out.line(format!("@{} {}", r["record_offset"], fields.join(" ")))?;
    for d in r["deleted"].as_array().into_iter().flatten() {
        out.line(format!(
            "    - L{} {:06}.sst",
            d["level"],
            d["number"].as_u64().unwrap_or(0)
        ))?;
    }
    for a in r["added"].as_array().into_iter().flatten() {
        out.line(format!("    + {}", table_text(a, out)))?;
    }
    Ok(())
}

fn table_text(t: &Value, out: &Out) -> String {
    let key = |name: &str| -> String {
        t.as_object()
            .and_then(|obj| out.show_field(obj, name))
            .unwrap_or_default()
    };
    format!(
        "L{} {:06}.sst {} bytes [{} .. {}] seqnos {}..={} entries {} tombstones {}",
        t["level"],
        t["number"].as_u64().unwrap_or(0),
        t["size_bytes"],
        key("smallest_key"),
        key("largest_key"),
        t["seqno_min"],
        t["seqno_max"],
        t["entries"],
        t["tombstones"]
    )
}

fn emit_note(out: &mut Out, what: &str) -> Result<()> {
    if out.json() {
        out.object(Map::from_iter([("note".to_owned(), json!(what))]))
    } else {
        out.line(format!("note: {what}"))
    }
}

fn print_state(out: &mut Out, m: &Manifest) -> Result<()> {
    let v = &m.version;
    let tables: Vec<Value> = m
        .tables()
        .iter()
        .map(|(level, t)| table_json(*level, t, out))
        .collect();
    if out.json() {
        let state = json!({
            "state": {
                "engine_format": m.engine_format,
                "flushed_offset": v.flushed_offset(),
                "next_file_number": v.next_file_number().0,
                "last_seqno": v.last_seqno().0,
                "tables": tables,
            }
        });
        return out.line(state.to_string());
    }
    out.line(format!(
        "state: engine_format={} flushed_offset={} next_file_number={} last_seqno={} tables={}",
        m.engine_format,
        v.flushed_offset(),
        v.next_file_number().0,
        v.last_seqno().0,
        tables.len()
    ))?;
    for t in &tables {
        out.line(format!("    {}", table_text(t, out)))?;
    }
    Ok(())
}
