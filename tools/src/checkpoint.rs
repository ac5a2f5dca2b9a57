//! `varve checkpoint STORE DIR`: a consistent, openable copy of a closed
//! store (`Db::checkpoint`).

use std::path::Path;

use serde_json::Value;

use crate::error::Result;
use crate::format::{Out, object};
use crate::write::open_for_write;

/// Opens the store in `store`, writes a checkpoint of it into `dir`
/// (missing or empty), and prints where and at which changelog offset.
///
/// # Errors
/// As [`open_for_write`], and checkpoint errors (a non-empty `dir`).
pub fn run(out: &mut Out, store: &Path, dir: &Path) -> Result<()> {
    let db = open_for_write(store, false)?;
    let info = db.checkpoint(dir)?;
    db.close()?;
    if out.json() {
        out.object(object([
            ("path", Value::from(info.path.display().to_string())),
            ("offset", Value::from(info.offset)),
        ]))
    } else {
        out.line(format!(
            "checkpoint of {} written to {} at changelog offset {}",
            store.display(),
            info.path.display(),
            info.offset
        ))
    }
}
