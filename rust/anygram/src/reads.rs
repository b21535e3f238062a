//! Counting a query's dependent reads: the rounds of reads that must wait for
//! the previous round's answer (a pointer, then the text it points to), and the
//! distinct pages touched on each file.
//!
//! On a trillion-token index only a sliver is in RAM, so a query's latency is
//! its number of rounds, not its CPU time. Searches call [`round`] once per
//! round and [`touch`] for every byte range they read; both do nothing unless
//! the calling thread is inside [`record`], so the cost outside it is one
//! thread-local flag test. Reads of data already held in RAM (the accelerator's
//! resident levels) are not reads and are not counted.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use crate::storage::IndexFile;

/// Size of the pages counted by [`ReadCount::pages`].
pub const PAGE_BYTES: u64 = 4096;

/// What one recorded piece of work read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadCount {
    /// Rounds of dependent reads, by shard number.
    pub rounds: BTreeMap<usize, u64>,
    /// Distinct 4 KiB pages touched, by file name (e.g. `table.0`).
    pub pages: BTreeMap<String, u64>,
}

impl ReadCount {
    /// The most rounds any one shard took.
    pub fn max_rounds_per_shard(&self) -> u64 {
        self.rounds.values().copied().max().unwrap_or(0)
    }
}

#[derive(Default)]
struct Recorder {
    rounds: BTreeMap<usize, u64>,
    pages: BTreeMap<String, BTreeSet<u64>>,
}

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static RECORDER: RefCell<Recorder> = RefCell::new(Recorder::default());
}

/// Runs `work` on this thread and returns what it read. Searches of one query
/// run on the calling thread (`count`, `find`, `search_docs`), so they are all
/// counted; work handed to other threads is not.
pub fn record<R>(work: impl FnOnce() -> R) -> (R, ReadCount) {
    let outer = ACTIVE.with(|a| a.replace(true));
    let saved = RECORDER.with(|r| std::mem::take(&mut *r.borrow_mut()));
    let result = work();
    let recorder = RECORDER.with(|r| std::mem::replace(&mut *r.borrow_mut(), saved));
    ACTIVE.with(|a| a.set(outer));
    let count = ReadCount {
        rounds: recorder.rounds,
        pages: recorder
            .pages
            .into_iter()
            .map(|(file, pages)| (file, pages.len() as u64))
            .collect(),
    };
    (result, count)
}

/// Whether the calling thread's reads are being recorded ([`record`]).
#[inline]
pub(crate) fn active() -> bool {
    ACTIVE.with(|a| a.get())
}

/// One round of dependent reads on shard `shard`.
#[inline]
pub(crate) fn round(shard: usize) {
    if active() {
        RECORDER.with(|r| *r.borrow_mut().rounds.entry(shard).or_insert(0) += 1);
    }
}

/// Bytes `[start, start + len)` of `file` were read.
#[inline]
pub(crate) fn touch(file: &IndexFile, start: u64, len: u64) {
    if !active() || len == 0 {
        return;
    }
    let name = file
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        let pages = r.pages.entry(name).or_default();
        pages.extend(start / PAGE_BYTES..=(start + len - 1) / PAGE_BYTES);
    });
}
