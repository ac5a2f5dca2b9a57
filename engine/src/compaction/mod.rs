//! Leveled compaction: merging tables down the levels so that reads touch
//! few tables and overwritten or deleted data stops taking space.
//!
//! The cut follows fjall's: [`picker`] is a pure decision over an immutable
//! [`Version`](crate::version::Version) (`pick(&Version, ..) -> Option<Task>`),
//! and `job` executes a [`Task`] (merge the inputs, drop what no reader can
//! see, write the outputs) and returns the [`VersionEdit`](crate::version::VersionEdit)
//! that installs the result as one manifest record. What a merge keeps and
//! drops is `stream`, a pure iterator adaptor that flushes use too.
//! `worker` runs jobs on background threads and holds writers when
//! compaction falls behind.
//!
//! The level shape (dynamic level sizes, triggers, stall thresholds) is
//! described on [`CompactionOptions`](crate::CompactionOptions) and in
//! `docs/COMPACTION.md`.

mod job;
pub mod picker;
pub(crate) mod stream;
mod worker;

pub use picker::{Busy, LevelShape, Reason, Task, estimated_pending_bytes, pick, shape};
