//! `varve restore CHANGELOG NEW_STORE [--from-checkpoint DIR]`: rebuilds a
//! store from a changelog directory alone (`varve_db::restore`); with
//! `--kafka BOOTSTRAP TOPIC PARTITION NEW_STORE`, from one partition of a
//! Kafka topic (feature `kafka`).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};
use varve_db::restore::{RestoreListener, RestoreProgress};
use varve_db::varve_changelog::fs::StdFs;
use varve_db::varve_changelog::{Log, LogOptions, LogSource, RecordSource};
use varve_db::{RestoreOptions, RestoreReport};

use crate::error::{Result, ToolError};
use crate::format::{Out, human_bytes, object, parse_size};
use crate::store::LockState;

/// How a restore runs, from the command line.
#[derive(Debug, Default)]
pub struct RestoreArgs<'a> {
    /// `--from-checkpoint`: the checkpoint to start from.
    pub checkpoint: Option<&'a Path>,
    /// `--memory-budget`: the restore's memory budget in bytes.
    pub memory_budget: Option<usize>,
    /// `--progress-json`: progress as JSON lines on stderr.
    pub progress_json: bool,
    /// `--quiet`: no progress bar.
    pub quiet: bool,
}

impl<'a> RestoreArgs<'a> {
    /// The arguments, with `memory_budget` (`--memory-budget`) parsed.
    ///
    /// # Errors
    /// [`ToolError::Invalid`] for a budget that is not a byte count.
    pub fn new(
        checkpoint: Option<&'a Path>,
        memory_budget: Option<&str>,
        progress_json: bool,
        quiet: bool,
    ) -> Result<Self> {
        let memory_budget = memory_budget
            .map(|text| parse_size(text, "--memory-budget"))
            .transpose()?;
        Ok(RestoreArgs {
            checkpoint,
            memory_budget,
            progress_json,
            quiet,
        })
    }
}

/// Restores `changelog` (a changelog directory, or a store whose
/// `changelog/` is used) into `new_store`, optionally starting from the
/// checkpoint in `checkpoint`; resumes an interrupted restore of
/// `new_store`, as `args` say. Prints what was restored.
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
    args: &RestoreArgs<'_>,
) -> Result<()> {
    // Only a directory that is a changelog (it has `log.meta`), or a
    // store holding one: opening any other would write a new changelog
    // into it and restore nothing.
    let log_dir = crate::segments::changelog_dir(changelog)?;
    let source_dir = owning_store(&log_dir);
    // Links resolved: the new store must not land inside the source.
    varve_db::check_outside_store(&StdFs, source_dir, new_store)?;
    // Opening a live store's changelog could cut the batch its writer is
    // appending as if it were a torn tail: hold the store's lock (and the
    // checkpoint's, whose tables are linked) while reading. A changelog
    // of no store is guarded by its own lock, which `Log::open` takes
    // (taking it here too would refuse the open as a second holder).
    let _source_lock = if source_dir == log_dir {
        None
    } else {
        Some(LockState::take(source_dir)?)
    };
    let _checkpoint_lock = args.checkpoint.map(LockState::take).transpose()?;
    let log = Log::open(&log_dir, LogOptions::default().preallocate_bytes(None))?;
    // The marker records the source, so a resume from another changelog
    // is refused.
    let source_name = log_dir
        .canonicalize()
        .map_err(|e| ToolError::io("resolve", &log_dir, e))?;
    let report = restore_with_progress(
        new_store,
        &mut LogSource::new(&log),
        source_name.display().to_string(),
        args,
    )?;
    log.close()?;
    print_report(out, new_store, &report)
}

/// Restores `source` into `new_store` as `args` say, with progress as
/// JSON lines if asked, else a progress bar on a terminal; the marker
/// names the source `source_name`, so a resume from another source is
/// refused.
fn restore_with_progress<S: RecordSource>(
    new_store: &Path,
    source: &mut S,
    source_name: String,
    args: &RestoreArgs<'_>,
) -> Result<RestoreReport> {
    let mut opts = RestoreOptions::default().source_name(source_name);
    if let Some(budget) = args.memory_budget {
        opts = opts.memory_budget_bytes(budget);
    }
    let bar = (!args.progress_json && !args.quiet && std::io::stderr().is_terminal())
        .then(|| Arc::new(Bar(ProgressBar::new(0))));
    if let Some(bar) = &bar {
        opts = opts.listener(bar.clone());
    }
    if args.progress_json {
        opts = opts.listener(Arc::new(JsonLines));
    }
    if let Some(cp) = args.checkpoint {
        if !cp.exists() {
            return Err(ToolError::Missing(cp.to_owned()));
        }
        opts = opts.from_checkpoint(cp);
    }
    let result = varve_db::restore(new_store, source, opts);
    if let Some(bar) = &bar {
        bar.0.finish_and_clear();
    }
    Ok(result?)
}

/// The Kafka topic partition `varve restore --kafka` reads.
#[derive(Debug)]
pub struct KafkaPartition {
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    bootstrap: String,
    topic: String,
    partition: i32,
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    properties: Vec<(String, String)>,
}

impl KafkaPartition {
    /// The partition from the command line: the bootstrap brokers, the
    /// topic, the partition number, and `KEY=VALUE` librdkafka properties.
    ///
    /// # Errors
    /// [`ToolError::Invalid`] for a partition that is not a number from 0,
    /// an empty topic or a property without `=`.
    pub fn parse(
        bootstrap: String,
        topic: &Path,
        partition: &Path,
        properties: &[String],
    ) -> Result<KafkaPartition> {
        let topic = topic.to_string_lossy().into_owned();
        if topic.is_empty() || bootstrap.is_empty() {
            return Err(ToolError::Invalid(
                "restore --kafka takes BOOTSTRAP TOPIC PARTITION NEW_STORE".into(),
            ));
        }
        let partition = partition.to_string_lossy();
        let partition = partition
            .parse::<i32>()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| {
                ToolError::Invalid(format!(
                    "partition {partition:?} is not a partition number (0, 1, ...)"
                ))
            })?;
        let properties = properties
            .iter()
            .map(|p| match p.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
                _ => Err(ToolError::Invalid(format!(
                    "--kafka-property {p:?} is not KEY=VALUE"
                ))),
            })
            .collect::<Result<_>>()?;
        Ok(KafkaPartition {
            bootstrap,
            topic,
            partition,
            properties,
        })
    }

    /// The name the restore marker records: the topic and partition (the
    /// brokers may change between a restore and its resume).
    fn source_name(&self) -> String {
        format!("kafka topic {} partition {}", self.topic, self.partition)
    }
}

/// Restores `from` into `new_store` (from `checkpoint`, if given) and
/// prints what was restored.
///
/// # Errors
/// [`ToolError::Invalid`] when built without the `kafka` feature; the
/// bridge's errors (an unreachable broker, a missing topic or partition)
/// and the restore's.
#[cfg(feature = "kafka")]
pub fn run_kafka(
    out: &mut Out,
    from: &KafkaPartition,
    new_store: &Path,
    args: &RestoreArgs<'_>,
) -> Result<()> {
    use varve_db::varve_changelog::kafka::{KafkaConfig, KafkaSource};

    let mut config = KafkaConfig::new(from.bootstrap.clone(), from.topic.clone());
    for (key, value) in &from.properties {
        config = config.property(key.clone(), value.clone());
    }
    let mut source = KafkaSource::new(config, from.partition)
        .map_err(|e| ToolError::Invalid(format!("Kafka: {e}")))?;
    let report = restore_with_progress(new_store, &mut source, from.source_name(), args)?;
    print_report(out, new_store, &report)
}

/// Without the `kafka` feature: says how to get it.
///
/// # Errors
/// Always [`ToolError::Invalid`].
#[cfg(not(feature = "kafka"))]
pub fn run_kafka(
    _out: &mut Out,
    from: &KafkaPartition,
    _new_store: &Path,
    _args: &RestoreArgs<'_>,
) -> Result<()> {
    Err(ToolError::Invalid(format!(
        "cannot restore {}: this varve was built without Kafka support \
         (install it with `cargo install varve-tools --features kafka`)",
        from.source_name()
    )))
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

/// The fields of `--json`'s report (and of `--progress-json`'s `end`
/// line), after `first`.
fn report_object<const N: usize>(
    first: [(&str, Value); N],
    r: &RestoreReport,
) -> Map<String, Value> {
    let mut obj = object(first);
    obj.extend(object([
        ("start_offset", Value::from(r.start_offset)),
        ("end_offset", Value::from(r.end_offset)),
        ("records", Value::from(r.records)),
        ("bytes", Value::from(r.bytes)),
        ("elapsed_ms", Value::from(r.elapsed.as_millis() as u64)),
        ("mb_per_s", Value::from(r.mb_per_s())),
        ("resumed", Value::from(r.resumed)),
    ]));
    obj
}

fn print_report(out: &mut Out, store: &Path, r: &RestoreReport) -> Result<()> {
    if out.json() {
        let store = ("store", Value::from(store.display().to_string()));
        return out.object(report_object([store], r));
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

/// `--progress-json`: one JSON object a line on stderr for each callback,
/// whatever stderr is (a log file, a pipe): `start`, then `progress` after
/// each poll, then `end` (see `docs/TOOLS.md`). Each line is one write, so
/// a reader of a killed restore's output sees whole lines only, but for
/// perhaps its last.
struct JsonLines;

impl JsonLines {
    fn print(line: &Map<String, Value>) {
        let mut text = Value::Object(line.clone()).to_string();
        text.push('\n');
        // Progress is best effort: a closed stderr does not stop the
        // restore.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

impl RestoreListener for JsonLines {
    fn on_start(&self, start_offset: u64, end_offset: u64) {
        JsonLines::print(&object([
            ("event", Value::from("start")),
            ("start_offset", Value::from(start_offset)),
            ("end_offset", Value::from(end_offset)),
        ]));
    }

    fn on_progress(&self, p: &RestoreProgress) {
        JsonLines::print(&object([
            ("event", Value::from("progress")),
            ("offset", Value::from(p.offset)),
            ("flushed_offset", Value::from(p.flushed_offset)),
            ("end_offset", Value::from(p.end_offset)),
            ("records", Value::from(p.records)),
            ("bytes", Value::from(p.bytes)),
            ("elapsed_ms", Value::from(p.elapsed.as_millis() as u64)),
        ]));
    }

    fn on_end(&self, report: &RestoreReport) {
        JsonLines::print(&report_object([("event", Value::from("end"))], report));
    }
}
