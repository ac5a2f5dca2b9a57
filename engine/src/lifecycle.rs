//! A store's lifecycle state and the one admission check every write,
//! flush and compaction passes.
//!
//! ```text
//!            set_replica(false)
//!   Replica ───────────────────▶ Writable
//!      │    ◀─────────────────── │
//!      │      set_replica(true)  │
//!      │ fail()          fail()  │
//!      ▼                         ▼
//!    Failed (read-only; the cause is kept)
//!
//!   any state ── begin_close() ──▶ Closing
//! ```
//!
//! A failure is sticky: once a sync has failed, the durable contents of
//! the file are unknown, so the store never writes again; a store that
//! fails while closing keeps the cause too ([`Lifecycle::failure`]).

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, Result};

/// What a store is doing, as the admission check sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Open for reads and writes.
    Writable,
    /// An unpromoted standby: user writes (and manual flushes and
    /// compactions) are refused so that it cannot diverge from its
    /// primary; replicated records are admitted.
    Replica,
    /// A sync failed: reads only.
    Failed,
    /// Closing or closed.
    Closing,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Writable,
            1 => State::Replica,
            2 => State::Failed,
            _ => State::Closing,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            State::Writable => 0,
            State::Replica => 1,
            State::Failed => 2,
            State::Closing => 3,
        }
    }
}

/// Who asks to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Writer {
    /// A user write, flush or compaction request.
    User,
    /// A standby's follower applying its primary's records.
    Replicated,
}

/// The state of one store: an atomic for the hot path, and the first
/// failure's error.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    state: AtomicU8,
    failure: OnceLock<Arc<Error>>,
}

impl Lifecycle {
    /// The current state.
    pub(crate) fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// The one admission check: `Ok` if `writer` may write now.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::ReadOnly`] with the failure that
    /// stopped writes, or [`Error::Replica`] for a user write to an
    /// unpromoted standby.
    pub(crate) fn admit(&self, writer: Writer) -> Result<()> {
        match self.state() {
            State::Writable => Ok(()),
            State::Replica if writer == Writer::Replicated => Ok(()),
            State::Replica => Err(Error::Replica),
            State::Failed => Err(self.read_only()),
            State::Closing => Err(Error::Closed),
        }
    }

    /// Whether a sync has failed (also while closing).
    pub(crate) fn has_failed(&self) -> bool {
        self.failure.get().is_some()
    }

    /// Whether the store is closing.
    pub(crate) fn is_closing(&self) -> bool {
        self.state() == State::Closing
    }

    /// The failure that made the store read-only, if any.
    pub(crate) fn failure(&self) -> Option<Arc<Error>> {
        self.failure.get().cloned()
    }

    /// Enters or leaves replica mode; a failed or closing store stays as
    /// it is.
    pub(crate) fn set_replica(&self, replica: bool) {
        let (from, to) = if replica {
            (State::Writable, State::Replica)
        } else {
            (State::Replica, State::Writable)
        };
        let _ = self.state.compare_exchange(
            from.to_u8(),
            to.to_u8(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Records `cause` (the first one wins) and makes the store read-only;
    /// returns the [`Error::ReadOnly`] to give the caller, and whether this
    /// call was the one that failed the store.
    pub(crate) fn fail(&self, cause: &Error) -> (Error, bool) {
        let root = match cause {
            Error::ReadOnly { cause } => cause.clone(),
            other => Arc::new(other.clone()),
        };
        let first = self.failure.set(root).is_ok();
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (State::from_u8(v) != State::Closing).then_some(State::Failed.to_u8())
            });
        (self.read_only(), first)
    }

    /// Starts closing: from now on every write is refused with
    /// [`Error::Closed`].
    pub(crate) fn begin_close(&self) {
        self.state.store(State::Closing.to_u8(), Ordering::Release);
    }

    fn read_only(&self) -> Error {
        match self.failure.get() {
            Some(cause) => Error::ReadOnly {
                cause: cause.clone(),
            },
            None => Error::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync_error() -> Error {
        Error::sync("/s/MANIFEST-000001", std::io::Error::other("EIO"))
    }

    #[test]
    fn a_new_store_admits_everyone() {
        let l = Lifecycle::default();
        assert_eq!(l.state(), State::Writable);
        assert!(l.admit(Writer::User).is_ok());
        assert!(l.admit(Writer::Replicated).is_ok());
    }

    #[test]
    fn a_replica_admits_only_replicated_records_until_promoted() {
        let l = Lifecycle::default();
        l.set_replica(true);
        assert!(matches!(l.admit(Writer::User), Err(Error::Replica)));
        assert!(l.admit(Writer::Replicated).is_ok());
        l.set_replica(false);
        assert!(l.admit(Writer::User).is_ok());
    }

    #[test]
    fn a_failure_is_sticky_and_keeps_its_first_cause() {
        let l = Lifecycle::default();
        l.set_replica(true);
        let (e, first) = l.fail(&sync_error());
        assert!(first);
        assert!(matches!(e, Error::ReadOnly { .. }));
        let (_, again) = l.fail(&Error::Closed);
        assert!(!again);
        l.set_replica(false);
        for writer in [Writer::User, Writer::Replicated] {
            match l.admit(writer) {
                Err(Error::ReadOnly { cause }) => {
                    assert!(matches!(*cause, Error::Sync { .. }), "{cause}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(l.has_failed());
        assert!(!l.is_closing());
    }

    #[test]
    fn closing_refuses_everyone_and_keeps_a_failure() {
        let l = Lifecycle::default();
        l.begin_close();
        assert!(matches!(l.admit(Writer::Replicated), Err(Error::Closed)));
        l.fail(&sync_error());
        assert!(l.is_closing());
        assert!(l.has_failed());
        assert!(matches!(l.admit(Writer::User), Err(Error::Closed)));
        l.set_replica(true);
        assert!(l.is_closing());
    }
}
