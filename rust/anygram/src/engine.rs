//! An opened index: every shard of a directory, and the queries over all of them.
//!
//! Semantics follow infini-gram exactly (counts add up over shards; an unseen
//! context gives probability −1; continuations at a document end are reported
//! as `eos_token_id`; beyond `max_support` occurrences the next-token
//! distribution is sampled and flagged approximate).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::{ptr_size_for, shard_file, TokenWidth};
use crate::manifest::Manifest;
use crate::shard::{RankRange, Shard, ShardFiles};

/// Parameters for opening an index that has no manifest (one built by
/// infini-gram). With a manifest they must agree with it or be left `None`.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Bytes per token (1, 2 or 4); inferred from the file sizes when `None`.
    pub token_width: Option<usize>,
    /// Vocabulary size; every id but the separator when `None`.
    pub vocab_size: Option<u64>,
    /// Token reported at a document end; the separator value when `None`.
    pub eos_token_id: Option<u64>,
    /// Build the in-RAM sampled suffix keys in a background thread after open
    /// (one random read per 64 ranks, at most 64 MiB per shard). Shards with a
    /// search accelerator never need them.
    pub sample_keys: bool,
    /// Search through the shards' accelerator files (`accel.{s}`) where valid ones exist.
    pub accelerator: bool,
    /// RAM for the accelerators' top levels, all shards together; `None`: 1% of
    /// the index (always at least each tree's root).
    pub resident_mem: Option<u64>,
    /// How shards with an accelerator search (adaptive by default).
    pub search_path: crate::accel::SearchPath,
    /// RAM for the sorted occurrences of frequent CNF clauses, kept for the next
    /// query that has them ([`crate::cnf::ClauseMemo`]); 0 keeps none.
    pub cnf_memo_bytes: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            token_width: None,
            vocab_size: None,
            eos_token_id: None,
            sample_keys: true,
            accelerator: true,
            resident_mem: None,
            search_path: crate::accel::SearchPath::default(),
            cnf_memo_bytes: crate::cnf::DEFAULT_CNF_MEMO_BYTES,
        }
    }
}

/// Where an n-gram occurs: the suffix-array range in every shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindResult {
    /// Total occurrences over all shards.
    pub count: u64,
    /// `[lo, hi)` per shard.
    pub ranges: ShardRanges,
}

/// One rank range per shard: inline for up to two shards, since searches make
/// and drop these by the million (scoring makes one a token) and most indexes
/// are of one shard.
pub type ShardRanges = smallvec::SmallVec<[RankRange; 2]>;

/// `count(context + token) / count(context)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbResult {
    /// Occurrences of the context (0: undefined, `prob` is −1).
    pub prompt_count: u64,
    /// Occurrences of the context followed by the token.
    pub cont_count: u64,
    /// `cont_count / prompt_count`, or −1.0 when the context never occurs.
    pub prob: f64,
    /// Length of the context suffix used (the whole context for a plain n-gram).
    pub suffix_len: usize,
}

/// The next-token distribution after a context.
#[derive(Debug, Clone, PartialEq)]
pub struct NtdResult {
    /// Occurrences of the context (the sum of all `counts`).
    pub prompt_count: u64,
    /// `(token, count)` for every token that follows, by token id.
    pub counts: Vec<(u32, u64)>,
    /// Whether the counts were sampled (more than `max_support` occurrences).
    pub approx: bool,
    /// Length of the context suffix used.
    pub suffix_len: usize,
}

/// An opened, memory-mapped index.
pub struct Engine {
    dir: PathBuf,
    width: TokenWidth,
    vocab_size: u64,
    eos_token_id: u32,
    manifest: Option<Manifest>,
    shards: Vec<Arc<Shard>>,
    /// Unigram and bigram ranges for scoring, built on demand (`context_table.rs`).
    contexts: crate::context_table::ContextTableCell,
    /// Frequent CNF clauses' occurrences in text order (`cnf.rs`).
    clause_memo: crate::cnf::ClauseMemo,
}

impl Engine {
    /// Opens the index in `dir`: reads the manifest if there is one, maps every
    /// shard and checks, in O(1) per file, that the files agree. Full checks are
    /// [`crate::verify::verify`]'s job.
    pub fn open(dir: impl AsRef<Path>, options: &OpenOptions) -> Result<Engine> {
        let dir = dir.as_ref();
        // A local path or an object-storage URL: the storage layer tells them apart.
        let remote = crate::storage::is_remote(dir);
        // In object storage the manifest comes first (one GET that also shows
        // the index is there, and lists every file with its size: no LIST).
        let manifest = if remote { Manifest::read(dir)? } else { None };
        if manifest.is_none() && !crate::storage::dir_exists(dir)? {
            return Err(Error::MissingFile {
                path: dir.to_path_buf(),
                what: "the index directory".into(),
            });
        }
        let manifest = match manifest {
            Some(m) => Some(m),
            None => Manifest::read(dir)?,
        };
        let num_shards = match &manifest {
            Some(m) => m.shards.len(),
            None => count_shards(dir)?,
        };
        let width = match (&manifest, options.token_width) {
            (Some(m), given) => {
                let width = TokenWidth::from_bytes(m.token_width as usize)?;
                if let Some(given) = given {
                    if given != width.bytes() {
                        return Err(Error::InvalidArgument(format!(
                            "token width {given} was given but the index manifest says {}",
                            width.bytes()
                        )));
                    }
                }
                width
            }
            (None, Some(given)) => TokenWidth::from_bytes(given)?,
            (None, None) => infer_width(dir)?,
        };
        let vocab_size = match (&manifest, options.vocab_size) {
            (Some(m), Some(given)) if given != m.vocab_size => {
                return Err(Error::InvalidArgument(format!(
                    "vocab size {given} was given but the index manifest says {}",
                    m.vocab_size
                )))
            }
            (Some(m), _) => Some(m.vocab_size),
            (None, given) => given,
        };
        let eos = match (&manifest, options.eos_token_id) {
            (Some(m), Some(given)) if given != m.eos_token_id => {
                return Err(Error::InvalidArgument(format!(
                    "eos token id {given} was given but the index manifest says {}",
                    m.eos_token_id
                )))
            }
            (Some(m), _) => Some(m.eos_token_id),
            (None, given) => given,
        };
        // The same vocabulary and eos rules (and defaults) as the writer's.
        let (vocab_size, eos) = crate::format::check_token_parameters(width, vocab_size, eos)?;
        // Every shard's files first (no reads where the manifest gave their sizes).
        let files = crate::pool::install(|| {
            (0..num_shards)
                .into_par_iter()
                .map(|s| ShardFiles::open(dir, s))
                .collect::<Result<Vec<_>>>()
        })?;
        if remote {
            // Then everything the open reads, of every shard, in one round trip.
            read_for_open(dir, &files, width, manifest.as_ref(), options)?;
        }
        let shards = crate::pool::install(|| {
            files
                .into_par_iter()
                .map(|f| Shard::from_files(dir, f, width, manifest.as_ref()).map(Arc::new))
                .collect::<Result<Vec<_>>>()
        })?;
        if options.accelerator {
            crate::accel::attach(dir, &shards, options.resident_mem);
        }
        for shard in &shards {
            shard.warmth().pin(options.search_path);
        }
        if options.sample_keys {
            // Sampled keys speed searches up; queries need not wait for them.
            // A shard with an accelerator needs no pass over its suffix array.
            // Remote shards skip them (one GET per 64 ranks would cost more than
            // the searches they save), and so do shards too large to stay in
            // RAM: there nearly every sampled read would be a disk read, minutes
            // of them competing with the queries; an accelerator is the
            // persistent form of these keys.
            let ram = crate::mmap::physical_memory_bytes().unwrap_or(u64::MAX);
            let fits_in_ram =
                |s: &Shard| s.tokenized_len().saturating_add(s.table_len()) <= ram / 2;
            // A shard with an accelerator samples only once its reads prove hot.
            for shard in &shards {
                if shard.accelerator().is_some() && !shard.is_remote() && fits_in_ram(shard) {
                    shard.allow_sampling_when_hot();
                }
            }
            let sampled: Vec<Arc<Shard>> = shards
                .iter()
                .filter(|s| s.accelerator().is_none() && !s.is_remote())
                .filter(|s| {
                    let fits = fits_in_ram(s);
                    if !fits {
                        eprintln!(
                            "anygram: warning: shard {} ({} bytes) is larger than half this machine's RAM and has no search accelerator: its searches are plain binary searches ({} dependent reads each on a cold cache). `anygram index add-accelerator --index {}` makes them 3.",
                            s.number,
                            s.tokenized_len() + s.table_len(),
                            2 * (64 - s.num_tokens().leading_zeros()),
                            dir.display()
                        );
                    }
                    fits
                })
                .cloned()
                .collect();
            if !sampled.is_empty() {
                crate::pool::spawn(move || sampled.par_iter().for_each(|s| s.build_samples()));
            }
        }
        Ok(Engine {
            dir: dir.to_path_buf(),
            width,
            vocab_size,
            eos_token_id: eos as u32,
            manifest,
            shards,
            contexts: Default::default(),
            clause_memo: crate::cnf::ClauseMemo::new(options.cnf_memo_bytes),
        })
    }

    pub(crate) fn context_cell(&self) -> &crate::context_table::ContextTableCell {
        &self.contexts
    }

    pub(crate) fn clause_memo(&self) -> &crate::cnf::ClauseMemo {
        &self.clause_memo
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Bytes per token.
    pub fn token_width(&self) -> TokenWidth {
        self.width
    }
    /// Token ids are in `[0, vocab_size)`.
    pub fn vocab_size(&self) -> u64 {
        self.vocab_size
    }
    /// The token reported at document ends.
    pub fn eos_token_id(&self) -> u32 {
        self.eos_token_id
    }
    /// The manifest, if the index has one.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }
    /// The shards, in order.
    pub fn shards(&self) -> &[Arc<Shard>] {
        &self.shards
    }

    /// Builds the sampled suffix keys of every shard now (blocking). Searches are
    /// exact either way; this only makes them faster.
    pub fn build_samples(&self) {
        crate::pool::install(|| self.shards.par_iter().for_each(|s| s.build_samples()));
    }
    /// Token positions over all shards (separators included): what an empty
    /// n-gram counts.
    pub fn num_tokens(&self) -> u64 {
        self.shards.iter().map(|s| s.num_tokens()).sum()
    }
    /// Documents over all shards.
    pub fn num_documents(&self) -> u64 {
        self.shards.iter().map(|s| s.num_documents()).sum()
    }

    /// Checks every id against the vocabulary and encodes the query as the
    /// bytes stored in `tokenized`.
    pub fn encode(&self, tokens: &[u32]) -> Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(tokens.len() * self.width.bytes());
        self.encode_into(tokens, &mut bytes)?;
        Ok(bytes)
    }

    /// [`Self::encode`] appending to `out` (many queries in one buffer); on an
    /// error nothing is appended.
    pub fn encode_into(&self, tokens: &[u32], out: &mut Vec<u8>) -> Result<()> {
        if let Some(position) = tokens.iter().position(|&t| t as u64 >= self.vocab_size) {
            return Err(Error::TokenOutOfRange {
                token: tokens[position] as u64,
                position,
                vocab_size: self.vocab_size,
            });
        }
        self.width.encode_into(tokens, out);
        Ok(())
    }

    pub(crate) fn full_ranges(&self) -> ShardRanges {
        self.shards.iter().map(|s| (0, s.num_tokens())).collect()
    }

    /// `work` on every shard, results in shard order. Local shards: one after
    /// another on the calling thread (a search takes microseconds; a thread hop
    /// costs more, and the reads counter is per thread). Shards in object
    /// storage: all at once, one thread each, so that a query costs the round
    /// trips of its slowest shard, not their sum. Threads, not the pool: they
    /// only wait on the network, and the pool has one thread per core; scoped,
    /// so none outlives the call (fork-safe like the pool).
    pub(crate) fn each_shard<T: Send>(
        &self,
        work: impl Fn(&Arc<Shard>) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        if self.shards.len() < 2 || !self.shards[0].is_remote() {
            return self
                .shards
                .iter()
                .map(|shard| {
                    shard.sample_when_hot();
                    work(shard)
                })
                .collect();
        }
        use crate::storage::{add_thread_round_trips, thread_round_trips};
        let work = &work;
        let done: Vec<(Result<T>, u64)> = std::thread::scope(|scope| {
            let running: Vec<_> = self
                .shards
                .iter()
                .map(|shard| {
                    scope.spawn(move || {
                        let before = thread_round_trips();
                        let result = work(shard);
                        (result, thread_round_trips() - before)
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        add_thread_round_trips(done.iter().map(|(_, trips)| *trips).max().unwrap_or(0));
        done.into_iter().map(|(result, _)| result).collect()
    }

    pub(crate) fn find_bytes(&self, query: &[u8], within: &[RankRange]) -> Result<FindResult> {
        let ranges: ShardRanges = self
            .each_shard(|shard| shard.find(query, within[shard.number]))?
            .into();
        let count = ranges.iter().map(|(lo, hi)| hi - lo).sum();
        Ok(FindResult { count, ranges })
    }

    /// Where `tokens` occurs. Cost: two binary searches per shard.
    pub fn find(&self, tokens: &[u32]) -> Result<FindResult> {
        let query = self.encode(tokens)?;
        self.find_bytes(&query, &self.full_ranges())
    }

    /// Occurrences of `tokens`; the empty n-gram counts every token position.
    pub fn count(&self, tokens: &[u32]) -> Result<u64> {
        Ok(self.find(tokens)?.count)
    }

    /// `P(token | context)` over the whole context (infini-gram's `prob`).
    pub fn prob(&self, context: &[u32], token: u32) -> Result<ProbResult> {
        let query = self.encode_with(context, token)?;
        let prompt = self.find_bytes(
            &query[..query.len() - self.width.bytes()],
            &self.full_ranges(),
        )?;
        self.prob_from(&query, &prompt, context.len())
    }

    fn encode_with(&self, context: &[u32], token: u32) -> Result<Vec<u8>> {
        if token as u64 >= self.vocab_size {
            return Err(Error::TokenOutOfRange {
                token: token as u64,
                position: context.len(),
                vocab_size: self.vocab_size,
            });
        }
        let mut query = self.encode(context)?;
        self.width.encode_into(&[token], &mut query);
        Ok(query)
    }

    fn prob_from(
        &self,
        query: &[u8],
        prompt: &FindResult,
        suffix_len: usize,
    ) -> Result<ProbResult> {
        if prompt.count == 0 {
            return Ok(ProbResult {
                prompt_count: 0,
                cont_count: 0,
                prob: -1.0,
                suffix_len,
            });
        }
        // The continuation's occurrences lie inside the context's range.
        let cont = self.find_bytes(query, &prompt.ranges)?;
        Ok(ProbResult {
            prompt_count: prompt.count,
            cont_count: cont.count,
            prob: cont.count as f64 / prompt.count as f64,
            suffix_len,
        })
    }

    /// The distribution of the token after the whole `context` (infini-gram's `ntd`).
    pub fn ntd(&self, context: &[u32], max_support: u64) -> Result<NtdResult> {
        check_max_support(max_support)?;
        let query = self.encode(context)?;
        let prompt = self.find_bytes(&query, &self.full_ranges())?;
        self.ntd_from(query.len(), &prompt, max_support, context.len())
    }

    pub(crate) fn ntd_from(
        &self,
        query_bytes: usize,
        prompt: &FindResult,
        max_support: u64,
        suffix_len: usize,
    ) -> Result<NtdResult> {
        if prompt.count == 0 {
            return Ok(NtdResult {
                prompt_count: 0,
                counts: Vec::new(),
                approx: false,
                suffix_len,
            });
        }
        let mut unit = 1u64;
        while prompt.count > unit.saturating_mul(max_support) {
            unit <<= 1;
        }
        // Exact (unit 1): the one owner of exact next-token counts; sampled:
        // infini-gram's approximation, step for step. Either way `(token, count)`
        // pairs, a token possibly twice (document ends), added up below.
        let count_shard = |(shard, &range): (&Arc<Shard>, &RankRange)| {
            if unit == 1 {
                return crate::next_tokens::next_token_runs(
                    shard,
                    query_bytes,
                    range,
                    self.eos_token_id,
                );
            }
            let mut counts = BTreeMap::new();
            shard.count_next_tokens(query_bytes, range, unit, self.eos_token_id, &mut counts)?;
            Ok(counts.into_iter().collect::<Vec<(u32, u64)>>())
        };
        // One shard: on the calling thread (a hop to the pool costs more than a
        // small count); several: in parallel on the fork-safe pool, or, in
        // object storage, one thread each (they wait on the network).
        let per_shard = if self.shards.len() == 1 || self.shards[0].is_remote() {
            self.each_shard(|shard| count_shard((shard, &prompt.ranges[shard.number])))?
        } else {
            crate::pool::install(|| {
                self.shards
                    .par_iter()
                    .zip(&prompt.ranges[..])
                    .map(count_shard)
                    .collect::<Result<Vec<_>>>()
            })?
        };
        let mut merged: BTreeMap<u32, u64> = BTreeMap::new();
        for counts in per_shard {
            for (token, count) in counts {
                *merged.entry(token).or_insert(0) += count;
            }
        }
        let prompt_count = merged.values().sum();
        Ok(NtdResult {
            prompt_count,
            counts: merged.into_iter().collect(),
            approx: unit > 1,
            suffix_len,
        })
    }

    /// The longest suffix of `context` that occurs in the corpus: its length
    /// and where it occurs.
    pub fn longest_suffix(&self, context: &[u32]) -> Result<(usize, FindResult)> {
        let query = self.encode(context)?;
        let found = self.longest_suffix_of(&query, context.len(), None, Want::Ranges)?;
        Ok((found.suffix_len, found.prompt))
    }

    /// The longest occurring suffix of the `len`-token context encoded in
    /// `query`, and, when `next` (an encoded token) is given, where that suffix
    /// followed by `next` occurs.
    ///
    /// A suffix's range says nothing about the next longer one's (growing the
    /// context to the left moves it elsewhere in the suffix array), so a probe
    /// cannot narrow from another; what probes can share is their rounds of
    /// reads. Candidate lengths are searched in batches, one batch of searches
    /// per shard whose reads share rounds: first the doubling lengths 1, 2, 4,
    /// … and the whole context, which bracket the answer; then every length
    /// inside the bracket (up to [`SUFFIX_BATCH`], evenly spaced beyond), each
    /// with its continuation, and the continuation of the longest known to
    /// occur, narrowed to its range. Held-out text almost always ends in the
    /// second batch: an ∞-gram prob costs about two counts' rounds. Occurring is
    /// monotone in the length, so the longest occurring candidate and the
    /// shortest absent one bracket the answer.
    ///
    /// Without accelerators batches cannot share rounds (each search is its own
    /// binary search), so there the fewest searches win: binary lifting then
    /// bisection over the length, O(log len) existence tests. The same holds
    /// when every shard is local and its reads come from RAM: rounds then cost
    /// nothing and the batches' extra searches cost CPU (hot, on the docs
    /// corpus, 18 µs bisecting against 40 µs in batches). Cold, bisection
    /// through the accelerator read more pages, 410 vs 255 at p95 on the docs
    /// corpus, and 38 rounds instead of 5 at p50.
    ///
    /// When only counts are wanted (a probability), the first batch stays
    /// within the keys' length, and once the longest occurring candidate has
    /// few occurrences the rest comes from their text
    /// ([`Engine::extend_rare_suffix`], two rounds) instead of more batches of
    /// long, key-tied searches: on held-out docs text with 64-byte keys, p95
    /// went from 9 to 6 rounds (a count's: 3). Hot, the bisection stays: there
    /// reading the occurrences cost more CPU than the searches it saves.
    fn longest_suffix_of(
        &self,
        query: &[u8],
        len: usize,
        next: Option<&[u8]>,
        want: Want,
    ) -> Result<SuffixMatch> {
        let active = |s: &Arc<Shard>| s.accelerator().is_some_and(|a| !a.is_disabled());
        let hot = |s: &Arc<Shard>| !s.is_remote() && s.warmth().rounds_are_free();
        if !self.shards.iter().all(active) || self.shards.iter().all(hot) {
            let mut found = self.longest_suffix_bisect(query, len)?;
            if let Some(next) = next {
                found.cont = Some(self.find_bytes(
                    &self.with_next(query, len, found.suffix_len, next),
                    &found.prompt.ranges,
                )?);
            }
            return Ok(found);
        }
        let full = self.full_ranges();
        let mut best = SuffixMatch {
            suffix_len: 0,
            prompt: FindResult {
                count: self.num_tokens(),
                ranges: full.clone(),
            },
            cont: None,
        };
        // In object storage a round trip costs far more than a read: the first
        // batch then holds every length up to SUFFIX_BATCH (then doubling) with
        // its continuation, which settles most queries in one batch's rounds,
        // as many as a count's.
        let eager = self.shards.iter().any(|s| s.is_remote());
        // Lengths whose bytes fit every shard's keys settle in a search's
        // rounds; longer ones can tie on their keys and finish k-ary (more).
        // When counts will do, the first batch stays within the keys: a rare
        // longest candidate then extends to the left from its text instead.
        let untied = match want {
            Want::Ranges => len,
            Want::Counts => self
                .shards
                .iter()
                .filter_map(|s| s.accelerator())
                .map(|a| a.key_bytes() / self.width.bytes())
                .min()
                .unwrap_or(len)
                .max(1),
        };
        let (mut lo, mut hi) = (0usize, len + 1);
        let mut first_batch = true;
        loop {
            let settled = hi - lo == 1;
            if settled && (next.is_none() || best.cont.is_some()) {
                break;
            }
            let window_bytes = (extension_reach(len, (lo, hi)) * self.width.bytes()) as u64;
            if want == Want::Counts
                && lo > 0
                && best.prompt.count <= EXTEND_MAX_OCCURRENCES
                && best.prompt.count.saturating_mul(window_bytes) <= EXTEND_MAX_BYTES
            {
                return self.extend_rare_suffix(query, len, (lo, hi), &best.prompt, next);
            }
            if settled {
                break;
            }
            // A batch that brackets the answer: the first; or, when every
            // length within the keys occurs (and is frequent), the doubling
            // lengths past them. Then one inside the bracket.
            let (candidates, bracketing) = match (first_batch, eager) {
                (true, false) => (doubling_lengths(len.min(untied)), true),
                (true, true) => (eager_lengths(len.min(untied)), true),
                (false, _) if hi > len => (doubling_lengths_from(lo, len), true),
                (false, _) => (split_evenly(lo, hi), false),
            };
            // The bracket's batch carries the continuations, so that its answer
            // is final: the candidates', and the best so far's inside its range.
            let with_next = next.filter(|_| !bracketing || eager);
            first_batch = false;
            let mut searches: Vec<(Vec<u8>, ShardRanges)> = Vec::new();
            for &n in &candidates {
                searches.push((self.suffix_bytes(query, len, n).to_vec(), full.clone()));
                if let Some(next) = with_next {
                    searches.push((self.with_next(query, len, n, next), full.clone()));
                }
            }
            if let Some(next) = with_next {
                searches.push((
                    self.with_next(query, len, lo, next),
                    best.prompt.ranges.clone(),
                ));
            }
            let mut found = self.find_batch(&searches)?;
            let per = if with_next.is_some() { 2 } else { 1 };
            if with_next.is_some() {
                best.cont = found.pop();
            }
            for (i, &n) in candidates.iter().enumerate() {
                let prompt = &found[i * per];
                if prompt.count == 0 {
                    hi = hi.min(n);
                } else if n > lo {
                    lo = n;
                    best = SuffixMatch {
                        suffix_len: n,
                        prompt: prompt.clone(),
                        cont: with_next.map(|_| found[i * per + 1].clone()),
                    };
                }
            }
            if lo >= hi {
                return Err(Error::corrupt(
                    &self.dir,
                    "suffix counts are not monotone in their length (unsorted suffix array)",
                ));
            }
        }
        if let (Some(next), None) = (next, &best.cont) {
            // The first batch settled it: the continuation inside the answer's range.
            let cont = self.with_next(query, len, lo, next);
            best.cont = Some(self.find_bytes(&cont, &best.prompt.ranges)?);
        }
        Ok(best)
    }

    /// The longest occurring suffix of the `len`-token context encoded in
    /// `query` and the counts of it and of it followed by `next`, from the text
    /// around the occurrences of its `lo`-token suffix (`found`: their ranges,
    /// few), given that the `hi`-token suffix does not occur. Every occurrence
    /// of a longer suffix ends in one of those occurrences, so reading the text
    /// before each (at most `hi - lo - 1` tokens) and the token after it
    /// settles the answer in two rounds of reads: the pointers, then the text.
    /// Counts only: the longer suffix's ranges are not known.
    fn extend_rare_suffix(
        &self,
        query: &[u8],
        len: usize,
        (lo, hi): (usize, usize),
        found: &FindResult,
        next: Option<&[u8]>,
    ) -> Result<SuffixMatch> {
        let w = self.width.bytes();
        let prefix = &query[..(len - lo) * w];
        let reach = extension_reach(len, (lo, hi));
        let next = next.map(|bytes| self.width.read_token(bytes) as u64);
        // Per occurrence: how many tokens before it match the context's, and
        // whether `next` follows it.
        let per_shard = self.each_shard(|shard| {
            let windows = shard.occurrence_windows(
                found.ranges[shard.number],
                (reach * w) as u64,
                (lo * w) as u64,
            )?;
            Ok(windows
                .iter()
                .map(|(before, after)| {
                    let matched = before
                        .rchunks_exact(w)
                        .zip(prefix.rchunks_exact(w))
                        .take_while(|(a, b)| a == b)
                        .count();
                    (matched, Some(*after) == next)
                })
                .collect::<Vec<(usize, bool)>>())
        })?;
        let occurrences: Vec<(usize, bool)> = per_shard.into_iter().flatten().collect();
        let longest = occurrences.iter().map(|o| o.0).max().unwrap_or(0);
        let prompt_count = occurrences.iter().filter(|o| o.0 == longest).count() as u64;
        let cont_count = occurrences.iter().filter(|o| o.0 == longest && o.1).count() as u64;
        let counted = |count: u64| FindResult {
            count,
            ranges: ShardRanges::new(),
        };
        Ok(SuffixMatch {
            suffix_len: lo + longest,
            prompt: counted(prompt_count),
            cont: next.map(|_| counted(cont_count)),
        })
    }

    /// The last `n` tokens of the `len`-token context encoded in `query`.
    fn suffix_bytes<'q>(&self, query: &'q [u8], len: usize, n: usize) -> &'q [u8] {
        &query[(len - n) * self.width.bytes()..]
    }

    /// The last `n` tokens of the context followed by the encoded token `next`.
    fn with_next(&self, query: &[u8], len: usize, n: usize, next: &[u8]) -> Vec<u8> {
        [self.suffix_bytes(query, len, n), next].concat()
    }

    /// Whether the encoded `query` occurs anywhere in the index: one shared
    /// descent per shard (existence only, not two bounds), the shards one after
    /// another with an early exit, or all at once in object storage (a round
    /// trip is worth more than the early exit).
    pub fn occurs(&self, query: &[u8]) -> Result<bool> {
        let whole = |shard: &Shard| (0, shard.num_tokens());
        if self.shards[0].is_remote() {
            let found = self.each_shard(|shard| shard.contains(query, whole(shard)))?;
            return Ok(found.contains(&true));
        }
        for shard in &self.shards {
            if shard.contains(query, whole(shard))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// [`Engine::longest_suffix_of`] by bisection over the length; no continuation.
    fn longest_suffix_bisect(&self, query: &[u8], len: usize) -> Result<SuffixMatch> {
        let w = self.width.bytes();
        // Only existence matters while searching for the length.
        let occurs = |n: usize| self.occurs(&query[(len - n) * w..]);
        let (mut lo, mut hi) = (0usize, 1usize);
        loop {
            if hi > len {
                hi = len + 1;
                break;
            }
            if !occurs(hi)? {
                break;
            }
            lo = hi;
            hi <<= 1;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if occurs(mid)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(SuffixMatch {
            suffix_len: lo,
            prompt: self.find_bytes(&query[(len - lo) * w..], &self.full_ranges())?,
            cont: None,
        })
    }

    /// Each `(pattern, within)` search over all shards (`within`: a range per
    /// shard), each shard's searches as one batch (shared rounds of reads).
    fn find_batch(&self, searches: &[(Vec<u8>, ShardRanges)]) -> Result<Vec<FindResult>> {
        let mut results: Vec<FindResult> = searches
            .iter()
            .map(|_| FindResult {
                count: 0,
                ranges: ShardRanges::with_capacity(self.shards.len()),
            })
            .collect();
        let per_shard = self.each_shard(|shard| {
            let batch: Vec<(&[u8], RankRange)> = searches
                .iter()
                .map(|(pattern, within)| (pattern.as_slice(), within[shard.number]))
                .collect();
            shard.find_batch(&batch)
        })?;
        for found_in_shard in per_shard {
            for (result, found) in results.iter_mut().zip(found_in_shard) {
                result.count += found.1 - found.0;
                result.ranges.push(found);
            }
        }
        Ok(results)
    }

    /// ∞-gram `P(token | context)`: backs off to the longest suffix of the
    /// context that occurs (infini-gram's `infgram_prob`).
    pub fn infgram_prob(&self, context: &[u32], token: u32) -> Result<ProbResult> {
        let query = self.encode_with(context, token)?;
        let (prompt_bytes, next) = query.split_at(query.len() - self.width.bytes());
        let found =
            self.longest_suffix_of(prompt_bytes, context.len(), Some(next), Want::Counts)?;
        let (prompt, cont) = (found.prompt.count, found.cont.map_or(0, |c| c.count));
        Ok(ProbResult {
            prompt_count: prompt,
            cont_count: cont,
            prob: if prompt == 0 {
                -1.0
            } else {
                cont as f64 / prompt as f64
            },
            suffix_len: found.suffix_len,
        })
    }

    /// ∞-gram next-token distribution (infini-gram's `infgram_ntd`).
    pub fn infgram_ntd(&self, context: &[u32], max_support: u64) -> Result<NtdResult> {
        check_max_support(max_support)?;
        let (suffix_len, prompt) = self.longest_suffix(context)?;
        self.ntd_from(
            suffix_len * self.width.bytes(),
            &prompt,
            max_support,
            suffix_len,
        )
    }

    /// n-gram `P(token | last n−1 tokens of context)`; `None` is the ∞-gram.
    /// A context shorter than n−1 tokens is used whole.
    pub fn ngram_prob(&self, context: &[u32], token: u32, n: Option<usize>) -> Result<ProbResult> {
        match n {
            None => self.infgram_prob(context, token),
            Some(n) => self.prob(last_tokens(context, n)?, token),
        }
    }

    /// n-gram next-token distribution after the last n−1 tokens; `None` is the ∞-gram.
    pub fn ngram_ntd(
        &self,
        context: &[u32],
        n: Option<usize>,
        max_support: u64,
    ) -> Result<NtdResult> {
        match n {
            None => self.infgram_ntd(context, max_support),
            Some(n) => self.ntd(last_tokens(context, n)?, max_support),
        }
    }
}

/// Most candidate suffix lengths of a bracket searched in one batch (see
/// [`Engine::longest_suffix_of`]): more share a round but read more pages.
const SUFFIX_BATCH: usize = 16;

/// Occurrences a suffix may have for [`Engine::extend_rare_suffix`] to find
/// the longest one from its text (two rounds: its pointers, then one window
/// each) rather than a batch of searches (three rounds, a few pages each).
const EXTEND_MAX_OCCURRENCES: u64 = 64;

/// Most text [`Engine::extend_rare_suffix`] reads before the occurrences, all
/// together: a context of many thousand tokens searches its lengths instead.
const EXTEND_MAX_BYTES: u64 = 1 << 20;

/// Tokens [`Engine::extend_rare_suffix`] reads before each occurrence of the
/// `lo`-token suffix of a `len`-token context when the `hi`-token one is absent.
fn extension_reach(len: usize, (lo, hi): (usize, usize)) -> usize {
    (hi - lo - 1).min(len - lo)
}

/// What a caller of [`Engine::longest_suffix_of`] needs of the answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The suffix's ranges in the suffix arrays (an ntd walks them).
    Ranges,
    /// Its counts only (a probability): the ranges may come back empty.
    Counts,
}

/// The longest occurring suffix of a context, its range, and (when asked for)
/// the range of that suffix followed by the next token (with [`Want::Counts`],
/// possibly counts only, the ranges empty).
struct SuffixMatch {
    suffix_len: usize,
    prompt: FindResult,
    cont: Option<FindResult>,
}

/// The first batch of candidate lengths for a `len`-token context: 1, 2, 4, …
/// below `len`, and `len` itself.
fn doubling_lengths(len: usize) -> Vec<usize> {
    let mut lengths: Vec<usize> = std::iter::successors(Some(1usize), |n| n.checked_mul(2))
        .take_while(|&n| n < len)
        .collect();
    if len > 0 {
        lengths.push(len);
    }
    lengths
}

/// The lengths `2·lo`, `4·lo`, … below `len`, and `len` itself (`0 < lo < len`).
fn doubling_lengths_from(lo: usize, len: usize) -> Vec<usize> {
    let mut lengths: Vec<usize> = std::iter::successors(lo.checked_mul(2), |n| n.checked_mul(2))
        .take_while(|&n| n < len)
        .collect();
    lengths.push(len);
    lengths
}

/// The first batch of candidate lengths in object storage: every length up to
/// [`SUFFIX_BATCH`], then doubling, and `len` itself.
fn eager_lengths(len: usize) -> Vec<usize> {
    let mut lengths: Vec<usize> = (1..=len.min(SUFFIX_BATCH)).collect();
    lengths.extend(
        doubling_lengths(len)
            .into_iter()
            .filter(|&n| n > SUFFIX_BATCH),
    );
    lengths
}

/// Up to [`SUFFIX_BATCH`] lengths strictly between `lo` and `hi`, evenly spaced
/// (all of them when they fit).
fn split_evenly(lo: usize, hi: usize) -> Vec<usize> {
    let inside = hi - lo - 1;
    if inside <= SUFFIX_BATCH {
        return (lo + 1..hi).collect();
    }
    let mut lengths: Vec<usize> = (1..=SUFFIX_BATCH)
        .map(|i| lo + 1 + (inside - 1) * i / SUFFIX_BATCH)
        .collect();
    lengths.dedup();
    lengths
}

fn last_tokens(context: &[u32], n: usize) -> Result<&[u32]> {
    if n == 0 {
        return Err(Error::InvalidQuery(
            "n must be at least 1 (n = 1 is the unigram)".into(),
        ));
    }
    let keep = (n - 1).min(context.len());
    Ok(&context[context.len() - keep..])
}

pub(crate) fn check_max_support(max_support: u64) -> Result<()> {
    if max_support == 0 {
        return Err(Error::InvalidQuery(
            "max_support must be a positive integer".into(),
        ));
    }
    Ok(())
}

/// Fetches, in one concurrent batch, every read an open of the index in object
/// storage makes after the manifest: each shard's O(1) checks, its search
/// accelerator's header and resident levels, and the stored tokenizer (read
/// next by the Python package). With the manifest's GET, an open is 2 round
/// trips however many shards. A read this misses is made later, as before:
/// this only moves reads earlier, never changes what is read.
fn read_for_open(
    dir: &Path,
    files: &[ShardFiles],
    width: TokenWidth,
    manifest: Option<&Manifest>,
    options: &OpenOptions,
) -> Result<()> {
    use crate::storage::{file_exists, IndexFile};
    let mut extra: Vec<(IndexFile, Vec<(u64, u64)>)> = Vec::new();
    if options.accelerator {
        let sizes: Vec<u64> = files
            .iter()
            .map(|f| f.tokenized().len() + f.table().len())
            .collect();
        for (s, f) in files.iter().enumerate() {
            let path = dir.join(crate::accel::file_name(s));
            if !file_exists(&path)? {
                continue;
            }
            let accel = IndexFile::open(&path, "the search accelerator")?;
            let budget = crate::accel::resident_budget(&sizes, s, options.resident_mem);
            let num_tokens = f.tokenized().len() / width.bytes() as u64;
            let ranges = crate::accel::open_reads(&accel, num_tokens, budget);
            extra.push((accel, ranges));
        }
    }
    if let Some(path) = manifest.and_then(|m| m.tokenizer_path(dir)) {
        if file_exists(&path)? {
            let tokenizer = IndexFile::open(&path, "the index's tokenizer")?;
            let whole = vec![(0, tokenizer.len())];
            extra.push((tokenizer, whole));
        }
    }
    let mut requests: Vec<(&IndexFile, Vec<(u64, u64)>)> =
        files.iter().flat_map(|f| f.open_reads(width)).collect();
    requests.extend(extra.iter().map(|(file, ranges)| (file, ranges.clone())));
    crate::storage::prefetch_all(&requests)
}

/// Number of shards of an index without a manifest: `tokenized.0` … `tokenized.{S-1}`,
/// with no gaps.
fn count_shards(dir: &Path) -> Result<usize> {
    if crate::storage::is_remote(dir) {
        // No directory listing over plain HTTP: probe shard files in turn.
        let mut n = 0;
        while crate::storage::file_exists(&dir.join(shard_file("tokenized", n)))? {
            n += 1;
        }
        if n == 0 {
            return Err(Error::MissingFile {
                path: dir.join(shard_file("tokenized", 0)),
                what: "no shard found: this location holds no anygram.json and no tokenized.0"
                    .into(),
            });
        }
        return Ok(n);
    }
    let mut numbers = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(number) = name.strip_prefix("tokenized.") {
            if let Ok(number) = number.parse::<usize>() {
                numbers.push(number);
            }
        }
    }
    numbers.sort_unstable();
    if numbers.is_empty() {
        return Err(Error::MissingFile {
            path: dir.join(shard_file("tokenized", 0)),
            what: "no shard found: this directory holds no anygram.json and no tokenized.0".into(),
        });
    }
    for (expected, &got) in numbers.iter().enumerate() {
        if expected != got {
            return Err(Error::MissingFile {
                path: dir.join(shard_file("tokenized", expected)),
                what: format!(
                    "shards must be numbered 0..{}; shard {expected} is missing",
                    numbers.len()
                ),
            });
        }
    }
    Ok(numbers.len())
}

/// Infers the token width of an index without a manifest from shard 0: the
/// width whose token count divides the table size into pointers of the size
/// infini-gram writes, and whose stream starts with a separator.
fn infer_width(dir: &Path) -> Result<TokenWidth> {
    let size = |name: &str| -> Result<u64> {
        let path = dir.join(name);
        let what = name.split('.').next().unwrap_or(name);
        Ok(crate::storage::IndexFile::open(&path, what)?.len())
    };
    let tokenized = size(&shard_file("tokenized", 0))?;
    let table = size(&shard_file("table", 0))?;
    let head = {
        let path = dir.join(shard_file("tokenized", 0));
        let file = crate::storage::IndexFile::open(&path, "the token stream")?;
        file.read_clipped(0, 4)?.into_owned()
    };
    let expected_ptr = ptr_size_for(tokenized) as u64;
    let candidates: Vec<TokenWidth> = [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32]
        .into_iter()
        .filter(|w| {
            let w_bytes = w.bytes() as u64;
            tokenized % w_bytes == 0
                && tokenized > 0
                && table == (tokenized / w_bytes) * expected_ptr
                && head.len() >= w.bytes()
                && head[..w.bytes()].iter().all(|&b| b == 0xFF)
        })
        .collect();
    match candidates.as_slice() {
        [width] => Ok(*width),
        [] => Err(Error::corrupt(
            dir.join(shard_file("table", 0)),
            format!("cannot infer the token width: no width in 1, 2, 4 fits {tokenized} bytes of tokens and {table} bytes of suffix array; pass token_width"),
        )),
        _ => Err(Error::InvalidArgument(
            "the token width of this index is ambiguous from its file sizes: pass token_width".into(),
        )),
    }
}
