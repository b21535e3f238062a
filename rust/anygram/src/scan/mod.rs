//! Batch scans over a whole index: benchmark contamination and exact-substring
//! deduplication.
//!
//! * [`matching`]: *matching statistics* of a token sequence against the
//!   shards of an index — for every start `i`, the length of the longest prefix
//!   of `tokens[i..]` that occurs somewhere — in one left-to-right pass, and
//!   where the longest match occurs. Contamination and cross-corpus dedup are
//!   built on it.
//! * [`dedup`]: every window of `min_len` tokens that is not the first
//!   occurrence of its n-gram (self) or that occurs in another index (cross),
//!   as removed ranges per document. Self dedup reads the suffix array and the
//!   longest-common-prefix of neighbouring suffixes, thresholded at `min_len`.
//!
//! Matches never span a document separator: queries cannot contain it (every
//! id is below the vocabulary size, which is below the separator value) and a
//! dedup window must lie inside one document.

pub mod dedup;
pub mod matching;

pub use dedup::{DocRanges, DEDUP_CHUNK_RANKS, MAX_DEDUP_PARTS};
pub use matching::{Contamination, Occurrence};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Progress and cancellation shared between a running scan and its caller
/// (which may poll `done` from another thread and set `cancel`).
#[derive(Debug, Default)]
pub struct ScanControl {
    /// Units of work finished (what a unit is depends on the scan).
    pub done: AtomicU64,
    /// Set to stop the scan at its next check; it then returns [`Error::Cancelled`].
    pub cancel: AtomicBool,
}

impl ScanControl {
    /// Counts `units` more of finished work.
    pub fn add(&self, units: u64) {
        self.done.fetch_add(units, Ordering::Relaxed);
    }

    /// Units of finished work so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// [`Error::Cancelled`] once `cancel` is set.
    pub fn check(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}
