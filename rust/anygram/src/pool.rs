//! The thread pool that every parallel step of anygram runs on.
//!
//! Rayon's global pool is unusable in a child made by `fork()` (a PyTorch
//! `DataLoader` worker, `multiprocessing` with fork, gunicorn `--preload`): the
//! child inherits the pool's bookkeeping but none of its threads, so the first
//! parallel call waits forever. This pool remembers the process that made it; a
//! call from any other process (a forked child) gets a new pool of its own.
//!
//! Every entry point that goes parallel wraps its work in [`install`], so that the
//! `par_iter`s below it run here and never on the global pool, or hands it to
//! [`share`] (short steps, where the calling thread works too).

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rayon::{ThreadPool, ThreadPoolBuilder};

/// The pid of the process that built [`POOL`] (0: none yet).
static OWNER: AtomicU32 = AtomicU32::new(0);
/// The current process's pool, leaked on purpose: a pool is made once per
/// process, and a parent's pool must never be dropped in a child (dropping
/// waits for threads that do not exist there).
static POOL: AtomicPtr<ThreadPool> = AtomicPtr::new(std::ptr::null_mut());
/// Serializes building a pool (held only while one is built).
static BUILDING: Mutex<()> = Mutex::new(());

/// This process's pool, built on first use (`RAYON_NUM_THREADS` threads, else one per core).
pub fn current() -> &'static ThreadPool {
    let pid = std::process::id();
    if let Some(pool) = owned_by(pid) {
        return pool;
    }
    let _building = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(pool) = owned_by(pid) {
        return pool;
    }
    let pool: &'static ThreadPool = Box::leak(Box::new(
        ThreadPoolBuilder::new()
            .thread_name(|i| format!("anygram-{i}"))
            .build()
            .unwrap_or_else(|e| panic!("cannot start anygram's worker threads: {e}")),
    ));
    POOL.store(
        pool as *const ThreadPool as *mut ThreadPool,
        Ordering::Release,
    );
    OWNER.store(pid, Ordering::Release);
    pool
}

fn owned_by(pid: u32) -> Option<&'static ThreadPool> {
    if OWNER.load(Ordering::Acquire) != pid {
        return None;
    }
    let pool = POOL.load(Ordering::Acquire);
    // SAFETY: POOL is stored before OWNER (Release) and read after it (Acquire);
    // it points to a leaked pool that is never freed.
    (!pool.is_null()).then(|| unsafe { &*pool })
}

/// Runs `op` on this process's pool: the `par_iter`s inside it use that pool.
/// Called from one of the pool's own threads, `op` simply runs.
pub fn install<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    current().install(op)
}

/// Starts `op` on this process's pool without waiting for it.
pub fn spawn(op: impl FnOnce() + Send + 'static) {
    current().spawn(op)
}

/// Runs `task(i)` for every `i` in `0..tasks` on the calling thread, helped by
/// the pool's other threads as they come, and returns the results in order.
///
/// Unlike [`install`], the caller works too and never waits for a helper to
/// start: a pool thread that has slept can take hundreds of µs to wake on a
/// virtual machine, longer than a short parallel step takes. Each task is
/// claimed by whoever gets to it first; a helper that starts after the last one
/// was claimed does nothing, and the caller waits only for tasks a helper has
/// claimed. A panic in a task is raised again on the caller.
pub fn share<T: Send>(tasks: usize, task: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let results: Vec<Mutex<Option<T>>> = (0..tasks).map(|_| Mutex::new(None)).collect();
    let panicked: Mutex<Option<Box<dyn std::any::Any + Send>>> = Mutex::new(None);
    let run = |i: usize| match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(i))) {
        Ok(out) => *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(out),
        Err(payload) => *panicked.lock().unwrap_or_else(PoisonError::into_inner) = Some(payload),
    };
    let run: &(dyn Fn(usize) + Sync) = &run;
    // SAFETY: only the lifetime is erased (a raw pointer, dereferenced only in
    // `Shared::work` for a claimed index below `tasks`; this function returns only
    // after every such call has returned, `done` counting them).
    let run: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(run) };
    let shared = Arc::new(Shared {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        tasks,
        helpers_left: AtomicUsize::new(
            current().current_num_threads().min(tasks).saturating_sub(1),
        ),
        run,
    });
    shared.recruit();
    shared.work();
    let mut spins = 0u32;
    while shared.done.load(Ordering::Acquire) < tasks {
        // A claimed task finishes soon: spin, then yield the core to it.
        spins += 1;
        if spins < 1 << 10 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    if let Some(payload) = panicked
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
    {
        std::panic::resume_unwind(payload);
    }
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .expect("every task ran")
        })
        .collect()
}

/// [`share`]'s state, shared with the helpers (which may outlive the call).
struct Shared {
    next: AtomicUsize,
    done: AtomicUsize,
    tasks: usize,
    /// Helpers not started yet (one per pool thread at most, fewer than tasks).
    helpers_left: AtomicUsize,
    /// The caller's task runner, valid while a claimed task is unfinished.
    run: *const (dyn Fn(usize) + Sync),
}

// SAFETY: `run` points to a `Sync` closure, called only as `Shared::work` allows.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// Starts one more helper while tasks are left to claim. Each helper starts
    /// the next as it begins, so the caller pays for one start, not one per
    /// pool thread (each start can wake a thread: microseconds on a VM).
    fn recruit(self: &Arc<Self>) {
        if self.next.load(Ordering::Relaxed) >= self.tasks {
            return;
        }
        let took = self
            .helpers_left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(1)
            });
        if took.is_ok() {
            let shared = self.clone();
            current().spawn(move || {
                shared.recruit();
                shared.work();
            });
        }
    }

    /// Claims and runs tasks until none is left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            if i >= self.tasks {
                return;
            }
            // SAFETY: `i` is claimed and below `tasks`: the caller of `share` is
            // still waiting for it, so the closure `run` points to is alive.
            unsafe { (*self.run)(i) };
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// `(a(), b())`, each on whichever of the calling thread and a pool thread gets
/// to it first ([`share`]).
pub fn join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    fn run_once<T>(f: &Mutex<Option<impl FnOnce() -> T>>, out: &Mutex<Option<T>>) {
        let f = f.lock().unwrap_or_else(PoisonError::into_inner).take();
        *out.lock().unwrap_or_else(PoisonError::into_inner) = f.map(|f| f());
    }
    fn taken<T>(out: Mutex<Option<T>>) -> T {
        let out = out.into_inner().unwrap_or_else(PoisonError::into_inner);
        out.expect("share runs each task once")
    }
    let (a, b) = (Mutex::new(Some(a)), Mutex::new(Some(b)));
    let (out_a, out_b) = (Mutex::new(None), Mutex::new(None));
    share(2, |i| match i {
        0 => run_once(&a, &out_a),
        _ => run_once(&b, &out_b),
    });
    (taken(out_a), taken(out_b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn parallel_work_runs_on_the_pool() {
        let names: Vec<String> = install(|| {
            (0..64)
                .into_par_iter()
                .map(|_| std::thread::current().name().unwrap_or("").to_string())
                .collect()
        });
        assert!(names.iter().all(|n| n.starts_with("anygram-")), "{names:?}");
        assert!(std::ptr::eq(current(), current()));
    }

    #[test]
    fn shared_tasks_all_run_once_and_come_back_in_order() {
        for tasks in [0, 1, 2, 3, 100] {
            let runs = AtomicUsize::new(0);
            let out = share(tasks, |i| {
                runs.fetch_add(1, Ordering::Relaxed);
                i * i
            });
            assert_eq!(out, (0..tasks).map(|i| i * i).collect::<Vec<_>>());
            assert_eq!(runs.load(Ordering::Relaxed), tasks);
        }
        // From one of the pool's own threads too (a shard's step on the pool).
        let inside = install(|| share(50, |i| i + 1));
        assert_eq!(inside.iter().sum::<usize>(), (1..=50).sum::<usize>());
        let borrowed = [7u64; 10];
        assert_eq!(join(|| borrowed.len(), || borrowed[3]), (10, 7));
    }

    #[test]
    fn shared_tasks_are_taken_by_the_caller_and_helpers() {
        // Tasks long enough that every helper starts (each starting the next)
        // before the last one is claimed.
        let threads = Mutex::new(std::collections::BTreeSet::new());
        share(64, |_| {
            let name = std::thread::current().name().map(str::to_string);
            threads.lock().unwrap().insert(name);
            std::thread::sleep(std::time::Duration::from_millis(2));
        });
        let threads = threads.into_inner().unwrap();
        let caller = std::thread::current().name().map(str::to_string);
        assert!(
            threads.contains(&caller),
            "the caller works too: {threads:?}"
        );
        if current().current_num_threads() > 1 {
            assert!(threads.len() > 1, "helpers joined: {threads:?}");
        }
        assert!(
            threads.len() <= current().current_num_threads(),
            "{threads:?}"
        );
    }

    #[test]
    fn a_panic_in_a_shared_task_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| {
            share(64, |i| {
                assert!(i != 40, "task 40 fails");
                i
            })
        });
        let payload = caught.expect_err("the panic is raised again");
        let message = match payload.downcast_ref::<&str>() {
            Some(text) => text.to_string(),
            None => payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default(),
        };
        assert!(message.contains("task 40 fails"), "{message}");
        // The pool is still usable.
        assert_eq!(share(3, |i| i).len(), 3);
    }
}
