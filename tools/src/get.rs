//! `varve get DIR KEY`: the value of one key in a closed store.

use std::path::Path;

use crate::error::{Result, ToolError};
use crate::format::{Out, arg_bytes, object};
use crate::store::{self, LockState};
use crate::view::View;

/// Prints the value of `key`; [`ToolError::NotFound`] if it has none.
///
/// # Errors
/// [`ToolError::Locked`] if the store is in use, damage, or not found.
pub fn run(out: &mut Out, dir: &Path, key: &str) -> Result<()> {
    store::check_store_dir(dir)?;
    let key = arg_bytes(key, out.style.hex)?;
    let _lock = LockState::take(dir)?;
    let view = View::open(dir)?;
    let value = view.get(&key)?;
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
