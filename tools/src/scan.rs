//! `varve scan DIR`: the live entries of a closed store, in key order.

use std::path::Path;

use crate::error::Result;
use crate::format::{Out, arg_bytes, object};
use crate::store::{self, LockState};
use crate::view::{KeyRange, View};

/// What to scan.
#[derive(Clone, Debug, Default)]
pub struct ScanArgs {
    /// First key (inclusive).
    pub from: Option<String>,
    /// Key to stop before (exclusive).
    pub to: Option<String>,
    /// Only keys with this prefix.
    pub prefix: Option<String>,
    /// At most this many entries.
    pub limit: Option<u64>,
    /// Largest key first.
    pub reverse: bool,
}

/// Prints the live entries in the range, one a line.
///
/// # Errors
/// [`ToolError::Locked`](crate::error::ToolError::Locked) if the store is
/// in use, damage, or output errors.
pub fn run(out: &mut Out, dir: &Path, args: &ScanArgs) -> Result<()> {
    store::check_store_dir(dir)?;
    let hex = out.style.hex;
    let parse = |arg: &Option<String>| arg.as_deref().map(|a| arg_bytes(a, hex)).transpose();
    let prefix = parse(&args.prefix)?;
    let range = KeyRange::new(parse(&args.from)?, parse(&args.to)?, prefix.as_deref());
    let _lock = LockState::take(dir)?;
    let view = View::open(dir)?;
    let mut scan = view.scan(&range, args.reverse);
    let mut count = 0u64;
    while args.limit.is_none_or(|limit| count < limit) {
        let Some((key, value)) = scan.next_entry()? else {
            break;
        };
        if out.json() {
            let mut obj = object([]);
            out.put_bytes(&mut obj, "key", &key);
            out.put_bytes(&mut obj, "value", &value);
            out.object(obj)?;
        } else {
            let line = format!("{}\t{}", out.show(&key), out.show(&value));
            out.line(line)?;
        }
        count += 1;
    }
    out.flush()
}
