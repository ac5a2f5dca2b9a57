//! The engine's threads: how many the process runs, counted by name
//! (`/proc/self/task/*/comm`), so a run shows what a shared budget saves.

/// Threads of this process whose name starts with `varve-` (Varve's
/// flush, compaction and pool threads; not the runner's own
/// `varve-bench`), or `None` where `/proc` is missing.
pub fn engine_thread_count() -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let count = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|name| name.starts_with("varve-") && !name.starts_with("varve-bench"))
        .count();
    Some(count)
}

/// `note` with the engine thread count appended (when known and not
/// zero: peers name their threads otherwise).
pub fn with_engine_threads(note: Option<String>) -> Option<String> {
    let Some(threads) = engine_thread_count().filter(|&n| n > 0) else {
        return note;
    };
    let count = format!("{threads} engine threads");
    Some(match note {
        Some(note) => format!("{note}; {count}"),
        None => count,
    })
}
