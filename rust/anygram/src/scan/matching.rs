//! Matching statistics: for every start `i` of a token sequence, the length
//! `ms[i]` of the longest prefix of `tokens[i..]` that occurs in the corpus.
//!
//! One pass, left to right. If `tokens[i..i+L]` occurs, so does its suffix
//! `tokens[i+1..i+L]`, hence `ms[i+1] >= ms[i] - 1`: the search for `i + 1`
//! starts from the suffix-array range of those `L - 1` tokens (one search) and
//! extends it a token at a time, each extension a search *inside* the previous
//! range. The lengths only grow by as much as they shrink, so a text of `n`
//! tokens costs about `2n` searches per shard, most of them in small ranges.
//!
//! With several shards, `ms` is the maximum of each shard's statistics (each
//! shard keeps its own range, and its own invariant).

use std::sync::Arc;

use rayon::prelude::*;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::TokenWidth;
use crate::scan::ScanControl;
use crate::shard::Shard;

/// One place where a match occurs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// Shard holding it.
    pub shard: usize,
    /// Byte offset of the match in the shard's token stream.
    pub ptr: u64,
    /// Global document index (shard 0's documents first).
    pub doc_ix: u64,
    /// Tokens of the document.
    pub doc_len: u64,
    /// Where the match starts in the document, in tokens.
    pub offset: u64,
    /// The document's metadata line as stored (empty when the index has none).
    pub metadata: String,
}

/// How much of one text occurs verbatim in the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contamination {
    /// Matching statistics: `matching[i]` tokens from `i` on occur in the corpus.
    pub matching: Vec<u32>,
    /// Maximal ranges `[start, end)` of tokens covered by matches of at least
    /// `min_len` tokens, in order, disjoint and not touching.
    pub covered: Vec<(u64, u64)>,
    /// Tokens in `covered`.
    pub num_covered: u64,
    /// Start of the longest match (the first one when tied; 0 when none).
    pub longest_start: u64,
    /// Its length in tokens (0 when not even one token occurs).
    pub longest_len: u64,
    /// How often the longest match occurs in the corpus.
    pub longest_count: u64,
    /// Up to `k` of its occurrences, shard by shard in suffix-array order.
    pub occurrences: Vec<Occurrence>,
}

/// Matching statistics of `query` (encoded bytes of `query.len() / w` tokens,
/// none of them a separator) against one shard.
pub fn shard_matching_statistics(shard: &Shard, w: usize, query: &[u8]) -> Result<Vec<u32>> {
    let n = query.len() / w;
    let mut ms = vec![0u32; n];
    if shard.num_tokens() == 0 {
        return Ok(ms);
    }
    let full = (0, shard.num_tokens());
    // Invariant at the top of the loop: tokens[i..i+len] occurs in the shard.
    let mut len = 0usize;
    for (i, out) in ms.iter_mut().enumerate() {
        let start = i * w;
        let mut range = shard.find(&query[start..start + len * w], full)?;
        if range.0 == range.1 {
            // Only a corrupt index breaks the invariant (a suffix of a match must occur).
            return Err(Error::corrupt(
                shard.files()[1].path(),
                format!("a suffix of a match at query position {i} is not found: the suffix array is not sorted"),
            ));
        }
        while i + len < n {
            let next = shard.find(&query[start..start + (len + 1) * w], range)?;
            if next.0 == next.1 {
                break;
            }
            range = next;
            len += 1;
        }
        *out = len as u32;
        len = len.saturating_sub(1);
    }
    Ok(ms)
}

/// Matching statistics of `tokens` against `shards` of token width `width`.
/// Tokens that cannot occur there (the separator value or above) only end
/// matches: each run between them is scanned on its own.
pub fn matching_statistics_in(
    shards: &[Arc<Shard>],
    width: TokenWidth,
    tokens: &[u32],
) -> Result<Vec<u32>> {
    let w = width.bytes();
    let mut ms = vec![0u32; tokens.len()];
    let mut bytes = Vec::with_capacity(tokens.len() * w);
    let mut run_start = 0;
    while run_start < tokens.len() {
        let run_end = tokens[run_start..]
            .iter()
            .position(|&t| t >= width.separator())
            .map_or(tokens.len(), |p| run_start + p);
        if run_end > run_start {
            bytes.clear();
            width.encode_into(&tokens[run_start..run_end], &mut bytes);
            for shard in shards {
                let part = shard_matching_statistics(shard, w, &bytes)?;
                for (out, m) in ms[run_start..run_end].iter_mut().zip(part) {
                    *out = (*out).max(m);
                }
            }
        }
        run_start = run_end + 1;
    }
    Ok(ms)
}

/// Maximal ranges covered by `[i, i + ms[i])` over every `i` with
/// `ms[i] >= min_len` (`min_len >= 1`).
pub fn covered_ranges(ms: &[u32], min_len: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (i, &m) in ms.iter().enumerate() {
        let m = m as u64;
        if m < min_len.max(1) {
            continue;
        }
        let (start, end) = (i as u64, i as u64 + m);
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

impl Engine {
    /// Matching statistics of `tokens` against every shard (see the module
    /// docs). Errors on ids outside the vocabulary.
    pub fn matching_statistics(&self, tokens: &[u32]) -> Result<Vec<u32>> {
        self.encode(tokens)?;
        matching_statistics_in(self.shards(), self.token_width(), tokens)
    }

    /// Where `tokens` occurs: the total count and up to `k` occurrences, shard
    /// by shard in suffix-array order.
    pub fn occurrences(&self, tokens: &[u32], k: usize) -> Result<(u64, Vec<Occurrence>)> {
        let found = self.find(tokens)?;
        let mut out = Vec::with_capacity(k.min(found.count as usize));
        for (shard, &(lo, hi)) in found.ranges.iter().enumerate() {
            for rank in lo..hi.min(lo.saturating_add((k - out.len()) as u64)) {
                let ptr = self.shards()[shard].ptr_at(rank)?;
                out.push(self.occurrence_at(shard, ptr)?);
            }
        }
        Ok((found.count, out))
    }

    /// The document and offset of byte `ptr` of shard `shard`.
    pub fn occurrence_at(&self, shard: usize, ptr: u64) -> Result<Occurrence> {
        let s = self.shards().get(shard).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "shard {shard} is out of range [0, {})",
                self.shards().len()
            ))
        })?;
        let w = self.token_width().bytes() as u64;
        if ptr >= s.num_tokens() * w || !ptr.is_multiple_of(w) {
            return Err(Error::InvalidArgument(format!(
                "ptr {ptr} must be a multiple of {w} in [0, {}) for shard {shard}",
                s.num_tokens() * w
            )));
        }
        let local = s.document_of(ptr)?;
        let (doc_start, doc_end) = s.document_tokens_span(local)?;
        let first_doc: u64 = self.shards()[..shard]
            .iter()
            .map(|s| s.num_documents())
            .sum();
        let metadata = s
            .metadata_line(local)?
            .map(|line| String::from_utf8_lossy(&line).trim_end().to_string())
            .unwrap_or_default();
        Ok(Occurrence {
            shard,
            ptr,
            doc_ix: first_doc + local,
            doc_len: doc_end.saturating_sub(doc_start) / w,
            offset: ptr.saturating_sub(doc_start) / w,
            metadata,
        })
    }

    /// How much of `tokens` occurs verbatim: matching statistics, the ranges
    /// covered by matches of at least `min_len` tokens, and the longest match
    /// with up to `k` of its occurrences.
    pub fn contamination(&self, tokens: &[u32], min_len: u64, k: usize) -> Result<Contamination> {
        if min_len == 0 {
            return Err(Error::InvalidArgument(
                "min_len must be at least 1 token".into(),
            ));
        }
        let matching = self.matching_statistics(tokens)?;
        let covered = covered_ranges(&matching, min_len);
        let num_covered = covered.iter().map(|(s, e)| e - s).sum();
        // The first maximum: max_by_key keeps the last, so scan by hand.
        let (mut longest_start, mut longest_len) = (0usize, 0u32);
        for (i, &m) in matching.iter().enumerate() {
            if m > longest_len {
                (longest_start, longest_len) = (i, m);
            }
        }
        let (longest_count, occurrences) = if longest_len > 0 {
            let span = &tokens[longest_start..longest_start + longest_len as usize];
            self.occurrences(span, k)?
        } else {
            (0, Vec::new())
        };
        Ok(Contamination {
            matching,
            covered,
            num_covered,
            longest_start: longest_start as u64,
            longest_len: longest_len as u64,
            longest_count,
            occurrences,
        })
    }

    /// [`Engine::contamination`] of many texts on all cores. An error names the
    /// text it came from. `control` counts finished texts and can cancel.
    pub fn contamination_batch(
        &self,
        texts: &[Vec<u32>],
        min_len: u64,
        k: usize,
        control: &ScanControl,
    ) -> std::result::Result<Vec<Contamination>, (usize, Error)> {
        texts
            .par_iter()
            .enumerate()
            .map(|(i, tokens)| {
                control.check().map_err(|e| (i, e))?;
                let result = self.contamination(tokens, min_len, k).map_err(|e| (i, e))?;
                control.add(1);
                Ok(result)
            })
            .collect()
    }
}
