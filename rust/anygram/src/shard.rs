//! One shard of an index: its mapped files and the searches over its suffix array.
//!
//! A lookup is a binary search over the suffix array comparing the query's bytes
//! with the text at each pointer, exactly as infini-gram compares them: the
//! suffix's first `query.len()` bytes (fewer at the end of the file) against the
//! query, lexicographically, a shorter prefix ordering first.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{ptr_size_for, read_u64_at, read_uint_le, shard_file, TokenWidth};
use crate::manifest::Manifest;
use crate::storage::IndexFile;

/// A half-open range `[lo, hi)` of suffix-array ranks.
pub type RankRange = (u64, u64);

/// The stored value "after" the last token of a shard: sorts before every token.
pub const END_OF_SHARD: u64 = u64::MAX;

/// Widest range [`Shard::find_next`] bisects; wider ones are searched k-ary.
const FIND_NEXT_BISECT_MAX: u64 = 4096;
/// Probes a bound per k-ary round of [`Shard::find_next`].
const FIND_NEXT_ARITY: u64 = 64;
/// Levels of infini-gram's next-token sampling settled per round of reads
/// while reads are slow (reading ahead up to 2^levels ranks a range). On held-out
/// docs text with a cold accelerator: 3 levels cut ntd's p95 from 21 to 9
/// rounds for 30% more pages (2 levels: 13 rounds, 8% more pages).
const NTD_READ_AHEAD_LEVELS: usize = 3;

/// The mapped files of one shard and what was derived from their sizes.
pub struct Shard {
    /// Shard number within the index.
    pub number: usize,
    width: TokenWidth,
    tokenized: IndexFile,
    table: IndexFile,
    offsets: IndexFile,
    metadata: Option<(IndexFile, IndexFile)>,
    ptr_size: usize,
    num_tokens: u64,
    num_documents: u64,
    /// Sampled suffix keys, filled in the background after open (see [`SampleIndex`]).
    samples: std::sync::OnceLock<SampleIndex>,
    /// The persistent search tree, when the shard has a valid one (see [`crate::accel`]).
    accel: std::sync::OnceLock<crate::accel::Accelerator>,
    /// Whether this shard's recent rounds of reads came from RAM.
    warmth: crate::accel::Warmth,
    /// For a shard with an accelerator: whether it may build the sampled keys
    /// once its reads prove to come from RAM ([`Shard::sample_when_hot`]).
    hot_sampling: std::sync::atomic::AtomicU8,
}

/// [`Shard::hot_sampling`]'s states.
const HOT_SAMPLING_OFF: u8 = 0;
const HOT_SAMPLING_ALLOWED: u8 = 1;
const HOT_SAMPLING_STARTED: u8 = 2;

/// Every `rate`-th suffix's first 16 bytes, as big-endian `u128` (so integer order is
/// byte order), kept in RAM: a search first narrows to a few buckets of `rate` ranks
/// here, touching no index page, then finishes in the suffix array. Truncating and
/// zero-padding suffixes keeps the keys in suffix order, so narrowing is exact.
pub struct SampleIndex {
    rate: u64,
    keys: Vec<u128>,
}

/// Most RAM the sampled keys of one shard may take.
const SAMPLE_BUDGET_BYTES: u64 = 64 << 20;
/// Densest sampling: one key per this many ranks.
const SAMPLE_MIN_RATE: u64 = 64;

fn key_of(bytes: &[u8], pad: u8) -> u128 {
    let mut buf = [pad; 16];
    let n = bytes.len().min(16);
    buf[..n].copy_from_slice(&bytes[..n]);
    u128::from_be_bytes(buf)
}

/// A search of the sampled keys that narrows a rank range ([`Shard::narrowing`]).
pub struct Narrowing<'s> {
    /// The sampled keys that lie inside the range, ascending.
    pub keys: &'s [u128],
    /// Keys below this one sort before every suffix that starts with the query.
    pub low_key: u128,
    /// Keys above this one sort after every suffix that starts with the query.
    pub high_key: u128,
    from: u64,
    rate: u64,
    within: RankRange,
    num_tokens: u64,
}

impl Narrowing<'_> {
    /// The narrowed range, given the number of `keys` below `low_key` (`first`)
    /// and at or below `high_key` (`past`).
    #[inline]
    pub fn range(&self, first: usize, past: usize) -> RankRange {
        // Samples below `first` are < query: the matches start after the last of them.
        let first = self.from + first as u64;
        // Sample `past` and later are > every suffix starting with query.
        let past = self.from + past as u64;
        let lo = if first == 0 {
            0
        } else {
            (first - 1) * self.rate + 1
        };
        let hi = (past * self.rate).min(self.num_tokens);
        let within = self.within;
        (within.0.max(lo), within.1.min(hi).max(within.0.max(lo)))
    }
}

/// The files of one shard, opened (their sizes known) but not yet read: an
/// index opens every shard's files first, then reads what all the checks of
/// [`Shard::from_files`] need in one batch ([`ShardFiles::open_reads`]).
pub struct ShardFiles {
    number: usize,
    tokenized: IndexFile,
    table: IndexFile,
    offsets: IndexFile,
    metadata: Option<(IndexFile, IndexFile)>,
}

impl ShardFiles {
    /// Opens the files of shard `number` of `dir` (no reads: locally maps
    /// them; remotely their sizes come from the manifest or one listing).
    pub fn open(dir: &Path, number: usize) -> Result<ShardFiles> {
        let tokenized = IndexFile::open(
            &dir.join(shard_file("tokenized", number)),
            "the token stream",
        )?;
        let table = IndexFile::open(&dir.join(shard_file("table", number)), "the suffix array")?;
        let offsets = IndexFile::open(
            &dir.join(shard_file("offset", number)),
            "the document offsets",
        )?;
        let metadata_path = dir.join(shard_file("metadata", number));
        let metaoff_path = dir.join(shard_file("metaoff", number));
        let metadata = match (
            crate::storage::file_exists(&metadata_path)?,
            crate::storage::file_exists(&metaoff_path)?,
        ) {
            (false, false) => None,
            (true, true) => Some((
                IndexFile::open(&metadata_path, "document metadata")?,
                IndexFile::open(&metaoff_path, "metadata offsets")?,
            )),
            (true, false) => {
                return Err(Error::MissingFile {
                    path: metaoff_path,
                    what: "metadata offsets (metadata exists without them)".into(),
                })
            }
            (false, true) => {
                return Err(Error::MissingFile {
                    path: metadata_path,
                    what: "document metadata (metaoff exists without it)".into(),
                })
            }
        };
        Ok(ShardFiles {
            number,
            tokenized,
            table,
            offsets,
            metadata,
        })
    }

    /// The O(1) reads of [`Shard::from_files`]'s checks: the first token and
    /// the first and last document offsets.
    pub fn open_reads(&self, width: TokenWidth) -> Vec<(&IndexFile, Vec<(u64, u64)>)> {
        let last_offset = self.offsets.len().saturating_sub(8);
        vec![
            (&self.tokenized, vec![(0, width.bytes() as u64)]),
            (&self.offsets, vec![(0, 8), (last_offset, 8)]),
        ]
    }

    /// The token stream (its size tells the shard's token count).
    pub fn tokenized(&self) -> &IndexFile {
        &self.tokenized
    }
    /// The suffix array.
    pub fn table(&self) -> &IndexFile {
        &self.table
    }
}

impl Shard {
    /// Maps shard `number` of `dir` and checks, in O(1), that its files agree
    /// with each other (and with the manifest, when there is one).
    pub fn open(
        dir: &Path,
        number: usize,
        width: TokenWidth,
        manifest: Option<&Manifest>,
    ) -> Result<Shard> {
        Shard::from_files(dir, ShardFiles::open(dir, number)?, width, manifest)
    }

    /// [`Shard::open`] on files already opened (and their open reads started).
    pub fn from_files(
        dir: &Path,
        files: ShardFiles,
        width: TokenWidth,
        manifest: Option<&Manifest>,
    ) -> Result<Shard> {
        // The reads of the checks below, started together (one round trip
        // remotely; none when the index's open already fetched them).
        crate::storage::prefetch_all(&files.open_reads(width))?;
        let ShardFiles {
            number,
            tokenized,
            table,
            offsets,
            metadata,
        } = files;

        if let Some(manifest) = manifest {
            for file in [&tokenized, &table, &offsets] {
                check_size_against_manifest(file, manifest)?;
            }
            if let Some((meta, metaoff)) = &metadata {
                check_size_against_manifest(meta, manifest)?;
                check_size_against_manifest(metaoff, manifest)?;
            }
        }

        let w = width.bytes() as u64;
        if tokenized.len() % w != 0 {
            return Err(Error::corrupt(
                tokenized.path(),
                format!(
                    "size {} is not a multiple of the token width {w}",
                    tokenized.len()
                ),
            ));
        }
        let num_tokens = tokenized.len() / w;
        let ptr_size = if num_tokens == 0 {
            1
        } else if table.len() % num_tokens != 0 {
            return Err(Error::corrupt(
                table.path(),
                format!(
                    "size {} is not a multiple of the {num_tokens} tokens of {}",
                    table.len(),
                    tokenized.path().display()
                ),
            ));
        } else {
            (table.len() / num_tokens) as usize
        };
        let needed = ptr_size_for(tokenized.len());
        if num_tokens > 0 && !(needed..=8).contains(&ptr_size) {
            return Err(Error::corrupt(
                table.path(),
                format!("pointers of {ptr_size} bytes cannot address {} bytes of tokens (size {} for {num_tokens} tokens)",
                    tokenized.len(), table.len()),
            ));
        }
        if offsets.len() % 8 != 0 {
            return Err(Error::corrupt(
                offsets.path(),
                format!("size {} is not a multiple of 8", offsets.len()),
            ));
        }
        let num_documents = offsets.len() / 8;
        if num_tokens > 0 {
            let first = width.read_token(&tokenized.read_at(0, w)?);
            if first != width.separator() {
                return Err(Error::corrupt(
                    tokenized.path(),
                    format!("does not start with a document separator (token width {w}: wrong token width?)"),
                ));
            }
            if num_documents == 0 || read_u64_at(&offsets.read_at(0, 8)?, 0) != 0 {
                return Err(Error::corrupt(
                    offsets.path(),
                    "the first document does not start at offset 0",
                ));
            }
            let last = read_u64_at(&offsets.read_at((num_documents - 1) * 8, 8)?, 0);
            if last >= tokenized.len() {
                return Err(Error::corrupt(
                    offsets.path(),
                    format!(
                        "last document offset {last} is past the end of the tokens ({} bytes)",
                        tokenized.len()
                    ),
                ));
            }
        }
        if let Some((_, metaoff)) = &metadata {
            if metaoff.len() != num_documents * 8 {
                return Err(Error::corrupt(
                    metaoff.path(),
                    format!(
                        "holds {} offsets for {num_documents} documents",
                        metaoff.len() / 8
                    ),
                ));
            }
        }
        if let Some(manifest) = manifest {
            let expected = manifest.shards.get(number).ok_or_else(|| {
                Error::corrupt(
                    dir.join(crate::manifest::MANIFEST_FILE),
                    format!("no entry for shard {number}"),
                )
            })?;
            if expected.num_tokens != num_tokens
                || expected.num_documents != num_documents
                || expected.ptr_size as usize != ptr_size
            {
                return Err(Error::corrupt(
                    tokenized.path(),
                    format!("shard {number} has {num_tokens} tokens, {num_documents} documents, {ptr_size}-byte pointers; the manifest says {}, {}, {}",
                        expected.num_tokens, expected.num_documents, expected.ptr_size),
                ));
            }
        }

        Ok(Shard {
            number,
            width,
            tokenized,
            table,
            offsets,
            metadata,
            ptr_size,
            num_tokens,
            num_documents,
            samples: std::sync::OnceLock::new(),
            accel: std::sync::OnceLock::new(),
            warmth: Default::default(),
            hot_sampling: std::sync::atomic::AtomicU8::new(HOT_SAMPLING_OFF),
        })
    }

    /// Searches through `accel` from now on (the first one set stays).
    pub fn set_accelerator(&self, accel: crate::accel::Accelerator) {
        let _ = self.accel.set(accel);
    }
    /// Lets this shard build its sampled keys in the background once its
    /// reads come from RAM (see [`Shard::sample_when_hot`]).
    pub(crate) fn allow_sampling_when_hot(&self) {
        self.hot_sampling
            .store(HOT_SAMPLING_ALLOWED, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts building the sampled keys in the background the first time a
    /// shard with an accelerator (which opened without them: no pass over its
    /// suffix array at open) proves hot. Hot, its searches are plain binary
    /// searches, and the sampled keys narrow them with less CPU than the
    /// tree's levels (∞-gram prob 20.5 vs 28 µs on the docs corpus); the pass
    /// then reads RAM, not disk.
    pub(crate) fn sample_when_hot(self: &Arc<Self>) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.hot_sampling.load(Relaxed) == HOT_SAMPLING_ALLOWED
            && self.warmth.rounds_are_free()
            && self
                .hot_sampling
                .compare_exchange(HOT_SAMPLING_ALLOWED, HOT_SAMPLING_STARTED, Relaxed, Relaxed)
                .is_ok()
        {
            let shard = Arc::clone(self);
            crate::pool::spawn(move || shard.build_samples());
        }
    }

    /// Whether a round of reads costs a device read or a round trip: in object
    /// storage, or locally while the accelerator's rounds read the disk (a
    /// shard without one is taken to be in RAM, as its plain searches assume),
    /// or while reads are counted (a counted query reports the rounds that
    /// matter where rounds cost). Slow rounds are worth hinting and reading ahead.
    pub(crate) fn reads_are_slow(&self) -> bool {
        self.is_remote() || (self.accelerator().is_some() && !self.warmth().rounds_are_free())
    }

    /// Whether this shard's recent rounds of reads came from RAM (see [`crate::accel::Warmth`]).
    pub(crate) fn warmth(&self) -> &crate::accel::Warmth {
        &self.warmth
    }

    /// The search accelerator, when the shard has one.
    pub fn accelerator(&self) -> Option<&crate::accel::Accelerator> {
        self.accel.get()
    }
    /// Bytes per token.
    pub fn token_width(&self) -> TokenWidth {
        self.width
    }
    /// The token stream file (read through the storage layer).
    pub fn tokenized_file(&self) -> &IndexFile {
        &self.tokenized
    }
    /// The suffix-array file (read through the storage layer).
    pub fn table_file(&self) -> &IndexFile {
        &self.table
    }
    /// The document-offsets file (read through the storage layer).
    pub fn offsets_file(&self) -> &IndexFile {
        &self.offsets
    }
    /// Whether the shard's files are in object storage.
    pub fn is_remote(&self) -> bool {
        matches!(self.tokenized, IndexFile::Remote(_))
    }

    /// Token positions, separators included.
    pub fn num_tokens(&self) -> u64 {
        self.num_tokens
    }
    /// Documents in the shard.
    pub fn num_documents(&self) -> u64 {
        self.num_documents
    }
    /// Bytes per suffix-array pointer.
    pub fn ptr_size(&self) -> usize {
        self.ptr_size
    }
    /// The raw token stream, whole (local files only: scans, verify, builds).
    pub fn tokenized(&self) -> Result<&[u8]> {
        self.tokenized.local_bytes()
    }
    /// The raw suffix array, whole (local files only).
    pub fn table(&self) -> Result<&[u8]> {
        self.table.local_bytes()
    }
    /// The raw document offsets, whole (local files only).
    pub fn offsets(&self) -> Result<&[u8]> {
        self.offsets.local_bytes()
    }
    /// The document offsets as numbers, read in place: where the file is mapped
    /// (page-aligned) and the host stores u64s little-endian as the file does.
    pub fn document_offsets_in_place(&self) -> Option<&[u64]> {
        if cfg!(target_endian = "big") || self.is_remote() {
            return None;
        }
        bytemuck::try_cast_slice(self.offsets().ok()?).ok()
    }
    /// The metadata and metadata-offset files, whole, if the shard has them (local files only).
    pub fn metadata(&self) -> Result<Option<(&[u8], &[u8])>> {
        match &self.metadata {
            Some((m, o)) => Ok(Some((m.local_bytes()?, o.local_bytes()?))),
            None => Ok(None),
        }
    }
    /// Whether the shard has document metadata.
    pub fn has_metadata(&self) -> bool {
        self.metadata.is_some()
    }
    /// Bytes of tokens (the token stream's size).
    pub fn tokenized_len(&self) -> u64 {
        self.tokenized.len()
    }
    /// Bytes of the suffix array.
    pub fn table_len(&self) -> u64 {
        self.table.len()
    }
    /// The shard's files (for checksums and verification).
    pub fn files(&self) -> Vec<&IndexFile> {
        let mut files = vec![&self.tokenized, &self.table, &self.offsets];
        if let Some((m, o)) = &self.metadata {
            files.push(m);
            files.push(o);
        }
        files
    }

    /// The byte offset into `tokenized` stored at suffix-array rank `rank`
    /// (`rank < num_tokens`). A pointer past the end or off the token grid means
    /// the table is corrupt: that is an error, never a wrong answer or a crash.
    #[inline]
    pub fn ptr_at(&self, rank: u64) -> Result<u64> {
        if rank >= self.num_tokens {
            return Err(self.rank_out_of_range(rank));
        }
        let ps = self.ptr_size as u64;
        // Mapped: one masked load (every search step reads a pointer).
        if let IndexFile::Local(m) = &self.table {
            let at = (rank * ps) as usize;
            if let Some(ptr) = crate::format::read_uint_le_at(m.bytes(), at, self.ptr_size) {
                return self.checked_ptr(rank, ptr);
            }
        }
        self.ptr_read(rank)
    }

    /// [`Shard::ptr_at`] through the storage layer (object storage, a file's
    /// last bytes): out of line, so that the mapped read inlines into every search step.
    #[inline(never)]
    fn ptr_read(&self, rank: u64) -> Result<u64> {
        let ps = self.ptr_size as u64;
        self.checked_ptr(rank, read_uint_le(&self.table.read_at(rank * ps, ps)?))
    }

    /// The pointers of the ranks `[lo, hi)`, in rank order, read in one piece
    /// (each checked as [`Shard::ptr_at`] checks it).
    pub fn ptrs_in(&self, lo: u64, hi: u64) -> Result<Vec<u64>> {
        if lo > hi || hi > self.num_tokens {
            return Err(Error::InvalidQuery(format!(
                "ranks [{lo}, {hi}) are out of range [0, {}) of shard {}",
                self.num_tokens, self.number
            )));
        }
        let ps = self.ptr_size;
        let bytes = self.table.read_at(lo * ps as u64, (hi - lo) * ps as u64)?;
        let ptrs: Vec<u64> = match ps {
            4 => bytes
                .chunks_exact(4)
                .map(|e| u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as u64)
                .collect(),
            _ => bytes.chunks_exact(ps).map(read_uint_le).collect(),
        };
        // Checked in a second pass: a loop without early exits that the compiler vectorizes.
        let (len, w) = (self.tokenized.len(), self.width.bytes() as u64);
        if ptrs.iter().any(|&p| p >= len || !p.is_multiple_of(w)) {
            for (rank, &ptr) in (lo..hi).zip(&ptrs) {
                self.checked_ptr(rank, ptr)?;
            }
        }
        Ok(ptrs)
    }

    /// `ptr` (the entry of `rank`) if it lies on the token grid, else the corruption.
    #[inline]
    fn checked_ptr(&self, rank: u64, ptr: u64) -> Result<u64> {
        // Widths are 1, 2 or 4 bytes: a mask, not a division (a search step's cost).
        if ptr >= self.tokenized.len() || ptr & (self.width.bytes() as u64 - 1) != 0 {
            return Err(self.off_grid(rank, ptr));
        }
        Ok(ptr)
    }

    // The errors of a pointer read, out of line: every search step inlines the read.
    #[cold]
    #[inline(never)]
    fn rank_out_of_range(&self, rank: u64) -> Error {
        Error::InvalidQuery(format!(
            "rank {rank} is out of range [0, {}) of shard {}",
            self.num_tokens, self.number
        ))
    }

    #[cold]
    #[inline(never)]
    fn off_grid(&self, rank: u64, ptr: u64) -> Error {
        Error::corrupt(
            self.table.path(),
            format!("entry {rank} points to byte {ptr}, outside the token grid"),
        )
    }

    /// Compares the suffix at `rank`, cut to `query.len()` bytes, with `query`.
    #[inline]
    fn compare_at(&self, rank: u64, query: &[u8]) -> Result<Ordering> {
        let ps = self.ptr_size as u64;
        crate::reads::touch(&self.table, rank * ps, ps);
        crate::reads::round(self.number);
        let ptr = self.ptr_at(rank)?;
        let text = self.tokenized.read_clipped(ptr, query.len() as u64)?;
        crate::reads::touch(&self.tokenized, ptr, text.len() as u64);
        crate::reads::round(self.number);
        Ok((*text).cmp(query))
    }

    /// Builds the sampled keys (one random read per `rate` ranks). Queries work
    /// without them and use them once they are there; errors leave them unset.
    pub fn build_samples(&self) {
        let mut rate = SAMPLE_MIN_RATE;
        while (self.num_tokens / rate) * 16 > SAMPLE_BUDGET_BYTES {
            rate *= 2;
        }
        self.build_samples_every(rate);
    }

    /// [`Shard::build_samples`] with a given sampling rate (tests use small ones).
    pub fn build_samples_every(&self, rate: u64) {
        let rate = rate.max(1);
        let n = self.num_tokens;
        use rayon::prelude::*;
        let keys: Result<Vec<u128>> = (0..n.div_ceil(rate))
            .into_par_iter()
            .map(|j| {
                let ptr = self.ptr_at(j * rate)?;
                Ok(key_of(&self.tokenized.read_clipped(ptr, 16)?, 0))
            })
            .collect();
        if let Ok(keys) = keys {
            let _ = self.samples.set(SampleIndex { rate, keys });
        }
    }

    /// Narrows `within` to the ranks that can hold suffixes starting with `query`,
    /// using the sampled keys when they are built.
    #[inline]
    pub fn narrow(&self, query: &[u8], within: RankRange) -> Result<RankRange> {
        let Some(narrowing) = self.narrowing(query, within) else {
            if let Some(accel) = self.accel.get() {
                return Ok(accel.narrow(self, query, within)?.unwrap_or(within));
            }
            return Ok(within);
        };
        let first = narrowing.keys.partition_point(|&k| k < narrowing.low_key);
        let past = narrowing.keys.partition_point(|&k| k <= narrowing.high_key);
        Ok(narrowing.range(first, past))
    }

    /// [`Shard::narrow`] in two steps, for callers that search the keys themselves
    /// (interleaved with other searches): the keys to search and the two keys to
    /// find, then `range` of the two partition points. `None` without sampled keys.
    #[inline]
    pub fn narrowing(&self, query: &[u8], within: RankRange) -> Option<Narrowing<'_>> {
        let samples = self.samples.get()?;
        // Only the samples inside `within` can narrow it further: a narrow range
        // (a context being extended) skips the search over all keys. A bound at
        // the edge of this slice falls outside `within` and is clipped below.
        let from = (within.0 / samples.rate) as usize;
        let to = (within.1.div_ceil(samples.rate) as usize).min(samples.keys.len());
        Some(Narrowing {
            keys: &samples.keys[from.min(to)..to],
            low_key: key_of(query, 0x00),
            high_key: key_of(query, 0xFF),
            from: from.min(to) as u64,
            rate: samples.rate,
            within,
            num_tokens: self.num_tokens,
        })
    }

    /// The accelerator, when a search should go through its tree: always for
    /// a shard in object storage or read from disk; for a local shard whose
    /// reads come from RAM the plain binary search, narrowed by the
    /// accelerator's bottom keys, costs less CPU (rounds cost nothing there),
    /// so only an occasional search takes the tree to notice a cooling cache.
    fn tree(&self) -> Option<&crate::accel::Accelerator> {
        let accel = self.accel.get()?;
        (self.is_remote() || self.warmth.take_tree()).then_some(accel)
    }

    /// The ranks whose suffixes start with `query` (bytes of whole tokens),
    /// searching only inside `within` (which must contain all of them, e.g. the
    /// range of a prefix of `query`). The empty query matches everything.
    pub fn find(&self, query: &[u8], within: RankRange) -> Result<RankRange> {
        if query.is_empty() {
            return Ok(within);
        }
        if let Some(accel) = self.tree() {
            if let Some(range) = accel.find(self, query, within)? {
                return Ok(range);
            }
        }
        self.timed_if_narrowed(|| self.plain_find(query, within))
    }

    /// Runs `search`, the plain search; where the shard has an accelerator it
    /// was chosen because reads came from RAM, so a slow one (a read from disk)
    /// sends the next searches back to the tree at once.
    #[inline]
    fn timed_if_narrowed<T>(&self, search: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.accel.get().is_none() {
            return search();
        }
        let started = std::time::Instant::now();
        let found = search();
        self.warmth.record_search(started.elapsed());
        found
    }

    /// [`Shard::find`] by binary search (inside the sampled keys' or the tree's bracket).
    fn plain_find(&self, query: &[u8], within: RankRange) -> Result<RankRange> {
        // Pages in RAM: the search that overlaps its misses (interleave.rs).
        if let Some(found) = crate::interleave::find_hot(self, query, within) {
            return found;
        }
        let (mut lo, mut hi) = self.narrow(query, within)?;
        // Both bounds share their search until the first matching rank; then the
        // lower bound continues on the left and the upper bound on the right.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.compare_at(mid, query)? {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => {
                    let first = self.partition_point(lo, mid, |r| {
                        Ok(self.compare_at(r, query)? == Ordering::Less)
                    })?;
                    let end = self.partition_point(mid + 1, hi, |r| {
                        Ok(self.compare_at(r, query)? != Ordering::Greater)
                    })?;
                    return Ok((first, end));
                }
            }
        }
        Ok((lo, lo))
    }

    /// [`Shard::find`] for many `(query, within)` searches at once. Through the
    /// accelerator their reads share rounds (the rounds of the slowest search,
    /// not their sum); without it they run one after another.
    pub fn find_batch(&self, searches: &[(&[u8], RankRange)]) -> Result<Vec<RankRange>> {
        if let Some(accel) = self.tree() {
            if let Some(ranges) = accel.find_batch(self, searches)? {
                return Ok(ranges);
            }
        }
        searches
            .iter()
            .map(|&(query, within)| self.find(query, within))
            .collect()
    }

    /// The ranks of `range` whose suffixes continue with `next` after their first
    /// `skip_bytes` bytes, when every suffix in `range` shares those bytes (the
    /// range of a context being extended by one token): only the new bytes are
    /// compared, so the cost does not grow with the context's length. A wide
    /// range is searched k-ary, [`FIND_NEXT_ARITY`] probes a bound in shared
    /// rounds (pointers, then texts), so that its dependent reads stay few on a
    /// shard far larger than RAM; a narrow one by plain bisection.
    pub fn find_next(&self, range: RankRange, skip_bytes: usize, next: &[u8]) -> Result<RankRange> {
        if range.1.saturating_sub(range.0) > FIND_NEXT_BISECT_MAX {
            let mut search = [crate::accel::Finishing::within(0, next, skip_bytes, range)];
            // Bounds inside a window that holds them cannot contradict it.
            let arity = crate::accel::finishing_arity(self, FIND_NEXT_ARITY);
            if let Some(found) = crate::accel::finish(self, arity, &mut search)? {
                return Ok(found[0].1);
            }
        }
        let ps = self.ptr_size as u64;
        let cmp = |rank: u64| -> Result<Ordering> {
            crate::reads::touch(&self.table, rank * ps, ps);
            crate::reads::round(self.number);
            let start = (self.ptr_at(rank)? + skip_bytes as u64).min(self.tokenized.len());
            let end = self.tokenized.len().min(start + next.len() as u64);
            crate::reads::touch(&self.tokenized, start, end - start);
            crate::reads::round(self.number);
            Ok((*self.tokenized.read_clipped(start, next.len() as u64)?).cmp(next))
        };
        let first = self.partition_point(range.0, range.1, |r| Ok(cmp(r)? == Ordering::Less))?;
        let end = self.partition_point(first, range.1, |r| Ok(cmp(r)? != Ordering::Greater))?;
        Ok((first, end))
    }

    /// Whether any suffix in `within` starts with `query`: the shared part of
    /// [`Shard::find`]'s search only.
    pub fn contains(&self, query: &[u8], within: RankRange) -> Result<bool> {
        if query.is_empty() {
            return Ok(within.0 < within.1);
        }
        if let Some(accel) = self.tree() {
            // Both bounds cost the same rounds as one.
            if let Some((lo, hi)) = accel.find(self, query, within)? {
                return Ok(lo < hi);
            }
        }
        self.timed_if_narrowed(|| {
            let (mut lo, mut hi) = self.narrow(query, within)?;
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match self.compare_at(mid, query)? {
                    Ordering::Less => lo = mid + 1,
                    Ordering::Greater => hi = mid,
                    Ordering::Equal => return Ok(true),
                }
            }
            Ok(false)
        })
    }

    /// The first rank in `[lo, hi)` for which `before` is false (`before` must
    /// be true on a prefix of the range and false after).
    #[inline]
    fn partition_point(
        &self,
        mut lo: u64,
        mut hi: u64,
        before: impl Fn(u64) -> Result<bool>,
    ) -> Result<u64> {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if before(mid)? {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Adds to `counts` how often each token follows the `query_bytes`-long
    /// matches at ranks `range`.
    ///
    /// With `unit == 1` this is exact, in rounds of reads that go out together;
    /// exact counts should come through [`crate::next_tokens::next_token_runs`],
    /// which calls this where reads are slow and gallops where they are not.
    /// With a larger `unit` it is infini-gram's
    /// sampling, reproduced step for step so that answers agree: a run of ranks
    /// whose first and last continuation agree is counted whole (suffixes are
    /// sorted, so the whole run continues with that token); below `4 * unit`
    /// ranks, one rank in the middle of every `unit` ranks stands for all of them;
    /// otherwise the range is halved.
    ///
    /// One deliberate difference: infini-gram compares the continuations after
    /// mapping them to `eos_token_id`, but the end of the shard sorts first and
    /// the separator last, so a run from one to the other looked uniform and was
    /// counted as all-eos. We compare the stored values (the end of the shard
    /// being its own value) and map to eos only when counting.
    pub fn count_next_tokens(
        &self,
        query_bytes: usize,
        range: RankRange,
        unit: u64,
        eos_token_id: u32,
        counts: &mut BTreeMap<u32, u64>,
    ) -> Result<()> {
        let mut stored = BTreeMap::new();
        self.count_stored_next(query_bytes, range, unit, &mut stored)?;
        let separator = self.width.separator() as u64;
        for (value, count) in stored {
            let token = if value == END_OF_SHARD || value == separator {
                eos_token_id
            } else {
                value as u32
            };
            *counts.entry(token).or_insert(0) += count;
        }
        Ok(())
    }

    /// The stored value `skip_bytes` after the suffix at `rank` (the token after a
    /// match of that many bytes): a token, the separator, or [`END_OF_SHARD`].
    /// Two dependent reads (the pointer, then the token), counted by [`crate::reads`].
    #[inline]
    pub fn stored_after(&self, rank: u64, skip_bytes: usize) -> Result<u64> {
        let ps = self.ptr_size as u64;
        crate::reads::touch(&self.table, rank * ps, ps);
        crate::reads::round(self.number);
        let at = self.ptr_at(rank)? + skip_bytes as u64;
        let w = self.width.bytes() as u64;
        crate::reads::touch(
            &self.tokenized,
            at,
            w.min(self.tokenized.len().saturating_sub(at)),
        );
        crate::reads::round(self.number);
        self.stored_at(at)
    }

    /// The stored value after `ptr`: a token, the separator, or [`END_OF_SHARD`].
    #[inline]
    fn stored_at(&self, ptr: u64) -> Result<u64> {
        let w = self.width.bytes() as u64;
        if ptr.saturating_add(w) > self.tokenized.len() {
            return Ok(END_OF_SHARD);
        }
        Ok(self.width.read_token(&self.tokenized.read_at(ptr, w)?) as u64)
    }

    /// infini-gram's sampling of the values after a range: a range of fewer
    /// than `4·unit` ranks samples one rank per `unit` (its middle); a wider one
    /// whose first and last values agree counts whole; otherwise it is halved.
    /// Walked breadth-first, so that every lookup of one level of halving goes
    /// out together ([`Shard::stored_after_many`]: two rounds of reads, the
    /// pointers then the texts): an ntd costs two rounds per level, not two per
    /// lookup. While reads are slow ([`Shard::reads_are_slow`]: a round trip
    /// or a device read costs far more than a page), each round also reads ahead the ranks the next
    /// [`NTD_READ_AHEAD_LEVELS`]` - 1` levels could need (their positions do not
    /// depend on the values), so that several levels settle per round trip.
    /// The counts are exactly the depth-first recursion's: read-ahead values
    /// that a settled range does not need are never used.
    fn count_stored_next(
        &self,
        query_bytes: usize,
        range: RankRange,
        unit: u64,
        counts: &mut BTreeMap<u64, u64>,
    ) -> Result<()> {
        let narrow = |(start, end): RankRange| end - start < 4 * unit;
        // The ranks a narrow range samples.
        let samples = |(start, end): RankRange| {
            (start..end).step_by(unit as usize).map(move |rank| {
                if rank + unit <= end {
                    rank + unit / 2
                } else {
                    (rank + end) / 2
                }
            })
        };
        let halves = |(start, end): RankRange| {
            let mid = (start + end) / 2;
            [(start, mid), (mid, end)]
        };
        // The ranks `range` and the ranges it splits into could need over `depth` levels.
        fn ahead(
            range: RankRange,
            depth: usize,
            narrow: &dyn Fn(RankRange) -> bool,
            samples: &dyn Fn(RankRange) -> Vec<u64>,
            halves: &dyn Fn(RankRange) -> [RankRange; 2],
            out: &mut Vec<u64>,
        ) {
            if narrow(range) {
                out.extend(samples(range));
                return;
            }
            out.extend([range.0, range.1 - 1]);
            if depth > 1 {
                for half in halves(range) {
                    ahead(half, depth - 1, narrow, samples, halves, out);
                }
            }
        }
        let depth = if self.reads_are_slow() {
            NTD_READ_AHEAD_LEVELS
        } else {
            1
        };
        let sample_list = |r: RankRange| samples(r).collect::<Vec<u64>>();
        let mut known: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        let mut pending = vec![range];
        while !pending.is_empty() {
            let mut wanted: Vec<u64> = Vec::new();
            for &range in &pending {
                ahead(range, depth, &narrow, &sample_list, &halves, &mut wanted);
            }
            wanted.retain(|rank| !known.contains_key(rank));
            wanted.sort_unstable();
            wanted.dedup();
            let values = self.stored_after_many(&wanted, query_bytes)?;
            known.extend(wanted.into_iter().zip(values));
            // Settle what the known values settle; the rest waits for the next round.
            let mut next = Vec::new();
            while let Some(range) = pending.pop() {
                let (start, end) = range;
                if narrow(range) {
                    if samples(range).all(|rank| known.contains_key(&rank)) {
                        for (i, rank) in samples(range).enumerate() {
                            let from = start + i as u64 * unit;
                            let weight = unit.min(end - from);
                            *counts.entry(known[&rank]).or_insert(0) += weight;
                        }
                    } else {
                        next.push(range);
                    }
                    continue;
                }
                match (known.get(&start), known.get(&(end - 1))) {
                    (Some(&first), Some(&last)) if first == last => {
                        *counts.entry(first).or_insert(0) += end - start;
                    }
                    (Some(_), Some(_)) => pending.extend(halves(range)),
                    _ => next.push(range),
                }
            }
            pending = next;
        }
        Ok(())
    }

    /// [`Shard::stored_after`] for many ranks, in two rounds of reads issued
    /// together (one round trip each in object storage): every pointer, then
    /// the token after each.
    fn stored_after_many(&self, ranks: &[u64], skip_bytes: usize) -> Result<Vec<u64>> {
        use crate::accel::Round;
        if ranks.is_empty() {
            return Ok(Vec::new());
        }
        let ps = self.ptr_size as u64;
        let w = self.width.bytes() as u64;
        let entries: Vec<(u64, u64)> = ranks
            .iter()
            .filter(|&&r| r < self.num_tokens)
            .map(|&r| (r * ps, ps))
            .collect();
        let round = Round::start(self, &self.table, &entries)?;
        let ptrs = ranks
            .iter()
            .map(|&r| Ok(self.ptr_at(r)? + skip_bytes as u64))
            .collect::<Result<Vec<u64>>>()?;
        round.end();
        let texts: Vec<(u64, u64)> = ptrs
            .iter()
            .filter(|&&p| p.saturating_add(w) <= self.tokenized.len())
            .map(|&p| (p, w))
            .collect();
        let round = Round::start(self, &self.tokenized, &texts)?;
        let values = ptrs.iter().map(|&p| self.stored_at(p)).collect();
        round.end();
        values
    }

    /// For each suffix in `range`, in rank order: up to `before` bytes of the
    /// text just before it (fewer at the start of the shard) and the stored
    /// value `after` bytes into it (a token, the separator or [`END_OF_SHARD`]).
    /// Two rounds of reads ([`crate::accel::Round`]: hinted together, timed), the
    /// range's pointers in one piece, then every window. What the ∞-gram needs to extend a rare suffix
    /// to the left without a search per length.
    pub fn occurrence_windows(
        &self,
        range: RankRange,
        before: u64,
        after: u64,
    ) -> Result<Vec<(Cow<'_, [u8]>, u64)>> {
        use crate::accel::Round;
        let ps = self.ptr_size as u64;
        let entries = [(range.0 * ps, (range.1.saturating_sub(range.0)) * ps)];
        let round = Round::start(self, &self.table, &entries)?;
        let ptrs = self.ptrs_in(range.0, range.1)?;
        round.end();
        let w = self.width.bytes() as u64;
        let mut windows = Vec::with_capacity(2 * ptrs.len());
        for &ptr in &ptrs {
            windows.push((ptr.saturating_sub(before), ptr.min(before)));
            let next = ptr.saturating_add(after);
            if next.saturating_add(w) <= self.tokenized.len() {
                windows.push((next, w));
            }
        }
        let round = Round::start(self, &self.tokenized, &windows)?;
        let found = ptrs
            .iter()
            .map(|&ptr| {
                let start = ptr.saturating_sub(before);
                let text = self.tokenized.read_at(start, ptr - start)?;
                Ok((text, self.stored_at(ptr.saturating_add(after))?))
            })
            .collect();
        round.end();
        found
    }

    /// The document holding byte offset `ptr` (< the tokens' size): the last
    /// document whose separator is at or before it. Offsets are checked where
    /// they are read, so a corrupt `offset` file is an error, never a wrong
    /// document (the answer is confirmed against its own bounds).
    pub fn document_of(&self, ptr: u64) -> Result<u64> {
        let (mut lo, mut hi) = (0u64, self.num_documents);
        // Invariant: document lo starts at or before ptr (document 0 starts at 0).
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.document_start(mid)? <= ptr {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let (start, end) = self.document_span(lo)?;
        if ptr < start || ptr >= end {
            return Err(Error::corrupt(
                self.offsets.path(),
                format!("the document offsets are not increasing: byte {ptr} falls outside document {lo} (bytes {start}..{end}) that the search over them found"),
            ));
        }
        Ok(lo)
    }

    /// The tokens stored in bytes `[start, end)` (whole tokens); bounds outside
    /// the token stream or off the token grid are an error.
    pub fn tokens_between(&self, start: u64, end: u64) -> Result<Vec<u32>> {
        let w = self.width.bytes();
        let whole_tokens = start.is_multiple_of(w as u64)
            && end.is_multiple_of(w as u64)
            && start <= end
            && end <= self.tokenized.len();
        let bytes = whole_tokens
            .then(|| self.tokenized.read_at(start, end - start))
            .transpose()?
            .ok_or_else(|| {
                Error::corrupt(
                    self.tokenized.path(),
                    format!(
                        "bytes {start}..{end} are not whole tokens inside the {} bytes of tokens",
                        self.tokenized.len()
                    ),
                )
            })?;
        Ok(bytes
            .chunks_exact(w)
            .map(|c| self.width.read_token(c))
            .collect())
    }

    /// The metadata line of document `local_doc` as stored (trailing newline
    /// included), or None when the shard has no metadata.
    pub fn metadata_line(&self, local_doc: u64) -> Result<Option<Vec<u8>>> {
        let Some((meta, metaoff)) = &self.metadata else {
            return Ok(None);
        };
        if local_doc >= self.num_documents {
            return Err(Error::InvalidQuery(format!(
                "document {local_doc} is out of range [0, {}) of shard {}",
                self.num_documents, self.number
            )));
        }
        // metaoff holds num_documents entries (checked at open).
        let entries = if local_doc + 1 < self.num_documents {
            16
        } else {
            8
        };
        let entries = metaoff.read_at(local_doc * 8, entries)?;
        let start = read_u64_at(&entries, 0);
        let end = if local_doc + 1 < self.num_documents {
            read_u64_at(&entries, 1)
        } else {
            meta.len()
        };
        if start > end || end > meta.len() {
            let metaoff_path = self.metadata.as_ref().map(|(_, o)| o.path());
            return Err(Error::corrupt(
                metaoff_path.unwrap_or(self.offsets.path()),
                format!(
                    "entry {local_doc}: the metadata of document {local_doc} spans bytes {start}..{end}, outside the {} bytes of metadata or backwards",
                    meta.len()
                ),
            ));
        }
        Ok(Some(meta.read_at(start, end - start)?.into_owned()))
    }

    /// Byte offset of document `local_doc` (its separator), or the end of the
    /// tokens for `local_doc >= num_documents`. An entry past the end or off the
    /// token grid is an error naming the entry (two comparisons: the hot path of
    /// document lookups stays cheap).
    #[inline]
    pub fn document_start(&self, local_doc: u64) -> Result<u64> {
        if local_doc >= self.num_documents {
            return Ok(self.tokenized.len());
        }
        let offset = read_u64_at(&self.offsets.read_at(local_doc * 8, 8)?, 0);
        if offset >= self.tokenized.len() || !offset.is_multiple_of(self.width.bytes() as u64) {
            return Err(Error::corrupt(
                self.offsets.path(),
                format!(
                    "entry {local_doc} is {offset}, not the start of a token inside the {} bytes of tokens",
                    self.tokenized.len()
                ),
            ));
        }
        Ok(offset)
    }

    /// Bytes `[start, end)` of document `local_doc`, its separator included:
    /// `start` holds a separator and `end` is the next document's start (or the
    /// end of the tokens). Out-of-order offsets or a start that is no separator
    /// are an error naming the entry.
    pub fn document_span(&self, local_doc: u64) -> Result<(u64, u64)> {
        let start = self.document_start(local_doc)?;
        let end = self.document_start(local_doc + 1)?;
        if end <= start {
            return Err(Error::corrupt(
                self.offsets.path(),
                format!(
                    "entries {local_doc} and {} ({start} and {end}) are not increasing",
                    local_doc + 1
                ),
            ));
        }
        if self.stored_at(start)? != self.width.separator() as u64 {
            return Err(Error::corrupt(
                self.offsets.path(),
                format!("entry {local_doc} ({start}) does not point at a document separator"),
            ));
        }
        Ok((start, end))
    }

    /// Bytes `[first, end)` of the tokens of document `local_doc`, without its
    /// separator (checked as [`Shard::document_span`]).
    pub fn document_tokens_span(&self, local_doc: u64) -> Result<(u64, u64)> {
        let (start, end) = self.document_span(local_doc)?;
        Ok((start + self.width.bytes() as u64, end))
    }
}

fn check_size_against_manifest(file: &IndexFile, manifest: &Manifest) -> Result<()> {
    let name = file
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(meta) = manifest.files.get(&name) {
        if meta.size != file.len() {
            return Err(Error::corrupt(
                file.path(),
                format!(
                    "size is {} bytes but the manifest recorded {} (truncated or replaced?)",
                    file.len(),
                    meta.size
                ),
            ));
        }
    }
    Ok(())
}
