//! Exact counts of the tokens that follow a suffix-array range, by galloping
//! over the runs of equal next tokens.
//!
//! Inside the range of a context every suffix shares the context's bytes, so
//! the suffixes are sorted by what follows: the ranks followed by one value
//! form one contiguous run (the end of the shard first, the tokens in byte
//! order, the separator last). Counting them exactly means finding each run's
//! end: from a run's first rank, probe 1, 2, 4, … ranks ahead until the value
//! changes, then bisect the last step. A run of `L` ranks costs about
//! `2·log2(L) + 1` lookups, so a context followed by `D` distinct tokens in
//! `R` ranks costs `O(D·log(R/D))`, and never more than about `R` lookups
//! (short runs are probed one by one).
//!
//! Local shards read the mapped files directly (a lookup is one pointer and
//! one token, no system call). A shard in object storage keeps
//! [`Shard::count_next_tokens`]' breadth-first bisection, whose lookups of one
//! level share a round trip.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::error::Result;
use crate::shard::{RankRange, Shard, END_OF_SHARD};

/// Ranges at least this wide are split into pieces counted on the pool.
const PARALLEL_MIN_RANKS: u64 = 1 << 18;
/// Ranks per piece of a range counted on the pool.
const PIECE_RANKS: u64 = 1 << 16;

/// The counts of the values that follow the `skip_bytes`-long matches at
/// `range` in `shard` as `(token, count)` pairs, one per distinct token in the
/// suffix array's (byte) order; a document end (the separator or the end of
/// the shard) counts as `document_end`, once per run, so that it may appear
/// twice (at the start and at the end).
pub fn next_token_runs(
    shard: &Shard,
    skip_bytes: usize,
    range: RankRange,
    document_end: u32,
) -> Result<Vec<(u32, u64)>> {
    let (lo, hi) = range;
    if lo >= hi {
        return Ok(Vec::new());
    }
    if shard.is_remote() {
        let mut counts = BTreeMap::new();
        shard.count_next_tokens(skip_bytes, range, 1, document_end, &mut counts)?;
        return Ok(counts.into_iter().collect());
    }
    let reader = LocalValues::new(shard, skip_bytes)?;
    if hi - lo < PARALLEL_MIN_RANKS {
        let mut runs = Vec::new();
        reader.gallop(lo, hi, &mut runs)?;
        return Ok(reader.as_tokens(runs, document_end));
    }
    // Pieces counted apart; a run cut by a piece boundary is joined back.
    let pieces: Vec<RankRange> = (lo..hi)
        .step_by(PIECE_RANKS as usize)
        .map(|start| (start, (start + PIECE_RANKS).min(hi)))
        .collect();
    let per_piece = crate::pool::install(|| {
        pieces
            .par_iter()
            .map(|&(start, end)| {
                let mut runs = Vec::new();
                reader.gallop(start, end, &mut runs)?;
                Ok(runs)
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for piece in per_piece {
        for (value, count) in piece {
            match runs.last_mut() {
                Some(last) if last.0 == value => last.1 += count,
                _ => runs.push((value, count)),
            }
        }
    }
    Ok(reader.as_tokens(runs, document_end))
}

/// Adds the counts of every shard's range (one range per shard) and returns
/// them in ascending token order, document ends as `document_end`.
pub fn next_token_counts_in(
    shards: &[std::sync::Arc<Shard>],
    skip_bytes: usize,
    ranges: &[RankRange],
    document_end: u32,
) -> Result<Vec<(u32, u64)>> {
    let mut all = Vec::new();
    for (shard, &range) in shards.iter().zip(ranges) {
        all.extend(next_token_runs(shard, skip_bytes, range, document_end)?);
    }
    all.sort_unstable_by_key(|&(token, _)| token);
    let mut merged: Vec<(u32, u64)> = Vec::with_capacity(all.len());
    for (token, count) in all {
        match merged.last_mut() {
            Some(last) if last.0 == token => last.1 += count,
            _ => merged.push((token, count)),
        }
    }
    Ok(merged)
}

/// The stored values after the suffixes of a local shard, read from its mapped files.
struct LocalValues<'a> {
    shard: &'a Shard,
    text: &'a [u8],
    skip_bytes: u64,
    width: usize,
}

impl<'a> LocalValues<'a> {
    fn new(shard: &'a Shard, skip_bytes: usize) -> Result<Self> {
        Ok(LocalValues {
            shard,
            text: shard.tokenized()?,
            skip_bytes: skip_bytes as u64,
            width: shard.token_width().bytes(),
        })
    }

    /// The value after the match at `rank`: a token, the separator, or [`END_OF_SHARD`].
    #[inline]
    fn at(&self, rank: u64) -> Result<u64> {
        // `ptr_at` checks the pointer lies on the token grid inside the text.
        let at = (self.shard.ptr_at(rank)? + self.skip_bytes) as usize;
        match self.text.get(at..at + self.width) {
            Some(bytes) => Ok(self.shard.token_width().read_token(bytes) as u64),
            None => Ok(END_OF_SHARD),
        }
    }

    /// Appends the runs `(value, ranks)` of `[lo, hi)` in rank order.
    fn gallop(&self, lo: u64, hi: u64, runs: &mut Vec<(u64, u64)>) -> Result<()> {
        let mut start = lo;
        while start < hi {
            let value = self.at(start)?;
            // `same` holds `value`; the run ends at or before `past`.
            let (mut same, mut past) = (start, hi);
            let mut step = 1u64;
            while let Some(probe) = same.checked_add(step).filter(|&p| p < hi) {
                if self.at(probe)? != value {
                    past = probe;
                    break;
                }
                same = probe;
                step = step.saturating_mul(2);
            }
            // The first rank of (same, past) whose value differs.
            let (mut a, mut b) = (same + 1, past);
            while a < b {
                let mid = a + (b - a) / 2;
                if self.at(mid)? == value {
                    a = mid + 1;
                } else {
                    b = mid;
                }
            }
            runs.push((value, a - start));
            start = a;
        }
        Ok(())
    }

    /// Stored values as tokens, a document end as `document_end`.
    fn as_tokens(&self, runs: Vec<(u64, u64)>, document_end: u32) -> Vec<(u32, u64)> {
        let separator = self.shard.token_width().separator() as u64;
        runs.into_iter()
            .map(|(value, count)| {
                let token = if value == END_OF_SHARD || value == separator {
                    document_end
                } else {
                    value as u32
                };
                (token, count)
            })
            .collect()
    }
}
