//! `varve sst dump FILE`: a table's properties, block layout, Bloom filter
//! statistics and, with `--entries`, its entries. A damaged data block is
//! reported and skipped, so the rest of the table can still be read.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use varve_db::internals::key::{InternalKeyRef, ValueKind};
use varve_db::internals::sst::Table;
use varve_db::internals::sst::format::{
    BLOCK_TRAILER_SIZE, FILTER_BLOCK_SIZE, FILTER_KIND_BLOCKED, FOOTER_SIZE,
};

use crate::error::{Result, ToolError};
use crate::format::{Out, arg_bytes};
use crate::store;

/// What to print besides the summary.
#[derive(Clone, Debug, Default)]
pub struct DumpArgs {
    /// Print the entries.
    pub entries: bool,
    /// Start the entries at this user key.
    pub from: Option<String>,
    /// At most this many entries.
    pub limit: Option<u64>,
}

/// Dumps the table at `path`.
///
/// # Errors
/// If the table cannot be opened (footer, index, filter or properties
/// damaged); damaged data blocks are reported in the output instead.
pub fn run(out: &mut Out, path: &Path, args: &DumpArgs) -> Result<()> {
    if !path.exists() {
        return Err(ToolError::Missing(path.to_owned()));
    }
    let table = store::open_table(path)?;
    let filter = read_filter_trailer(&table)?;
    let blocks = block_layout(&table, out)?;
    let summary = summary_json(&table, &filter, &blocks, out);
    if out.json() {
        out.object(summary)?;
        for b in &blocks.rows {
            out.object(b.clone())?;
        }
    } else {
        print_summary(out, &summary)?;
        print_blocks(out, &blocks.rows)?;
    }
    if args.entries {
        let from = args
            .from
            .as_deref()
            .map(|f| arg_bytes(f, out.style.hex))
            .transpose()?;
        dump_entries(out, &table, from.as_deref(), args.limit)?;
    }
    out.flush()
}

/// The two bytes that end a filter block: probe count and filter kind.
struct FilterTrailer {
    num_probes: u8,
    kind: u8,
    bits: u64,
}

fn read_filter_trailer(table: &Table) -> Result<FilterTrailer> {
    let handle = table.footer().filter;
    let path = table.path();
    let file = std::fs::File::open(path).map_err(|e| ToolError::io("open", path, e))?;
    let mut raw = [0u8; 2];
    let at = (handle.offset + handle.size_bytes).saturating_sub(2);
    file.read_exact_at(&mut raw, at)
        .map_err(|e| ToolError::io("read", path, e))?;
    Ok(FilterTrailer {
        num_probes: raw[0],
        kind: raw[1],
        bits: handle.size_bytes.saturating_sub(2) * 8,
    })
}

/// The data blocks, as JSON rows, and what reading them found.
struct Blocks {
    rows: Vec<Map<String, Value>>,
    distinct_user_keys: u64,
    damaged: u64,
}

fn block_layout(table: &Table, out: &Out) -> Result<Blocks> {
    let mut blocks = Blocks {
        rows: Vec::new(),
        distinct_user_keys: 0,
        damaged: 0,
    };
    let mut previous_user_key: Option<Vec<u8>> = None;
    for (i, handle) in table.data_block_handles()?.into_iter().enumerate() {
        let mut row = Map::new();
        row.insert("kind".into(), json!("block"));
        row.insert("index".into(), json!(i));
        row.insert("offset".into(), json!(handle.offset));
        row.insert("size_bytes".into(), json!(handle.size_bytes));
        match table.read_block(handle) {
            Ok(block) => {
                row.insert("entries".into(), json!(block.entry_count()));
                put_ikey(&mut row, "first", block.first_key(), out);
                put_ikey(&mut row, "last", block.last_key(), out);
                block.for_each_entry(|key, _| {
                    let user_key = InternalKeyRef::decode(key).map_or(key, |k| k.user_key);
                    if previous_user_key.as_deref() != Some(user_key) {
                        blocks.distinct_user_keys += 1;
                        previous_user_key = Some(user_key.to_vec());
                    }
                });
            }
            Err(e) => {
                blocks.damaged += 1;
                row.insert("damaged".into(), json!(e.to_string()));
            }
        }
        blocks.rows.push(row);
    }
    Ok(blocks)
}

/// Puts an encoded internal key into `row` as `name_key`, `name_seqno`,
/// `name_kind`.
fn put_ikey(row: &mut Map<String, Value>, name: &str, encoded: &[u8], out: &Out) {
    match InternalKeyRef::decode(encoded) {
        Some(k) => {
            out.put_bytes(row, &format!("{name}_key"), k.user_key);
            row.insert(format!("{name}_seqno"), json!(k.seqno.0));
            row.insert(format!("{name}_kind"), json!(kind_name(k.kind)));
        }
        None => out.put_bytes(row, &format!("{name}_raw"), encoded),
    }
}

fn kind_name(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Put => "put",
        ValueKind::Delete => "delete",
    }
}

fn summary_json(
    table: &Table,
    filter: &FilterTrailer,
    blocks: &Blocks,
    out: &Out,
) -> Map<String, Value> {
    let p = table.properties();
    let f = table.footer();
    let mut s = Map::new();
    s.insert("kind".into(), json!("table"));
    s.insert("file".into(), json!(table.path().display().to_string()));
    s.insert("size_bytes".into(), json!(table.file_size_bytes()));
    s.insert("format_version".into(), json!(f.version));
    let handle = |h: varve_db::internals::sst::BlockHandle| json!({"offset": h.offset, "size_bytes": h.size_bytes});
    s.insert("filter_block".into(), handle(f.filter));
    s.insert("properties_block".into(), handle(f.properties));
    s.insert("index_block".into(), handle(f.index));
    s.insert(
        "footer_offset".into(),
        json!(table.file_size_bytes().saturating_sub(FOOTER_SIZE as u64)),
    );
    s.insert("entries".into(), json!(p.entry_count));
    s.insert("tombstones".into(), json!(p.tombstone_count));
    s.insert("data_blocks".into(), json!(p.data_block_count));
    s.insert("damaged_data_blocks".into(), json!(blocks.damaged));
    s.insert("data_size_bytes".into(), json!(p.data_size_bytes));
    s.insert("index_size_bytes".into(), json!(p.index_size_bytes));
    s.insert("filter_size_bytes".into(), json!(p.filter_size_bytes));
    s.insert("raw_key_size_bytes".into(), json!(p.raw_key_size_bytes));
    s.insert("raw_value_size_bytes".into(), json!(p.raw_value_size_bytes));
    put_ikey(&mut s, "smallest", &p.smallest_key, out);
    put_ikey(&mut s, "largest", &p.largest_key, out);
    s.insert("seqno_min".into(), json!(p.seqno_min.0));
    s.insert("seqno_max".into(), json!(p.seqno_max.0));
    s.insert("creation_time_ms".into(), json!(p.creation_time_ms));
    s.insert("creator".into(), json!(p.creator));
    s.insert("block_size_bytes".into(), json!(p.block_size_bytes));
    s.insert("compression".into(), json!(p.compression));
    s.insert(
        "block_restart_interval".into(),
        json!(p.block_restart_interval),
    );
    s.insert(
        "bloom".into(),
        bloom_json(p.bloom_bits_per_key, filter, blocks),
    );
    s
}

fn bloom_json(bits_per_key: u64, filter: &FilterTrailer, blocks: &Blocks) -> Value {
    let n = blocks.distinct_user_keys as f64;
    let m = filter.bits as f64;
    let k = f64::from(filter.num_probes);
    let fp = (m > 0.0 && n > 0.0).then(|| {
        if filter.kind == FILTER_KIND_BLOCKED {
            blocked_false_positive_rate(n, m, k)
        } else {
            // The classic estimate (1 - e^(-kn/m))^k for an ideal Bloom filter.
            (1.0 - (-k * n / m).exp()).powf(k)
        }
    });
    json!({
        "filter_kind": filter.kind,
        "bits_per_key_option": bits_per_key,
        "bits": filter.bits,
        "num_probes": filter.num_probes,
        "distinct_user_keys": blocks.distinct_user_keys,
        "bits_per_distinct_key": (n > 0.0).then(|| m / n),
        "estimated_false_positive_rate": fp,
    })
}

/// The false-positive rate of a blocked filter of `m` bits over `n` keys
/// with `k` probes: keys land in its 512-bit blocks as a Poisson draw of
/// mean `n / blocks`, and a block holding `j` keys passes an absent key
/// with the ideal rate for a 512-bit filter of `j` keys.
fn blocked_false_positive_rate(n: f64, m: f64, k: f64) -> f64 {
    let block_bits = (FILTER_BLOCK_SIZE * 8) as f64;
    let mean = n / (m / block_bits);
    let mut pmf = (-mean).exp();
    let mut rate = 0.0;
    for j in 0..(mean * 4.0 + 64.0) as u32 {
        let j = f64::from(j);
        if j > 0.0 {
            pmf *= mean / j;
        }
        rate += pmf * (1.0 - (-k * j / block_bits).exp()).powf(k);
    }
    rate
}

fn print_summary(out: &mut Out, s: &Map<String, Value>) -> Result<()> {
    let hex = out.style.hex;
    let key = |name: &str| describe_key(hex, s, name);
    out.line(format!(
        "table         {} ({} bytes, format version {})",
        s["file"].as_str().unwrap_or(""),
        s["size_bytes"],
        s["format_version"]
    ))?;
    for (label, name) in [
        ("filter", "filter_block"),
        ("properties", "properties_block"),
        ("index", "index_block"),
    ] {
        let h = &s[name];
        out.line(format!(
            "{label:<13} @{} size {} (+{BLOCK_TRAILER_SIZE} trailer)",
            h["offset"], h["size_bytes"]
        ))?;
    }
    out.line(format!(
        "footer        @{} size {FOOTER_SIZE}",
        s["footer_offset"]
    ))?;
    out.line(format!(
        "entries       {} ({} tombstones) in {} data block(s){}",
        s["entries"],
        s["tombstones"],
        s["data_blocks"],
        damaged_note(s)
    ))?;
    out.line(format!(
        "sizes         data {}  index {}  filter {}  raw keys {}  raw values {}",
        s["data_size_bytes"],
        s["index_size_bytes"],
        s["filter_size_bytes"],
        s["raw_key_size_bytes"],
        s["raw_value_size_bytes"]
    ))?;
    out.line(format!("smallest key  {}", key("smallest")))?;
    out.line(format!("largest key   {}", key("largest")))?;
    out.line(format!(
        "seqnos        {}..={} (a write's seqno is its changelog offset + 1)",
        s["seqno_min"], s["seqno_max"]
    ))?;
    out.line(format!(
        "created       {} ms since the epoch by {}",
        s["creation_time_ms"], s["creator"]
    ))?;
    out.line(format!(
        "options       block size {}  restart interval {}  compression {}",
        s["block_size_bytes"],
        s["block_restart_interval"],
        s["compression"].as_str().unwrap_or("")
    ))?;
    let b = &s["bloom"];
    let fp = b["estimated_false_positive_rate"]
        .as_f64()
        .map_or("n/a".to_owned(), |f| format!("{:.3}%", f * 100.0));
    let per_key = b["bits_per_distinct_key"]
        .as_f64()
        .map_or("n/a".to_owned(), |v| format!("{v:.1}"));
    out.line(format!("bloom         kind {}  {} bits  {} probes  {} distinct user keys  {per_key} bits/key (option {})  est. false positives {fp}", b["filter_kind"], b["bits"], b["num_probes"], b["distinct_user_keys"], b["bits_per_key_option"]))
}

fn damaged_note(s: &Map<String, Value>) -> String {
    match s["damaged_data_blocks"].as_u64() {
        Some(0) | None => String::new(),
        Some(n) => format!(", {n} DAMAGED"),
    }
}

fn describe_key(hex: bool, row: &Map<String, Value>, name: &str) -> String {
    match crate::format::show_field(row, &format!("{name}_key"), hex) {
        Some(k) => format!(
            "\"{k}\" @ {} {}",
            row[&format!("{name}_seqno")],
            row[&format!("{name}_kind")].as_str().unwrap_or("")
        ),
        None => "(none: empty table)".to_owned(),
    }
}

fn print_blocks(out: &mut Out, rows: &[Map<String, Value>]) -> Result<()> {
    out.line("data blocks")?;
    for r in rows {
        let head = format!(
            "  #{} @{} size {}",
            r["index"], r["offset"], r["size_bytes"]
        );
        let line = match r.get("damaged").and_then(Value::as_str) {
            Some(what) => format!("{head} DAMAGED: {what}"),
            None => format!(
                "{head} entries {} [{} .. {}]",
                r["entries"],
                describe_key(out.style.hex, r, "first"),
                describe_key(out.style.hex, r, "last")
            ),
        };
        out.line(line)?;
    }
    Ok(())
}

fn dump_entries(
    out: &mut Out,
    table: &Arc<Table>,
    from: Option<&[u8]>,
    limit: Option<u64>,
) -> Result<()> {
    if !out.json() {
        out.line("entries")?;
    }
    let mut remaining = limit.unwrap_or(u64::MAX);
    for handle in table.data_block_handles()? {
        if remaining == 0 {
            break;
        }
        let block = match table.read_block(handle) {
            Ok(block) => block,
            Err(e) => {
                print_damage(out, &e)?;
                continue;
            }
        };
        let last_user_key = InternalKeyRef::decode(block.last_key()).map(|k| k.user_key.to_vec());
        if from.is_some_and(|f| last_user_key.as_deref().is_some_and(|l| l < f)) {
            continue;
        }
        let mut rows = Vec::new();
        block.for_each_entry(|key, value| {
            let Some(k) = InternalKeyRef::decode(key) else {
                return;
            };
            if remaining == 0 || from.is_some_and(|f| k.user_key < f) {
                return;
            }
            remaining -= 1;
            rows.push(entry_row(&k, value, out));
        });
        for row in rows {
            emit_entry(out, row)?;
        }
    }
    Ok(())
}

fn entry_row(k: &InternalKeyRef<'_>, value: &[u8], out: &Out) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("kind".into(), json!("entry"));
    out.put_bytes(&mut row, "key", k.user_key);
    row.insert("seqno".into(), json!(k.seqno.0));
    row.insert("op".into(), json!(kind_name(k.kind)));
    if k.kind == ValueKind::Put {
        out.put_bytes(&mut row, "value", value);
    }
    row
}

fn emit_entry(out: &mut Out, row: Map<String, Value>) -> Result<()> {
    if out.json() {
        return out.object(row);
    }
    let text = |name: &str| out.show_field(&row, name).unwrap_or_default();
    let line = match row["op"].as_str() {
        Some("put") => format!(
            "  {} @ {} put => {}",
            text("key"),
            row["seqno"],
            text("value")
        ),
        _ => format!("  {} @ {} delete", text("key"), row["seqno"]),
    };
    out.line(line)
}

fn print_damage(out: &mut Out, e: &varve_db::Error) -> Result<()> {
    if out.json() {
        out.object(Map::from_iter([
            ("kind".to_owned(), json!("damage")),
            ("what".to_owned(), json!(e.to_string())),
        ]))
    } else {
        out.line(format!("  DAMAGED: {e}"))
    }
}
