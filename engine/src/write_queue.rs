//! The queue of writers waiting for a group-commit leader, and the
//! results the leader hands back (the group commit itself is in
//! `write.rs`).

use std::collections::{HashMap, VecDeque};

use crate::batch::WriteBatch;
use crate::error::Result;

/// The most bytes of key and value one group gathers.
const MAX_GROUP_BYTES: usize = 4 << 20;

/// One writer's batch, waiting to be committed in a group.
pub(crate) struct Pending {
    pub(crate) id: u64,
    pub(crate) batch: WriteBatch,
    pub(crate) sync: bool,
}

/// Writers waiting for a leader, and the results handed back to them.
#[derive(Default)]
pub(crate) struct WriteQueue {
    pub(crate) next_id: u64,
    pub(crate) pending: VecDeque<Pending>,
    pub(crate) results: HashMap<u64, Result<()>>,
    pub(crate) leader_active: bool,
}

/// Takes the next group off the queue: at least one batch, then more
/// while the group stays within [`MAX_GROUP_BYTES`].
pub(crate) fn take_group(pending: &mut VecDeque<Pending>) -> Vec<Pending> {
    let mut group = Vec::new();
    let mut bytes = 0;
    while let Some(p) = pending.front() {
        if !group.is_empty() && bytes + p.batch.size_bytes() > MAX_GROUP_BYTES {
            break;
        }
        bytes += p.batch.size_bytes();
        if let Some(p) = pending.pop_front() {
            group.push(p);
        }
    }
    group
}
