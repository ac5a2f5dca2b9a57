//! A fixed set of worker threads running one kind of background job
//! (flushes, or compactions) for every store registered with it.
//!
//! A store asks for work with [`Pool::schedule`]; a worker takes the store
//! from the queue and runs one step of the job (one flush, one
//! compaction), which says whether there is more to do. At most
//! `per_store_max` steps of one store run at once. [`Pool::unregister`]
//! waits for the store's running steps and makes sure no later step
//! starts, so no job ever runs on a closed store.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::cache::IntMap;
use crate::state::DbInner;

/// What one step of a background job found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// It did some work; there may be more.
    Progress,
    /// Nothing to do now (or a failure to retry later).
    Idle,
    /// The store failed or is closing: run nothing more for it.
    Stop,
}

/// One step of a job on a store.
pub(crate) type Job = fn(&Arc<DbInner>) -> Step;

struct Registered {
    store: Weak<DbInner>,
    /// In the queue now.
    queued: bool,
    /// Scheduled while at its `per_store_max`: queue it again after.
    again: bool,
    running: usize,
    stopped: bool,
}

#[derive(Default)]
struct State {
    stores: IntMap<u64, Registered>,
    queue: VecDeque<u64>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes workers (queued work or shutdown).
    work: Condvar,
    /// Wakes an `unregister` waiting for a store's running steps.
    done: Condvar,
    job: Job,
    per_store_max: usize,
}

/// Worker threads running `job` for registered stores.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `threads` workers named `{name}-{i}`.
    pub(crate) fn start(
        name: &str,
        threads: usize,
        per_store_max: usize,
        job: Job,
    ) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            job,
            per_store_max: per_store_max.max(1),
        });
        let mut pool = Pool {
            shared,
            threads: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let shared = Arc::clone(&pool.shared);
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || shared.work_loop())?;
            pool.threads.push(handle);
        }
        Ok(pool)
    }

    /// Registers store `id` (it may be scheduled from now on).
    pub(crate) fn register(&self, id: u64, store: Weak<DbInner>) {
        self.shared.state.lock().stores.insert(
            id,
            Registered {
                store,
                queued: false,
                again: false,
                running: 0,
                stopped: false,
            },
        );
    }

    /// Asks for a step of store `id`'s job (a no-op if it is queued,
    /// stopped or not registered).
    pub(crate) fn schedule(&self, id: u64) {
        let mut state = self.shared.state.lock();
        if state.enqueue(id) {
            self.shared.work.notify_one();
        }
    }

    /// Stops scheduling store `id`, waits for its running steps and
    /// forgets it. Must not be called from one of this pool's workers.
    pub(crate) fn unregister(&self, id: u64) {
        let mut state = self.shared.state.lock();
        if let Some(r) = state.stores.get_mut(&id) {
            r.stopped = true;
        }
        while state.stores.get(&id).is_some_and(|r| r.running > 0) {
            self.shared.done.wait(&mut state);
        }
        state.stores.remove(&id);
        state.queue.retain(|&q| q != id);
    }

    /// How many workers the pool runs.
    pub(crate) fn thread_count(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.state.lock().shutdown = true;
        self.shared.work.notify_all();
        let me = std::thread::current().id();
        for handle in self.threads.drain(..) {
            // The last handle on the resources may be dropped by a job of
            // this pool (it held the last store); that worker exits by
            // itself once it returns.
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

impl State {
    /// Queues `id` unless it is queued, stopped or unknown; whether it did.
    fn enqueue(&mut self, id: u64) -> bool {
        let Some(r) = self.stores.get_mut(&id) else {
            return false;
        };
        if r.stopped || r.queued {
            return false;
        }
        r.queued = true;
        self.queue.push_back(id);
        true
    }
}

impl Shared {
    fn work_loop(&self) {
        let mut state = self.state.lock();
        loop {
            if state.shutdown {
                return;
            }
            let Some(id) = state.queue.pop_front() else {
                self.work.wait(&mut state);
                continue;
            };
            let per_store_max = self.per_store_max;
            let Some(r) = state.stores.get_mut(&id) else {
                continue;
            };
            r.queued = false;
            if r.stopped {
                continue;
            }
            if r.running >= per_store_max {
                r.again = true;
                continue;
            }
            let Some(store) = r.store.upgrade() else {
                r.stopped = true;
                continue;
            };
            r.running += 1;
            drop(state);
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.job)(&store)))
                .unwrap_or_else(|_| {
                    tracing::error!(store = %store.path.display(), "a background job panicked; the store gets no more of them");
                    Step::Stop
                });
            drop(store);
            state = self.state.lock();
            self.finish(&mut state, id, step);
        }
    }

    /// Books the end of a step of store `id` and queues it again if it
    /// has more to do.
    fn finish(&self, state: &mut State, id: u64, step: Step) {
        let Some(r) = state.stores.get_mut(&id) else {
            return;
        };
        r.running -= 1;
        let again = std::mem::take(&mut r.again);
        if step == Step::Stop {
            r.stopped = true;
        }
        self.done.notify_all();
        if (step == Step::Progress || again) && state.enqueue(id) {
            self.work.notify_one();
        }
    }
}
