//! Interpolated Kneser-Ney next-token distributions and sampling.
//!
//! The smoothed distribution is tokengrams 0.3.3's (so that its users get the
//! same numbers), computed from exact next-token counts in the suffix array:
//!
//! * order 0: `u(t) = (c(t) + ε) / (N + ε·V)`, the unigram counts with additive
//!   smoothing (ε = 1e-9, V the vocabulary size);
//! * for each suffix `s` of the context, shortest first (the empty one
//!   included), with `c(s t)` the count of `s` followed by `t`, `C` their sum,
//!   `N1+` the number of tokens with a nonzero count, `N1` those seen once and
//!   `δ = delta(|s| + 1)`:
//!   `p_s(t) = max(c(s t) − δ, 0) / C + λ · p_shorter(t)`, with
//!   `λ = δ·N1+/C` when `δ < 1` and `λ = N1 + δ·(N1+ − N1)/C` when `δ = 1` (that
//!   second form is tokengrams' as it is: its rows then sum to more than 1);
//!   a suffix followed by nothing leaves the shorter one's distribution as it is.
//! * `delta(n) = N1 / (N1 + 2·N2)` over the distinct n-grams seen once (N1) and
//!   twice (N2), or 1 when either is 0 (Chen & Goodman's estimate); orders
//!   never estimated use 0.5. Order 1 is estimated when a model is made, higher
//!   orders only on request ([`KneserNey::estimate_deltas`]: it visits every
//!   distinct n-gram prefix).
//!
//! n-grams never span two documents. Where a match ends its document, the
//! next "token" is either the end-of-document token (as infini-gram's `ntd`
//! reports it: [`DocumentEnds::Eos`]) or nothing ([`DocumentEnds::Skip`],
//! tokengrams' view of its one token stream).
//!
//! Samplers draw `k` tokens autoregressively from the unsmoothed n-gram, the
//! Kneser-Ney or the ∞-gram distribution; each sample has its own generator
//! seeded from `(seed, sample number)`, so a batch gives the same draws on any
//! number of threads.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::engine::{Engine, FindResult};
use crate::error::{Error, Result};
use crate::next_tokens::{raw_next_counts, NextTokenMemo, DOCUMENT_END};

/// Largest vocabulary a dense distribution is made for (a row is 8 bytes a token).
pub const MAX_DENSE_VOCAB: u64 = 1 << 24;
/// tokengrams' additive smoothing of the unigram counts.
const UNIGRAM_EPSILON: f64 = 1e-9;
/// tokengrams' discount for an order whose delta was never estimated.
const DEFAULT_DELTA: f64 = 0.5;
/// What follows a match that ends its document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentEnds {
    /// The end-of-document token (`Engine::eos_token_id`), as `ntd` counts it.
    Eos,
    /// Nothing: such a match has no next token (tokengrams).
    Skip,
}

/// Exact counts of the tokens that follow the `query_bytes`-long matches at
/// `ranges` (one per shard), summed over shards, in ascending token order,
/// document ends as [`DOCUMENT_END`] (the last entry, as it is the largest id).
fn next_counts_in(
    engine: &Engine,
    query_bytes: usize,
    ranges: &[(u64, u64)],
) -> Result<Vec<(u32, u64)>> {
    crate::next_tokens::next_token_counts_in(engine.shards(), query_bytes, ranges, DOCUMENT_END)
}

/// Raw counts (ascending, document ends as [`DOCUMENT_END`], last) with the
/// document ends counted as `ends` says.
fn with_document_ends(engine: &Engine, raw: &[(u32, u64)], ends: DocumentEnds) -> Vec<(u32, u64)> {
    let mut counts = raw.to_vec();
    if counts
        .last()
        .is_some_and(|&(token, _)| token == DOCUMENT_END)
    {
        let (_, ended) = counts.pop().expect("checked above");
        if ends == DocumentEnds::Eos {
            let eos = engine.eos_token_id();
            match counts.binary_search_by_key(&eos, |&(token, _)| token) {
                Ok(at) => counts[at].1 += ended,
                Err(at) => counts.insert(at, (eos, ended)),
            }
        }
    }
    counts
}

/// Exact next-token counts after `context` (sparse, ascending token ids).
pub fn next_token_counts(
    engine: &Engine,
    context: &[u32],
    ends: DocumentEnds,
) -> Result<Vec<(u32, u64)>> {
    Ok(with_document_ends(
        engine,
        &raw_next_counts(engine, context)?,
        ends,
    ))
}

/// [`next_token_counts`] through `memo` (filled from this engine).
pub fn next_token_counts_memo(
    engine: &Engine,
    memo: &NextTokenMemo,
    context: &[u32],
    ends: DocumentEnds,
) -> Result<Vec<(u32, u64)>> {
    Ok(with_document_ends(
        engine,
        &memo.counts(engine, context)?,
        ends,
    ))
}

/// How many distinct `n`-grams (within documents) occur exactly once and
/// exactly twice. Visits every distinct prefix of up to `n − 1` tokens.
pub fn ngrams_seen_once_and_twice(engine: &Engine, n: usize) -> Result<(u64, u64)> {
    if n == 0 {
        return Err(Error::InvalidQuery("n must be at least 1".into()));
    }
    // Depth-first over prefixes, each with its ranges; the first level's
    // prefixes are spread over the pool.
    fn visit(
        engine: &Engine,
        prefix: &[u8],
        ranges: &[(u64, u64)],
        remaining: usize,
    ) -> Result<(u64, u64)> {
        let counts = next_counts_in(engine, prefix.len(), ranges)?;
        let mut seen = (0u64, 0u64);
        for &(token, count) in counts.iter().filter(|&&(t, _)| t != DOCUMENT_END) {
            if remaining == 1 {
                seen.0 += (count == 1) as u64;
                seen.1 += (count == 2) as u64;
                continue;
            }
            let mut longer = prefix.to_vec();
            engine.token_width().encode_into(&[token], &mut longer);
            let FindResult { ranges: inner, .. } = engine.find_bytes(&longer, ranges)?;
            let (once, twice) = visit(engine, &longer, &inner, remaining - 1)?;
            seen = (seen.0 + once, seen.1 + twice);
        }
        Ok(seen)
    }
    let full = engine.full_ranges();
    if n == 1 {
        return visit(engine, &[], &full, 1);
    }
    let first: Vec<u32> = next_counts_in(engine, 0, &full)?
        .into_iter()
        .map(|(token, _)| token)
        .filter(|&t| t != DOCUMENT_END)
        .collect();
    let per_token = crate::pool::install(|| {
        first
            .par_iter()
            .map(|&token| {
                let prefix = engine.encode(&[token])?;
                let found = engine.find_bytes(&prefix, &full)?;
                visit(engine, &prefix, &found.ranges, n - 1)
            })
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(per_token
        .into_iter()
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y)))
}

/// Chen & Goodman's discount from the n-grams seen once and twice (1 when
/// either is missing), as tokengrams estimates it.
pub fn discount_from(once: u64, twice: u64) -> f64 {
    if once == 0 || twice == 0 {
        1.0
    } else {
        once as f64 / (once as f64 + 2.0 * twice as f64)
    }
}

/// An interpolated Kneser-Ney model over an engine: the smoothed unigram
/// distribution and the discounts, computed once; distributions on demand.
#[derive(Clone, Debug)]
pub struct KneserNey {
    ends: DocumentEnds,
    vocab: usize,
    /// The distribution after the empty context (order 1 over the unigram).
    order_one: Vec<f64>,
    /// Discount of order `i + 1` at index `i`, where estimated.
    deltas: BTreeMap<usize, f64>,
    /// The frequent contexts' counts (shared by the model's clones).
    memo: std::sync::Arc<NextTokenMemo>,
}

impl KneserNey {
    /// Counts the unigrams and estimates the order-1 discount (what tokengrams
    /// does before its first smoothed distribution).
    pub fn new(engine: &Engine, ends: DocumentEnds) -> Result<KneserNey> {
        let vocab = engine.vocab_size();
        if vocab > MAX_DENSE_VOCAB {
            return Err(Error::InvalidQuery(format!(
                "smoothed distributions are dense over the vocabulary, and this index's vocabulary of {vocab} ids is over the limit of {MAX_DENSE_VOCAB}: open it with vocab_size=... (the tokenizer's)"
            )));
        }
        let vocab = vocab as usize;
        let mut deltas = BTreeMap::new();
        let (once, twice) = ngrams_seen_once_and_twice(engine, 1)?;
        deltas.insert(1, discount_from(once, twice));
        let mut model = KneserNey {
            ends,
            vocab,
            order_one: Vec::new(),
            deltas,
            memo: std::sync::Arc::new(NextTokenMemo::frequent()),
        };
        let unigram_counts = next_token_counts(engine, &[], ends)?;
        let total: u64 = unigram_counts.iter().map(|&(_, c)| c).sum();
        let denominator = total as f64 + UNIGRAM_EPSILON * vocab as f64;
        let mut unigram = vec![UNIGRAM_EPSILON / denominator; vocab];
        for &(token, count) in &unigram_counts {
            unigram[token as usize] = (count as f64 + UNIGRAM_EPSILON) / denominator;
        }
        model.order_one = model.interpolate(&mut unigram, &unigram_counts, 0)?;
        Ok(model)
    }

    /// Estimates the discounts of orders 1..=n not yet estimated (visits every
    /// distinct prefix of up to n − 1 tokens: costly for large n).
    pub fn estimate_deltas(&mut self, engine: &Engine, n: usize) -> Result<()> {
        for order in 1..=n {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.deltas.entry(order) {
                let (once, twice) = ngrams_seen_once_and_twice(engine, order)?;
                slot.insert(discount_from(once, twice));
            }
        }
        Ok(())
    }

    /// The discount of n-grams of order `order` (0.5 when never estimated).
    pub fn delta(&self, order: usize) -> f64 {
        self.deltas.get(&order).copied().unwrap_or(DEFAULT_DELTA)
    }

    /// The estimated discounts, by order.
    pub fn deltas(&self) -> &BTreeMap<usize, f64> {
        &self.deltas
    }

    /// How document ends are counted.
    pub fn document_ends(&self) -> DocumentEnds {
        self.ends
    }

    /// One interpolation step: `row` (the shorter context's distribution)
    /// becomes the one after a context of `context_len` tokens followed by `counts`.
    fn interpolate(
        &self,
        row: &mut Vec<f64>,
        counts: &[(u32, u64)],
        context_len: usize,
    ) -> Result<Vec<f64>> {
        let total: u64 = counts.iter().map(|&(_, c)| c).sum();
        if total == 0 {
            return Ok(std::mem::take(row));
        }
        let total = total as f64;
        let seen = counts.iter().filter(|&&(_, c)| c > 0).count() as f64;
        let seen_once = counts.iter().filter(|&&(_, c)| c == 1).count() as f64;
        let delta = self.delta(context_len + 1);
        let lambda = if delta < 1.0 {
            delta * seen / total
        } else {
            seen_once + delta * (seen - seen_once) / total
        };
        let mut out = std::mem::take(row);
        out.iter_mut().for_each(|p| *p *= lambda);
        for &(token, count) in counts {
            let slot = out.get_mut(token as usize).ok_or_else(|| {
                Error::InvalidQuery(format!(
                    "token {token} occurs in the index but is outside the vocabulary of {} ids",
                    self.vocab
                ))
            })?;
            *slot += (count as f64 - delta).max(0.0) / total;
        }
        Ok(out)
    }

    /// The smoothed distribution of the token after `context` (every suffix of
    /// it interpolated, as tokengrams' `get_smoothed_probs`): `vocab_size` values.
    /// `engine` is the one the model was made from (its frequent contexts'
    /// counts are remembered with the model).
    pub fn probs(&self, engine: &Engine, context: &[u32]) -> Result<Vec<f64>> {
        engine.encode(context)?;
        let mut row = self.order_one.clone();
        for len in 1..=context.len() {
            let suffix = &context[context.len() - len..];
            let counts = next_token_counts_memo(engine, &self.memo, suffix, self.ends)?;
            if counts.is_empty() {
                // A longer context is followed by nothing either.
                break;
            }
            row = self.interpolate(&mut row, &counts, len)?;
        }
        Ok(row)
    }
}

/// The distribution a sampler draws each token from.
#[derive(Clone, Copy, Debug)]
pub enum Sampling<'a> {
    /// The n-gram counts after the last n − 1 tokens (no smoothing).
    Unsmoothed {
        /// The order: the last n − 1 tokens are the context.
        n: usize,
        /// What a document end counts as.
        ends: DocumentEnds,
        /// Frequent contexts' counts kept between batches (filled from this engine).
        memo: Option<&'a NextTokenMemo>,
    },
    /// The Kneser-Ney distribution after the last n − 1 tokens.
    KneserNey {
        /// The order: the last n − 1 tokens are the context.
        n: usize,
        /// The model (discounts and unigram distribution).
        model: &'a KneserNey,
    },
    /// The ∞-gram distribution after the whole sequence (`infgram_ntd`, exact).
    InfGram,
}

/// The generator of sample `index` of a batch drawn with `seed`.
fn sample_rng(seed: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A draw from sparse counts.
fn draw_counts(rng: &mut StdRng, counts: &[(u32, u64)]) -> Option<u32> {
    let total: u64 = counts.iter().map(|&(_, c)| c).sum();
    if total == 0 {
        return None;
    }
    let mut target = rng.gen_range(0..total);
    for &(token, count) in counts {
        if target < count {
            return Some(token);
        }
        target -= count;
    }
    None
}

/// A draw from dense nonnegative weights (need not sum to 1).
fn draw_weights(rng: &mut StdRng, weights: &[f64]) -> Option<u32> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut target = rng.gen::<f64>() * total;
    let mut last_positive = None;
    for (token, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            last_positive = Some(token as u32);
            if target < w {
                return last_positive;
            }
            target -= w;
        }
    }
    // Rounding left a sliver past the end: the last token with weight.
    last_positive
}

fn check_order(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::InvalidQuery(
            "n must be at least 1 (n = 1 samples from the unigram)".into(),
        ));
    }
    Ok(())
}

/// Draws `k` tokens after `context` (the new tokens only), with the
/// generator of sample `index` for `seed`.
pub fn sample(
    engine: &Engine,
    context: &[u32],
    how: Sampling<'_>,
    k: usize,
    seed: u64,
    index: u64,
) -> Result<Vec<u32>> {
    sample_with(
        engine,
        &NextTokenMemo::new(0, 0),
        context,
        how,
        k,
        seed,
        index,
    )
}

/// [`sample`] with the unsmoothed counts through `memo` (a batch's samples
/// share their contexts' counts: every sample of a context starts from it).
fn sample_with(
    engine: &Engine,
    memo: &NextTokenMemo,
    context: &[u32],
    how: Sampling<'_>,
    k: usize,
    seed: u64,
    index: u64,
) -> Result<Vec<u32>> {
    engine.encode(context)?;
    let mut rng = sample_rng(seed, index);
    let mut sequence = context.to_vec();
    sequence.reserve(k);
    for _ in 0..k {
        let token = match how {
            Sampling::Unsmoothed {
                n,
                ends,
                memo: kept,
            } => {
                check_order(n)?;
                let recent = &sequence[sequence.len().saturating_sub(n - 1)..];
                let raw = match kept.and_then(|kept| kept.get(recent)) {
                    Some(known) => known,
                    None => {
                        let counts = memo.counts(engine, recent)?;
                        if let Some(kept) = kept {
                            kept.offer(recent, &counts);
                        }
                        counts
                    }
                };
                let counts = with_document_ends(engine, &raw, ends);
                draw_counts(&mut rng, &counts).ok_or_else(|| {
                    Error::InvalidQuery(format!(
                        "unsmoothed sampling stopped: no token follows the context {recent:?} in the index"
                    ))
                })?
            }
            Sampling::KneserNey { n, model } => {
                check_order(n)?;
                let recent = &sequence[sequence.len().saturating_sub(n - 1)..];
                let probs = model.probs(engine, recent)?;
                draw_weights(&mut rng, &probs).ok_or_else(|| {
                    Error::InvalidQuery("smoothed sampling: the distribution is empty".into())
                })?
            }
            Sampling::InfGram => {
                let ntd = engine.infgram_ntd(&sequence, u64::MAX)?;
                draw_counts(&mut rng, &ntd.counts).ok_or_else(|| {
                    Error::InvalidQuery("∞-gram sampling: the index holds no tokens".into())
                })?
            }
        };
        sequence.push(token);
    }
    Ok(sequence.split_off(context.len()))
}

/// `num_samples` samples of `k` tokens after each context, on the fork-safe
/// pool: row `i · num_samples + j` is sample `j` of context `i` (generator
/// number `i · num_samples + j`).
pub fn sample_batch(
    engine: &Engine,
    contexts: &[&[u32]],
    how: Sampling<'_>,
    k: usize,
    num_samples: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>> {
    let rows = contexts.len().checked_mul(num_samples).ok_or_else(|| {
        Error::InvalidQuery("too many samples: contexts × num_samples overflows".into())
    })?;
    // Only this batch's contexts: no older than the call, so kept whatever their count.
    let memo = NextTokenMemo::new(0, crate::next_tokens::MEMO_MAX_PAIRS);
    crate::pool::install(|| {
        (0..rows)
            .into_par_iter()
            .map(|row| {
                let context = contexts[row / num_samples.max(1)];
                sample_with(engine, &memo, context, how, k, seed, row as u64)
            })
            .collect()
    })
}
