//! What a standby's handle and its follower thread share: the position,
//! why the follower stopped ([`Halt`]), and the wait for progress.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

/// Why the follower thread stopped on its own.
#[derive(Clone, Debug)]
pub(super) enum Halt {
    /// The source (an in-process primary) was closed or dropped: nothing
    /// more to follow. Not a failure of the standby (promotion is what
    /// comes next).
    SourceClosed,
    /// The standby cannot go on: stale, diverged, the source failed, or
    /// its own store failed.
    Failed(Error),
}

/// The error given for a standby whose primary is gone.
#[derive(Debug)]
struct PrimaryClosed;

impl std::fmt::Display for PrimaryClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the primary store was closed; the standby stopped following (promote it, or follow the reopened primary)",
        )
    }
}

impl std::error::Error for PrimaryClosed {}

impl Halt {
    pub(super) fn to_error(&self) -> Error {
        match self {
            Halt::SourceClosed => Error::Source(Arc::new(PrimaryClosed)),
            Halt::Failed(e) => e.clone(),
        }
    }
}

/// What the follower thread and the handle share.
pub(super) struct Shared {
    pub(super) stop: AtomicBool,
    /// The next source offset to apply: every record below it is applied.
    position: AtomicU64,
    halt: Mutex<Option<Halt>>,
    progress: Mutex<()>,
    progress_cv: Condvar,
}

impl Shared {
    /// A fresh state at `position`.
    pub(super) fn new(position: u64) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            position: AtomicU64::new(position),
            halt: Mutex::new(None),
            progress: Mutex::new(()),
            progress_cv: Condvar::new(),
        }
    }

    pub(super) fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    pub(super) fn advance(&self, position: u64) {
        self.position.store(position, Ordering::Release);
        let _g = self.progress.lock();
        self.progress_cv.notify_all();
    }

    pub(super) fn halt(&self, halt: Halt) {
        if let Halt::Failed(e) = &halt {
            tracing::error!(error = %e, "standby stopped following");
        } else {
            tracing::info!("standby stopped following: the primary is closed");
        }
        self.halt.lock().get_or_insert(halt);
        let _g = self.progress.lock();
        self.progress_cv.notify_all();
    }

    pub(super) fn halted(&self) -> Option<Halt> {
        self.halt.lock().clone()
    }

    /// Waits until the position reaches `offset`, up to `timeout`.
    pub(super) fn wait_for_offset(&self, offset: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let reached = || self.position() >= offset;
        let mut g = self.progress.lock();
        loop {
            if reached() {
                return Ok(true);
            }
            if let Some(halt) = self.halted() {
                return Err(halt.to_error());
            }
            if self.progress_cv.wait_until(&mut g, deadline).timed_out() {
                return Ok(reached());
            }
        }
    }
}
