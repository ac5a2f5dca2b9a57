//! [`env_u64`]: the knobs of the long-running tests.

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
