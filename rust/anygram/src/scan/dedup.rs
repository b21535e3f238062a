//! Exact-substring deduplication (as Lee et al. 2022, "Deduplicating Training
//! Data Makes Language Models Better"), self and cross-corpus.
//!
//! **What is removed.** A *window* is `min_len` consecutive tokens inside one
//! document (never touching a separator). Corpus order is shard by shard, then
//! by position in the shard's token stream (documents in index order). Then:
//!
//! * **self**: a window is removed when the same tokens occur at an *earlier*
//!   position of the corpus (the earlier copy may overlap it). Every repeated
//!   span of at least `min_len` tokens is made of such windows, so all its copies
//!   but the first go; the first is kept whole unless it overlaps a copy of
//!   itself (in `a a a a` with `min_len` 2, windows 1 and 2 repeat window 0 and
//!   only the first `a` stays).
//! * **cross** (`against` another index): a window is removed when its tokens
//!   occur anywhere in the other index.
//!
//! The removed ranges of a document are the union of its removed windows.
//!
//! **How.** Self: windows with the same tokens are neighbours in the suffix
//! array, exactly the runs of ranks whose longest common prefix with the
//! previous suffix is at least `min_len` tokens. One pass over the suffix array
//! compares each suffix's first `min_len` tokens with its predecessor's (the LCP
//! array thresholded at `min_len`, computed on the fly: no `4n`-byte LCP or
//! inverse suffix array is held), and in every run keeps the smallest position
//! and marks the others in a bitmap of one bit per token. Runs are cut into
//! chunks of ranks processed on all cores. With several shards the suffix arrays
//! are merged by their first `min_len` tokens (a heap over the shards, in parallel
//! parts of the key space), so equal windows of every shard are neighbours too.
//! The same pass runs on one key range of windows ([`Engine::dedup_self_part`]):
//! a range of ranks in every shard, holding whole runs, so parts cut at
//! [`Engine::dedup_self_split_keys`] run apart (a Ray task each) and their
//! ranges united per document are the whole answer.
//! Cross dedup merges the suffix arrays of both indexes the same way
//! ([`Engine::dedup_against_all`]); between indexes of different token widths,
//! matching statistics of each document against the other index
//! ([`Engine::dedup_against`]).
//!
//! **Memory.** Self: one bit per token of the index (410M tokens: 51 MB) plus
//! the removed ranges (16 bytes each); with several shards also the members of
//! the run being merged (16 bytes per copy of a window) per thread. The index is
//! read through the page cache. Cross: one document's tokens and matching
//! statistics per thread.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::TokenWidth;
use crate::scan::matching::{covered_ranges, matching_statistics_in};
use crate::scan::ScanControl;
use crate::shard::Shard;

/// Suffix-array ranks per parallel work item of the self-dedup pass.
pub const DEDUP_CHUNK_RANKS: u64 = 1 << 18;

/// The most key parts [`Engine::dedup_self_split_keys`] cuts self dedup into.
pub const MAX_DEDUP_PARTS: u64 = 1 << 16;

/// Windows sampled per part and shard to place the split keys.
const SAMPLES_PER_PART: u64 = 32;

/// The removed ranges of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRanges {
    /// Global document index.
    pub doc_ix: u64,
    /// Tokens in the document.
    pub doc_len: u64,
    /// Maximal removed ranges `[start, end)` of token offsets in the document,
    /// in order, disjoint and not touching.
    pub ranges: Vec<(u64, u64)>,
}

/// One bit per token position, set from many threads.
struct Bitmap(Vec<AtomicU64>);

impl Bitmap {
    fn new(bits: u64) -> Bitmap {
        Bitmap((0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
    }
    #[inline]
    fn set(&self, bit: u64) {
        self.0[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
    }
    #[inline]
    fn word(&self, index: u64) -> u64 {
        self.0[index as usize].load(Ordering::Relaxed)
    }
}

/// Bytes of a window of `min_len` tokens of `w` bytes. A window longer than
/// memory can hold fits in no document, so saturating is the exact answer.
fn window_bytes(min_len: u64, w: u64) -> usize {
    usize::try_from(min_len.saturating_mul(w)).unwrap_or(usize::MAX)
}

fn check_min_len(min_len: u64) -> Result<()> {
    if min_len == 0 {
        return Err(Error::InvalidArgument(
            "min_len must be at least 1 token".into(),
        ));
    }
    Ok(())
}

impl Engine {
    fn shard_arg(&self, shard: usize) -> Result<&Shard> {
        self.shards().get(shard).map(|s| s.as_ref()).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "shard {shard} is out of range [0, {})",
                self.shards().len()
            ))
        })
    }

    fn first_doc_of(&self, shard: usize) -> u64 {
        self.shards()[..shard]
            .iter()
            .map(|s| s.num_documents())
            .sum()
    }

    /// Units of progress [`Engine::dedup_self`] reports: one per token
    /// position of the index.
    pub fn dedup_self_work(&self) -> u64 {
        self.num_tokens()
    }

    /// Self dedup of the whole index (see the module docs): the removed ranges
    /// of every document that loses at least one token, in document order.
    /// The one part of the key space that holds every window
    /// ([`Engine::dedup_self_part`] with no bounds).
    pub fn dedup_self(&self, min_len: u64, control: &ScanControl) -> Result<Vec<DocRanges>> {
        self.dedup_self_part(min_len, None, None, control)
    }

    /// At most `parts - 1` increasing window keys that cut the windows of
    /// `min_len` tokens into `parts` key ranges of similar sizes (fewer when a
    /// window repeats so often that two cuts would fall on it): part `j` is
    /// `[keys[j-1], keys[j])`, the first and last open-ended. The keys are
    /// windows sampled evenly from every shard's suffix array (raw text bytes,
    /// the order the suffix arrays are sorted by).
    pub fn dedup_self_split_keys(&self, min_len: u64, parts: u64) -> Result<Vec<Vec<u8>>> {
        check_min_len(min_len)?;
        if !(1..=MAX_DEDUP_PARTS).contains(&parts) {
            return Err(Error::InvalidArgument(format!(
                "parts must be in [1, {MAX_DEDUP_PARTS}], not {parts}"
            )));
        }
        let windows = self.windows(min_len)?;
        // Each sample stands for the ranks up to the next one of its shard.
        let mut samples: Vec<(&[u8], u64)> = Vec::new();
        for (s, shard) in self.shards().iter().enumerate() {
            let n = shard.num_tokens();
            let count = n.min(parts.saturating_mul(SAMPLES_PER_PART));
            let rank_of = |i: u64| (u128::from(i) * u128::from(n) / u128::from(count)) as u64;
            for i in 0..count {
                let key = windows.key(s, shard.ptr_at(rank_of(i))?);
                samples.push((key, rank_of(i + 1) - rank_of(i)));
            }
        }
        samples.sort_unstable();
        // Cut `j` falls at the first sample with `j / parts` of all suffixes
        // before it (each key once: a repeated one would cut an empty part).
        let total = u128::from(self.num_tokens());
        let target = |cut: u64| (total * u128::from(cut) / u128::from(parts)) as u64;
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let (mut before, mut cut) = (0u64, 1u64);
        for (key, weight) in samples {
            if cut < parts
                && before > 0
                && before >= target(cut)
                && keys.last().map(Vec::as_slice) != Some(key)
            {
                keys.push(key.to_vec());
                while cut < parts && before >= target(cut) {
                    cut += 1;
                }
            }
            before += weight;
        }
        Ok(keys)
    }

    /// Units of progress [`Engine::dedup_self_part`] reports: the suffixes of
    /// every shard whose window lies in `[lo, hi)`.
    pub fn dedup_self_part_work(
        &self,
        min_len: u64,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) -> Result<u64> {
        check_min_len(min_len)?;
        let windows = self.windows(min_len)?;
        Ok(self
            .part_ranks(&windows, lo, hi)?
            .iter()
            .map(|r| r.end - r.start)
            .sum())
    }

    /// Self dedup of the windows whose keys (their first `min_len` tokens as
    /// bytes) lie in `[lo, hi)` (`None`: unbounded): the removed ranges of the
    /// windows of that part that repeat an earlier position of the corpus. A
    /// run of equal windows lies wholly in one part, so the ranges of the parts
    /// of [`Engine::dedup_self_split_keys`] (or any increasing keys), united per
    /// document, are [`Engine::dedup_self`]'s. In every shard the part is one
    /// range of suffix-array ranks, found by binary search.
    pub fn dedup_self_part(
        &self,
        min_len: u64,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        control: &ScanControl,
    ) -> Result<Vec<DocRanges>> {
        check_min_len(min_len)?;
        let windows = self.windows(min_len)?;
        let ranks = self.part_ranks(&windows, lo, hi)?;
        let marks: Vec<Bitmap> = self
            .shards()
            .iter()
            .map(|s| Bitmap::new(s.num_tokens()))
            .collect();
        if let [shard] = self.shards() {
            self.mark_repeats_in_shard(shard, &windows, ranks[0].clone(), &marks[0], control)?;
        } else {
            let shards: Vec<&Shard> = self.shards().iter().map(|s| s.as_ref()).collect();
            let w = self.token_width().bytes() as u64;
            // Equal windows of every shard are neighbours in the merged suffix
            // arrays; in each run the smallest (shard, position) is kept.
            window_runs(&shards, &windows, ranks, control, |run| {
                let keep = *run.iter().min().expect("a run has members");
                for &(s, ptr) in run.iter().filter(|&&m| m != keep) {
                    marks[s].set(ptr / w);
                }
            })?;
        }
        let mut out = Vec::new();
        for (shard, marks) in marks.iter().enumerate() {
            out.extend(self.ranges_from_marks(shard, min_len, marks)?);
        }
        Ok(out)
    }

    /// The windows of `min_len` tokens of every shard (local files only: scans
    /// read whole token streams).
    fn windows(&self, min_len: u64) -> Result<Windows<'_>> {
        let streams: Vec<&Shard> = self.shards().iter().map(|s| s.as_ref()).collect();
        Windows::new(&streams, self.token_width(), min_len)
    }

    /// Per shard, the ranks whose windows lie in `[lo, hi)`; keys are checked
    /// here (whole tokens, `lo` not after `hi`).
    fn part_ranks(
        &self,
        windows: &Windows<'_>,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) -> Result<Vec<Range<u64>>> {
        let w = windows.width.bytes();
        for (name, key) in [("lo", lo), ("hi", hi)] {
            if let Some(key) = key {
                if key.len() % w != 0 {
                    return Err(Error::InvalidArgument(format!(
                        "{name} must be whole tokens of {w} bytes, not {} bytes",
                        key.len()
                    )));
                }
            }
        }
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if lo > hi {
                return Err(Error::InvalidArgument(
                    "lo must not sort after hi (byte order of the index's tokens)".into(),
                ));
            }
        }
        self.shards()
            .iter()
            .enumerate()
            .map(|(s, shard)| {
                let all = 0..shard.num_tokens();
                let start = match lo {
                    Some(key) => windows.lower_bound(s, shard, key, all.clone())?,
                    None => all.start,
                };
                let end = match hi {
                    Some(key) => windows.lower_bound(s, shard, key, start..all.end)?,
                    None => all.end,
                };
                Ok(start..end)
            })
            .collect()
    }

    /// Marks every window start of `s` in `ranks` whose window occurs at a
    /// smaller position of `s`: one pass over those ranks in parallel chunks.
    /// `ranks` is a key range, so no run of equal windows crosses its ends.
    fn mark_repeats_in_shard(
        &self,
        s: &Shard,
        windows: &Windows<'_>,
        ranks: Range<u64>,
        marks: &Bitmap,
        control: &ScanControl,
    ) -> Result<()> {
        let w = windows.width.bytes() as u64;
        // The thresholded LCP: do the suffixes at `a` and `b` share their first
        // `min_len` tokens?
        let same = |a: u64, b: u64| -> bool {
            let (x, y) = (windows.key(0, a), windows.key(0, b));
            x.len() == windows.span && x == y
        };
        let (first_rank, n) = (ranks.start, ranks.end);
        ((first_rank / DEDUP_CHUNK_RANKS)..n.div_ceil(DEDUP_CHUNK_RANKS))
            .into_par_iter()
            .try_for_each(|chunk| -> Result<()> {
                control.check()?;
                let lo = first_rank.max(chunk * DEDUP_CHUNK_RANKS);
                let hi = n.min((chunk + 1) * DEDUP_CHUNK_RANKS);
                // A run that began in the previous chunk belongs to it.
                let mut rank = lo;
                if rank > first_rank {
                    let mut prev = s.ptr_at(rank - 1)?;
                    while rank < n {
                        let ptr = s.ptr_at(rank)?;
                        if !same(prev, ptr) {
                            break;
                        }
                        prev = ptr;
                        rank += 1;
                    }
                }
                while rank < hi {
                    let first = s.ptr_at(rank)?;
                    let (mut end, mut last, mut keep) = (rank + 1, first, first);
                    while end < n {
                        let ptr = s.ptr_at(end)?;
                        if !same(last, ptr) {
                            break;
                        }
                        keep = keep.min(ptr);
                        last = ptr;
                        end += 1;
                    }
                    if end - rank >= 2 && windows.inside_document(windows.key(0, first)) {
                        // Second pass over the run instead of holding it: O(1) memory
                        // even for a window repeated millions of times.
                        for r in rank..end {
                            let ptr = s.ptr_at(r)?;
                            if ptr != keep {
                                marks.set(ptr / w);
                            }
                        }
                    }
                    rank = end;
                }
                control.add(hi - lo);
                Ok(())
            })
    }

    /// The union of the marked windows, per document.
    fn ranges_from_marks(
        &self,
        shard: usize,
        min_len: u64,
        marks: &Bitmap,
    ) -> Result<Vec<DocRanges>> {
        let s = &self.shards()[shard];
        let w = self.token_width().bytes() as u64;
        let first_doc = self.first_doc_of(shard);
        let per_doc: Vec<Option<DocRanges>> = (0..s.num_documents())
            .into_par_iter()
            .map(|local| -> Result<Option<DocRanges>> {
                let (first_byte, end_byte) = s.document_tokens_span(local)?;
                let (first_token, end_token) = (first_byte / w, end_byte / w);
                let mut ranges: Vec<(u64, u64)> = Vec::new();
                let mut t = first_token;
                while t < end_token {
                    let word = marks.word(t / 64) >> (t % 64);
                    if word == 0 {
                        t = (t / 64 + 1) * 64; // no mark in the rest of this word
                        continue;
                    }
                    t += word.trailing_zeros() as u64;
                    if t >= end_token {
                        break;
                    }
                    let (start, end) = (
                        t - first_token,
                        t.saturating_add(min_len).min(end_token) - first_token,
                    );
                    match ranges.last_mut() {
                        Some(last) if start <= last.1 => last.1 = last.1.max(end),
                        _ => ranges.push((start, end)),
                    }
                    t += 1;
                }
                Ok((!ranges.is_empty()).then(|| DocRanges {
                    doc_ix: first_doc + local,
                    doc_len: end_token - first_token,
                    ranges,
                }))
            })
            .collect::<Result<_>>()?;
        Ok(per_doc.into_iter().flatten().collect())
    }

    /// Units of progress [`Engine::dedup_against_all`] reports: the token
    /// positions of both indexes.
    pub fn dedup_against_work(&self, other: &Engine) -> u64 {
        self.num_tokens() + other.num_tokens()
    }

    /// Cross dedup of the whole index against `other` (same token width): the
    /// suffix arrays of both merged by their first `min_len` tokens, every run
    /// of equal windows that holds a window of `other` marking the windows of
    /// this index in it. One linear pass over both indexes, where
    /// [`Engine::dedup_against`] searches `other` for every token.
    pub fn dedup_against_all(
        &self,
        other: &Engine,
        min_len: u64,
        control: &ScanControl,
    ) -> Result<Vec<DocRanges>> {
        check_min_len(min_len)?;
        if other.token_width() != self.token_width() {
            return Err(Error::InvalidArgument(format!(
                "the merged cross dedup needs the same token width in both indexes ({} and {} bytes); use dedup_against",
                self.token_width().bytes(),
                other.token_width().bytes()
            )));
        }
        let mine = self.shards().len();
        let streams: Vec<&Shard> = self
            .shards()
            .iter()
            .chain(other.shards())
            .map(|s| s.as_ref())
            .collect();
        let marks: Vec<Bitmap> = self
            .shards()
            .iter()
            .map(|s| Bitmap::new(s.num_tokens()))
            .collect();
        let w = self.token_width().bytes() as u64;
        let windows = Windows::new(&streams, self.token_width(), min_len)?;
        let ranks = streams.iter().map(|s| 0..s.num_tokens()).collect();
        window_runs(&streams, &windows, ranks, control, |run| {
            if run.iter().any(|&(s, _)| s >= mine) {
                for &(s, ptr) in run.iter().filter(|&&(s, _)| s < mine) {
                    marks[s].set(ptr / w);
                }
            }
        })?;
        let mut out = Vec::new();
        for (shard, marks) in marks.iter().enumerate() {
            out.extend(self.ranges_from_marks(shard, min_len, marks)?);
        }
        Ok(out)
    }

    /// Cross dedup of documents `docs` (local indexes) of shard `shard` against
    /// `other`: the removed ranges of every one of them that loses a token.
    /// Tokens the other index cannot hold (its separator value or above) only
    /// end matches. `control` counts tokens (separators included).
    pub fn dedup_against(
        &self,
        other: &Engine,
        shard: usize,
        docs: Range<u64>,
        min_len: u64,
        control: &ScanControl,
    ) -> Result<Vec<DocRanges>> {
        check_min_len(min_len)?;
        let s = self.shard_arg(shard)?;
        if docs.end > s.num_documents() || docs.start > docs.end {
            return Err(Error::InvalidArgument(format!(
                "documents {docs:?} are out of range [0, {}) of shard {shard}",
                s.num_documents()
            )));
        }
        let first_doc = self.first_doc_of(shard);
        let per_doc: Vec<Option<DocRanges>> = docs
            .into_par_iter()
            .map(|local| -> Result<Option<DocRanges>> {
                control.check()?;
                let (start, end) = s.document_tokens_span(local)?;
                let tokens = s.tokens_between(start, end)?;
                let ms = matching_statistics_in(other.shards(), other.token_width(), &tokens)?;
                control.add(tokens.len() as u64 + 1);
                let ranges = covered_ranges(&ms, min_len);
                Ok((!ranges.is_empty()).then(|| DocRanges {
                    doc_ix: first_doc + local,
                    doc_len: tokens.len() as u64,
                    ranges,
                }))
            })
            .collect::<Result<_>>()?;
        Ok(per_doc.into_iter().flatten().collect())
    }
}

/// The windows of `min_len` tokens of some shards (streams): each suffix's
/// first `min_len` tokens as raw bytes, shorter at the end of a stream. Every
/// suffix array is sorted by its windows (raw bytes, the end of a stream
/// first), so a key range of windows is a range of ranks in each.
struct Windows<'a> {
    texts: Vec<&'a [u8]>,
    width: TokenWidth,
    /// Bytes of a whole window.
    span: usize,
}

impl<'a> Windows<'a> {
    fn new(streams: &[&'a Shard], width: TokenWidth, min_len: u64) -> Result<Windows<'a>> {
        Ok(Windows {
            // Scans read whole token streams: local files only.
            texts: streams
                .iter()
                .map(|s| s.tokenized())
                .collect::<Result<_>>()?,
            width,
            span: window_bytes(min_len, width.bytes() as u64),
        })
    }

    /// The window at byte `ptr` of stream `s`.
    #[inline]
    fn key(&self, s: usize, ptr: u64) -> &'a [u8] {
        let text = self.texts[s];
        let p = usize::try_from(ptr).unwrap_or(usize::MAX).min(text.len());
        &text[p..text.len().min(p.saturating_add(self.span))]
    }

    /// A whole window, without a document separator: the only kind removed.
    fn inside_document(&self, key: &[u8]) -> bool {
        key.len() == self.span
            && key
                .chunks_exact(self.width.bytes())
                .all(|t| self.width.read_token(t) != self.width.separator())
    }

    /// The first rank of `ranks` in stream `s` whose window is not below `key`
    /// (`ranks.end` when none).
    fn lower_bound(&self, s: usize, shard: &Shard, key: &[u8], ranks: Range<u64>) -> Result<u64> {
        let (mut lo, mut hi) = (ranks.start, ranks.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(s, shard.ptr_at(mid)?) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

/// Calls `on_run` with the `(stream, ptr)` of every member of every run of at
/// least two equal windows inside documents, over the ranks `ranks[s]` of the
/// suffix arrays of `streams` merged by their windows. The rank ranges must be
/// one key range in every stream (all ranks, or a part of
/// [`Engine::dedup_self_part`]) so that no run is cut.
///
/// A heap over the streams yields their windows in order, so equal windows
/// come together. The key range is cut into pieces at windows sampled every
/// [`DEDUP_CHUNK_RANKS`] ranks of the largest stream (each piece's bounds
/// found in every stream by binary search; a run never straddles a cut, since
/// all its members compare alike with the pivot), and the pieces are merged on
/// all cores. Memory: the members of the current run per thread.
fn window_runs(
    streams: &[&Shard],
    windows: &Windows<'_>,
    ranks: Vec<Range<u64>>,
    control: &ScanControl,
    on_run: impl Fn(&[(usize, u64)]) + Sync,
) -> Result<()> {
    let largest = (0..streams.len())
        .max_by_key(|&s| ranks[s].end - ranks[s].start)
        .unwrap_or(0);
    let mut bounds: Vec<Vec<u64>> = vec![ranks.iter().map(|r| r.start).collect()];
    let mut rank = ranks[largest].start + DEDUP_CHUNK_RANKS;
    while rank < ranks[largest].end {
        let pivot = windows.key(largest, streams[largest].ptr_at(rank)?);
        let previous = bounds.last().expect("bounds start with the first ranks");
        let cut = (0..streams.len())
            .map(|s| windows.lower_bound(s, streams[s], pivot, previous[s]..ranks[s].end))
            .collect::<Result<Vec<u64>>>()?;
        if previous != &cut {
            bounds.push(cut);
        }
        rank += DEDUP_CHUNK_RANKS;
    }
    let ends: Vec<u64> = ranks.iter().map(|r| r.end).collect();
    if bounds.last() != Some(&ends) {
        bounds.push(ends);
    }
    bounds
        .windows(2)
        .collect::<Vec<_>>()
        .into_par_iter()
        .try_for_each(|piece| -> Result<()> {
            control.check()?;
            let (lo, hi) = (&piece[0], &piece[1]);
            let mut heap = BinaryHeap::new();
            for s in 0..streams.len() {
                if lo[s] < hi[s] {
                    let ptr = streams[s].ptr_at(lo[s])?;
                    heap.push(Reverse((windows.key(s, ptr), s, lo[s], ptr)));
                }
            }
            let mut run: Vec<(usize, u64)> = Vec::new();
            let mut run_key: &[u8] = &[];
            let flush = |run: &mut Vec<(usize, u64)>, run_key: &[u8]| {
                if run.len() >= 2 && windows.inside_document(run_key) {
                    on_run(run);
                }
                run.clear();
            };
            while let Some(Reverse((k, s, r, ptr))) = heap.pop() {
                if k != run_key || run.is_empty() {
                    flush(&mut run, run_key);
                    run_key = k;
                }
                run.push((s, ptr));
                if r + 1 < hi[s] {
                    let next = streams[s].ptr_at(r + 1)?;
                    heap.push(Reverse((windows.key(s, next), s, r + 1, next)));
                }
            }
            flush(&mut run, run_key);
            control.add((0..streams.len()).map(|s| hi[s] - lo[s]).sum());
            Ok(())
        })
}
