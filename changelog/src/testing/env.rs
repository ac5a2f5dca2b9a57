//! [`env_u64`], [`seed_range`], [`for_each_sync_policy`],
//! [`all_sequences`] and [`kafka_bootstrap`]: the knobs and workloads of the
//! long-running tests.

/// The value of environment variable `name` as a number, if set
/// (`VARVE_CRASH_CYCLES=10000`, `VARVE_CRASH_SEED=…`).
///
/// # Panics
/// If the variable is set but is not a number: a misconfigured run.
#[must_use]
pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v} is not a number"),
    }
}

/// The seeds a randomized test runs: only the one in environment variable
/// `seed_var` when it is set (to replay a failure), else `cycles` seeds
/// from `base`.
///
/// # Panics
/// If `seed_var` is set but is not a number.
///
/// # Examples
/// ```
/// # #[cfg(feature = "testing")] {
/// let seeds = varve_changelog::testing::seed_range("VARVE_DOC_EXAMPLE_SEED", 100, 3);
/// assert_eq!(seeds, 100..103);
/// # }
/// ```
#[must_use]
pub fn seed_range(seed_var: &str, base: u64, cycles: u64) -> std::ops::Range<u64> {
    match env_u64(seed_var) {
        Some(seed) => seed..seed.saturating_add(1),
        None => base..base.saturating_add(cycles),
    }
}

/// Runs `check` under each [`SyncPolicy`](crate::SyncPolicy) in turn,
/// printing the policy first so that a failure names it.
pub fn for_each_sync_policy(check: impl Fn(crate::SyncPolicy)) {
    for policy in [crate::SyncPolicy::Always, crate::SyncPolicy::Manual] {
        eprintln!("sync policy {policy:?}");
        check(policy);
    }
}

/// Every sequence of at most `max_len` items from `alphabet`, shortest
/// first (the empty one included): the workloads an exhaustive test runs.
///
/// # Examples
/// ```
/// # #[cfg(feature = "testing")] {
/// let all = varve_changelog::testing::all_sequences(&['a', 'b'], 2);
/// assert_eq!(all.len(), 1 + 2 + 4);
/// assert_eq!(all[3], vec!['a', 'a']);
/// # }
/// ```
#[must_use]
pub fn all_sequences<T: Clone>(alphabet: &[T], max_len: usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = vec![vec![]];
    let mut frontier: Vec<Vec<T>> = vec![vec![]];
    for _ in 0..max_len {
        let mut next = Vec::with_capacity(frontier.len() * alphabet.len());
        for seq in &frontier {
            for item in alphabet {
                let mut seq = seq.clone();
                seq.push(item.clone());
                next.push(seq);
            }
        }
        out.extend(next.iter().cloned());
        frontier = next;
    }
    out
}

/// The Kafka broker the bridge tests run against, from
/// `VARVE_KAFKA_BOOTSTRAP` (`.ci/kafka-broker.sh start` prints it), or
/// `None` after printing that `test` did not run. The notice goes past the
/// test harness's output capture (which only catches the `print!` macros),
/// so it shows in every run.
#[must_use]
pub fn kafka_bootstrap(test: &str) -> Option<String> {
    match std::env::var("VARVE_KAFKA_BOOTSTRAP") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "NOT RUN: {test}: VARVE_KAFKA_BOOTSTRAP is not set (start a broker with \
                 `.ci/kafka-broker.sh start` and export what it prints)"
            );
            None
        }
    }
}
