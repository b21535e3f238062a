//! Where an n-gram occurs as positions in the index's documents laid end to
//! end (the separators left out): the token offsets of tokengrams' single
//! token stream, for the compatibility layer and anyone who wants positions
//! rather than suffix-array ranks.
//!
//! A position is the suffix's pointer in tokens less the separators before it
//! (one per document up to its own). The pointers of a shard's range are read
//! in one piece; few of them are each placed in their document by bisecting
//! the document offsets, many of them by one walk over the offsets in pointer
//! order (sorted once), so that the cost is the count plus the documents, not
//! the count times a bisection.

use rayon::prelude::*;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::shard::Shard;

/// Occurrences from which a shard's positions are computed on the pool.
const PARALLEL_MIN: u64 = 1 << 16;

/// The stream position of every occurrence of `tokens` (shard order, then
/// suffix-array order within a shard; not sorted), at most `limit` of them
/// (an error when there are more, so that no caller is handed a partial list).
pub fn stream_positions(engine: &Engine, tokens: &[u32], limit: u64) -> Result<Vec<u64>> {
    let found = engine.find(tokens)?;
    if found.count > limit {
        return Err(Error::InvalidQuery(format!(
            "the n-gram occurs {} times, more than the limit of {limit} positions",
            found.count
        )));
    }
    let mut out = Vec::with_capacity(found.count as usize);
    // Tokens (separators excluded) in the shards before each one.
    let mut before = 0u64;
    for (shard, &(lo, hi)) in engine.shards().iter().zip(&found.ranges) {
        if hi > lo {
            out.extend(
                shard_positions(shard, lo, hi)?
                    .into_iter()
                    .map(|p| p + before),
            );
        }
        before += shard.num_tokens() - shard.num_documents();
    }
    Ok(out)
}

/// The positions within `shard`'s own documents of the suffixes at ranks `[lo, hi)`.
fn shard_positions(shard: &Shard, lo: u64, hi: u64) -> Result<Vec<u64>> {
    let width = shard.token_width().bytes() as u64;
    let ptrs = shard.ptrs_in(lo, hi)?;
    let docs = shard.num_documents();
    let count = hi - lo;
    // Each document before a token (its own included) adds one separator.
    let position = |ptr: u64, doc: u64| ptr / width - (doc + 1);
    if docs == 1 && shard.document_start(0)? == 0 {
        // One document (a tokengrams token file): every pointer is in it.
        return Ok(ptrs.iter().map(|&ptr| position(ptr, 0)).collect());
    }
    if count.saturating_mul(64 - docs.leading_zeros() as u64) < docs + count {
        // Few pointers: each bisected.
        let place = |&ptr: &u64| Ok(position(ptr, shard.document_of(ptr)?));
        return if count >= PARALLEL_MIN {
            crate::pool::install(|| ptrs.par_iter().map(place).collect())
        } else {
            ptrs.iter().map(place).collect()
        };
    }
    // Many: in pointer order, one walk over the document offsets.
    let mut order: Vec<usize> = (0..count as usize).collect();
    if count >= PARALLEL_MIN {
        crate::pool::install(|| order.par_sort_unstable_by_key(|&i| ptrs[i]));
    } else {
        order.sort_unstable_by_key(|&i| ptrs[i]);
    }
    let mut out = vec![0u64; count as usize];
    let (mut doc, mut next_start) = (0u64, shard.document_start(1)?);
    for i in order {
        let ptr = ptrs[i];
        while ptr >= next_start && doc + 1 < docs {
            doc += 1;
            next_start = shard.document_start(doc + 1)?;
        }
        if shard.document_start(doc)? > ptr || ptr >= next_start {
            // Offsets out of order: the shard's own lookup names the corrupt entry.
            shard.document_of(ptr)?;
            return Err(Error::InvalidQuery(format!(
                "shard {}: pointer {ptr} lies in no document",
                shard.number
            )));
        }
        out[i] = position(ptr, doc);
    }
    Ok(out)
}
