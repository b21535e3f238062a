//! The ∞-gram language model over a whole text: [`Engine::score`] gives, for
//! every position `i`, exactly what `infgram_prob(tokens[..i], tokens[i])`
//! answers, in one left-to-right pass.
//!
//! The pass keeps the longest context `tokens[s..i]` that occurs in the corpus
//! and its suffix-array range in every shard. Scoring token `i` narrows that
//! range with `tokens[i]` (the continuation count); if the extended context
//! still occurs it is the next context, otherwise `s` moves right, one token at
//! a time, searching `tokens[s..=i]` afresh until it occurs (or is empty). The
//! longest occurring suffix never starts further left than the previous one
//! (if `tokens[s..=i]` occurs, so does `tokens[s..i]`), so `s` never moves
//! left and a text of `L` tokens costs at most `2L` searches.
//!
//! A long text is cut into chunks scored on all cores: a chunk's first context
//! is found directly (the longest occurring suffix of everything before it),
//! which is the state the pass would have reached there.

use rayon::prelude::*;

use crate::context_table::ContextTable;
use crate::engine::{Engine, FindResult, NtdResult, ShardRanges};
use crate::error::Result;
use crate::shard::{RankRange, END_OF_SHARD};

/// Tokens per chunk when one text is scored on several cores.
const CHUNK_TOKENS: usize = 4096;

/// Candidate contexts searched together when a context cannot be extended.
const DROP_CANDIDATES: usize = 4;

/// Context ranges up to this many ranks are extended comparing only the next
/// token; larger ones search with the sampled keys (fewer cold pages).
const SHORT_RANGE: u64 = 4096;

/// Whether the context found at `context` has one next token, when the counts of
/// it followed by `next` (found at `cont`) already tell, saving the reads of
/// [`Engine::single_next_token`]: every occurrence followed by `next` is one token;
/// some followed by `next` and some not are two, unless `next` is the eos id (the
/// others might be document ends, which count as eos too).
fn sparse_from_counts(
    context: &FindResult,
    cont: &FindResult,
    next: u32,
    eos: u32,
) -> Option<bool> {
    if cont.count == context.count {
        Some(true)
    } else if cont.count > 0 && next != eos {
        Some(false)
    } else {
        None
    }
}

/// What [`Engine::score`] computes beyond the probability and counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScoreOptions {
    /// Compute [`Scores::sparse`] (a few extra reads per position).
    pub sparse: bool,
    /// Compute [`Scores::top_token`] and [`Scores::top_prob`], the mode of the
    /// ∞-gram next-token distribution at every position, counting at most
    /// this many occurrences exactly (sampled beyond, as `infgram_ntd`).
    pub top_max_support: Option<u64>,
    /// The text is a whole document: its first tokens' contexts start with the
    /// document separator, so they match only at document starts (backing off
    /// as usual when no document starts that way). A context that reaches the
    /// start counts it as one token of [`Scores::suffix_len`].
    pub doc_start: bool,
}

/// Per-position ∞-gram results of a text, one entry per token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    /// `cont_count / prompt_count`, or −1.0 where even the empty context never
    /// occurs (an empty index).
    pub prob: Vec<f64>,
    /// Length of the longest suffix of `tokens[..i]` that occurs in the corpus.
    pub suffix_len: Vec<u32>,
    /// Occurrences of that suffix (every token position for the empty suffix).
    pub prompt_count: Vec<u64>,
    /// Occurrences of that suffix followed by `tokens[i]`.
    pub cont_count: Vec<u64>,
    /// Whether the ∞-gram next-token distribution at position `i` has exactly
    /// one token (document ends counted as `eos_token_id`, as `ntd` reports
    /// them); empty unless [`ScoreOptions::sparse`].
    pub sparse: Vec<bool>,
    /// The most frequent next token after the suffix (smallest id on ties; the
    /// eos id for document ends); `u32::MAX` where the distribution is empty.
    /// Empty unless [`ScoreOptions::top_max_support`].
    pub top_token: Vec<u32>,
    /// Its probability in the ∞-gram distribution (0 where it is empty).
    pub top_prob: Vec<f64>,
    /// Whether that distribution was sampled (more than `max_support` occurrences).
    pub top_approx: Vec<bool>,
}

impl Scores {
    fn with_capacity(n: usize, options: &ScoreOptions) -> Scores {
        let extra = |on: bool| if on { n } else { 0 };
        let top = options.top_max_support.is_some();
        Scores {
            prob: Vec::with_capacity(n),
            suffix_len: Vec::with_capacity(n),
            prompt_count: Vec::with_capacity(n),
            cont_count: Vec::with_capacity(n),
            sparse: Vec::with_capacity(extra(options.sparse)),
            top_token: Vec::with_capacity(extra(top)),
            top_prob: Vec::with_capacity(extra(top)),
            top_approx: Vec::with_capacity(extra(top)),
        }
    }

    /// Number of positions.
    pub fn len(&self) -> usize {
        self.prob.len()
    }

    /// Whether there are no positions.
    pub fn is_empty(&self) -> bool {
        self.prob.is_empty()
    }

    fn append(&mut self, mut other: Scores) {
        self.prob.append(&mut other.prob);
        self.suffix_len.append(&mut other.suffix_len);
        self.prompt_count.append(&mut other.prompt_count);
        self.cont_count.append(&mut other.cont_count);
        self.sparse.append(&mut other.sparse);
        self.top_token.append(&mut other.top_token);
        self.top_prob.append(&mut other.top_prob);
        self.top_approx.append(&mut other.top_approx);
    }
}

/// Tokens of a text's piece in [`Engine::score_pieces`]: several pieces of one
/// text go in lockstep too, each starting from its longest occurring suffix
/// (a few searches, about 0.02 a token at this length).
const PIECE_TOKENS: usize = 512;

/// The shortest pieces a call with few tokens (one text) is cut into, so that
/// its pieces still fill every thread's lockstep: their starts then cost about
/// 0.16 searches a token, where a token takes 0.8 on held-out text (a call per
/// 2,000-token text: 1.2-1.4M tokens/s with pieces of 64, 1.1-1.25M with 128,
/// 0.6M with pieces of 512 on one thread).
const MIN_PIECE_TOKENS: usize = 64;

/// Pieces one thread steps in lockstep: enough misses in flight to fill a
/// core's line-fill buffers, with room for the pieces that wait on a long search.
const LOCKSTEP_WIDTH: usize = 32;

/// A context with at most this many occurrences keeps their text positions
/// (one read of its suffix-array entries): extending it compares the token
/// after each, whose line the previous extension brought into the cache, with
/// no search in the suffix array.
const CACHED_OCCURRENCES: u64 = 16;

/// After a failed extension, shorter contexts tried one at a time (most drops
/// are of 1-3 tokens) before the rest is bisected.
const LINEAR_DROPS: u32 = 3;

/// A pass's search in a round of [`Engine::score_pieces`]: the query, its
/// range in each shard, and the bytes every suffix of those ranges shares with it.
type RoundSearch<'a> = (&'a [u8], &'a [RankRange], usize);

/// A part of one text, `[from, end)` of its positions (the doc-start separator
/// counted), scored by [`Engine::score_pieces`].
struct Piece {
    text: usize,
    from: usize,
    end: usize,
}

/// The search for the context that follows a failed extension at position
/// `i`: the longest occurring suffix of `tokens[fail + 1..=i]`, i.e. the
/// smallest start `ok` whose suffix occurs (a suffix of an occurring n-gram
/// occurs, so starts are monotone: `fail` does not occur, `ok` does).
struct Backoff {
    fail: usize,
    ok: usize,
    ok_found: Option<FindResult>,
    tries: u32,
    /// Whether the candidates of one and two tokens were taken from the table:
    /// then the rest is bisected from the start (on held-out text 1.4 searches
    /// a drop, where one-at-a-time then bisection without the table takes 2.5).
    bisect: bool,
    /// The table's range of the next candidate's first two tokens, when it looked.
    candidate_start: Option<FindResult>,
}

impl Backoff {
    /// A drop whose start `fail` is known not to occur and `ok` to occur, nothing tried yet.
    fn new(fail: usize, ok: usize) -> Backoff {
        Backoff {
            fail,
            ok,
            ok_found: None,
            tries: 0,
            bisect: false,
            candidate_start: None,
        }
    }

    /// The next start to try: bisection with the table; without it one after
    /// the last failure while drops are short, then bisection.
    fn candidate(&self) -> usize {
        if !self.bisect && self.tries < LINEAR_DROPS {
            self.fail + 1
        } else {
            self.fail + (self.ok - self.fail) / 2
        }
    }

    fn done(&self) -> bool {
        self.ok == self.fail + 1
    }
}

/// One text's search in [`Engine::longest_occurring_suffixes`]: the suffix
/// length doubles while it occurs, then the lengths between the longest that
/// occurs and the shortest that does not are bisected.
struct SuffixSearch {
    /// The text's length in tokens.
    len: usize,
    /// The longest suffix known to occur, and where (the empty one at first).
    best: (usize, FindResult),
    /// The shortest length known not to occur (`len + 1` when the whole text
    /// occurs); `None` while doubling (the next length is then twice the best).
    absent: Option<usize>,
}

impl SuffixSearch {
    fn new(len: usize, everything: FindResult) -> SuffixSearch {
        SuffixSearch {
            len,
            best: (0, everything),
            absent: (len == 0).then_some(1),
        }
    }

    /// The length to search next, or `None` once the longest is known.
    fn next_len(&self) -> Option<usize> {
        match self.absent {
            None => Some((2 * self.best.0).max(1)),
            Some(absent) => (absent - self.best.0 > 1).then(|| (self.best.0 + absent) / 2),
        }
    }

    /// Takes the result of searching the suffix of `n` tokens.
    fn take(&mut self, n: usize, found: FindResult) {
        if found.count == 0 {
            self.absent = Some(n);
            return;
        }
        self.best = (n, found);
        if self.absent.is_none() && 2 * n > self.len {
            self.absent = Some(self.len + 1);
        }
    }
}

/// The first two tokens of the candidate context `tokens[c..=i]` of the
/// encoded `bytes`, when it has two.
fn first_two(bytes: &[u8], i: usize, c: usize, w: usize) -> Option<&[u8]> {
    (c + 2 <= i + 1).then(|| &bytes[c * w..(c + 2) * w])
}

/// One piece in flight: at position `i`, with the context `tokens[start..i]`
/// found at `context` (or, during `drop`, looking for the next one).
struct Pass<'b> {
    piece: usize,
    text: usize,
    /// The encoded text up to the piece's end.
    bytes: &'b [u8],
    i: usize,
    start: usize,
    context: FindResult,
    /// The text positions of the context's occurrences, per shard in rank
    /// order, when it has at most [`CACHED_OCCURRENCES`] (else empty).
    occurrences: Option<Vec<Vec<u64>>>,
    drop: Option<Backoff>,
    /// Table lookups this round's result calls for, done after every pass has
    /// taken its result, their reads hinted together ([`Pass::pending_lookup`]).
    pending: Pending,
    out: Scores,
}

/// What a pass still has to do with the table after taking a round's result.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    Nothing,
    /// Start the drop after a failed extension ([`Pass::start_drop`]).
    StartDrop,
    /// Move the drop on to its next candidate ([`Pass::settle_drop`]).
    Settle,
}

impl Pass<'_> {
    /// The context followed by token `i`, from the cached positions of the
    /// context's occurrences (sorted by what follows them: those followed by
    /// the token are a run).
    fn extend_from_occurrences(&self, texts: &[&[u8]], w: usize) -> FindResult {
        let skip = (self.i - self.start) * w;
        let next = &self.bytes[self.i * w..(self.i + 1) * w];
        let occurrences = self.occurrences.as_deref().unwrap_or_default();
        let next_token = crate::interleave::Tail::new(next);
        let mut count = 0;
        let ranges = occurrences
            .iter()
            .zip(&self.context.ranges)
            .zip(texts)
            .map(|((positions, &(lo, _)), text)| {
                let order = |&ptr: &u64| {
                    let start = (ptr as usize + skip).min(text.len());
                    next_token.cmp_at(text, start)
                };
                let first = positions.partition_point(|p| order(p).is_lt());
                let past = first + positions[first..].partition_point(|p| order(p).is_eq());
                count += (past - first) as u64;
                (lo + first as u64, lo + past as u64)
            })
            .collect();
        FindResult { count, ranges }
    }

    /// The table's answer for the context of this round, when it is of one or
    /// two tokens and the table covers it: an extension of a context of at most
    /// one token, or a drop's candidate (never of one or two tokens with the table).
    fn looked_up(&self, table: Option<&ContextTable>, w: usize) -> Option<FindResult> {
        let table = table?;
        let start = match &self.drop {
            None if self.i - self.start <= 1 => self.start,
            _ => return None,
        };
        table.find(&self.bytes[start * w..(self.i + 1) * w])
    }

    /// Where a drop's candidate search starts: the range of its first two
    /// tokens from the table (the search then compares the bytes after them),
    /// or `None` (the whole index).
    fn candidate_start(&mut self, table: Option<&ContextTable>, w: usize) -> Option<FindResult> {
        let (table, drop) = (table?, self.drop.as_mut()?);
        if let Some(found) = drop.candidate_start.take() {
            return Some(found);
        }
        table.find(first_two(self.bytes, self.i, drop.candidate(), w)?)
    }

    /// Moves a drop on without a search while the table (a bisecting drop's)
    /// decides its candidate (the first two tokens never occur); ends it once decided.
    fn settle_drop(&mut self, table: Option<&ContextTable>, w: usize, everything: &FindResult) {
        let Some(drop) = &mut self.drop else {
            return;
        };
        let table = table.filter(|_| drop.bisect);
        while !drop.done() {
            let c = drop.candidate();
            let first_two = table.and_then(|t| t.find(first_two(self.bytes, self.i, c, w)?));
            if first_two.as_ref().is_none_or(|f| f.count > 0) {
                drop.candidate_start = first_two;
                break;
            }
            drop.tries += 1;
            drop.fail = c;
        }
        if drop.done() {
            let drop = self.drop.take().expect("a drop in progress");
            self.start = drop.ok;
            self.context = drop.ok_found.unwrap_or_else(|| everything.clone());
            self.occurrences = None;
            self.i += 1;
        }
    }

    /// A drop after the failed extension of the context at position `i`: the
    /// candidates of one and two tokens come from the table when it covers them.
    fn start_drop(&mut self, table: Option<&ContextTable>, w: usize, everything: &FindResult) {
        let i = self.i;
        let mut drop = Backoff::new(self.start, i + 1);
        if let Some(table) = table {
            // The failed context is `tokens[start..=i]`; its suffixes of two and
            // one tokens start at `i - 1` and `i`.
            let short = [i - 1, i].into_iter().filter(|&c| c > self.start);
            let mut decided = true;
            for c in short {
                match table.find(&self.bytes[c * w..(i + 1) * w]) {
                    Some(found) if found.count > 0 => {
                        drop.ok = c;
                        drop.ok_found = Some(found);
                        break;
                    }
                    Some(_) => drop.fail = c,
                    None => {
                        decided = false;
                        break;
                    }
                }
            }
            drop.bisect = decided;
            if !decided {
                drop = Backoff::new(self.start, i + 1);
            }
        }
        self.drop = Some(drop);
        self.settle_drop(table, w, everything);
    }

    /// The bigram whose table slot the pending step reads first (to hint it).
    fn pending_lookup(&self, w: usize) -> Option<&[u8]> {
        let c = match (self.pending, &self.drop) {
            (Pending::StartDrop, _) if self.i > self.start + 1 => self.i - 1,
            (Pending::Settle, Some(drop)) if drop.bisect && !drop.done() => drop.candidate(),
            _ => return None,
        };
        first_two(self.bytes, self.i, c, w)
    }

    /// Does the pending step (see [`Pending`]).
    fn resolve_pending(&mut self, table: Option<&ContextTable>, w: usize, everything: &FindResult) {
        match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Nothing => {}
            Pending::StartDrop => self.start_drop(table, w, everything),
            Pending::Settle => self.settle_drop(table, w, everything),
        }
    }

    /// Takes the result of this round's search: scores position `i` after an
    /// extension, or moves the search for a shorter context on.
    fn take(
        &mut self,
        engine: &Engine,
        found: FindResult,
        everything: &FindResult,
        options: &ScoreOptions,
    ) -> Result<()> {
        let w = engine.token_width().bytes();
        let i = self.i;
        if let Some(drop) = &mut self.drop {
            let tried = drop.candidate();
            drop.tries += 1;
            if found.count > 0 {
                drop.ok = tried;
                drop.ok_found = Some(found);
            } else {
                drop.fail = tried;
            }
            self.pending = Pending::Settle;
            return Ok(());
        }
        // `found`: the context followed by token `i` (the continuation).
        let suffix_len = i - self.start;
        let context_bytes = &self.bytes[self.start * w..i * w];
        let context = &self.context;
        let cont = found;
        self.out.prob.push(cont.count as f64 / context.count as f64);
        self.out.prompt_count.push(context.count);
        self.out.cont_count.push(cont.count);
        let next = &self.bytes[i * w..(i + 1) * w];
        let sparse =
            sparse_from_counts(context, &cont, engine.token_of(next), engine.eos_token_id());
        engine.push_extras(
            &mut self.out,
            context_bytes,
            context,
            suffix_len,
            sparse,
            options,
        )?;
        self.out.suffix_len.push(suffix_len as u32);
        if cont.count > 0 {
            // The continuation's ranks are a part of the context's: so are its positions.
            if let Some(occurrences) = &mut self.occurrences {
                for ((positions, &(lo, _)), &(new_lo, new_hi)) in occurrences
                    .iter_mut()
                    .zip(&self.context.ranges)
                    .zip(&cont.ranges)
                {
                    if new_lo == new_hi {
                        positions.clear();
                    } else {
                        positions.truncate((new_hi - lo) as usize);
                        positions.drain(..(new_lo - lo) as usize);
                    }
                }
            }
            self.context = cont;
            self.i += 1;
        } else if suffix_len == 0 {
            // Not even the token alone occurs: the next context is empty.
            self.start = i + 1;
            self.context = everything.clone();
            self.occurrences = None;
            self.i += 1;
        } else {
            self.pending = Pending::StartDrop;
        }
        Ok(())
    }
}

impl Engine {
    /// The ∞-gram probability of every token of `tokens` given the tokens before
    /// it: entry `i` equals `infgram_prob(&tokens[..i], tokens[i])` (probability,
    /// both counts, suffix length). Long texts run on all cores.
    ///
    /// Every id must be below the vocabulary size (an error names the position).
    pub fn score(&self, tokens: &[u32], options: &ScoreOptions) -> Result<Scores> {
        if let Some(max_support) = options.top_max_support {
            // Zero would never stop doubling the sampling unit.
            crate::engine::check_max_support(max_support)?;
        }
        if self.lockstep_scoring() {
            let mut scores = self.score_many(&[tokens], options).map_err(|(_, e)| e)?;
            return Ok(scores.pop().unwrap_or_default());
        }
        let w = self.token_width().bytes();
        let mut bytes = Vec::with_capacity((tokens.len() + 1) * w);
        let first = if options.doc_start {
            self.token_width()
                .encode_into(&[self.token_width().separator()], &mut bytes);
            1
        } else {
            0
        };
        bytes.extend_from_slice(&self.encode(tokens)?);
        let positions = first + tokens.len();
        if tokens.len() <= CHUNK_TOKENS {
            return self.score_chunk(&bytes, first, options);
        }
        let starts: Vec<usize> = (first..positions).step_by(CHUNK_TOKENS).collect();
        let parts = starts
            .par_iter()
            .map(|&start| {
                let end = (start + CHUNK_TOKENS).min(positions);
                self.score_chunk(&bytes[..end * w], start, options)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut out = Scores::with_capacity(tokens.len(), options);
        for part in parts {
            out.append(part);
        }
        Ok(out)
    }

    /// The ∞-gram next-token distribution after `context` (as
    /// [`Engine::infgram_ntd`]) and whether it has exactly one token (decided
    /// on the exact distribution even when the counts are sampled).
    pub fn infgram_ntd_sparse(
        &self,
        context: &[u32],
        max_support: u64,
    ) -> Result<(NtdResult, bool)> {
        let ntd = self.infgram_ntd(context, max_support)?;
        let w = self.token_width().bytes();
        let suffix = self.encode(&context[context.len() - ntd.suffix_len..])?;
        let found = self.find_bytes(&suffix, &self.full_ranges())?;
        debug_assert_eq!(suffix.len(), ntd.suffix_len * w);
        let sparse = self.single_next_token(&suffix, &found)?;
        Ok((ntd, sparse))
    }

    /// [`Engine::score`] of many texts, on all cores.
    pub fn score_batch(&self, texts: &[Vec<u32>], options: &ScoreOptions) -> Result<Vec<Scores>> {
        let texts: Vec<&[u32]> = texts.iter().map(|t| t.as_slice()).collect();
        self.score_many(&texts, options).map_err(|(_, e)| e)
    }

    /// [`Engine::score`] of many texts, on all cores; an error comes with the
    /// index of the text it concerns. On mapped shards without an accelerator
    /// the texts are cut into pieces that are scored in lockstep (see
    /// [`Engine::score_pieces`]); elsewhere each text is scored by itself.
    pub fn score_many(
        &self,
        texts: &[&[u32]],
        options: &ScoreOptions,
    ) -> std::result::Result<Vec<Scores>, (usize, crate::Error)> {
        if let Some(max_support) = options.top_max_support {
            crate::engine::check_max_support(max_support).map_err(|e| (0, e))?;
        }
        if !self.lockstep_scoring() {
            return texts
                .par_iter()
                .enumerate()
                .map(|(t, text)| self.score(text, options).map_err(|e| (t, e)))
                .collect();
        }
        let w = self.token_width().bytes();
        let first = options.doc_start as usize;
        let encoded = texts
            .par_iter()
            .enumerate()
            .map(|(t, text)| {
                let mut bytes = Vec::with_capacity((text.len() + first) * w);
                if options.doc_start {
                    self.token_width()
                        .encode_into(&[self.token_width().separator()], &mut bytes);
                }
                bytes.extend_from_slice(&self.encode(text).map_err(|e| (t, e))?);
                Ok(bytes)
            })
            .collect::<std::result::Result<Vec<Vec<u8>>, (usize, crate::Error)>>()?;
        let scored: usize = texts.iter().map(|t| t.len()).sum();
        let table = self.context_table(scored as u64).map_err(|e| (0, e))?;
        let threads = rayon::current_num_threads();
        // Pieces of `PIECE_TOKENS`, or shorter when the call has too few tokens to
        // keep `LOCKSTEP_WIDTH` pieces in flight on every thread.
        let piece_tokens =
            (scored / (LOCKSTEP_WIDTH * threads)).clamp(MIN_PIECE_TOKENS, PIECE_TOKENS);
        let mut pieces = Vec::new();
        for (t, bytes) in encoded.iter().enumerate() {
            let positions = bytes.len() / w;
            for from in (first..positions).step_by(piece_tokens) {
                pieces.push(Piece {
                    text: t,
                    from,
                    end: (from + piece_tokens).min(positions),
                });
            }
        }
        // Enough parts for every thread to steal from, each long enough to keep
        // `LOCKSTEP_WIDTH` pieces in flight most of the time; with few pieces, a
        // part a thread (and never parts of none: a call may have no tokens).
        let per_part = pieces
            .len()
            .div_ceil(4 * threads)
            .max((2 * LOCKSTEP_WIDTH).min(pieces.len().div_ceil(threads)))
            .max(1);
        let parts = pieces
            .par_chunks(per_part)
            .map(|part| self.score_pieces(&encoded, part, table, options))
            .collect::<std::result::Result<Vec<Vec<Scores>>, (usize, crate::Error)>>()?;
        let mut out: Vec<Scores> = texts
            .iter()
            .map(|text| Scores::with_capacity(text.len(), options))
            .collect();
        for (piece, scores) in pieces.iter().zip(parts.into_iter().flatten()) {
            out[piece.text].append(scores);
        }
        Ok(out)
    }

    /// Whether texts are scored by [`Engine::score_pieces`]: every shard is
    /// searched in lockstep (mapped, no accelerator) and the index is not empty.
    fn lockstep_scoring(&self) -> bool {
        crate::interleave::lockstep_applies(self) && self.num_tokens() > 0
    }

    /// Scores `pieces` of the encoded texts, [`LOCKSTEP_WIDTH`] at a time in
    /// lockstep: every round, each piece in flight has exactly one search to do
    /// (extending its context by the next token, or one candidate of a shorter
    /// context after a failed extension), and the round runs all of them at once
    /// ([`crate::interleave::find_within_interleaved`]), their cache misses
    /// overlapping. Results in the order of `pieces`.
    fn score_pieces(
        &self,
        texts: &[Vec<u8>],
        pieces: &[Piece],
        table: Option<&ContextTable>,
        options: &ScoreOptions,
    ) -> std::result::Result<Vec<Scores>, (usize, crate::Error)> {
        let w = self.token_width().bytes();
        let full = self.full_ranges();
        let everything = FindResult {
            count: self.num_tokens(),
            ranges: full.clone(),
        };
        let mut done: Vec<Option<Scores>> = pieces.iter().map(|_| None).collect();
        let mut active: Vec<Pass> = Vec::with_capacity(LOCKSTEP_WIDTH);
        let mut waiting = pieces.iter().enumerate();
        let shards = self.shards();
        // Lockstep scoring runs on mapped shards only.
        let texts_of_shards = shards
            .iter()
            .map(|shard| shard.tokenized_file().local_bytes())
            .collect::<Result<Vec<&[u8]>>>()
            .map_err(|e| (pieces.first().map_or(0, |p| p.text), e))?;
        loop {
            let joining: Vec<(usize, &Piece)> = waiting
                .by_ref()
                .take(LOCKSTEP_WIDTH - active.len())
                .collect();
            if let Some(&(_, first)) = joining.first() {
                // The context of each joining piece's first position: the longest
                // occurring suffix of the text before it, their searches in lockstep
                // (a piece starting its text needs none).
                let before: Vec<&[u8]> = joining
                    .iter()
                    .map(|(_, piece)| &texts[piece.text][..piece.from * w])
                    .collect();
                let contexts = self
                    .longest_occurring_suffixes(&before, |queries| {
                        crate::interleave::find_many(self, queries)
                    })
                    .map_err(|e| (first.text, e))?;
                for ((p, piece), (suffix_len, context)) in joining.into_iter().zip(contexts) {
                    active.push(Pass {
                        piece: p,
                        text: piece.text,
                        bytes: &texts[piece.text][..piece.end * w],
                        i: piece.from,
                        start: piece.from - suffix_len,
                        context,
                        occurrences: None,
                        drop: None,
                        pending: Pending::Nothing,
                        out: Scores::with_capacity(piece.end - piece.from, options),
                    });
                }
            }
            if active.is_empty() {
                break;
            }
            // Contexts of one or two tokens come from the table, when it covers them.
            let direct: Vec<Option<FindResult>> =
                active.iter().map(|pass| pass.looked_up(table, w)).collect();
            // A drop's candidate searches inside the range of its first two tokens.
            let narrowed: Vec<Option<FindResult>> = active
                .iter_mut()
                .map(|pass| pass.candidate_start(table, w))
                .collect();
            // Small contexts extend from their occurrences' positions: read them
            // once, and hint the token after each (this round's misses overlap).
            for (pass, direct) in active.iter_mut().zip(&direct) {
                if direct.is_some()
                    || pass.drop.is_some()
                    || pass.context.count > CACHED_OCCURRENCES
                {
                    continue;
                }
                if pass.occurrences.is_none() {
                    let positions = shards
                        .iter()
                        .zip(&pass.context.ranges)
                        .map(|(shard, &(lo, hi))| shard.ptrs_in(lo, hi))
                        .collect::<Result<Vec<_>>>()
                        .map_err(|e| (pass.text, e))?;
                    pass.occurrences = Some(positions);
                }
                let skip = (pass.i - pass.start) * w;
                for (text, positions) in texts_of_shards
                    .iter()
                    .zip(pass.occurrences.iter().flatten())
                {
                    for &ptr in positions {
                        crate::interleave::prefetch(text, ptr as usize + skip);
                    }
                }
            }
            // This round's search of every other pass: (query, per-shard ranges, skip).
            let searches: Vec<Option<RoundSearch>> = active
                .iter()
                .zip(&direct)
                .zip(&narrowed)
                .map(|((pass, direct), narrowed)| {
                    let end = (pass.i + 1) * w;
                    match &pass.drop {
                        _ if direct.is_some() => None,
                        None if pass.context.count <= CACHED_OCCURRENCES => None,
                        None => Some((
                            &pass.bytes[pass.start * w..end],
                            &pass.context.ranges[..],
                            (pass.i - pass.start) * w,
                        )),
                        Some(drop) => {
                            let query = &pass.bytes[drop.candidate() * w..end];
                            Some(match narrowed {
                                Some(first_two) => (query, &first_two.ranges[..], 2 * w),
                                None => (query, &full[..], 0),
                            })
                        }
                    }
                })
                .collect();
            let mut found: Vec<FindResult> = active
                .iter()
                .zip(&searches)
                .zip(direct)
                .map(|((pass, search), direct)| match (search, direct) {
                    (_, Some(direct)) => direct,
                    (Some(_), None) => FindResult {
                        count: 0,
                        ranges: ShardRanges::with_capacity(shards.len()),
                    },
                    (None, None) => pass.extend_from_occurrences(&texts_of_shards, w),
                })
                .collect();
            for (k, shard) in shards.iter().enumerate() {
                let mut ids = Vec::with_capacity(searches.len());
                let mut within = Vec::with_capacity(searches.len());
                for (j, search) in searches.iter().enumerate() {
                    let Some((query, ranges, skip)) = *search else {
                        continue;
                    };
                    let range = ranges[k];
                    if range.0 < range.1 {
                        ids.push(j);
                        within.push(crate::interleave::Within {
                            query,
                            within: range,
                            skip,
                        });
                    }
                }
                let mut results = crate::interleave::find_within_interleaved(shard, &within)
                    .into_iter()
                    .zip(&ids)
                    .peekable();
                for (j, f) in found.iter_mut().enumerate() {
                    let Some((_, ranges, _)) = searches[j] else {
                        continue;
                    };
                    let range = match results.next_if(|(_, &id)| id == j) {
                        Some((range, _)) => range.map_err(|e| (active[j].text, e))?,
                        None => (ranges[k].0, ranges[k].0),
                    };
                    f.count += range.1 - range.0;
                    f.ranges.push(range);
                }
            }
            for (pass, result) in active.iter_mut().zip(found) {
                pass.take(self, result, &everything, options)
                    .map_err(|e| (pass.text, e))?;
            }
            if let Some(table) = table {
                for pass in &active {
                    if let Some(bigram) = pass.pending_lookup(w) {
                        table.prefetch(bigram);
                    }
                }
            }
            for pass in active.iter_mut() {
                pass.resolve_pending(table, w, &everything);
            }
            let mut j = 0;
            while j < active.len() {
                if active[j].i * w == active[j].bytes.len() {
                    let pass = active.swap_remove(j);
                    done[pass.piece] = Some(pass.out);
                } else {
                    j += 1;
                }
            }
        }
        Ok(done.into_iter().map(|d| d.unwrap_or_default()).collect())
    }

    /// Scores token positions `from..` of the encoded tokens `bytes`.
    fn score_chunk(&self, bytes: &[u8], from: usize, options: &ScoreOptions) -> Result<Scores> {
        let w = self.token_width().bytes();
        let positions = bytes.len() / w;
        let full = self.full_ranges();
        let everything = FindResult {
            count: self.num_tokens(),
            ranges: full.clone(),
        };
        // The context of position `from`: its longest occurring suffix.
        let (suffix_len, mut context) = if from == 0 {
            (0, everything.clone())
        } else {
            self.longest_occurring_suffix(&bytes[..from * w])?
        };
        let mut start = from - suffix_len;
        // Speculative searches only where they overlap (see `interleave::find_many`).
        let drop_candidates = if crate::interleave::lockstep_applies(self) {
            DROP_CANDIDATES
        } else {
            1
        };
        let mut out = Scores::with_capacity(positions - from, options);
        for i in from..positions {
            let suffix_len = i - start;
            let context_bytes = &bytes[start * w..i * w];
            if context.count == 0 {
                // Only an empty index: not even the empty context occurs.
                out.prob.push(-1.0);
                out.prompt_count.push(0);
                out.cont_count.push(0);
            } else {
                // The continuation's occurrences lie inside the context's range,
                // where only the next token's bytes differ.
                let cont = if context.count <= SHORT_RANGE {
                    self.extend(&context, suffix_len * w, &bytes[i * w..(i + 1) * w])?
                } else {
                    // Large ranges profit more from the sampled keys in RAM.
                    self.find_bytes(&bytes[start * w..(i + 1) * w], &context.ranges)?
                };
                out.prob.push(cont.count as f64 / context.count as f64);
                out.prompt_count.push(context.count);
                out.cont_count.push(cont.count);
                let next = &bytes[i * w..(i + 1) * w];
                let sparse =
                    sparse_from_counts(&context, &cont, self.token_of(next), self.eos_token_id());
                if cont.count > 0 {
                    self.push_extras(
                        &mut out,
                        context_bytes,
                        &context,
                        suffix_len,
                        sparse,
                        options,
                    )?;
                    out.suffix_len.push(suffix_len as u32);
                    context = cont;
                    continue;
                }
            }
            self.push_extras(&mut out, context_bytes, &context, suffix_len, None, options)?;
            out.suffix_len.push(suffix_len as u32);
            // The extended context never occurs: drop tokens from its left until it
            // does. The next few candidates are searched at once, their misses
            // overlapping (a drop takes 2.4 searches on average on held-out text);
            // the longest that occurs wins, as one by one.
            loop {
                let first = start + 1;
                if first > i {
                    start = first;
                    context = everything.clone();
                    break;
                }
                let last = (first + drop_candidates - 1).min(i);
                let candidates: Vec<&[u8]> =
                    (first..=last).map(|s| &bytes[s * w..(i + 1) * w]).collect();
                let found = if candidates.len() == 1 {
                    vec![self.find_bytes(candidates[0], &full)?]
                } else {
                    crate::interleave::find_many(self, &candidates)?
                };
                if let Some((k, found)) = found.into_iter().enumerate().find(|(_, f)| f.count > 0) {
                    start = first + k;
                    context = found;
                    break;
                }
                start = last;
            }
        }
        Ok(out)
    }

    /// Where the context found at `context` (`skip_bytes` long) occurs followed
    /// by the token `next` (its bytes).
    fn extend(&self, context: &FindResult, skip_bytes: usize, next: &[u8]) -> Result<FindResult> {
        let ranges = self
            .shards()
            .iter()
            .zip(&context.ranges)
            .map(|(shard, &range)| {
                if range.0 == range.1 {
                    Ok(range)
                } else {
                    shard.find_next(range, skip_bytes, next)
                }
            })
            .collect::<Result<ShardRanges>>()?;
        let count = ranges.iter().map(|(lo, hi)| hi - lo).sum();
        Ok(FindResult { count, ranges })
    }

    /// The longest suffix of the encoded tokens `bytes` that occurs, in tokens,
    /// and where (see [`Engine::longest_occurring_suffixes`]).
    fn longest_occurring_suffix(&self, bytes: &[u8]) -> Result<(usize, FindResult)> {
        let full = self.full_ranges();
        let find = |queries: &[&[u8]]| {
            queries
                .iter()
                .map(|q| self.find_bytes(q, &full))
                .collect::<Result<Vec<_>>>()
        };
        let mut found = self.longest_occurring_suffixes(&[bytes], find)?;
        Ok(found.pop().expect("one text, one suffix"))
    }

    /// The longest suffix of each of the encoded texts `texts` that occurs, in
    /// tokens, and where: counts shrink as a suffix grows, so doubling then
    /// bisection finds it in O(log length) searches. Every round searches one
    /// length of every text still searching with one call of `find` (which
    /// answers where each query occurs over the whole index), so that a caller
    /// can step the texts' searches in lockstep.
    fn longest_occurring_suffixes(
        &self,
        texts: &[&[u8]],
        find: impl Fn(&[&[u8]]) -> Result<Vec<FindResult>>,
    ) -> Result<Vec<(usize, FindResult)>> {
        let w = self.token_width().bytes();
        let everything = FindResult {
            count: self.num_tokens(),
            ranges: self.full_ranges(),
        };
        let mut searches: Vec<SuffixSearch> = texts
            .iter()
            .map(|t| SuffixSearch::new(t.len() / w, everything.clone()))
            .collect();
        loop {
            let tried: Vec<(usize, usize)> = searches
                .iter()
                .enumerate()
                .filter_map(|(k, s)| Some((k, s.next_len()?)))
                .collect();
            if tried.is_empty() {
                break;
            }
            let queries: Vec<&[u8]> = tried
                .iter()
                .map(|&(k, n)| &texts[k][texts[k].len() - n * w..])
                .collect();
            for (&(k, n), found) in tried.iter().zip(find(&queries)?) {
                searches[k].take(n, found);
            }
        }
        Ok(searches.into_iter().map(|s| s.best).collect())
    }

    fn push_extras(
        &self,
        out: &mut Scores,
        context_bytes: &[u8],
        context: &FindResult,
        suffix_len: usize,
        known_sparse: Option<bool>,
        options: &ScoreOptions,
    ) -> Result<()> {
        if options.sparse {
            let sparse = match known_sparse {
                Some(sparse) => sparse,
                None => self.single_next_token(context_bytes, context)?,
            };
            out.sparse.push(sparse);
        }
        if let Some(max_support) = options.top_max_support {
            let ntd = self.ntd_from(context_bytes.len(), context, max_support, suffix_len)?;
            // First maximum by id order: the smallest id wins ties.
            let top =
                ntd.counts
                    .iter()
                    .fold(None, |best: Option<(u32, u64)>, &(t, c)| match best {
                        Some((_, bc)) if bc >= c => best,
                        _ => Some((t, c)),
                    });
            match top {
                Some((token, count)) => {
                    out.top_token.push(token);
                    out.top_prob.push(count as f64 / ntd.prompt_count as f64);
                }
                None => {
                    out.top_token.push(u32::MAX);
                    out.top_prob.push(0.0);
                }
            }
            out.top_approx.push(ntd.approx);
        }
        Ok(())
    }

    /// The token id of one encoded token.
    fn token_of(&self, bytes: &[u8]) -> u32 {
        bytes.iter().rev().fold(0u32, |id, &b| (id << 8) | b as u32)
    }

    /// Whether every occurrence of the context (bytes `context_bytes`, found at
    /// `context`) is followed by the same token, as `ntd` reports tokens: the
    /// separator and the end of a shard both count as `eos_token_id`.
    ///
    /// Suffixes in a range are sorted by what follows the context, so the first
    /// and last ranks' next values bound all the others: equal values mean one
    /// token. They can differ and still both be eos (the end of the shard sorts
    /// first, the separator last, a real eos token in between); then the range
    /// is one token only if it holds nothing but those, which two narrowing
    /// searches count.
    pub fn single_next_token(&self, context_bytes: &[u8], context: &FindResult) -> Result<bool> {
        let width = self.token_width();
        let separator = width.separator() as u64;
        let eos = self.eos_token_id();
        let as_token = |value: u64| {
            if value == END_OF_SHARD || value == separator {
                eos
            } else {
                value as u32
            }
        };
        let mut only: Option<u32> = None;
        for (shard, &(lo, hi)) in self.shards().iter().zip(&context.ranges) {
            if lo == hi {
                continue;
            }
            let skip = context_bytes.len();
            let first = shard.stored_after(lo, skip)?;
            let last = shard.stored_after(hi - 1, skip)?;
            let token = as_token(first);
            if as_token(last) != token || only.is_some_and(|t| t != token) {
                return Ok(false);
            }
            only = Some(token);
            if first != last
                && !self.all_eos(shard, context_bytes, (lo, hi), first == END_OF_SHARD)?
            {
                return Ok(false);
            }
        }
        Ok(only.is_some())
    }

    /// Whether every rank of `range` continues with a value reported as eos.
    fn all_eos(
        &self,
        shard: &crate::shard::Shard,
        context_bytes: &[u8],
        (lo, hi): RankRange,
        starts_at_shard_end: bool,
    ) -> Result<bool> {
        let width = self.token_width();
        let count_followed_by = |value: u32| -> Result<u64> {
            let mut query = context_bytes.to_vec();
            width.encode_into(&[value], &mut query);
            let (a, b) = shard.find(&query, (lo, hi))?;
            Ok(b - a)
        };
        let mut eos_like = starts_at_shard_end as u64 + count_followed_by(width.separator())?;
        let eos = self.eos_token_id();
        if eos != width.separator() {
            eos_like += count_followed_by(eos)?;
        }
        Ok(eos_like == hi - lo)
    }
}
