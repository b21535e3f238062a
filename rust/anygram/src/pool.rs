//! The thread pool that every parallel step of anygram runs on.
//!
//! Rayon's global pool is unusable in a child made by `fork()` (a PyTorch
//! `DataLoader` worker, `multiprocessing` with fork, gunicorn `--preload`): the
//! child inherits the pool's bookkeeping but none of its threads, so the first
//! parallel call waits forever. This pool remembers the process that made it; a
//! call from any other process (a forked child) gets a new pool of its own.
//!
//! Every entry point that goes parallel wraps its work in [`install`], so that the
//! `par_iter`s below it run here and never on the global pool.

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

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
}
