//! The suffix-array ranges of every unigram and bigram of an index, kept in RAM
//! for the ∞-gram LM ([`crate::lm`]): a context of one or two tokens is found
//! without a search, and a longer one starts inside the range of its first two
//! tokens.
//!
//! Built by one walk over each shard's suffix array in rank order (pointers read
//! in sequence, the first two tokens of each suffix read where they point, hinted
//! ahead, chunks on the pool): suffixes are sorted by those tokens, so every
//! range is a run of ranks. Building costs one random text read per token of the
//! index (about 0.6 CPU-seconds for the 28M-token docs index) and the table
//! takes 12 bytes per distinct unigram (plus 256 KiB indexing them by token for
//! 1- and 2-byte widths) and 21 per distinct bigram (a 16-byte hash slot, 3/4
//! full): it grows with the index's distinct bigrams, not its length (2.2M
//! bigrams, 44 MiB, for the docs index). It is bounded (64 MiB by default, split
//! over the shards): the walk stops where the bound is reached, and the table
//! then covers the first tokens (in suffix order) whose ranges it saw whole;
//! lookups of the others answer "not in the table", and the caller searches as
//! without one. N-grams of covered tokens that never occur get an empty range.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::engine::{Engine, FindResult, ShardRanges};
use crate::error::Result;
use crate::shard::{RankRange, Shard};

/// Default bound on a table's RAM (all shards together).
pub const DEFAULT_BUDGET_BYTES: u64 = 64 << 20;

/// A table is built once the engine has scored this fraction (1/n) of its
/// index's length in tokens: its build costs about one read per index token, so
/// a few short texts on a large index keep searching.
const BUILD_AFTER_FRACTION: u64 = 32;

/// Ranks a build task walks at once (its pointers are read in one piece).
const WALK_CHUNK: u64 = 1 << 16;

/// Pointers ahead whose text a walk hints.
const WALK_AHEAD: usize = 16;

/// Bytes the table stores per unigram (key, first rank, and the first bigram
/// while it is built) and per bigram (4/3 of a 16-byte hash slot).
const UNIGRAM_BYTES: u64 = 16;
const BIGRAM_BYTES: u64 = 22;

/// One bigram in the open-addressing table: its ranks `lo..lo + len` and its
/// second token's key (its first token is the unigram whose range holds `lo`).
/// `len == 0`: an empty slot.
#[derive(Clone, Copy, Default)]
struct BigramSlot {
    lo: u64,
    len: u32,
    second: u32,
}

/// Token widths up to this many bytes index their unigrams by token (an array of
/// `4 << (8 * width)` bytes, 256 KiB for 2-byte tokens): one read, no search.
const DENSE_WIDTH: usize = 2;

/// One shard's ranges. Unigram `j` (token key `unigram_keys[j]`) has the ranks
/// `unigram_lo[j]..unigram_lo[j + 1]`; while the table is built its bigrams are
/// entries `first_bigram[j]..first_bigram[j + 1]`, each from `bigram_lo[k]` to
/// the next one's start (or the unigram's end), then they move to a hash table
/// (one read a lookup). The suffix of the shard's last token has no bigram and
/// sorts first in its unigram's range.
struct ShardTable {
    unigram_keys: Vec<u32>,
    /// One more than the covered unigrams: the last is the end of the last range.
    unigram_lo: Vec<u64>,
    first_bigram: Vec<u32>,
    bigram_keys: Vec<u32>,
    bigram_lo: Vec<u64>,
    /// For every token key, the number of unigram keys below it (small widths
    /// only): where the unigram is, without a search.
    dense_unigrams: Vec<u32>,
    /// Open addressing (linear probing) of the bigrams by both keys, 3/4 full.
    bigram_slots: Vec<BigramSlot>,
    bigrams: u64,
    /// Keys at or above this one were not walked whole (`None`: every key covered).
    uncovered_from: Option<u32>,
}

/// Sort key of one encoded token: its bytes as a big-endian integer, so that
/// integer order is the suffix array's byte order.
#[inline]
fn key_of(token: &[u8]) -> u32 {
    token.iter().fold(0u32, |k, &b| (k << 8) | b as u32)
}

/// A suffix array whose first tokens are not in order: the table would give wrong ranges.
fn out_of_order(shard: &Shard, rank: u64) -> crate::Error {
    crate::Error::Corrupt {
        path: shard.table_file().path().into(),
        detail: format!("suffix-array rank {rank} is out of order (its first tokens sort before the previous rank's)"),
    }
}

impl ShardTable {
    /// Walks ranks `[0, ...)` of `shard` until the table would pass `budget` bytes.
    fn build(shard: &Shard, width: usize, budget: u64) -> Result<ShardTable> {
        let text = shard.tokenized()?;
        let n = shard.num_tokens();
        // Per chunk: (rank, first key, second key or None) where the pair changes.
        type Run = (u64, u32, Option<u32>);
        let walk_chunk = |c: u64| -> Result<Vec<Run>> {
            let lo = c * WALK_CHUNK;
            let hi = (lo + WALK_CHUNK).min(n);
            let ptrs = shard.ptrs_in(lo, hi)?;
            let mut runs: Vec<Run> = Vec::new();
            for (j, &ptr) in ptrs.iter().enumerate() {
                if let Some(&ahead) = ptrs.get(j + WALK_AHEAD) {
                    crate::interleave::prefetch(text, ahead as usize);
                }
                let at = ptr as usize;
                let first = key_of(text.get(at..at + width).unwrap_or_default());
                let second = text.get(at + width..at + 2 * width).map(key_of);
                if runs
                    .last()
                    .is_none_or(|&(_, a, b)| (a, b) != (first, second))
                {
                    runs.push((lo + j as u64, first, second));
                }
            }
            Ok(runs)
        };
        let chunks = n.div_ceil(WALK_CHUNK);
        let group = (4 * rayon::current_num_threads()) as u64;
        let mut table = ShardTable {
            unigram_keys: Vec::new(),
            unigram_lo: Vec::new(),
            first_bigram: Vec::new(),
            bigram_keys: Vec::new(),
            bigram_lo: Vec::new(),
            dense_unigrams: Vec::new(),
            bigram_slots: Vec::new(),
            bigrams: 0,
            uncovered_from: None,
        };
        let dense_bytes = if width <= DENSE_WIDTH {
            4u64 << (8 * width)
        } else {
            0
        };
        // The end entries of the unigram arrays and the hash table's rounding.
        const ENDS_BYTES: u64 = 24;
        if budget < ENDS_BYTES {
            table.uncovered_from = Some(0);
            return Ok(table);
        }
        let dense = dense_bytes > 0 && dense_bytes + ENDS_BYTES <= budget;
        let fixed = ENDS_BYTES + if dense { dense_bytes } else { 0 };
        let bytes = |t: &ShardTable| {
            fixed
                + t.unigram_keys.len() as u64 * UNIGRAM_BYTES
                + t.bigram_keys.len() as u64 * BIGRAM_BYTES
        };
        // Where the covered ranks end: the first rank of the first token not covered.
        let mut covered_end = n;
        let mut walked = 0;
        'walk: while walked < chunks {
            let group_end = (walked + group).min(chunks);
            let runs = (walked..group_end)
                .into_par_iter()
                .map(walk_chunk)
                .collect::<Result<Vec<_>>>()?;
            walked = group_end;
            for (rank, first, second) in runs.into_iter().flatten() {
                let last_first = table.unigram_keys.last().copied();
                if last_first.is_some_and(|k| first < k) {
                    return Err(out_of_order(shard, rank));
                }
                if last_first != Some(first) {
                    if bytes(&table) + UNIGRAM_BYTES > budget {
                        table.uncovered_from = Some(first);
                        covered_end = rank;
                        break 'walk;
                    }
                    table.unigram_keys.push(first);
                    table.unigram_lo.push(rank);
                    table.first_bigram.push(table.bigram_keys.len() as u32);
                }
                let Some(second) = second else {
                    continue;
                };
                let block = *table.first_bigram.last().unwrap_or(&0) as usize;
                let last_second = table.bigram_keys[block..].last().copied();
                if last_second.is_some_and(|b| second < b) {
                    return Err(out_of_order(shard, rank));
                }
                // A chunk's first run may continue the previous chunk's last one.
                if last_second == Some(second) {
                    continue;
                }
                if table.bigram_keys.len() as u64 >= u32::MAX as u64
                    || bytes(&table) + BIGRAM_BYTES > budget
                {
                    // This unigram's bigrams are not all here: it is not covered.
                    table.uncovered_from = table.unigram_keys.pop();
                    covered_end = table.unigram_lo.pop().unwrap_or(0);
                    table.first_bigram.pop();
                    table.bigram_keys.truncate(block);
                    table.bigram_lo.truncate(block);
                    break 'walk;
                }
                table.bigram_keys.push(second);
                table.bigram_lo.push(rank);
            }
        }
        let end = covered_end;
        table.unigram_lo.push(end);
        table.first_bigram.push(table.bigram_keys.len() as u32);
        if dense {
            let mut below = 0u32;
            table.dense_unigrams = (0..1u64 << (8 * width))
                .map(|key| {
                    while table
                        .unigram_keys
                        .get(below as usize)
                        .is_some_and(|&k| (k as u64) < key)
                    {
                        below += 1;
                    }
                    below
                })
                .collect();
        }
        table.fill_bigram_slots();
        table.unigram_keys.shrink_to_fit();
        table.unigram_lo.shrink_to_fit();
        Ok(table)
    }

    /// Moves the bigrams into the hash table (and frees their arrays). A bigram
    /// of more than `u32::MAX` ranks ends the covered tokens at its first token.
    fn fill_bigram_slots(&mut self) {
        let n = self.bigram_keys.len();
        self.bigram_slots = vec![BigramSlot::default(); n + n / 3 + 1];
        let capacity = self.bigram_slots.len();
        for j in 0..self.unigram_keys.len() {
            let first = self.unigram_keys[j];
            let block = self.first_bigram[j] as usize..self.first_bigram[j + 1] as usize;
            let lens: Vec<u64> = block
                .clone()
                .map(|k| {
                    let end = if k + 1 < block.end {
                        self.bigram_lo[k + 1]
                    } else {
                        self.unigram_lo[j + 1]
                    };
                    end - self.bigram_lo[k]
                })
                .collect();
            if lens.iter().any(|&len| len > u32::MAX as u64) {
                self.uncovered_from = Some(first);
                self.unigram_keys.truncate(j);
                self.unigram_lo.truncate(j + 1);
                if let Some(dense) = self.dense_unigrams.get_mut(first as usize..) {
                    dense
                        .iter_mut()
                        .for_each(|below| *below = (*below).min(j as u32));
                }
                break;
            }
            for (k, len) in block.zip(lens) {
                let second = self.bigram_keys[k];
                let mut slot = self.slot_of(first, second);
                while self.bigram_slots[slot].len != 0 {
                    slot = if slot + 1 == capacity { 0 } else { slot + 1 };
                }
                self.bigram_slots[slot] = BigramSlot {
                    lo: self.bigram_lo[k],
                    len: len as u32,
                    second,
                };
                self.bigrams += 1;
            }
        }
        self.first_bigram = Vec::new();
        self.bigram_keys = Vec::new();
        self.bigram_lo = Vec::new();
    }

    /// The first hash slot of the bigram of keys `first`, `second`.
    #[inline]
    fn slot_of(&self, first: u32, second: u32) -> usize {
        let key = ((first as u64) << 32) | second as u64;
        let hash = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (key >> 29);
        let hash = hash.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        // The high bits of hash × capacity: a slot below the capacity, no modulo.
        ((hash as u128 * self.bigram_slots.len() as u128) >> 64) as usize
    }

    /// The ranks of the token `first` (followed by `second`, if given), or `None`
    /// when the table does not cover `first`. An n-gram that never occurs gets
    /// an empty range (at no particular place).
    #[inline]
    fn range(&self, first: u32, second: Option<u32>) -> Option<RankRange> {
        if self.uncovered_from.is_some_and(|k| first >= k) {
            return None;
        }
        let j = match self.dense_unigrams.get(first as usize) {
            Some(&below) => below as usize,
            None => self.unigram_keys.partition_point(|&k| k < first),
        };
        if self.unigram_keys.get(j) != Some(&first) {
            let at = self.unigram_lo[j];
            return Some((at, at));
        }
        let (lo, hi) = (self.unigram_lo[j], self.unigram_lo[j + 1]);
        let Some(second) = second else {
            return Some((lo, hi));
        };
        let capacity = self.bigram_slots.len();
        let mut slot = self.slot_of(first, second);
        loop {
            let entry = self.bigram_slots[slot];
            if entry.len == 0 {
                return Some((lo, lo));
            }
            // The first token is the unigram whose range holds the bigram's.
            if entry.second == second && (lo..hi).contains(&entry.lo) {
                return Some((entry.lo, entry.lo + entry.len as u64));
            }
            slot = if slot + 1 == capacity { 0 } else { slot + 1 };
        }
    }

    fn bytes(&self) -> u64 {
        (self.unigram_keys.len() * 4 + self.unigram_lo.len() * 8) as u64
            + (self.dense_unigrams.len() * 4) as u64
            + (self.bigram_slots.len() * std::mem::size_of::<BigramSlot>()) as u64
    }
}

/// The ranges of an index's unigrams and bigrams in every shard (see the module).
pub struct ContextTable {
    width: usize,
    shards: Vec<ShardTable>,
}

/// What a built table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextTableStats {
    /// Distinct unigrams stored (all shards).
    pub unigrams: u64,
    /// Distinct bigrams stored (all shards).
    pub bigrams: u64,
    /// RAM they take.
    pub bytes: u64,
    /// Whether every shard's table covers every token (the bound was not reached).
    pub complete: bool,
}

impl ContextTable {
    /// Builds the table of `engine`'s shards within `budget` bytes (mapped shards only).
    pub fn build(engine: &Engine, budget: u64) -> Result<ContextTable> {
        let width = engine.token_width().bytes();
        let per_shard = budget / engine.shards().len().max(1) as u64;
        let shards = engine
            .shards()
            .iter()
            .map(|shard| ShardTable::build(shard, width, per_shard))
            .collect::<Result<Vec<_>>>()?;
        Ok(ContextTable { width, shards })
    }

    /// Where the one or two encoded tokens `ngram` occur, or `None` when a shard's
    /// table does not cover its first token.
    #[inline]
    pub fn find(&self, ngram: &[u8]) -> Option<FindResult> {
        let w = self.width;
        let first = key_of(&ngram[..w]);
        let second = (ngram.len() == 2 * w).then(|| key_of(&ngram[w..]));
        debug_assert!(ngram.len() == w || ngram.len() == 2 * w);
        let mut count = 0;
        let mut ranges = ShardRanges::with_capacity(self.shards.len());
        for shard in &self.shards {
            let range = shard.range(first, second)?;
            count += range.1 - range.0;
            ranges.push(range);
        }
        Some(FindResult { count, ranges })
    }

    /// Hints the reads of [`ContextTable::find`] of the bigram `ngram`.
    #[inline]
    pub fn prefetch(&self, ngram: &[u8]) {
        let w = self.width;
        let (first, second) = (key_of(&ngram[..w]), key_of(&ngram[w..2 * w]));
        for shard in &self.shards {
            if !shard.bigram_slots.is_empty() {
                crate::interleave::prefetch_item(&shard.bigram_slots, shard.slot_of(first, second));
            }
        }
    }

    /// What the table holds.
    pub fn stats(&self) -> ContextTableStats {
        ContextTableStats {
            unigrams: self
                .shards
                .iter()
                .map(|s| s.unigram_keys.len() as u64)
                .sum(),
            bigrams: self.shards.iter().map(|s| s.bigrams).sum(),
            bytes: self.shards.iter().map(ShardTable::bytes).sum(),
            complete: self.shards.iter().all(|s| s.uncovered_from.is_none()),
        }
    }
}

/// An engine's table, built on demand ([`Engine::context_table`]).
#[derive(Default)]
pub struct ContextTableCell {
    table: OnceLock<ContextTable>,
    /// Tokens scored so far (the build waits for enough of them).
    scored: AtomicU64,
}

impl Engine {
    /// The unigram and bigram table for scoring `tokens` more tokens: built (once,
    /// within [`DEFAULT_BUDGET_BYTES`]) when the engine has scored enough tokens
    /// to pay for it; `None` before.
    pub(crate) fn context_table(&self, tokens: u64) -> Result<Option<&ContextTable>> {
        let cell = self.context_cell();
        if let Some(table) = cell.table.get() {
            return Ok(Some(table));
        }
        let scored = cell.scored.fetch_add(tokens, Ordering::Relaxed) + tokens;
        if scored < self.num_tokens() / BUILD_AFTER_FRACTION {
            return Ok(None);
        }
        let table = ContextTable::build(self, DEFAULT_BUDGET_BYTES)?;
        Ok(Some(cell.table.get_or_init(|| table)))
    }

    /// Builds the scoring table now within `budget` bytes (replacing none that
    /// exists) and says what it holds: for benchmarks and tests (small budgets
    /// truncate it).
    pub fn build_context_table(&self, budget: u64) -> Result<ContextTableStats> {
        let cell = self.context_cell();
        if let Some(table) = cell.table.get() {
            return Ok(table.stats());
        }
        let table = ContextTable::build(self, budget)?;
        Ok(cell.table.get_or_init(|| table).stats())
    }
}
