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

/// `note` with the partition count of a partitioned run and the engine
/// thread count (when known and not zero: peers name their threads
/// otherwise) appended.
pub fn with_engine_threads(note: Option<String>, partitions: Option<u32>) -> Option<String> {
    let mut parts: Vec<String> = note.into_iter().collect();
    if let Some(n) = partitions {
        parts.push(format!("{n} partitions"));
    }
    if let Some(threads) = engine_thread_count().filter(|&n| n > 0) {
        parts.push(format!("{threads} engine threads"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
