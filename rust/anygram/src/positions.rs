//! Where an n-gram occurs as positions in the index's documents laid end to
//! end (the separators left out): the token offsets of tokengrams' single
//! token stream, for the compatibility layer and anyone who wants positions
//! rather than suffix-array ranks.

use rayon::prelude::*;

use crate::engine::Engine;
use crate::error::{Error, Result};

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
    let width = engine.token_width().bytes() as u64;
    // Tokens (separators excluded) in the shards before each one.
    let mut before = Vec::with_capacity(engine.shards().len());
    let mut total = 0u64;
    for shard in engine.shards() {
        before.push(total);
        total += shard.num_tokens() - shard.num_documents();
    }
    let per_shard = crate::pool::install(|| {
        engine
            .shards()
            .par_iter()
            .zip(&found.ranges)
            .zip(&before)
            .map(|((shard, &(lo, hi)), &offset)| {
                (lo..hi)
                    .map(|rank| {
                        let ptr = shard.ptr_at(rank)?;
                        // Each document before this token (its own included) adds one separator.
                        let separators = shard.document_of(ptr)? + 1;
                        Ok(offset + ptr / width - separators)
                    })
                    .collect::<Result<Vec<u64>>>()
            })
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(per_shard.into_iter().flatten().collect())
}
