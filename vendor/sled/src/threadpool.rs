//! A simple adaptive threadpool that returns a oneshot future.

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicBool, Ordering::Relaxed},
    thread,
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};

use crate::{
    debug_delay, warn, Acquire, AtomicUsize, Error, Lazy, OneShot, Result,
    SeqCst,
};

// This is lower for CI reasons.
#[cfg(windows)]
const MAX_THREADS: usize = 16;

#[cfg(not(windows))]
const MAX_THREADS: usize = 128;

// sparekey patch 4: workers are spawned on demand. The pool used to start seven
// immortal workers the first time a task was sent, which a short process (open,
// one read, one write, close) paid for in full on every run, and its count of
// waiting workers went below zero while a task ran, so it could not tell
// whether a new task had a worker to take it. Now `spawn` starts a worker
// whenever the queue holds more tasks than there are workers blocked waiting
// for one, so a task never waits behind another task that may itself be
// waiting (a flush waits for log writes that are tasks of this pool too), and
// a worker left idle for `IDLE_EXIT` exits.
const IDLE_EXIT: Duration = Duration::from_secs(1);

static TOTAL_THREAD_COUNT: AtomicUsize = AtomicUsize::new(0);
static SPAWNS: AtomicUsize = AtomicUsize::new(0);

type Work = Box<dyn FnOnce() + Send + 'static>;

struct Pending {
    tasks: VecDeque<Work>,
    /// Workers blocked in `recv_timeout`, counted under the same lock as
    /// `tasks`.
    idle: usize,
}

struct Queue {
    cv: Condvar,
    mu: Mutex<Pending>,
}

impl Queue {
    fn recv_timeout(&self, duration: Duration) -> Option<Work> {
        let mut pending = self.mu.lock();

        let cutoff = Instant::now() + duration;

        while pending.tasks.is_empty() {
            pending.idle += 1;
            let res = self.cv.wait_until(&mut pending, cutoff);
            pending.idle -= 1;
            if res.timed_out() {
                break;
            }
        }

        pending.tasks.pop_front()
    }

    /// Queues `work`; true when no idle worker is left to take it.
    fn send(&self, work: Work) -> bool {
        let mut pending = self.mu.lock();
        pending.tasks.push_back(work);

        let needs_worker = pending.tasks.len() > pending.idle;

        // having held the mutex makes this linearized
        // with the notify below.
        drop(pending);

        self.cv.notify_all();

        needs_worker
    }

    /// Takes a task that no idle worker is there to take, if any.
    fn take_unclaimed(&self) -> Option<Work> {
        let mut pending = self.mu.lock();
        if pending.tasks.len() > pending.idle {
            pending.tasks.pop_back()
        } else {
            None
        }
    }
}

static QUEUE: Lazy<Queue, fn() -> Queue> = Lazy::new(init_queue);
static BROKEN: AtomicBool = AtomicBool::new(false);

fn init_queue() -> Queue {
    debug_delay();
    Queue {
        cv: Condvar::new(),
        mu: Mutex::new(Pending { tasks: VecDeque::new(), idle: 0 }),
    }
}

/// Runs tasks until this worker has been idle for `IDLE_EXIT` and is not the
/// last one; the last worker stays, so a later failure to spawn leaves queued
/// tasks waiting for it rather than for nobody. Returns after taking itself out
/// of `TOTAL_THREAD_COUNT`.
fn perform_work() {
    loop {
        if let Some(task) = QUEUE.recv_timeout(IDLE_EXIT) {
            debug_delay();
            (task)();
            continue;
        }
        let mut total = TOTAL_THREAD_COUNT.load(Acquire);
        while total > 1 {
            match TOTAL_THREAD_COUNT.compare_exchange(
                total,
                total - 1,
                SeqCst,
                Acquire,
            ) {
                Ok(_) => return,
                Err(now) => total = now,
            }
        }
    }
}

/// Starts a worker; false when the OS refused a thread.
fn spawn_new_thread() -> Result<bool> {
    if BROKEN.load(Relaxed) {
        return Err(Error::ReportableBug(
            "IO thread unexpectedly panicked. please report \
            this bug on the sled github repo."
                .to_string(),
        ));
    }

    if TOTAL_THREAD_COUNT.fetch_add(1, SeqCst) >= MAX_THREADS {
        // the queued task waits for one of the running workers
        TOTAL_THREAD_COUNT.fetch_sub(1, SeqCst);
        return Ok(true);
    }

    let spawn_id = SPAWNS.fetch_add(1, SeqCst);

    let spawn_res = thread::Builder::new()
        .name(format!("sled-io-{}", spawn_id))
        .spawn(move || {
            debug_delay();
            let res = std::panic::catch_unwind(perform_work);
            if res.is_err() {
                TOTAL_THREAD_COUNT.fetch_sub(1, SeqCst);
                // IO thread panicked, shut down the system
                log::error!(
                    "IO thread unexpectedly terminated.
                    please report this error at the sled github repo. {:?}",
                    res
                );
                BROKEN.store(true, SeqCst);
            }
        });

    if let Err(e) = &spawn_res {
        TOTAL_THREAD_COUNT.fetch_sub(1, SeqCst);

        static E: AtomicBool = AtomicBool::new(false);

        if !E.compare_and_swap(false, true, Relaxed) {
            // only execute this once
            warn!(
                "Failed to dynamically increase the threadpool size: {:?}.",
                e,
            )
        }
    }

    Ok(spawn_res.is_ok())
}

/// sparekey patch 9: starts workers until `workers` are running, so that a
/// short process's first log writes find workers waiting instead of starting
/// them while its commit waits. Best effort: stops at the first refusal.
pub(crate) fn prestart(workers: usize) {
    while TOTAL_THREAD_COUNT.load(Acquire) < workers {
        match spawn_new_thread() {
            Ok(true) => {}
            _ => return,
        }
    }
}

/// Spawn a function on the threadpool.
pub fn spawn<F, R>(work: F) -> Result<OneShot<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static + Sized,
{
    let (promise_filler, promise) = OneShot::pair();
    let task = move || {
        let result = (work)();
        promise_filler.fill(result);
    };

    // sparekey patch 4: when no thread can be started, the tasks no idle
    // worker will take run here. Upstream's seven standing workers made a
    // refused spawn harmless; on demand, it could leave a task with no worker
    // at all, and whoever waits for it waiting forever.
    if QUEUE.send(Box::new(task)) && !spawn_new_thread()? {
        while let Some(unclaimed) = QUEUE.take_unclaimed() {
            (unclaimed)();
        }
    }

    Ok(promise)
}
