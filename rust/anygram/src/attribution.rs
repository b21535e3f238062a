//! infini-gram's `creativity` and `attribute` over a text: where the longest
//! n-gram starting at each position that occurs in the corpus ends, and the
//! maximal rare spans of the text with where they occur.
//!
//! Both stand on the matching statistics (`scan::matching`: one left-to-right
//! pass, about 2n searches inside shrinking ranges), so a 1,000-token text
//! costs a few thousand in-range searches instead of infini-gram's counts from
//! scratch.

use std::collections::HashSet;

use crate::engine::Engine;
use crate::error::Result;

/// A span of the text that occurs at most `max_cnt` times, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributedSpan {
    /// First token of the span in the text.
    pub l: usize,
    /// One past its last token.
    pub r: usize,
    /// Occurrences in the corpus.
    pub count: u64,
    /// Every occurrence: (shard, byte offset of the match in that shard).
    pub occurrences: Vec<(usize, u64)>,
}

/// For each position `l`, `l` plus the length of the longest prefix of
/// `tokens[l..]` that occurs (infini-gram's `creativity` `rs`).
pub fn creativity(engine: &Engine, tokens: &[u32]) -> Result<Vec<usize>> {
    let ms = engine.matching_statistics(tokens)?;
    Ok(ms
        .iter()
        .enumerate()
        .map(|(l, &m)| l + m as usize)
        .collect())
}

/// What an attribution keeps (infini-gram's `attribute` arguments).
#[derive(Clone, Debug, Default)]
pub struct AttributeOptions {
    /// A span ends after the first of these tokens in it.
    pub delim_ids: Vec<u32>,
    /// Shortest span kept.
    pub min_len: usize,
    /// Most occurrences a kept span may have.
    pub max_cnt: u64,
    /// When given, spans start and end at the beginning of a word (a token of this set).
    pub bow_ids: Option<Vec<u32>>,
}

/// infini-gram's `attribute`: from each start (a beginning of word when
/// `bow_ids` is given), the longest occurring prefix, cut after its first
/// delimiter and backed off to end where a word begins; kept when at least
/// `min_len` long, occurring at most `max_cnt` times, and reaching past every
/// span kept before it.
pub fn attribute(
    engine: &Engine,
    tokens: &[u32],
    options: &AttributeOptions,
) -> Result<Vec<AttributedSpan>> {
    engine.encode(&options.delim_ids)?;
    let ends = creativity(engine, tokens)?;
    let delims: HashSet<u32> = options.delim_ids.iter().copied().collect();
    let bow: Option<HashSet<u32>> = options
        .bow_ids
        .as_ref()
        .map(|ids| ids.iter().copied().collect());
    let begins_word = |t: u32| bow.as_ref().is_none_or(|b| b.contains(&t));
    let n = tokens.len();
    let mut spans = Vec::new();
    let mut last_r = 0usize;
    for l in 0..n {
        if !begins_word(tokens[l]) {
            continue;
        }
        let mut length = ends[l] - l;
        if let Some(cut) =
            (l..(l + length).saturating_sub(1)).find(|&p| delims.contains(&tokens[p]))
        {
            length = cut - l + 1;
        }
        if bow.is_some() {
            while length > 0 && l + length < n && !begins_word(tokens[l + length]) {
                length -= 1;
            }
        }
        if length < options.min_len || l + length <= last_r {
            continue;
        }
        let found = engine.find(&tokens[l..l + length])?;
        if found.count > options.max_cnt {
            continue;
        }
        last_r = l + length;
        let mut occurrences = Vec::with_capacity(found.count as usize);
        for (shard, &(lo, hi)) in found.ranges.iter().enumerate() {
            for rank in lo..hi {
                occurrences.push((shard, engine.shards()[shard].ptr_at(rank)?));
            }
        }
        spans.push(AttributedSpan {
            l,
            r: l + length,
            count: found.count,
            occurrences,
        });
    }
    Ok(spans)
}
