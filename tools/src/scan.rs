//! `varve scan DIR`: the live entries of a store in key order, read
//! through the engine's read-only open. On a partitioned store's root the
//! partitions are merged (each key lives in one partition).

use std::iter::Peekable;
use std::ops::Bound;
use std::path::Path;

use bytes::Bytes;
use varve_db::{KeyValue, ReadOnlyDb};

use crate::error::Result;
use crate::format::{Out, arg_bytes, object};
use crate::open;

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
/// The store is missing, not a store, in use or damaged; output errors.
pub fn run(out: &mut Out, dir: &Path, args: &ScanArgs) -> Result<()> {
    let hex = out.style.hex;
    let parse = |arg: &Option<String>| arg.as_deref().map(|a| arg_bytes(a, hex)).transpose();
    let prefix = parse(&args.prefix)?;
    let (lower, upper) = bounds(parse(&args.from)?, parse(&args.to)?, prefix.as_deref());
    let dbs = match open::partitions(dir)? {
        Some(n) => open::read_only_partitions(dir, n)?,
        None => vec![open::read_only(dir)?],
    };
    let mut merged = Merged::new(&dbs, (lower, upper), args.reverse);
    let mut count = 0u64;
    while args.limit.is_none_or(|limit| count < limit) {
        let Some((key, value)) = merged.next_entry()? else {
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

/// The keys from `from` (inclusive) to `to` (exclusive) that start with
/// `prefix`.
fn bounds(
    from: Option<Vec<u8>>,
    to: Option<Vec<u8>>,
    prefix: Option<&[u8]>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut lower = from;
    let mut upper = to;
    if let Some(prefix) = prefix {
        if lower.as_deref().is_none_or(|l| l < prefix) {
            lower = Some(prefix.to_vec());
        }
        if let Some(end) = prefix_end(prefix)
            && upper.as_deref().is_none_or(|u| u > end.as_slice())
        {
            upper = Some(end);
        }
    }
    let lower = lower.map_or(Bound::Unbounded, Bound::Included);
    let upper = upper.map_or(Bound::Unbounded, Bound::Excluded);
    (lower, upper)
}

/// The first key after every key that starts with `prefix`; `None` if
/// there is none (the prefix is empty or all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The entries of several stores with disjoint keys, in scan order.
struct Merged {
    iters: Vec<Peekable<Box<dyn Iterator<Item = varve_db::Result<KeyValue>>>>>,
    reverse: bool,
}

impl Merged {
    fn new(dbs: &[ReadOnlyDb], range: (Bound<Vec<u8>>, Bound<Vec<u8>>), reverse: bool) -> Merged {
        let empty = matches!(&range, (Bound::Included(l), Bound::Excluded(u)) if l >= u);
        let iters = if empty {
            Vec::new()
        } else {
            dbs.iter()
                .map(|db| {
                    let it = db.range(range.clone());
                    let it: Box<dyn Iterator<Item = varve_db::Result<KeyValue>>> = if reverse {
                        Box::new(it.rev())
                    } else {
                        Box::new(it)
                    };
                    it.peekable()
                })
                .collect()
        };
        Merged { iters, reverse }
    }

    /// The next entry: the smallest (or, in reverse, largest) key any
    /// store offers next; the first error met.
    fn next_entry(&mut self) -> Result<Option<KeyValue>> {
        let mut best: Option<(usize, Bytes)> = None;
        for (i, it) in self.iters.iter_mut().enumerate() {
            let key = match it.peek() {
                None => continue,
                Some(Err(_)) => {
                    return match it.next() {
                        Some(Err(e)) => Err(e.into()),
                        _ => Ok(None),
                    };
                }
                Some(Ok((key, _))) => key,
            };
            let better = best
                .as_ref()
                .is_none_or(|(_, b)| if self.reverse { key > b } else { key < b });
            if better {
                best = Some((i, key.clone()));
            }
        }
        match best {
            Some((i, _)) => Ok(self.iters[i].next().transpose()?),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        let (l, u) = bounds(Some(b"a".to_vec()), None, Some(b"ord"));
        assert_eq!(l, Bound::Included(b"ord".to_vec()));
        assert_eq!(u, Bound::Excluded(b"ore".to_vec()));
    }
}
