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

/// One step of a job on a store (`T` is the store: `DbInner`).
pub(crate) type Job<T> = fn(&Arc<T>) -> Step;

struct Registered<T> {
    store: Weak<T>,
    /// In the queue now.
    queued: bool,
    /// Scheduled while at its `per_store_max`: queue it again after.
    again: bool,
    running: usize,
    stopped: bool,
}

struct State<T> {
    stores: IntMap<u64, Registered<T>>,
    queue: VecDeque<u64>,
    shutdown: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes workers (queued work or shutdown).
    work: Condvar,
    /// Wakes an `unregister` waiting for a store's running steps.
    done: Condvar,
    job: Job<T>,
    per_store_max: usize,
}

/// Worker threads running `job` for registered stores.
pub(crate) struct Pool<T: Send + Sync + 'static> {
    shared: Arc<Shared<T>>,
    threads: Vec<JoinHandle<()>>,
}

impl<T: Send + Sync + 'static> Pool<T> {
    /// Starts `threads` workers named `{name}-{i}`.
    pub(crate) fn start(
        name: &str,
        threads: usize,
        per_store_max: usize,
        job: Job<T>,
    ) -> std::io::Result<Pool<T>> {
        let state = State {
            stores: IntMap::default(),
            queue: VecDeque::new(),
            shutdown: false,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
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
    pub(crate) fn register(&self, id: u64, store: Weak<T>) {
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

impl<T: Send + Sync + 'static> Drop for Pool<T> {
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

impl<T> State<T> {
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

impl<T> Shared<T> {
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
            let step =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.job)(&store)))
                    .unwrap_or_else(|_| {
                        tracing::error!(
                            store = id,
                            "a background job panicked; the store gets no more of them"
                        );
                        Step::Stop
                    });
            drop(store);
            state = self.state.lock();
            self.finish(&mut state, id, step);
        }
    }

    /// Books the end of a step of store `id` and queues it again if it
    /// has more to do.
    fn finish(&self, state: &mut State<T>, id: u64, step: Step) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// A store for the tests: counts its steps, answers `Progress` until
    /// `progress_steps` are done, then `answer`.
    #[derive(Default)]
    struct Fake {
        steps: AtomicUsize,
        progress_steps: usize,
        stop: bool,
        panic: bool,
        /// Steps wait here while set (see `Gate`).
        gate: Mutex<Option<mpsc::Receiver<()>>>,
        running: AtomicBool,
    }

    fn step(fake: &Arc<Fake>) -> Step {
        fake.running.store(true, Ordering::SeqCst);
        if let Some(rx) = fake.gate.lock().as_ref() {
            let _ = rx.recv();
        }
        let n = fake.steps.fetch_add(1, Ordering::SeqCst) + 1;
        fake.running.store(false, Ordering::SeqCst);
        assert!(!fake.panic, "a panicking job");
        if fake.stop {
            Step::Stop
        } else if n <= fake.progress_steps {
            Step::Progress
        } else {
            Step::Idle
        }
    }

    /// Waits (bounded) until `f` holds.
    fn eventually(f: impl Fn() -> bool) {
        for _ in 0..2000 {
            if f() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("condition never held");
    }

    fn pool() -> Pool<Fake> {
        Pool::start("varve-test-pool", 2, 1, step).unwrap()
    }

    #[test]
    fn progress_is_queued_again_until_idle() {
        let pool = pool();
        let fake = Arc::new(Fake {
            progress_steps: 5,
            ..Fake::default()
        });
        pool.register(1, Arc::downgrade(&fake));
        pool.schedule(1);
        eventually(|| fake.steps.load(Ordering::SeqCst) == 6);
        pool.unregister(1);
        assert_eq!(fake.steps.load(Ordering::SeqCst), 6);
        assert_eq!(pool.thread_count(), 2);
    }

    #[test]
    fn unregister_waits_for_the_running_step_and_nothing_runs_after() {
        let pool = Arc::new(pool());
        let (tx, rx) = mpsc::channel();
        let fake = Arc::new(Fake {
            gate: Mutex::new(Some(rx)),
            ..Fake::default()
        });
        pool.register(1, Arc::downgrade(&fake));
        pool.schedule(1);
        eventually(|| fake.running.load(Ordering::SeqCst));
        let unregistered = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (pool, unregistered) = (pool.clone(), unregistered.clone());
            std::thread::spawn(move || {
                pool.unregister(1);
                unregistered.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!unregistered.load(Ordering::SeqCst), "the step still runs");
        tx.send(()).unwrap();
        waiter.join().unwrap();
        assert!(!fake.running.load(Ordering::SeqCst));
        drop(tx);
        pool.schedule(1);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            fake.steps.load(Ordering::SeqCst),
            1,
            "no step after unregister"
        );
    }

    #[test]
    fn a_stopped_or_panicking_store_gets_no_more_steps_and_others_do() {
        let pool = pool();
        let stopped = Arc::new(Fake {
            stop: true,
            ..Fake::default()
        });
        let panicking = Arc::new(Fake {
            panic: true,
            ..Fake::default()
        });
        let healthy = Arc::new(Fake::default());
        pool.register(1, Arc::downgrade(&stopped));
        pool.register(2, Arc::downgrade(&panicking));
        pool.register(3, Arc::downgrade(&healthy));
        pool.schedule(1);
        pool.schedule(2);
        eventually(|| {
            stopped.steps.load(Ordering::SeqCst) == 1 && panicking.steps.load(Ordering::SeqCst) == 1
        });
        for _ in 0..3 {
            let before = healthy.steps.load(Ordering::SeqCst);
            pool.schedule(1);
            pool.schedule(2);
            pool.schedule(3);
            eventually(|| healthy.steps.load(Ordering::SeqCst) > before);
        }
        assert_eq!(stopped.steps.load(Ordering::SeqCst), 1);
        assert_eq!(panicking.steps.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_dropped_store_is_skipped() {
        let pool = pool();
        let fake = Arc::new(Fake::default());
        pool.register(1, Arc::downgrade(&fake));
        drop(fake);
        pool.schedule(1);
        pool.unregister(1);
    }
}
