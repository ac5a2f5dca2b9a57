//! `varve restore CHANGELOG NEW_STORE [--from-checkpoint DIR]`: rebuilds a
//! store from a changelog directory alone (`varve_db::restore`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use varve_db::restore::{RestoreListener, RestoreProgress};
use varve_db::varve_changelog::fs::StdFs;
use varve_db::varve_changelog::{Log, LogOptions, LogSource};
use varve_db::{RestoreOptions, RestoreReport};

use crate::error::{Result, ToolError};
use crate::format::{Out, human_bytes, object};
use crate::store::LockState;

/// Restores `changelog` (a changelog directory, or a store whose
/// `changelog/` is used) into `new_store`, optionally starting from the
/// checkpoint in `checkpoint`; resumes an interrupted restore of
/// `new_store`. Prints what was restored.
///
/// # Errors
/// [`ToolError::Missing`] if the changelog is missing;
/// [`ToolError::Locked`] if its store (or the checkpoint) is open in
/// another process; the restore's errors (`Stale`, a non-empty target,
/// source errors).
pub fn run(
    out: &mut Out,
    changelog: &Path,
    new_store: &Path,
    checkpoint: Option<&Path>,
) -> Result<()> {
    let log_dir = changelog_dir(changelog)?;
    let source_dir = owning_store(&log_dir);
    // Links resolved: the new store must not land inside the source.
    varve_db::check_outside_store(&StdFs, source_dir, new_store)?;
    // Opening a live store's changelog could cut the batch its writer is
    // appending as if it were a torn tail: hold the store's lock (and the
    // checkpoint's, whose tables are linked) while reading.
    let _source_lock = LockState::take(source_dir)?;
    let _checkpoint_lock = checkpoint.map(LockState::take).transpose()?;
    let log = Log::open(&log_dir, LogOptions::default().preallocate_bytes(None))?;
    // The marker records the source, so a resume from another changelog
    // is refused.
    let source_name = log_dir
        .canonicalize()
        .map_err(|e| ToolError::io("resolve", &log_dir, e))?;
    let mut opts = RestoreOptions::default().source_name(source_name.display().to_string());
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| Arc::new(Bar(ProgressBar::new(0))));
    if let Some(bar) = &bar {
        opts = opts.listener(bar.clone());
    }
    if let Some(cp) = checkpoint {
        if !cp.exists() {
            return Err(ToolError::Missing(cp.to_owned()));
        }
        opts = opts.from_checkpoint(cp);
    }
    let result = varve_db::restore(new_store, &mut LogSource::new(&log), opts);
    if let Some(bar) = &bar {
        bar.0.finish_and_clear();
    }
    let report = result?;
    log.close()?;
    print_report(out, new_store, &report)
}

/// The changelog directory named by `path`: `path/changelog` if `path` is
/// a store, else `path` itself.
fn changelog_dir(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Err(ToolError::Missing(path.to_owned()));
    }
    let inner = path.join(varve_db::CHANGELOG_DIR);
    Ok(if inner.is_dir() {
        inner
    } else {
        path.to_owned()
    })
}

/// The store whose changelog `log_dir` is (its parent, when that holds a
/// lock file), or `log_dir` itself for a changelog on its own.
fn owning_store(log_dir: &Path) -> &Path {
    match log_dir.parent() {
        Some(store)
            if log_dir.file_name() == Some(std::ffi::OsStr::new(varve_db::CHANGELOG_DIR))
                && store.join(varve_db::LOCK_FILE).exists() =>
        {
            store
        }
        _ => log_dir,
    }
}

fn print_report(out: &mut Out, store: &Path, r: &RestoreReport) -> Result<()> {
    if out.json() {
        return out.object(object([
            ("store", Value::from(store.display().to_string())),
            ("start_offset", Value::from(r.start_offset)),
            ("end_offset", Value::from(r.end_offset)),
            ("records", Value::from(r.records)),
            ("bytes", Value::from(r.bytes)),
            ("elapsed_ms", Value::from(r.elapsed.as_millis() as u64)),
            ("mb_per_s", Value::from(r.mb_per_s())),
            ("resumed", Value::from(r.resumed)),
        ]));
    }
    let verb = if r.resumed {
        "resumed and restored"
    } else {
        "restored"
    };
    out.line(format!(
        "{verb} {} records ({}) at offsets {}..{} into {} in {:.2} s ({:.1} MB/s)",
        r.records,
        human_bytes(r.bytes),
        r.start_offset,
        r.end_offset,
        store.display(),
        r.elapsed.as_secs_f64(),
        r.mb_per_s()
    ))
}

/// A progress bar over the offsets being restored, on a terminal.
struct Bar(ProgressBar);

impl RestoreListener for Bar {
    fn on_start(&self, start_offset: u64, end_offset: u64) {
        self.0.set_length(end_offset.saturating_sub(start_offset));
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} offsets {wide_msg}") {
            self.0.set_style(style);
        }
        self.0.set_message(format!("from offset {start_offset}"));
    }

    fn on_progress(&self, p: &RestoreProgress) {
        let len = self.0.length().unwrap_or(0);
        self.0
            .set_position(len.saturating_sub(p.end_offset.saturating_sub(p.offset)));
        self.0.set_message(format!("{} records", p.records));
    }
}
