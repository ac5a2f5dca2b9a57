//! The test toolkit, for tests only; not part of the stable API.
//!
//! Built only with the `testing` feature, which every test crate of the
//! workspace enables through its dev-dependencies (so `cargo test
//! --workspace` needs no flags) and which the default build leaves out.
//!
//! - [`Rng`]: the one seeded PRNG of the test suites.
//! - [`InterceptFs`]: wraps any [`FileSystem`](crate::fs::FileSystem) and
//!   calls a hook before each operation, which can let it pass, fail it,
//!   delay it or count it: a fault-injecting file system in a few lines.
//! - [`MemFs`], [`CrashMode`], [`FaultKind`]: the in-memory file system
//!   that simulates power loss and I/O faults (also at `fs::MemFs`).
//! - [`mem_fs_with_dir`], [`small_log_options`]: the setup most log tests
//!   share; [`BrokenSource`], a record source whose polls fail;
//!   [`env_u64`], [`seed_range`], [`for_each_sync_policy`],
//!   [`all_sequences`] and [`kafka_bootstrap`], the knobs and workloads of
//!   the long-running tests.

mod env;
mod intercept;
pub(crate) mod rng;
mod setup;
mod source;

pub use crate::fs::{CrashMode, FaultKind, MemFs};
pub use env::{all_sequences, env_u64, for_each_sync_policy, kafka_bootstrap, seed_range};
pub use intercept::{Hook, InterceptFs, Op, OpKind};
pub use rng::Rng;
pub use setup::{mem_fs_with_dir, small_log_options};
pub use source::BrokenSource;
