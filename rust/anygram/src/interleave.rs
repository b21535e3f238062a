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

/// Hints that the memory at `ptr` will be read soon (any address: a hint never
/// faults), e.g. the objects behind a caller's pointers.
#[inline(always)]
pub fn prefetch_ptr(ptr: *const u8) {
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

use crate::engine::{Engine, FindResult};
use crate::error::Result;
use crate::shard::Shard;
use crate::storage::IndexFile;

/// Queries whose searches a group interleaves: the misses of this many binary
/// searches (two bounds each) are in flight together.
pub const GROUP: usize = 16;

/// A query's bytes past what is already known to match (its tail), compared with
/// a probed suffix's next bytes as slices compare. A tail of 1 to 8 bytes (an
/// extension's next token) compares as one big-endian integer of its length (byte
/// order is then integer order), with no `memcmp` call, wherever eight bytes of
/// text are left to load.
#[derive(Clone, Copy)]
pub(crate) struct Tail<'q> {
    bytes: &'q [u8],
    /// The short tail as an integer, and the shift that cuts eight loaded bytes to it.
    short: Option<(u64, u32)>,
}

impl<'q> Tail<'q> {
    pub(crate) fn new(bytes: &'q [u8]) -> Self {
        let short = (1..=8).contains(&bytes.len()).then(|| {
            let mut eight = [0u8; 8];
            eight[..bytes.len()].copy_from_slice(bytes);
            let shift = 64 - 8 * bytes.len() as u32;
            (u64::from_be_bytes(eight) >> shift, shift)
        });
        Tail { bytes, short }
    }

    /// How the bytes of `text` from `start` (at most its length), cut to the
    /// tail's length, compare with the tail.
    #[inline(always)]
    pub(crate) fn cmp_at(&self, text: &[u8], start: usize) -> std::cmp::Ordering {
        if let Some((key, shift)) = self.short {
            if let Some(eight) = start.checked_add(8).and_then(|past| text.get(start..past)) {
                let eight: [u8; 8] = eight.try_into().expect("eight bytes");
                return (u64::from_be_bytes(eight) >> shift).cmp(&key);
            }
        }
        let end = start.saturating_add(self.bytes.len()).min(text.len());
        text[start..end].cmp(self.bytes)
    }
}

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
    // Every query's bytes in one buffer: one allocation, not one per query.
    let total: usize = queries.iter().map(|q| q.len()).sum();
    let mut bytes = Vec::with_capacity(total * engine.token_width().bytes());
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(queries.len());
    let mut failures: Vec<Option<crate::Error>> = Vec::with_capacity(queries.len());
    for query in queries {
        let start = bytes.len();
        failures.push(engine.encode_into(query, &mut bytes).err());
        spans.push((start, bytes.len()));
    }
    let encoded: Vec<&[u8]> = spans.iter().map(|&(a, b)| &bytes[a..b]).collect();
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
                let group_queries: Vec<&[u8]> = group.iter().map(|&i| encoded[i]).collect();
                find_interleaved(shard, &group_queries)
            } else {
                group
                    .iter()
                    .map(|&i| shard.find(encoded[i], (0, shard.num_tokens())))
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

/// Whether every shard of `engine` is searched in lockstep by [`find_many`] (mapped
/// files, no accelerator): elsewhere searches run one after another, and
/// speculative ones would only add reads.
pub(crate) fn lockstep_applies(engine: &Engine) -> bool {
    engine.shards().iter().all(|shard| {
        matches!(shard.tokenized_file(), IndexFile::Local(_))
            && matches!(shard.table_file(), IndexFile::Local(_))
            && shard.accelerator().is_none()
    })
}

/// Where each of the encoded `queries` occurs over the whole index, as
/// [`Engine::find_bytes`] over every shard's whole range gives it, the searches
/// of a mapped shard stepped in lockstep (see [`count_many`]): for searches that
/// are independent of each other, e.g. speculative ones, whose misses overlap.
pub(crate) fn find_many(engine: &Engine, queries: &[&[u8]]) -> Result<Vec<FindResult>> {
    let mut found: Vec<FindResult> = queries
        .iter()
        .map(|_| FindResult {
            count: 0,
            ranges: crate::engine::ShardRanges::with_capacity(engine.shards().len()),
        })
        .collect();
    for shard in engine.shards() {
        let whole = (0, shard.num_tokens());
        let mapped = matches!(shard.tokenized_file(), IndexFile::Local(_))
            && matches!(shard.table_file(), IndexFile::Local(_))
            && shard.accelerator().is_none()
            && queries.iter().all(|q| !q.is_empty());
        let ranges: Vec<Result<(u64, u64)>> = if mapped {
            find_interleaved(shard, queries)
        } else {
            queries.iter().map(|q| shard.find(q, whole)).collect()
        };
        for (result, range) in found.iter_mut().zip(ranges) {
            let range = range?;
            result.count += range.1 - range.0;
            result.ranges.push(range);
        }
    }
    Ok(found)
}

/// [`Shard::find`] of each query over the whole shard, the searches stepped in
/// lockstep (see [`count_many`]); the shard's files are mapped.
fn find_interleaved(shard: &Shard, queries: &[&[u8]]) -> Vec<Result<(u64, u64)>> {
    let whole = (0, shard.num_tokens());
    let searches: Vec<Within> = queries
        .iter()
        .map(|&query| Within {
            query,
            within: whole,
            skip: 0,
        })
        .collect();
    find_within_interleaved(shard, &searches)
}

/// One search of [`find_within_interleaved`]: the ranks of `within` whose
/// suffixes start with `query`, where every suffix of `within` is known to
/// start with `query[..skip]` (the range of a prefix of the query), so that
/// only the bytes after `skip` are compared.
#[derive(Clone, Copy)]
pub(crate) struct Within<'q> {
    pub query: &'q [u8],
    pub within: (u64, u64),
    pub skip: usize,
}

/// [`Shard::find`] of each search inside its range, the searches stepped in
/// lockstep: each round reads the suffix-array entries of all live bounds and
/// hints their texts, then compares and hints each bound's next entry, a round
/// before it is read (the sampled keys first narrow each range, their searches
/// in lockstep as well). Files not mapped: one search after another.
pub(crate) fn find_within_interleaved(
    shard: &Shard,
    searches: &[Within<'_>],
) -> Vec<Result<(u64, u64)>> {
    let (Ok(table), Ok(text)) = (
        shard.table_file().local_bytes(),
        shard.tokenized_file().local_bytes(),
    ) else {
        return searches
            .iter()
            .map(|s| shard.find(s.query, s.within))
            .collect();
    };
    let ps = shard.ptr_size();
    let mut bounds: Vec<BoundSearch> = Vec::with_capacity(2 * searches.len());
    for range in narrow_interleaved(shard, searches) {
        bounds.push(BoundSearch::new(range, true));
        bounds.push(BoundSearch::new(range, false));
    }
    // An empty query matches its whole range.
    for (j, search) in searches.iter().enumerate() {
        if search.query.len() <= search.skip {
            bounds[2 * j] = BoundSearch::new((search.within.0, search.within.0), true);
            bounds[2 * j + 1] = BoundSearch::new((search.within.1, search.within.1), false);
        }
    }
    let mut errors: Vec<Option<crate::Error>> = (0..searches.len()).map(|_| None).collect();
    let tails: Vec<Tail> = searches
        .iter()
        .map(|s| Tail::new(s.query.get(s.skip..).unwrap_or_default()))
        .collect();
    let mut ptrs = vec![0u64; bounds.len()];
    // The bounds still searching: a round visits only these (most searches end
    // well before the longest one of their round).
    let mut live: Vec<usize> = (0..bounds.len()).filter(|&j| !bounds[j].done).collect();
    let prefetch_entry = |s: &BoundSearch| prefetch(table, (s.probe() as usize).saturating_mul(ps));
    for &j in &live {
        prefetch_entry(&bounds[j]);
    }
    while !live.is_empty() {
        live.retain(|&j| match shard.ptr_at(bounds[j].probe()) {
            Ok(ptr) => {
                ptrs[j] = ptr;
                prefetch(text, ptr as usize + searches[j / 2].skip);
                true
            }
            Err(e) => {
                errors[j / 2] = Some(e);
                bounds[j].done = true;
                false
            }
        });
        live.retain(|&j| {
            let start = (ptrs[j] as usize)
                .saturating_add(searches[j / 2].skip)
                .min(text.len());
            let s = &mut bounds[j];
            s.step(tails[j / 2].cmp_at(text, start));
            // The next entry is hinted a whole round before it is read.
            if !s.done {
                prefetch_entry(s);
            }
            !s.done
        });
    }
    bounds
        .chunks(2)
        .zip(errors)
        .map(|(bounds, error)| match error {
            Some(e) => Err(e),
            None => Ok((bounds[0].base, bounds[1].base.max(bounds[0].base))),
        })
        .collect()
}

/// [`Shard::narrow`] of each search inside its range, the searches of the
/// sampled keys (two a query) stepped in lockstep with the keys ahead prefetched.
fn narrow_interleaved(shard: &Shard, searches: &[Within<'_>]) -> Vec<(u64, u64)> {
    let narrowings: Vec<_> = searches
        .iter()
        .map(|s| shard.narrowing(s.query, s.within))
        .collect();
    let mut bounds: Vec<BoundSearch> = Vec::with_capacity(2 * searches.len());
    for narrowing in &narrowings {
        let keys = narrowing.as_ref().map_or(0, |n| n.keys.len() as u64);
        bounds.push(BoundSearch::new((0, keys), true));
        bounds.push(BoundSearch::new((0, keys), false));
    }
    // The bounds still searching (a query without keys has none: its bounds start done).
    let mut live: Vec<usize> = (0..bounds.len()).filter(|&j| !bounds[j].done).collect();
    for &j in &live {
        if let Some(n) = &narrowings[j / 2] {
            prefetch_item(n.keys, bounds[j].probe() as usize);
        }
    }
    while !live.is_empty() {
        live.retain(|&j| {
            let Some(n) = &narrowings[j / 2] else {
                return false;
            };
            let s = &mut bounds[j];
            let key = n.keys[s.probe() as usize];
            // Below the query's low key (lower bound); at or below its high key (upper).
            let before = if s.lower {
                key < n.low_key
            } else {
                key <= n.high_key
            };
            s.step_before(before);
            // The next key is hinted a whole round before it is read.
            if !s.done {
                prefetch_item(n.keys, s.probe() as usize);
            }
            !s.done
        });
    }
    narrowings
        .iter()
        .zip(searches)
        .enumerate()
        .map(|(i, (n, search))| match n {
            Some(n) => n.range(bounds[2 * i].base as usize, bounds[2 * i + 1].base as usize),
            None => search.within,
        })
        .collect()
}

/// Ranks each bound probes in one round of [`find_hot`]: with two bounds, up to
/// twice this many misses in flight, about what a core's line-fill buffers hold.
const HOT_PROBES: usize = 7;

/// A range whose suffix-array entries take at most this many bytes has them all
/// hinted before [`find_hot`]'s first round.
const HINT_WHOLE_TABLE_BYTES: u64 = 1024;

/// [`Shard::find`] of one query on a shard whose pages are in RAM, for latency:
/// the sampled keys searched for both bounds at once with the next level's keys
/// hinted, then both bounds finished k-ary in the suffix array, each round hinting
/// the pointers of all its probes, then their texts, then comparing. A round
/// costs about two memory latencies where a bisection step costs two, and takes
/// up to [`HOT_PROBES`] steps' worth of range at once. `None` where it does not
/// apply (files not mapped, or no sign that they are in RAM: neither sampled
/// keys, built after open, nor an accelerator that chose the plain path).
pub(crate) fn find_hot(
    shard: &Shard,
    query: &[u8],
    within: (u64, u64),
) -> Option<Result<(u64, u64)>> {
    let (IndexFile::Local(_), IndexFile::Local(_)) = (shard.table_file(), shard.tokenized_file())
    else {
        return None;
    };
    let range = match shard.narrowing(query, within) {
        Some(narrowing) => narrow_hot(&narrowing),
        None if shard.accelerator().is_some() => match shard.narrow(query, within) {
            Ok(range) => range,
            Err(e) => return Some(Err(e)),
        },
        None => return None,
    };
    Some(bounds_hot(shard, query, range))
}

/// The two partition points of a [`Narrowing`]'s keys (below its low key, at or
/// below its high key) in one branch-free loop, the keys both outcomes of each
/// step would probe next hinted: the tail of the search, past the cached top
/// levels, then overlaps its misses.
fn narrow_hot(narrowing: &crate::shard::Narrowing<'_>) -> (u64, u64) {
    let keys = narrowing.keys;
    if keys.is_empty() {
        return narrowing.range(0, 0);
    }
    let (low, high) = (narrowing.low_key, narrowing.high_key);
    let (mut first, mut past, mut size) = (0usize, 0usize, keys.len());
    while size > 1 {
        let half = size / 2;
        let next_half = (size - half) / 2;
        prefetch_item(keys, first + next_half);
        prefetch_item(keys, first + half + next_half);
        prefetch_item(keys, past + next_half);
        prefetch_item(keys, past + half + next_half);
        if keys[first + half] < low {
            first += half;
        }
        if keys[past + half] <= high {
            past += half;
        }
        size -= half;
    }
    first += (keys[first] < low) as usize;
    past += (keys[past] <= high) as usize;
    narrowing.range(first, past)
}

/// Both bounds of `query` inside `range` (which holds them), k-ary: each bound is
/// known to lie in a bracket `[lo, hi]`; a round probes up to [`HOT_PROBES`] ranks
/// spread over each open bracket (one set while the two brackets are the same),
/// and every probe's order narrows both brackets (ranks sorted ⇒ suffixes sorted).
fn bounds_hot(shard: &Shard, query: &[u8], (lo, hi): (u64, u64)) -> Result<(u64, u64)> {
    let (Ok(table), Ok(text)) = (
        shard.table_file().local_bytes(),
        shard.tokenized_file().local_bytes(),
    ) else {
        return shard.find(query, (lo, hi));
    };
    let ps = shard.ptr_size();
    // [lo, hi] brackets of the first rank not below the query and of the first above it.
    let (mut lower, mut upper) = ((lo, hi), (lo, hi));
    let mut probes = [0u64; 2 * HOT_PROBES];
    let mut ptrs = [0u64; 2 * HOT_PROBES];
    // A narrow range's pointers (a bucket or two of sampled keys) fit a few lines:
    // hinted all at once, only the first round waits for them.
    if (hi - lo).saturating_mul(ps as u64) <= HINT_WHOLE_TABLE_BYTES {
        for at in (lo as usize * ps..hi as usize * ps).step_by(64) {
            prefetch(table, at);
        }
    }
    loop {
        // One bracket for both bounds: all the round's probes spread over it.
        let n = if upper == lower {
            spread(lower, 2 * HOT_PROBES, &mut probes, 0)
        } else {
            let n = spread(lower, HOT_PROBES, &mut probes, 0);
            spread(upper, HOT_PROBES, &mut probes, n)
        };
        if n == 0 {
            break;
        }
        let probes = &probes[..n];
        for &rank in probes {
            prefetch(table, (rank as usize).saturating_mul(ps));
            crate::reads::touch(shard.table_file(), rank * ps as u64, ps as u64);
        }
        crate::reads::round(shard.number);
        for (&rank, ptr) in probes.iter().zip(ptrs.iter_mut()) {
            *ptr = shard.ptr_at(rank)?;
            prefetch(text, *ptr as usize);
        }
        for (&rank, &ptr) in probes.iter().zip(&ptrs) {
            let start = ptr as usize;
            let end = start.saturating_add(query.len()).min(text.len());
            crate::reads::touch(shard.tokenized_file(), ptr, (end - start) as u64);
            match text[start..end].cmp(query) {
                std::cmp::Ordering::Less => {
                    lower.0 = lower.0.max(rank + 1);
                    upper.0 = upper.0.max(rank + 1);
                }
                std::cmp::Ordering::Equal => {
                    lower.1 = lower.1.min(rank);
                    upper.0 = upper.0.max(rank + 1);
                }
                std::cmp::Ordering::Greater => {
                    lower.1 = lower.1.min(rank);
                    upper.1 = upper.1.min(rank);
                }
            }
        }
        crate::reads::round(shard.number);
        // A bracket emptied by a table that is not sorted: stop, never loop.
        if lower.0 > lower.1 || upper.0 > upper.1 {
            return Err(crate::Error::corrupt(
                shard.table_file().path(),
                format!("suffix array is not sorted around ranks {lo}..{hi}"),
            ));
        }
    }
    Ok((lower.0, upper.0.max(lower.0)))
}

/// Writes into `probes[at..]` up to `most` ranks spread evenly over the
/// undecided ranks `[lo, hi)` of a bracket `[lo, hi]` (every one of them when
/// fewer); returns the new end.
fn spread((lo, hi): (u64, u64), most: usize, probes: &mut [u64], at: usize) -> usize {
    let n = hi - lo;
    let m = (most as u64).min(n);
    for j in 0..m {
        probes[at + j as usize] = lo + (j + 1) * n / (m + 1);
    }
    at + m as usize
}

#[cfg(test)]
mod tests {
    use super::Tail;
    use proptest::prelude::*;

    proptest! {
        /// A tail orders the text's bytes at any place as slices order them (cut
        /// to the tail's length): a short one as an integer where eight bytes are
        /// left, by the slices near the text's end and for longer tails.
        #[test]
        fn tail_orders_as_slices(
            text in proptest::collection::vec(any::<u8>(), 0..40),
            tail in proptest::collection::vec(0u8..4, 0..12),
            at in 0usize..48,
        ) {
            // Few byte values, so that equal prefixes are common.
            let text: Vec<u8> = text.iter().map(|b| b % 4).collect();
            let start = at.min(text.len());
            let end = (start + tail.len()).min(text.len());
            prop_assert_eq!(Tail::new(&tail).cmp_at(&text, start), text[start..end].cmp(&tail[..]));
        }
    }
}
