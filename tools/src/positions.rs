//! `varve positions DIR`: the committed consumer positions of a changelog.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use varve_changelog::filename::POSITIONS_FILE;

use crate::error::Result;
use crate::format::{Out, object};
use crate::segments::{self, SegmentScanner, Step};

/// The positions in the changelog directory `log_dir` (none if the file is
/// missing).
///
/// # Errors
/// [`ToolError::Changelog`](crate::error::ToolError::Changelog) naming the
/// damage.
pub fn read_positions(log_dir: &Path) -> Result<BTreeMap<String, u64>> {
    let path = log_dir.join(POSITIONS_FILE);
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    Ok(varve_changelog::positions::read(
        &varve_changelog::fs::StdFs,
        &path,
    )?)
}

/// Prints each consumer's position and its lag behind the log end.
///
/// # Errors
/// If `dir` is not a store or changelog, or its files are damaged.
pub fn run(out: &mut Out, dir: &Path) -> Result<()> {
    let log_dir = segments::changelog_dir(dir)?;
    let positions = read_positions(&log_dir)?;
    let end = log_end_offset(&log_dir)?;
    if !out.json() && positions.is_empty() {
        out.line(format!("no consumer positions (log end offset {end})"))?;
    }
    for (name, offset) in positions {
        let lag = end.saturating_sub(offset);
        if out.json() {
            out.object(object([
                ("consumer", Value::from(name)),
                ("offset", Value::from(offset)),
                ("log_end_offset", Value::from(end)),
                ("lag", Value::from(lag)),
            ]))?;
        } else {
            out.line(format!("{name}\toffset {offset}\tlag {lag}"))?;
        }
    }
    out.flush()
}

/// The offset after the last valid batch of the changelog in `log_dir`.
///
/// # Errors
/// I/O errors.
pub fn log_end_offset(log_dir: &Path) -> Result<u64> {
    let Some(last) = segments::list_segments(log_dir)?.pop() else {
        return Ok(segments::read_meta(log_dir)?.log_start_offset);
    };
    let mut scanner = SegmentScanner::open(&last)?;
    while let Step::Batch(_) = scanner.step()? {}
    Ok(scanner.next_offset())
}
