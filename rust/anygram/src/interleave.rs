//! Memory-level parallelism for loops of independent lookups in mapped files.
//!
//! A query's reads land at unrelated places of a large file, so each one is a
//! cache (and often TLB) miss, and a loop that waits for one before starting the
//! next pays a full memory latency per item. Hinting the reads a few items ahead
//! lets the misses of several items overlap; the hint never changes a result.

/// How many items ahead a loop hints its reads: enough to keep about as many
/// misses in flight as a core's line-fill buffers hold.
pub const AHEAD: usize = 12;

/// Hints that the bytes of `bytes` starting at `at` will be read soon (no-op past
/// the end, and on targets without a prefetch instruction).
#[inline(always)]
pub fn prefetch(bytes: &[u8], at: usize) {
    if let Some(byte) = bytes.get(at) {
        prefetch_ptr(byte as *const u8);
    }
}

/// Hints that `items[i]` will be read soon (no-op past the end).
#[inline(always)]
pub fn prefetch_item<T>(items: &[T], i: usize) {
    if let Some(item) = items.get(i) {
        prefetch_ptr(item as *const T as *const u8);
    }
}

#[inline(always)]
fn prefetch_ptr(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults or reads memory visibly.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(ptr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

use crate::engine::Engine;
use crate::error::Result;
use crate::shard::Shard;
use crate::storage::IndexFile;

/// Queries whose searches a group interleaves: the misses of this many binary
/// searches (two bounds each) are in flight together.
pub const GROUP: usize = 16;

/// One bound's binary search over a rank range, stepped one probe at a time:
/// `partition_point` in the branch-free form (`base`, `size`), so that every step
/// of every search in a group has the same shape.
#[derive(Clone, Copy)]
struct BoundSearch {
    base: u64,
    size: u64,
    /// true: the first rank not below the query (the lower bound); false: the
    /// first rank above every suffix that starts with it (the upper bound).
    lower: bool,
    /// Set when the last probe has been decided.
    done: bool,
}

impl BoundSearch {
    fn new((lo, hi): (u64, u64), lower: bool) -> Self {
        BoundSearch {
            base: lo,
            size: hi - lo,
            lower,
            done: lo == hi,
        }
    }

    /// The rank the next step compares.
    fn probe(&self) -> u64 {
        if self.size > 1 {
            self.base + self.size / 2
        } else {
            self.base
        }
    }

    /// Takes the next step given how the probed suffix (cut to the query's
    /// length) compares with the query.
    fn step(&mut self, order: std::cmp::Ordering) {
        let before = if self.lower {
            order == std::cmp::Ordering::Less
        } else {
            order != std::cmp::Ordering::Greater
        };
        self.step_before(before);
    }

    /// Takes the next step given whether the probed item lies before the bound.
    fn step_before(&mut self, before: bool) {
        if self.size > 1 {
            let half = self.size / 2;
            if before {
                self.base += half;
            }
            self.size -= half;
        } else {
            self.base += before as u64;
            self.done = true;
        }
    }
}

/// Occurrences of each query, as [`Engine::count`] gives them (an error per
/// query that has one), with the binary searches of [`GROUP`] queries at a time
/// interleaved on mapped shards: each round hints the suffix-array entries of all
/// of them, then their texts, then compares. Shards with an accelerator or in
/// object storage take the plain search.
pub fn count_many(engine: &Engine, queries: &[&[u32]]) -> Vec<Result<u64>> {
    let mut failures: Vec<Option<crate::Error>> = Vec::with_capacity(queries.len());
    let mut encoded: Vec<Vec<u8>> = Vec::with_capacity(queries.len());
    for query in queries {
        match engine.encode(query) {
            Ok(bytes) => {
                encoded.push(bytes);
                failures.push(None);
            }
            Err(e) => {
                encoded.push(Vec::new());
                failures.push(Some(e));
            }
        }
    }
    let mut sums = vec![0u64; queries.len()];
    for shard in engine.shards() {
        let mapped = matches!(shard.tokenized_file(), IndexFile::Local(_))
            && matches!(shard.table_file(), IndexFile::Local(_))
            && shard.accelerator().is_none();
        let mut todo = Vec::with_capacity(queries.len());
        for i in 0..queries.len() {
            if failures[i].is_some() {
                continue;
            }
            if encoded[i].is_empty() {
                sums[i] += shard.num_tokens(); // the empty n-gram: every position
            } else {
                todo.push(i);
            }
        }
        for group in todo.chunks(GROUP) {
            let found: Vec<Result<(u64, u64)>> = if mapped {
                let group_queries: Vec<&[u8]> = group.iter().map(|&i| &encoded[i][..]).collect();
                find_interleaved(shard, &group_queries)
            } else {
                group
                    .iter()
                    .map(|&i| shard.find(&encoded[i], (0, shard.num_tokens())))
                    .collect()
            };
            for (&i, range) in group.iter().zip(found) {
                match range {
                    Ok((lo, hi)) => sums[i] += hi - lo,
                    Err(e) => failures[i] = Some(e),
                }
            }
        }
    }
    sums.into_iter()
        .zip(failures)
        .map(|(sum, failure)| match failure {
            Some(e) => Err(e),
            None => Ok(sum),
        })
        .collect()
}

/// [`Shard::find`] of each query over the whole shard, the searches stepped in
/// lockstep (see [`count_many`]); the shard's files are mapped.
fn find_interleaved(shard: &Shard, queries: &[&[u8]]) -> Vec<Result<(u64, u64)>> {
    let (Ok(table), Ok(text)) = (
        shard.table_file().local_bytes(),
        shard.tokenized_file().local_bytes(),
    ) else {
        return queries
            .iter()
            .map(|q| shard.find(q, (0, shard.num_tokens())))
            .collect();
    };
    let ps = shard.ptr_size();
    let mut searches: Vec<BoundSearch> = Vec::with_capacity(2 * queries.len());
    for range in narrow_interleaved(shard, queries) {
        searches.push(BoundSearch::new(range, true));
        searches.push(BoundSearch::new(range, false));
    }
    let mut errors: Vec<Option<crate::Error>> = (0..queries.len()).map(|_| None).collect();
    let mut ptrs = vec![0u64; searches.len()];
    while searches.iter().any(|s| !s.done) {
        for s in searches.iter().filter(|s| !s.done) {
            prefetch(table, (s.probe() as usize).saturating_mul(ps));
        }
        for (j, s) in searches.iter_mut().enumerate() {
            if s.done {
                continue;
            }
            match shard.ptr_at(s.probe()) {
                Ok(ptr) => {
                    ptrs[j] = ptr;
                    prefetch(text, ptr as usize);
                }
                Err(e) => {
                    errors[j / 2] = Some(e);
                    s.done = true;
                }
            }
        }
        for (j, s) in searches.iter_mut().enumerate() {
            if s.done {
                continue;
            }
            let query = queries[j / 2];
            let start = ptrs[j] as usize;
            let end = start.saturating_add(query.len()).min(text.len());
            s.step(text[start.min(end)..end].cmp(query));
        }
    }
    searches
        .chunks(2)
        .zip(errors)
        .map(|(bounds, error)| match error {
            Some(e) => Err(e),
            None => Ok((bounds[0].base, bounds[1].base.max(bounds[0].base))),
        })
        .collect()
}

/// [`Shard::narrow`] of each query over the whole shard, the searches of the
/// sampled keys (two a query) stepped in lockstep with the keys ahead prefetched.
fn narrow_interleaved(shard: &Shard, queries: &[&[u8]]) -> Vec<(u64, u64)> {
    let full = (0, shard.num_tokens());
    let narrowings: Vec<_> = queries.iter().map(|q| shard.narrowing(q, full)).collect();
    let mut searches: Vec<BoundSearch> = Vec::with_capacity(2 * queries.len());
    for narrowing in &narrowings {
        let keys = narrowing.as_ref().map_or(0, |n| n.keys.len() as u64);
        searches.push(BoundSearch::new((0, keys), true));
        searches.push(BoundSearch::new((0, keys), false));
    }
    while searches.iter().any(|s| !s.done) {
        for (j, s) in searches.iter().enumerate().filter(|(_, s)| !s.done) {
            if let Some(n) = &narrowings[j / 2] {
                prefetch_item(n.keys, s.probe() as usize);
            }
        }
        for (j, s) in searches.iter_mut().enumerate().filter(|(_, s)| !s.done) {
            let Some(n) = &narrowings[j / 2] else {
                continue;
            };
            let key = n.keys[s.probe() as usize];
            // Below the query's low key (lower bound); at or below its high key (upper).
            let before = if s.lower {
                key < n.low_key
            } else {
                key <= n.high_key
            };
            s.step_before(before);
        }
    }
    narrowings
        .iter()
        .enumerate()
        .map(|(i, n)| match n {
            Some(n) => n.range(
                searches[2 * i].base as usize,
                searches[2 * i + 1].base as usize,
            ),
            None => full,
        })
        .collect()
}
