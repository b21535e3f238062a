//! The search accelerator: a persistent, optional per-shard file (`accel.{s}`)
//! that makes a search cost a few dependent reads however large the shard.
//!
//! On a shard far larger than RAM a search's latency is its number of
//! dependent reads (each binary-search probe of the suffix array is two: the
//! pointer, then the text). The accelerator is a static search tree over
//! sampled suffix keys:
//!
//! * the bottom level holds the key of every `rate`-th suffix (ranks 0, R, 2R, …);
//! * each level above holds every `node_keys`-th key of the level below, so one
//!   node (`node_keys` keys, at most one 4 KiB page) of a level covers exactly
//!   the keys between two consecutive keys of the level above;
//! * levels are stored top-down after a one-page header, so the top levels load
//!   with one contiguous read.
//!
//! A key is the suffix's first `key_bytes` bytes, zero-padded, followed by one
//! byte saying how many of them the suffix really has (fewer only at the end of
//! the shard). Keys compare as bytes in suffix order, and for a pattern of up to
//! `key_bytes` bytes a key tells exactly whether its suffix is below, matches or
//! is above the pattern: each bound of a search lands in one bucket of `rate`
//! ranks. Longer patterns can tie with many keys; those bounds finish with a
//! k-ary search over the tied ranks.
//!
//! A search descends the resident levels in RAM, reads one node per level kept
//! on disk, then finishes in the suffix array: the bucket's pointers (one
//! contiguous read), then the text at each of them (independent reads, advised
//! together so they cost one round trip). Both bounds share those rounds. With
//! the levels above the bottom one resident (the default budget holds them) a
//! search costs 3 dependent reads per shard.
//!
//! Exactness does not depend on the file being right: the header carries a
//! fingerprint of the shard it was built for (checked at open, in O(1)), and
//! every search checks, in its first suffix-array round, that the ranks just
//! outside the bucket the tree chose do lie on either side of the bound. A file
//! that fails either check is ignored (a warning on stderr) and the shard
//! searches without it; `anygram verify` checks the body's checksum.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering as AtomicOrdering};
use std::sync::Arc;

use rayon::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::{read_uint_le, shard_file};
use crate::reads;
use crate::shard::{RankRange, Shard};
use crate::storage::IndexFile;
use std::borrow::Cow;

/// Format version written by this build (and the only one it reads).
pub const FORMAT_VERSION: u32 = 2;
const MAGIC: [u8; 8] = *b"AGACCEL\0";
/// Page size the nodes are laid out for.
const PAGE: u64 = 4096;
/// The header takes the first page, so the levels start page-aligned.
const HEADER_BYTES: u64 = PAGE;
const MAX_LEVELS: usize = 64;
/// Suffix-array entries (and the text at them) hashed into the fingerprint.
const FINGERPRINT_SAMPLES: u64 = 64;
const FINGERPRINT_TEXT_BYTES: u64 = 32;
/// Default: one key per this many ranks.
pub const DEFAULT_RATE: u64 = 64;
/// Default bytes of each suffix kept in a key: 32 u16 tokens. Patterns longer
/// than a key can tie on it and finish k-ary (more rounds); on held-out text
/// of the docs corpus 64 bytes took ∞-gram prob from 12 to 9 rounds and from
/// 255 to 67 pages at p95 (count p99: 7 to 3 rounds) against 32, for a file
/// 20% larger (3.1 instead of 2.6 bytes a token).
pub const DEFAULT_KEY_BYTES: usize = 64;
/// Default resident budget: this fraction (1/100) of the shard's token stream and suffix array.
const DEFAULT_RESIDENT_DIVISOR: u64 = 100;
/// Fewest ranks a k-ary round of the final search probes.
const MIN_ARITY: u64 = 16;

/// The accelerator file of shard `shard`.
pub fn file_name(shard: usize) -> String {
    shard_file("accel", shard)
}

/// How to build an accelerator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// One key per this many ranks (≥ 1): the size of a bucket.
    pub rate: u64,
    /// Bytes of each suffix kept in a key (1..=255).
    pub key_bytes: usize,
    /// Keys per tree node (≥ 2); `None`: as many as fit in a 4 KiB page.
    pub node_keys: Option<u64>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            rate: DEFAULT_RATE,
            key_bytes: DEFAULT_KEY_BYTES,
            node_keys: None,
        }
    }
}

/// The shape of a tree: every offset in the file follows from it.
///
/// Every node ends with the XXH3-64 of the rest of its stride, checked where
/// the node is read (resident levels at open), so a flipped bit in a key or a
/// trie is never used. Bottom-level entries are a key followed by its bucket's
/// blind trie (see [`BucketTrie`]); the bottom level has its own fan-out so
/// that a node of keys and tries still fits a page.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    rate: u64,
    key_bytes: usize,
    /// Keys per node of the levels above the bottom one.
    node_keys: u64,
    /// Bytes between those nodes: a power of two ≤ a page, so no node straddles pages.
    node_stride: u64,
    /// Keys (with their buckets' tries) per bottom node.
    bottom_node_keys: u64,
    /// Bytes between bottom nodes (a power of two ≤ a page).
    bottom_stride: u64,
    /// Keys per level, top (the root) first.
    levels: Vec<u64>,
}

/// Bytes at the end of every node: the checksum of the rest of it.
const NODE_CHECKSUM_BYTES: u64 = 8;

impl Layout {
    /// The tree for `num_tokens` suffixes; checks the parameters (they come from users).
    fn new(num_tokens: u64, rate: u64, key_bytes: usize, node_keys: Option<u64>) -> Result<Layout> {
        if rate == 0 {
            return Err(Error::InvalidArgument(
                "accelerator rate must be at least 1 (one key per `rate` ranks)".into(),
            ));
        }
        if !(1..=255).contains(&key_bytes) {
            return Err(Error::InvalidArgument(format!(
                "accelerator key bytes must be in 1..=255, got {key_bytes}"
            )));
        }
        let entry = key_bytes as u64 + 1;
        let room = PAGE - NODE_CHECKSUM_BYTES;
        let node_keys = node_keys.unwrap_or(room / entry);
        if node_keys < 2 || node_keys.saturating_mul(entry) > room {
            return Err(Error::InvalidArgument(format!(
                "accelerator node size must be at least 2 keys and fit a {PAGE}-byte page with its checksum ({} keys of {entry} bytes), got {node_keys}",
                room / entry
            )));
        }
        // A bucket's trie: two bytes per rank.
        let bottom_entry = rate.saturating_mul(2).saturating_add(entry);
        let bottom_node_keys = node_keys.min(room / bottom_entry);
        if bottom_node_keys < 2 {
            return Err(Error::InvalidArgument(format!(
                "accelerator rate {rate} is too large: two keys of {key_bytes} bytes with their buckets' tries (2 bytes a rank) must fit a {PAGE}-byte page"
            )));
        }
        let mut levels = Vec::new();
        if num_tokens > 0 {
            levels.push(num_tokens.div_ceil(rate));
            let mut fan_out = bottom_node_keys;
            while *levels.last().unwrap_or(&0) > fan_out {
                let below = *levels.last().unwrap_or(&0);
                levels.push(below.div_ceil(fan_out));
                fan_out = node_keys;
            }
            levels.reverse();
        }
        Ok(Layout {
            rate,
            key_bytes,
            node_keys,
            node_stride: (node_keys * entry + NODE_CHECKSUM_BYTES).next_power_of_two(),
            bottom_node_keys,
            bottom_stride: (bottom_node_keys * bottom_entry + NODE_CHECKSUM_BYTES)
                .next_power_of_two(),
            levels,
        })
    }

    /// The top levels that fit `budget` bytes (always the root): how many, and their bytes.
    fn resident(&self, budget: u64) -> (usize, u64) {
        let mut resident_levels = 0;
        let mut resident_bytes = 0u64;
        for level in 0..self.levels.len() {
            let more = self.level_bytes(level);
            if level > 0 && resident_bytes + more > budget {
                break;
            }
            resident_levels += 1;
            resident_bytes += more;
        }
        (resident_levels, resident_bytes)
    }

    fn is_bottom(&self, level: usize) -> bool {
        level + 1 == self.levels.len()
    }

    /// Bytes of a key: the suffix's first `key_bytes` bytes and their count.
    fn key_entry_bytes(&self) -> u64 {
        self.key_bytes as u64 + 1
    }

    /// Bytes of an entry of `level`: a key, and on the bottom level its bucket's trie.
    fn entry_bytes(&self, level: usize) -> u64 {
        if self.is_bottom(level) {
            self.key_entry_bytes() + 2 * self.rate
        } else {
            self.key_entry_bytes()
        }
    }

    /// Keys per node of `level`.
    fn fan_out(&self, level: usize) -> u64 {
        if self.is_bottom(level) {
            self.bottom_node_keys
        } else {
            self.node_keys
        }
    }

    fn stride(&self, level: usize) -> u64 {
        if self.is_bottom(level) {
            self.bottom_stride
        } else {
            self.node_stride
        }
    }

    fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].div_ceil(self.fan_out(level)) * self.stride(level)
    }

    fn level_offset(&self, level: usize) -> u64 {
        HEADER_BYTES + (0..level).map(|l| self.level_bytes(l)).sum::<u64>()
    }

    fn file_bytes(&self) -> u64 {
        self.level_offset(self.levels.len())
    }

    /// The keys of `level` that hold a partition point, given its point `p`
    /// one level up: key p above is key p·F here, so the point lies in
    /// ((p−1)·F, p·F]; all keys on the root level; none below point 0.
    fn window(&self, level: usize, p: u64) -> (u64, u64) {
        let (keys, fan_out) = (self.levels[level], self.fan_out(level));
        match (level, p) {
            (0, _) => (0, keys),
            (_, 0) => (0, 0),
            (_, p) => (((p - 1) * fan_out + 1).min(keys), (p * fan_out).min(keys)),
        }
    }

    /// File offset of node `node` of `level`.
    fn node_offset(&self, level: usize, node: u64) -> u64 {
        self.level_offset(level) + node * self.stride(level)
    }
}

/// The header: what the tree is, and which shard it was built for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    layout: Layout,
    token_width: u32,
    num_tokens: u64,
    ptr_size: u32,
    tokenized_bytes: u64,
    table_bytes: u64,
    fingerprint: u64,
    body_checksum: u64,
}

impl Header {
    fn for_shard(shard: &Shard, layout: Layout, body_checksum: u64) -> Result<Header> {
        Ok(Header {
            fingerprint: fingerprint(shard)?,
            ..Header::for_shard_without_fingerprint(shard, layout, body_checksum)
        })
    }

    /// [`Header::for_shard`] with a zero fingerprint (no reads).
    fn for_shard_without_fingerprint(shard: &Shard, layout: Layout, body_checksum: u64) -> Header {
        Header {
            layout,
            token_width: shard.token_width().bytes() as u32,
            num_tokens: shard.num_tokens(),
            ptr_size: shard.ptr_size() as u32,
            tokenized_bytes: shard.tokenized_len(),
            table_bytes: shard.table_len(),
            fingerprint: 0,
            body_checksum,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let l = &self.layout;
        let mut out = Vec::with_capacity(HEADER_BYTES as usize);
        out.extend_from_slice(&MAGIC);
        for v in [FORMAT_VERSION, self.token_width] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&l.rate.to_le_bytes());
        for v in [
            l.key_bytes as u32,
            l.node_keys as u32,
            l.node_stride as u32,
            l.levels.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.num_tokens.to_le_bytes());
        out.extend_from_slice(&self.ptr_size.to_le_bytes());
        out.extend_from_slice(&(l.bottom_node_keys as u32).to_le_bytes());
        for v in [
            self.tokenized_bytes,
            self.table_bytes,
            self.fingerprint,
            self.body_checksum,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for &keys in &l.levels {
            out.extend_from_slice(&keys.to_le_bytes());
        }
        let checksum = xxhash_rust::xxh3::xxh3_64(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out.resize(HEADER_BYTES as usize, 0);
        out
    }

    /// Decodes and checks a header (its checksum and the tree's shape).
    fn decode(bytes: &[u8], path: &Path) -> Result<Header> {
        let corrupt =
            |detail: String| Error::corrupt(path, format!("search accelerator: {detail}"));
        if bytes.len() < HEADER_BYTES as usize {
            return Err(corrupt(format!(
                "{} bytes, shorter than its header",
                bytes.len()
            )));
        }
        if bytes[..8] != MAGIC {
            return Err(corrupt("not an accelerator file (bad magic)".into()));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |at: usize| read_uint_le(&bytes[at..at + 8]);
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {version}, this build reads version {FORMAT_VERSION} (rebuild it with `anygram index add-accelerator`)"
            )));
        }
        let num_levels = u32_at(36) as usize;
        if num_levels > MAX_LEVELS {
            return Err(corrupt(format!(
                "{num_levels} levels, at most {MAX_LEVELS}"
            )));
        }
        let levels_at = 88;
        let checksum_at = levels_at + 8 * num_levels;
        if u64_at(checksum_at) != xxhash_rust::xxh3::xxh3_64(&bytes[..checksum_at]) {
            return Err(corrupt("header checksum mismatch".into()));
        }
        let levels: Vec<u64> = (0..num_levels).map(|l| u64_at(levels_at + 8 * l)).collect();
        let num_tokens = u64_at(40);
        let layout = Layout::new(
            num_tokens,
            u64_at(16),
            u32_at(24) as usize,
            Some(u32_at(28) as u64),
        )
        .map_err(|e| corrupt(e.to_string()))?;
        if layout.levels != levels
            || layout.node_stride != u32_at(32) as u64
            || layout.bottom_node_keys != u32_at(52) as u64
        {
            return Err(corrupt(format!(
                "its levels {levels:?} do not follow from its parameters ({:?})",
                layout.levels
            )));
        }
        Ok(Header {
            layout,
            token_width: u32_at(12),
            num_tokens,
            ptr_size: u32_at(48),
            tokenized_bytes: u64_at(56),
            table_bytes: u64_at(64),
            fingerprint: u64_at(72),
            body_checksum: u64_at(80),
        })
    }
}

/// A hash of what identifies a shard, in O(1) reads: its sizes, and the
/// suffix-array entries (with the text they point to) at evenly spaced ranks.
fn fingerprint(shard: &Shard) -> Result<u64> {
    let mut hash = Xxh3::new();
    let (table, text) = (shard.table_file(), shard.tokenized_file());
    for v in [
        shard.token_width().bytes() as u64,
        shard.num_tokens(),
        shard.ptr_size() as u64,
        text.len(),
        table.len(),
    ] {
        hash.update(&v.to_le_bytes());
    }
    let n = shard.num_tokens();
    let ps = shard.ptr_size() as u64;
    let ranks: Vec<u64> = (0..FINGERPRINT_SAMPLES.min(n))
        .map(|i| (i as u128 * (n - 1) as u128 / (FINGERPRINT_SAMPLES - 1) as u128) as u64)
        .collect();
    // Two batches of reads (one round trip each in object storage): entries, then texts.
    table.prefetch(&ranks.iter().map(|&r| (r * ps, ps)).collect::<Vec<_>>())?;
    let entries = ranks
        .iter()
        .map(|&r| Ok(table.read_at(r * ps, ps)?.into_owned()))
        .collect::<Result<Vec<_>>>()?;
    let ptrs: Vec<u64> = entries
        .iter()
        .map(|e| read_uint_le(e).min(text.len()))
        .collect();
    text.prefetch(
        &ptrs
            .iter()
            .map(|&p| (p, FINGERPRINT_TEXT_BYTES))
            .collect::<Vec<_>>(),
    )?;
    for (entry, &ptr) in entries.iter().zip(&ptrs) {
        hash.update(entry);
        hash.update(&text.read_clipped(ptr, FINGERPRINT_TEXT_BYTES)?);
    }
    Ok(hash.digest())
}

/// An opened accelerator: the resident top levels in RAM, the rest mapped.
pub struct Accelerator {
    file: IndexFile,
    layout: Layout,
    /// The bytes of levels `..resident_levels`, read at open in one piece.
    resident: Vec<u8>,
    resident_levels: usize,
    body_checksum: u64,
    /// Set when a search found the tree inconsistent with the suffix array.
    disabled: AtomicBool,
    /// The nodes below the resident levels whose checksum already held.
    checked: CheckedNodes,
}

/// Which nodes of a local file have passed their checksum, one bit each: a
/// node is checked the first time a search reads it, not at every read (a
/// 4 KiB hash would cost a hot search as much as its whole descent). Nodes
/// of a remote file are checked at every read: the bytes may come anew from
/// the store.
struct CheckedNodes {
    /// The first bit of each level's nodes.
    first_bit: Vec<u64>,
    bits: Vec<AtomicU64>,
}

impl CheckedNodes {
    fn new(layout: &Layout) -> CheckedNodes {
        let mut first_bit = Vec::with_capacity(layout.levels.len());
        let mut total = 0u64;
        for (level, &keys) in layout.levels.iter().enumerate() {
            first_bit.push(total);
            total += keys.div_ceil(layout.fan_out(level));
        }
        CheckedNodes {
            first_bit,
            bits: (0..total.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn bit(&self, level: usize, node: u64) -> (usize, u64) {
        let bit = self.first_bit[level] + node;
        ((bit / 64) as usize, 1 << (bit % 64))
    }

    fn is_checked(&self, level: usize, node: u64) -> bool {
        let (word, mask) = self.bit(level, node);
        self.bits[word].load(AtomicOrdering::Relaxed) & mask != 0
    }

    fn mark(&self, level: usize, node: u64) {
        let (word, mask) = self.bit(level, node);
        self.bits[word].fetch_or(mask, AtomicOrdering::Relaxed);
    }
}

/// Whether a shard's recent rounds of reads were served from RAM. Hinting a
/// round's reads together (`madvise(WILLNEED)`) lets a cold round's reads
/// overlap, but on pages already in RAM it is a system call that costs more
/// than the whole hot search; so local rounds are hinted only until
/// [`Warmth::HOT_AFTER`] rounds in a row have been fast, and again from the
/// first slow one. Reads in object storage are always started together.
#[derive(Default)]
pub(crate) struct Warmth {
    fast_rounds: AtomicU32,
    /// Searches that asked [`Warmth::take_tree`] while hot.
    searches: AtomicU32,
    /// A [`SearchPath`] other than the adaptive one, when pinned.
    pinned: AtomicU8,
}

/// Which search a shard with an accelerator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchPath {
    /// The tree (few rounds of reads) while reads are slow or remote; the
    /// plain search narrowed by the tree's keys while a local shard's reads
    /// come from RAM (less CPU: see [`Warmth`]).
    #[default]
    Adaptive,
    /// Always the tree (benchmarks of rounds, tests of the tree).
    Tree,
    /// Always the plain binary search, narrowed by the tree's keys.
    Narrowed,
}

impl Warmth {
    /// Fast rounds in a row after which rounds are no longer hinted. A cold
    /// shard has runs of fast rounds too (pages a query shares with earlier
    /// ones): the run must be long enough not to be one of those.
    const HOT_AFTER: u32 = 64;
    /// While hot, one search in this many still takes the tree (and is timed).
    const RECHECK_EVERY: u32 = 64;
    /// A plain search this slow read the disk: on a cold cache its dozen
    /// dependent reads take far longer; from RAM even a long one (a pattern
    /// tied over thousands of ranks) takes less.
    const SLOW_SEARCH: std::time::Duration = std::time::Duration::from_micros(100);
    /// A round that read from disk took at least one device read (tens of µs
    /// on an SSD); a round from RAM takes under a µs a read (a first touch
    /// of a mapped page that is in the page cache: a minor fault).
    const DISK_ROUND: std::time::Duration = std::time::Duration::from_micros(20);
    const RAM_READ: std::time::Duration = std::time::Duration::from_micros(1);

    pub(crate) fn is_hot(&self) -> bool {
        match self.pinned.load(AtomicOrdering::Relaxed) {
            1 => false,
            2 => true,
            _ => self.fast_rounds.load(AtomicOrdering::Relaxed) >= Self::HOT_AFTER,
        }
    }

    /// Whether searches may trade rounds for CPU: the reads are hot and not
    /// being counted (a counted query reports the rounds that matter where
    /// rounds cost).
    pub(crate) fn rounds_are_free(&self) -> bool {
        self.is_hot() && !reads::active()
    }

    pub(crate) fn pin(&self, path: SearchPath) {
        let code = match path {
            SearchPath::Adaptive => 0,
            SearchPath::Tree => 1,
            SearchPath::Narrowed => 2,
        };
        self.pinned.store(code, AtomicOrdering::Relaxed);
    }

    /// Whether a search should take the tree (rounds of reads): always while
    /// reads are slow or counted, and one search in [`Warmth::RECHECK_EVERY`] while they
    /// are fast, so that a shard whose pages leave RAM is noticed.
    pub(crate) fn take_tree(&self) -> bool {
        match self.pinned.load(AtomicOrdering::Relaxed) {
            1 => return true,
            2 => return false,
            _ => {}
        }
        if !self.rounds_are_free() {
            return true;
        }
        self.searches
            .fetch_add(1, AtomicOrdering::Relaxed)
            .is_multiple_of(Self::RECHECK_EVERY)
    }

    /// A plain search run because reads were hot: one that took as long as a
    /// disk read means they no longer are.
    pub(crate) fn record_search(&self, elapsed: std::time::Duration) {
        if elapsed >= Self::SLOW_SEARCH {
            self.fast_rounds.store(0, AtomicOrdering::Relaxed);
        }
    }

    fn record(&self, elapsed: std::time::Duration, reads: usize) {
        if elapsed < Self::DISK_ROUND + Self::RAM_READ * reads as u32 {
            if !self.is_hot() {
                self.fast_rounds.fetch_add(1, AtomicOrdering::Relaxed);
            }
        } else {
            self.fast_rounds.store(0, AtomicOrdering::Relaxed);
        }
    }
}

/// One round of reads in flight: started together where that helps, and
/// timed on local files so that [`Warmth`] learns whether hints pay.
pub(crate) struct Round<'s> {
    warmth: Option<&'s Warmth>,
    started: std::time::Instant,
    reads: usize,
}

impl<'s> Round<'s> {
    /// Starts reading `ranges` of `file`, one of `shard`'s files, and counts them.
    pub(crate) fn start(
        shard: &'s Shard,
        file: &IndexFile,
        ranges: &[(u64, u64)],
    ) -> Result<Round<'s>> {
        let local = matches!(file, IndexFile::Local(_));
        if !(local && shard.warmth().is_hot()) {
            advise(file, ranges)?;
        }
        for &(at, len) in ranges {
            reads::touch(file, at, len);
        }
        reads::round(shard.number);
        Ok(Round {
            warmth: local.then(|| shard.warmth()),
            started: std::time::Instant::now(),
            reads: ranges.len(),
        })
    }

    /// The round's reads are done.
    pub(crate) fn end(self) {
        if let Some(warmth) = self.warmth {
            warmth.record(self.started.elapsed(), self.reads);
        }
    }
}

/// Where a key's suffix lies relative to a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    /// Below every suffix that starts with the pattern.
    Less,
    /// Starts with the pattern.
    Match,
    /// Its known bytes equal the pattern's first `key_bytes`: could be anywhere.
    Unknown,
    /// Above every suffix that starts with the pattern.
    Greater,
}

/// The predicates whose partition points over the keys bracket the two bounds:
/// the lower bound lies between the last key surely below the pattern and the
/// first key surely not; the upper bound likewise for "above the pattern".
const BRACKETS: [fn(KeyClass) -> bool; 4] = [
    |c| c == KeyClass::Less,
    |c| c == KeyClass::Less || c == KeyClass::Unknown,
    |c| c == KeyClass::Less || c == KeyClass::Match,
    |c| c != KeyClass::Greater,
];

/// Longest pattern the tries position (their LCPs saturate at 255).
const TRIE_MAX_PATTERN: usize = 254;
/// LCP value meaning "255 bytes or more".
const LCP_SATURATED: u8 = 255;
/// Bytes of every suffix the LCPs look at.
const TRIE_SPAN: u64 = 256;

/// A bucket's blind trie: for each rank `i` after the bucket's first, `lcp[i]`
/// is the LCP in bytes of suffixes `i - 1` and `i` (capped at 255) and `c[i]`
/// the byte of suffix `i` where they differ. Stored as `lcp` then `c`, one
/// byte a rank; the first rank's two bytes are reserved (zero).
///
/// A suffix that ends (at the shard's end) within the compared bytes sorts
/// before everything it is a prefix of, as if ended by a byte below all
/// others: it is then the first child of its node, whose byte is never
/// stored or needed, so such buckets need no special case.
#[derive(Clone, Copy)]
struct BucketTrie<'a> {
    lcp: &'a [u8],
    branch: &'a [u8],
    /// Ranks in the bucket (fewer than the rate only in the last one).
    len: usize,
}

/// Where a trie puts a pattern, relative to the bucket's first rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TriePlace {
    /// First rank not below the pattern.
    lower: usize,
    /// First rank above it.
    upper: usize,
}

impl<'a> BucketTrie<'a> {
    fn new(trie: &'a [u8], rate: usize, len: usize) -> BucketTrie<'a> {
        BucketTrie {
            lcp: &trie[..rate],
            branch: &trie[rate..2 * rate],
            len,
        }
    }

    /// The rank whose suffix a blind descent for `pattern` reaches, without
    /// reading text: at each node (its depth the least LCP inside it), the child
    /// whose branching byte is the pattern's, else the first child. Its suffix
    /// shares with the pattern the longest prefix any suffix of the bucket does.
    fn candidate(&self, pattern: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while hi - lo > 1 {
            let depth = self.lcp[lo + 1..hi].iter().copied().min().unwrap_or(0);
            if depth as usize >= pattern.len() || depth == LCP_SATURATED {
                break;
            }
            let want = pattern[depth as usize];
            let child_end =
                |from: usize| (from + 1..hi).find(|&i| self.lcp[i] == depth).unwrap_or(hi);
            // Children start at the boundaries of this depth; the first child's byte is never stored.
            match (lo + 1..hi).find(|&i| self.lcp[i] == depth && self.branch[i] == want) {
                Some(start) => (lo, hi) = (start, child_end(start)),
                None => hi = child_end(lo),
            }
        }
        lo
    }

    /// Places `pattern` given the suffix at `candidate` (see
    /// [`BucketTrie::candidate`]) and `shared`, the bytes it shares with the
    /// pattern; `None` for a combination a consistent trie cannot produce.
    fn place(
        &self,
        pattern: &[u8],
        candidate: usize,
        shared: usize,
        above: bool,
    ) -> Option<TriePlace> {
        let m = pattern.len();
        let run_start = |min_lcp: usize| {
            let mut start = candidate;
            while start > 0 && self.lcp[start] as usize >= min_lcp {
                start -= 1;
            }
            start
        };
        let run_end = |min_lcp: usize| {
            let mut end = candidate + 1;
            while end < self.len && self.lcp[end] as usize >= min_lcp {
                end += 1;
            }
            end
        };
        if shared == m {
            return Some(TriePlace {
                lower: run_start(m),
                upper: run_end(m),
            });
        }
        let l = shared;
        if !above {
            // The pattern sorts before the candidate: before the ranks sharing more than l bytes with it.
            let at = run_start(l + 1);
            return Some(TriePlace {
                lower: at,
                upper: at,
            });
        }
        // After the candidate: skip the siblings (at depth l) whose byte is below the pattern's.
        let mut at = run_end(l + 1);
        while at < self.len && self.lcp[at] as usize == l {
            match self.branch[at].cmp(&pattern[l]) {
                Ordering::Less => {
                    at += 1;
                    while at < self.len && self.lcp[at] as usize > l {
                        at += 1;
                    }
                }
                Ordering::Greater => break,
                // The descent would have taken this child.
                Ordering::Equal => return None,
            }
        }
        Some(TriePlace {
            lower: at,
            upper: at,
        })
    }
}

/// One bound a trie places: which search, which bucket, and the candidate rank.
struct TrieProbe {
    search: usize,
    /// 0: the lower bound, 1: the upper one, 2: both (one bucket holds them).
    which: usize,
    bucket: u64,
    candidate: usize,
}

/// Starts a round's reads together where that can help: always in object
/// storage; locally only when they span more than one page (a single page gains
/// nothing from the hint, and the system call costs more than a resident read).
fn advise(file: &IndexFile, ranges: &[(u64, u64)]) -> Result<()> {
    if let IndexFile::Local(_) = file {
        let mut pages = ranges
            .iter()
            .filter(|r| r.1 > 0)
            .flat_map(|&(at, len)| [at / PAGE, (at + len - 1) / PAGE]);
        let Some(first) = pages.next() else {
            return Ok(());
        };
        if pages.all(|p| p == first) {
            return Ok(());
        }
    }
    file.prefetch(ranges)
}

/// The nodes one level of a descent reads, by node number.
type Nodes<'a> = BTreeMap<u64, Cow<'a, [u8]>>;

/// What a descent found: per query, the partition point of each of
/// [`BRACKETS`] over the bottom keys; and the bottom nodes it read.
struct Descent<'a> {
    points: Vec<[u64; 4]>,
    bottom: Nodes<'a>,
}

impl Accelerator {
    /// Opens `dir/accel.{s}` for `shard`, keeping the top levels that fit
    /// `resident_budget` bytes in RAM (at least the root). `Ok(None)` when there
    /// is no file; an error when it is not this shard's or is damaged.
    pub fn open(dir: &Path, shard: &Shard, resident_budget: u64) -> Result<Option<Accelerator>> {
        let path = dir.join(file_name(shard.number));
        if !crate::storage::file_exists(&path)? {
            return Ok(None);
        }
        let file = IndexFile::open(&path, "the search accelerator")?;
        let header = Header::decode(&file.read_clipped(0, HEADER_BYTES)?, &path)?;
        let expected = if shard.is_remote() {
            // In object storage the fingerprint's 64 sampled pointers and texts
            // would cost two more round trips at every open. Exactness does not
            // rest on it: every search checks the tree's bracket against the
            // suffix array and stops using a stale tree. Everything else in the
            // header (sizes, width, pointer size) is still checked here.
            Header {
                fingerprint: header.fingerprint,
                ..Header::for_shard_without_fingerprint(
                    shard,
                    header.layout.clone(),
                    header.body_checksum,
                )
            }
        } else {
            Header::for_shard(shard, header.layout.clone(), header.body_checksum)?
        };
        if header != expected {
            return Err(Error::corrupt(
                &path,
                "search accelerator: built for another shard or another version of this one (stale)",
            ));
        }
        let layout = header.layout;
        if file.len() != layout.file_bytes() {
            return Err(Error::corrupt(
                &path,
                format!(
                    "search accelerator: {} bytes, its header describes {}",
                    file.len(),
                    layout.file_bytes()
                ),
            ));
        }
        let (resident_levels, resident_bytes) = layout.resident(resident_budget);
        // One contiguous read (the levels are stored top-down).
        let resident = file.read_at(HEADER_BYTES, resident_bytes)?.into_owned();
        for level in 0..resident_levels {
            let start = (layout.level_offset(level) - HEADER_BYTES) as usize;
            let stride = layout.stride(level) as usize;
            let bytes = &resident[start..start + layout.level_bytes(level) as usize];
            if let Some(node) = bytes.chunks(stride).position(|n| !node_intact(n)) {
                return Err(Error::corrupt(
                    &path,
                    format!("search accelerator: node {node} of level {level} fails its checksum"),
                ));
            }
        }
        Ok(Some(Accelerator {
            file,
            checked: CheckedNodes::new(&layout),
            layout,
            resident,
            resident_levels,
            body_checksum: header.body_checksum,
            disabled: AtomicBool::new(false),
        }))
    }

    /// Levels in the tree.
    pub fn num_levels(&self) -> usize {
        self.layout.levels.len()
    }
    /// Levels held in RAM (the top ones).
    pub fn resident_levels(&self) -> usize {
        self.resident_levels
    }
    /// Bytes of the `levels` top levels: the resident budget that keeps them in RAM.
    pub fn top_levels_bytes(&self, levels: usize) -> u64 {
        self.layout.level_offset(levels.min(self.num_levels())) - HEADER_BYTES
    }
    /// One key per this many ranks.
    pub fn rate(&self) -> u64 {
        self.layout.rate
    }
    /// Bytes of each suffix kept in a key.
    pub fn key_bytes(&self) -> usize {
        self.layout.key_bytes
    }
    /// Whether a search found the file inconsistent with the shard and stopped using it.
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(AtomicOrdering::Relaxed)
    }

    /// Stops using the file (a warning the first time).
    fn disable(&self, shard: &Shard, why: &str) {
        if !self.disabled.swap(true, AtomicOrdering::Relaxed) {
            eprintln!(
                "anygram: warning: {} {why} (stale or corrupt); shard {} searches without it. Rebuild it with `anygram index add-accelerator`.",
                self.file.path().display(),
                shard.number
            );
        }
    }

    /// Node `node` of `level`, from RAM (checked at open) or from the file;
    /// `None` when a node read from the file fails its checksum.
    fn node(&self, level: usize, node: u64) -> Result<Option<Cow<'_, [u8]>>> {
        let at = self.layout.node_offset(level, node);
        let len = self.layout.stride(level);
        if level < self.resident_levels {
            let at = (at - HEADER_BYTES) as usize;
            return Ok(Some(Cow::Borrowed(&self.resident[at..at + len as usize])));
        }
        let bytes = self.file.read_at(at, len)?;
        let local = matches!(self.file, IndexFile::Local(_));
        if local && self.checked.is_checked(level, node) {
            return Ok(Some(bytes));
        }
        if !node_intact(&bytes) {
            return Ok(None);
        }
        if local {
            self.checked.mark(level, node);
        }
        Ok(Some(bytes))
    }

    /// Key `index` of `level` (its key bytes and length; not a bottom key's trie).
    fn entry(&self, level: usize, index: u64) -> Result<Option<Vec<u8>>> {
        let fan_out = self.layout.fan_out(level);
        let Some(node) = self.node(level, index / fan_out)? else {
            return Ok(None);
        };
        let at = ((index % fan_out) * self.layout.entry_bytes(level)) as usize;
        Ok(Some(
            node[at..at + self.layout.key_entry_bytes() as usize].to_vec(),
        ))
    }

    /// The first key of `keys` (all in `node`, whose first key is key `base`)
    /// for which `below` is false, by binary search.
    fn partition_in_node(
        &self,
        node: &[u8],
        base: u64,
        keys: (u64, u64),
        entry_bytes: usize,
        query: &[u8],
        below: fn(KeyClass) -> bool,
    ) -> u64 {
        let (mut lo, mut hi) = keys;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = (mid - base) as usize * entry_bytes;
            if below(self.classify(&node[at..], query)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn classify(&self, entry: &[u8], query: &[u8]) -> KeyClass {
        let key_bytes = self.layout.key_bytes;
        let known = (entry[key_bytes] as usize).min(key_bytes);
        let n = known.min(query.len());
        match entry[..n].cmp(&query[..n]) {
            Ordering::Less => KeyClass::Less,
            Ordering::Greater => KeyClass::Greater,
            Ordering::Equal if known >= query.len() => KeyClass::Match,
            // The suffix ends here: a proper prefix of the query sorts before it.
            Ordering::Equal if known < key_bytes => KeyClass::Less,
            Ordering::Equal => KeyClass::Unknown,
        }
    }

    /// Descends the tree for every query at once: for each of [`BRACKETS`], its
    /// partition point over the bottom level's keys. One round of reads per
    /// level kept on disk, shared by all the queries. `None` when a node read
    /// fails its checksum.
    fn descend(&self, shard: &Shard, queries: &[&[u8]]) -> Result<Option<Descent<'_>>> {
        let mut points = vec![[0u64; 4]; queries.len()];
        let mut nodes = Nodes::new();
        for level in 0..self.layout.levels.len() {
            let fan_out = self.layout.fan_out(level);
            let entry_bytes = self.layout.entry_bytes(level) as usize;
            // Key p of the level above is key p·F here: the point lies in (p−1)·F, p·F].
            let windows: Vec<[(u64, u64); 4]> = points
                .iter()
                .map(|ps| ps.map(|p| self.layout.window(level, p)))
                .collect();
            // On the bottom level also the node of bucket p−1 when the window is
            // empty (p = its start): the tries need it even without a key compared.
            let bottom = self.layout.is_bottom(level);
            let wanted: BTreeSet<u64> = windows
                .iter()
                .flatten()
                .filter(|&&(lo, hi)| lo < hi || (bottom && lo > 0))
                .map(|&(lo, hi)| {
                    if lo < hi {
                        lo / fan_out
                    } else {
                        (lo - 1) / fan_out
                    }
                })
                .collect();
            let round = if level >= self.resident_levels && !wanted.is_empty() {
                let stride = self.layout.stride(level);
                let ranges: Vec<(u64, u64)> = wanted
                    .iter()
                    .map(|&node| (self.layout.node_offset(level, node), stride))
                    .collect();
                Some(Round::start(shard, &self.file, &ranges)?)
            } else {
                None
            };
            nodes.clear();
            for node in wanted {
                let Some(bytes) = self.node(level, node)? else {
                    return Ok(None);
                };
                nodes.insert(node, bytes);
            }
            if let Some(round) = round {
                round.end();
            }
            for ((query, ps), ws) in queries.iter().zip(points.iter_mut()).zip(&windows) {
                // Patterns no longer than a key never tie with one: two brackets suffice.
                let exact = query.len() <= self.layout.key_bytes;
                for (which, (&(lo, hi), below)) in ws.iter().zip(BRACKETS).enumerate() {
                    if exact && which % 2 == 1 {
                        ps[which] = ps[which - 1];
                        continue;
                    }
                    ps[which] = if lo < hi {
                        let node = &nodes[&(lo / fan_out)];
                        self.partition_in_node(
                            node,
                            lo / fan_out * fan_out,
                            (lo, hi),
                            entry_bytes,
                            query,
                            below,
                        )
                    } else {
                        lo
                    };
                }
            }
        }
        Ok(Some(Descent {
            points,
            bottom: nodes,
        }))
    }

    /// The trie of bucket `bucket`, from a bottom node the descent read.
    fn trie<'n>(
        &self,
        bottom: &'n Nodes<'_>,
        bucket: u64,
        num_tokens: u64,
    ) -> Option<BucketTrie<'n>> {
        let fan_out = self.layout.bottom_node_keys;
        let node = bottom.get(&(bucket / fan_out))?;
        let entry = self.layout.entry_bytes(self.layout.levels.len() - 1) as usize;
        let at = (bucket % fan_out) as usize * entry + self.layout.key_entry_bytes() as usize;
        let rate = self.layout.rate as usize;
        let first = bucket * self.layout.rate;
        let len = (num_tokens - first).min(self.layout.rate) as usize;
        Some(BucketTrie::new(&node[at..at + 2 * rate], rate, len))
    }

    /// Narrows `within` to the ranks that can hold suffixes starting with
    /// `query`: a descent of the tree for the two outer brackets only (the
    /// last key surely below the pattern, the first surely above), one
    /// search, no allocation, no suffix-array read. The plain binary search
    /// finishes inside: the cheaper search for a shard whose reads come from
    /// RAM. `None` when a node fails its checksum or the accelerator is
    /// disabled.
    pub fn narrow(
        &self,
        shard: &Shard,
        query: &[u8],
        within: RankRange,
    ) -> Result<Option<RankRange>> {
        if self.is_disabled() {
            return Ok(None);
        }
        if self.layout.levels.is_empty() {
            return Ok(Some(within));
        }
        let mut points = [0u64; 2];
        for level in 0..self.layout.levels.len() {
            let fan_out = self.layout.fan_out(level);
            let entry_bytes = self.layout.entry_bytes(level) as usize;
            for (point, below) in points.iter_mut().zip([BRACKETS[0], BRACKETS[3]]) {
                let (mut lo, hi) = self.layout.window(level, *point);
                if lo < hi {
                    let number = lo / fan_out;
                    let Some(node) = self.node(level, number)? else {
                        self.disable(shard, "has a node that fails its checksum");
                        return Ok(None);
                    };
                    lo = self.partition_in_node(
                        &node,
                        number * fan_out,
                        (lo, hi),
                        entry_bytes,
                        query,
                        below,
                    );
                }
                *point = lo;
            }
        }
        // Bottom key k is the suffix at rank k·rate: matches start after the
        // last key below the pattern and end at the first key above it.
        let (rate, keys) = (
            self.layout.rate,
            self.layout.levels[self.layout.levels.len() - 1],
        );
        let lo = if points[0] == 0 {
            0
        } else {
            (points[0] - 1) * rate + 1
        };
        let hi = if points[1] >= keys {
            shard.num_tokens()
        } else {
            points[1] * rate
        };
        let lo = lo.clamp(within.0, within.1);
        Ok(Some((lo, hi.clamp(lo, within.1))))
    }

    /// The ranks of `within` whose suffixes start with `query`, as
    /// [`Shard::find`] defines them; `None` when the accelerator is disabled or
    /// turns out inconsistent with the suffix array (then it disables itself).
    pub fn find(
        &self,
        shard: &Shard,
        query: &[u8],
        within: RankRange,
    ) -> Result<Option<RankRange>> {
        if within.0 >= within.1 || query.is_empty() {
            return Ok(None);
        }
        Ok(self
            .find_batch(shard, &[(query, within)])?
            .map(|ranges| ranges[0]))
    }

    /// [`Accelerator::find`] for many `(query, within)` searches at once, all
    /// their reads in shared rounds: the rounds of the slowest search, not
    /// their sum. `None` when the accelerator is disabled or inconsistent.
    ///
    /// A wide search descends the tree to the bucket of each bound, then each
    /// bucket's trie names one candidate rank without reading text; one pointer
    /// and one text read at it place the bound. Bounds the tries cannot place
    /// (long patterns tied on their keys, anything inconsistent) and batches of
    /// narrow searches only finish k-ary in the suffix array.
    pub fn find_batch(
        &self,
        shard: &Shard,
        searches: &[(&[u8], RankRange)],
    ) -> Result<Option<Vec<RankRange>>> {
        if self.is_disabled() {
            return Ok(None);
        }
        let arity = self.layout.rate.max(MIN_ARITY);
        // Trivial searches need no reads; wide ones start from the tree, narrow
        // ones (a context being extended) straight in the suffix array, unless
        // the batch descends the tree anyway: then the tree's rounds serve them
        // too, in fewer pages than reading the whole window.
        let trivial = |&(query, (w0, w1)): &(&[u8], RankRange)| query.is_empty() || w0 >= w1;
        let is_wide = |i: usize| {
            let (_, (w0, w1)) = searches[i];
            !trivial(&searches[i]) && w1 - w0 > arity
        };
        let tree = !self.layout.levels.is_empty() && (0..searches.len()).any(is_wide);
        let wide: Vec<usize> = (0..searches.len())
            .filter(|&i| tree && !trivial(&searches[i]))
            .collect();
        let wide_queries: Vec<&[u8]> = wide.iter().map(|&i| searches[i].0).collect();
        let Some(descent) = self.descend(shard, &wide_queries)? else {
            self.disable(shard, "has a node that fails its checksum");
            return Ok(None);
        };
        let (n, rate) = (shard.num_tokens(), self.layout.rate);
        let first_after = |p: u64| {
            if p == 0 {
                0
            } else {
                ((p - 1) * rate + 1).min(n)
            }
        };
        let last_at = |p: u64| p.saturating_mul(rate).min(n);

        // Placed bounds, by search: [lower, upper].
        let mut placed: BTreeMap<usize, [Option<u64>; 2]> = BTreeMap::new();
        // The tries' candidates: at most one a bound, one a bucket.
        let mut probes: Vec<TrieProbe> = Vec::new();
        for (w, &i) in wide.iter().enumerate() {
            let query = searches[i].0;
            let points = descent.points[w];
            if query.len() > TRIE_MAX_PATTERN || points[0] != points[1] || points[2] != points[3] {
                continue;
            }
            let (lower, upper) = (points[0], points[2]);
            let (w0, _) = searches[i].1;
            let mut add = |point: u64, which: usize| {
                if point == 0 {
                    // Key 0 (rank 0) is not below the bound: it is the window's start.
                    let bounds = placed.entry(i).or_insert([None, None]);
                    for (b, bound) in bounds.iter_mut().enumerate() {
                        if which == 2 || which == b {
                            *bound = Some(w0);
                        }
                    }
                    return;
                }
                let bucket = point - 1;
                if let Some(trie) = self.trie(&descent.bottom, bucket, n) {
                    probes.push(TrieProbe {
                        search: i,
                        which,
                        bucket,
                        candidate: trie.candidate(query),
                    });
                }
            };
            if lower == upper {
                add(lower, 2);
            } else {
                add(lower, 0);
                add(upper, 1);
            }
        }
        if !probes.is_empty() {
            let (table, text) = (shard.table_file(), shard.tokenized_file());
            let ps = shard.ptr_size() as u64;
            let rank = |p: &TrieProbe| p.bucket * rate + p.candidate as u64;
            let pointer_reads: Vec<(u64, u64)> =
                probes.iter().map(|p| (rank(p) * ps, ps)).collect();
            let round = Round::start(shard, table, &pointer_reads)?;
            let ptrs = probes
                .iter()
                .map(|p| shard.ptr_at(rank(p)))
                .collect::<Result<Vec<u64>>>()?;
            round.end();
            let text_reads: Vec<(u64, u64)> = probes
                .iter()
                .zip(&ptrs)
                .map(|(p, &ptr)| {
                    (
                        ptr,
                        (searches[p.search].0.len() as u64).min(text.len() - ptr),
                    )
                })
                .collect();
            let round = Round::start(shard, text, &text_reads)?;
            for (probe, &(at, len)) in probes.iter().zip(&text_reads) {
                let (query, (w0, w1)) = searches[probe.search];
                let found = text.read_at(at, len)?;
                let Some(trie) = self.trie(&descent.bottom, probe.bucket, n) else {
                    continue;
                };
                // A suffix that ends first sorts first: the pattern is above it.
                let shared = found
                    .iter()
                    .zip(query)
                    .position(|(a, b)| a != b)
                    .unwrap_or(found.len().min(query.len()));
                let above = shared < query.len()
                    && (shared == found.len() || query[shared] > found[shared]);
                let Some(place) = trie.place(query, probe.candidate, shared, above) else {
                    continue;
                };
                // The bucket's first key lies before both bounds (else the descent chose it wrong).
                let start = probe.bucket * rate;
                let bounds = placed.entry(probe.search).or_insert([None, None]);
                if probe.which != 1 && place.lower > 0 {
                    bounds[0] = Some((start + place.lower as u64).clamp(w0, w1));
                }
                if probe.which != 0 && place.upper > 0 {
                    bounds[1] = Some((start + place.upper as u64).clamp(w0, w1));
                }
            }
            round.end();
        }

        let mut ranges: Vec<RankRange> = searches
            .iter()
            .map(|&(query, (w0, w1))| if query.is_empty() { (w0, w1) } else { (w0, w0) })
            .collect();
        let mut wide_points = wide.iter().zip(&descent.points).peekable();
        let mut pending = Vec::new();
        for (i, search) in searches.iter().enumerate() {
            if trivial(search) {
                continue;
            }
            let (query, (w0, w1)) = *search;
            let bounds = match wide_points.peek() {
                Some(&(&w, points)) if w == i => {
                    wide_points.next();
                    let known = placed.get(&i).copied().unwrap_or([None, None]);
                    if let [Some(lower), Some(upper)] = known {
                        if lower > upper {
                            self.disable(shard, "disagrees with the suffix array");
                            return Ok(None);
                        }
                        ranges[i] = (lower, upper);
                        continue;
                    }
                    let bracket =
                        |surely: u64, maybe: u64, upper: bool, known: Option<u64>| match known {
                            Some(at) => Bound::window(at, at, upper),
                            None => Bound {
                                lo: first_after(surely).clamp(w0, w1),
                                hi: last_at(maybe).clamp(w0, w1),
                                upper,
                                checked: false,
                            },
                        };
                    [
                        bracket(points[0], points[1], false, known[0]),
                        bracket(points[2], points[3], true, known[1]),
                    ]
                }
                _ => [Bound::window(w0, w1, false), Bound::window(w0, w1, true)],
            };
            pending.push(Finishing {
                index: i,
                pattern: query,
                skip: 0,
                window: (w0, w1),
                bounds,
            });
        }
        if pending.is_empty() {
            return Ok(Some(ranges));
        }
        let Some(found) = finish(shard, finishing_arity(shard, arity), &mut pending)? else {
            self.disable(shard, "disagrees with the suffix array");
            return Ok(None);
        };
        for (index, range) in found {
            ranges[index] = range;
        }
        Ok(Some(ranges))
    }
}

/// Whether a node's bytes match the checksum at its end.
fn node_intact(node: &[u8]) -> bool {
    let (body, sum) = node.split_at(node.len() - NODE_CHECKSUM_BYTES as usize);
    xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() == sum
}

/// One search being finished in the suffix array: the ranks of `window` whose
/// suffixes, after their first `skip` bytes, start with `pattern`.
pub(crate) struct Finishing<'a> {
    /// The caller's number for this search.
    pub index: usize,
    pub pattern: &'a [u8],
    /// Bytes every suffix in `window` shares with the query before `pattern`.
    pub skip: usize,
    pub window: RankRange,
    bounds: [Bound; 2],
}

impl<'a> Finishing<'a> {
    /// A search inside a window that holds every match (bounds already known to
    /// lie in it, nothing to check).
    pub fn within(index: usize, pattern: &'a [u8], skip: usize, window: RankRange) -> Self {
        Finishing {
            index,
            pattern,
            skip,
            window,
            bounds: [
                Bound::window(window.0, window.1, false),
                Bound::window(window.0, window.1, true),
            ],
        }
    }
}

/// Probes a bound per round of [`finish`] while a local shard's reads come
/// from RAM: rounds cost nothing then, compared ranks do.
const HOT_ARITY: u64 = 4;

/// The arity of [`finish`]'s rounds on `shard`: `cold_arity` unless its reads are hot.
pub(crate) fn finishing_arity(shard: &Shard, cold_arity: u64) -> u64 {
    if !shard.is_remote() && shard.warmth().rounds_are_free() {
        HOT_ARITY.min(cold_arity)
    } else {
        cold_arity
    }
}

/// Finishes the bounds of every search k-ary (`arity` probes a bound a round),
/// all their reads in shared rounds: the pointers at the probed ranks of all
/// searches, then the text at each. `(index, range)` per search; `None` when a
/// bracket from the tree turns out wrong (the tree disagrees with the array).
pub(crate) fn finish(
    shard: &Shard,
    arity: u64,
    searches: &mut [Finishing<'_>],
) -> Result<Option<Vec<(usize, RankRange)>>> {
    if searches
        .iter()
        .any(|s| s.bounds.iter().any(|b| b.lo > b.hi))
    {
        return Ok(None);
    }
    let (table, text) = (shard.table_file(), shard.tokenized_file());
    let ps = shard.ptr_size() as u64;
    loop {
        // Each search's probed ranks, sorted; and all of them (the same when one search).
        let probes: Vec<Vec<u64>> = searches
            .iter()
            .map(|s| {
                let mut ranks: Vec<u64> = s
                    .bounds
                    .iter()
                    .flat_map(|b| b.probes(s.window.0, s.window.1, arity))
                    .collect();
                ranks.sort_unstable();
                ranks.dedup();
                ranks
            })
            .collect();
        let ranks: Vec<u64> = if probes.len() == 1 {
            probes[0].clone()
        } else {
            let mut all: Vec<u64> = probes.iter().flatten().copied().collect();
            all.sort_unstable();
            all.dedup();
            all
        };
        if ranks.is_empty() {
            break;
        }
        // Round 1: the pointers, contiguous runs of the table.
        let pointer_runs: Vec<(u64, u64)> = runs(&ranks)
            .into_iter()
            .map(|(start, len)| (start * ps, len * ps))
            .collect();
        let round = Round::start(shard, table, &pointer_runs)?;
        let ptr_values = ranks
            .iter()
            .map(|&r| shard.ptr_at(r))
            .collect::<Result<Vec<u64>>>()?;
        round.end();
        let ptrs = |rank: &u64| ptr_values[ranks.binary_search(rank).expect("a probed rank")];
        // Round 2: the text each search compares at each of its pointers, all
        // advised before any is read.
        let mut text_reads = Vec::new();
        for (search, ranks) in searches.iter().zip(&probes) {
            let (skip, q) = (search.skip as u64, search.pattern.len() as u64);
            for rank in ranks {
                let at = (ptrs(rank) + skip).min(text.len());
                text_reads.push((at, q.min(text.len() - at)));
            }
        }
        let round = Round::start(shard, text, &text_reads)?;
        for (search, ranks) in searches.iter_mut().zip(&probes) {
            let order = ranks
                .iter()
                .map(|&r| {
                    let at = ptrs(&r) + search.skip as u64;
                    let found = text.read_clipped(at, search.pattern.len() as u64)?;
                    Ok((r, (*found).cmp(search.pattern)))
                })
                .collect::<Result<BTreeMap<u64, Ordering>>>()?;
            let window = search.window;
            for bound in search.bounds.iter_mut() {
                if !bound.update(&order, window.0, window.1) {
                    return Ok(None);
                }
            }
        }
        round.end();
    }
    // Bounds that cross mean the tree lied about a bracket.
    Ok(searches
        .iter()
        .map(|s| {
            let (lower, upper) = (s.bounds[0].lo, s.bounds[1].lo);
            (lower <= upper).then_some((s.index, (lower, upper)))
        })
        .collect())
}

/// One bound being finished: it lies in `[lo, hi]`.
#[derive(Debug, Clone, Copy)]
struct Bound {
    lo: u64,
    hi: u64,
    /// The upper bound (first suffix above the pattern), else the lower (first not below it).
    upper: bool,
    /// Whether the ranks just outside `[lo, hi]` were seen on the right sides.
    checked: bool,
}

impl Bound {
    fn window(lo: u64, hi: u64, upper: bool) -> Bound {
        Bound {
            lo,
            hi,
            upper,
            checked: true,
        }
    }

    /// Whether the suffix at a rank comparing `order` lies before this bound.
    fn before(&self, order: Ordering) -> bool {
        if self.upper {
            order != Ordering::Greater
        } else {
            order == Ordering::Less
        }
    }

    /// The ranks to read next: all of `[lo, hi)` when it is small, else
    /// `arity` evenly spaced ones; and, the first time, the two ranks outside.
    fn probes(&self, w0: u64, w1: u64, arity: u64) -> Vec<u64> {
        let mut ranks = Vec::new();
        if !self.checked {
            if self.lo > w0 {
                ranks.push(self.lo - 1);
            }
            if self.hi < w1 {
                ranks.push(self.hi);
            }
        }
        let span = self.hi - self.lo;
        if span <= arity {
            ranks.extend(self.lo..self.hi);
        } else {
            ranks.extend(
                (1..=arity)
                    .map(|i| self.lo + (span as u128 * i as u128 / (arity + 1) as u128) as u64),
            );
        }
        ranks
    }

    /// Narrows to what the compared ranks show; false when the first round
    /// contradicts the bracket the tree gave (the tree is wrong).
    fn update(&mut self, order: &BTreeMap<u64, Ordering>, w0: u64, w1: u64) -> bool {
        let this = *self;
        let before = |rank: u64| order.get(&rank).map(|&o| this.before(o));
        if !self.checked {
            if self.lo > w0 && before(self.lo - 1) != Some(true) {
                return false;
            }
            if self.hi < w1 && before(self.hi) != Some(false) {
                return false;
            }
            self.checked = true;
        }
        for (&rank, _) in order.range(self.lo..self.hi) {
            match before(rank) {
                Some(true) => self.lo = rank + 1,
                _ => {
                    self.hi = rank;
                    break;
                }
            }
        }
        true
    }
}

/// Contiguous runs `(start, len)` of sorted, distinct ranks.
fn runs(ranks: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &r in ranks {
        match out.last_mut() {
            Some((start, len)) if *start + *len == r => *len += 1,
            _ => out.push((r, 1)),
        }
    }
    out
}

/// Opens the accelerators of `shards` (those that have one) and attaches them.
/// `resident_mem` is the budget for all shards together, shared in proportion
/// to their size; `None`: 1/100 of each shard's token stream and suffix array.
/// A file that is not valid for its shard is ignored with a warning on stderr.
pub fn attach(dir: &Path, shards: &[Arc<Shard>], resident_mem: Option<u64>) {
    let sizes: Vec<u64> = shards
        .iter()
        .map(|s| s.tokenized_len() + s.table_len())
        .collect();
    // Concurrently: in object storage each open waits on round trips.
    crate::pool::install(|| {
        shards.par_iter().for_each(|shard| {
            let budget = resident_budget(&sizes, shard.number, resident_mem);
            match Accelerator::open(dir, shard, budget) {
                Ok(Some(accel)) => shard.set_accelerator(accel),
                Ok(None) => {}
                Err(e) => eprintln!(
                    "anygram: warning: ignoring the search accelerator of shard {}: {e}",
                    shard.number
                ),
            }
        })
    });
}

/// The resident budget of shard `number` whose token stream and suffix array
/// take `shard_bytes[number]` of all shards' `shard_bytes`: its share of
/// `resident_mem`, or by default 1/[`DEFAULT_RESIDENT_DIVISOR`] of its size.
pub fn resident_budget(shard_bytes: &[u64], number: usize, resident_mem: Option<u64>) -> u64 {
    let total: u64 = shard_bytes.iter().sum();
    let size = shard_bytes[number];
    match resident_mem {
        Some(all) if total > 0 => (all as u128 * size as u128 / total as u128) as u64,
        Some(all) => all,
        None => size / DEFAULT_RESIDENT_DIVISOR,
    }
}

/// The byte ranges of `accel_file` (shard of `num_tokens` tokens) that
/// [`Accelerator::open`] will read with `resident_budget`, so that an index
/// in object storage reads them in the same round trip as everything else
/// an open needs: the header, and the resident levels as a tree built with the
/// default options would place them. A tree built otherwise is still opened
/// right (its header tells its layout), at the cost of one more round trip.
pub fn open_reads(
    accel_file: &IndexFile,
    num_tokens: u64,
    resident_budget: u64,
) -> Vec<(u64, u64)> {
    let guess = Layout::new(num_tokens, DEFAULT_RATE, DEFAULT_KEY_BYTES, None)
        .ok()
        .filter(|layout| layout.file_bytes() == accel_file.len());
    match guess {
        Some(layout) => vec![(0, HEADER_BYTES + layout.resident(resident_budget).1)],
        None => vec![(0, HEADER_BYTES)],
    }
}

/// Writes `dir/accel.{s}` for `shard` (replacing one that is there) atomically:
/// a temporary file, fsync, rename, fsync of the directory. The keys are read
/// on all cores of [`crate::pool`]; memory holds one chunk of the bottom level
/// and the levels above it.
pub fn write(dir: &Path, shard: &Shard, options: &WriteOptions) -> Result<PathBuf> {
    crate::storage::require_local(dir, "writing a search accelerator")?;
    let layout = Layout::new(
        shard.num_tokens(),
        options.rate,
        options.key_bytes,
        options.node_keys,
    )?;
    let path = dir.join(file_name(shard.number));
    // One temporary name per process: two runs adding accelerators to the same
    // index do not write into each other's file.
    let tmp = dir.join(format!(
        "{}.tmp-{}",
        file_name(shard.number),
        std::process::id()
    ));
    crate::atomic::write_via(&tmp, &path, true, |file, tmp| {
        write_file(file, tmp, shard, layout)
    })?;
    Ok(path)
}

/// [`write`] for every shard of an opened index.
pub fn write_all(engine: &Engine, options: &WriteOptions) -> Result<Vec<PathBuf>> {
    engine
        .shards()
        .iter()
        .map(|shard| write(engine.dir(), shard, options))
        .collect()
}

fn write_file(file: &File, tmp: &Path, shard: &Shard, layout: Layout) -> Result<()> {
    let io = |e| Error::io(tmp, e);
    file.set_len(layout.file_bytes()).map_err(io)?;
    let key_entry = layout.key_entry_bytes() as usize;
    if let Some(bottom) = layout.levels.len().checked_sub(1) {
        let (b, stride) = (layout.bottom_node_keys, layout.bottom_stride as usize);
        let entry = layout.entry_bytes(bottom) as usize;
        let keys = layout.levels[bottom];
        let nodes = keys.div_ceil(b);
        let chunk_nodes = ((8 << 20) / stride as u64).max(1);
        // The first key of every bottom node: the level above, built as we go.
        let mut above = Vec::with_capacity(nodes as usize * key_entry);
        for first in (0..nodes).step_by(chunk_nodes as usize) {
            let count = chunk_nodes.min(nodes - first);
            let mut chunk = vec![0u8; count as usize * stride];
            crate::pool::install(|| {
                chunk
                    .par_chunks_mut(stride)
                    .enumerate()
                    .try_for_each(|(i, node)| {
                        let base = (first + i as u64) * b;
                        for (j, out) in node.chunks_exact_mut(entry).take(b as usize).enumerate() {
                            let index = base + j as u64;
                            if index >= keys {
                                break;
                            }
                            let (key, trie) = out.split_at_mut(key_entry);
                            write_key(shard, index * layout.rate, key)?;
                            write_trie(shard, index * layout.rate, layout.rate, trie)?;
                        }
                        seal_node(node);
                        Ok::<(), Error>(())
                    })
            })?;
            for node in chunk.chunks(stride) {
                above.extend_from_slice(&node[..key_entry]);
            }
            let at = layout.node_offset(bottom, first);
            file.write_all_at(&chunk, at).map_err(io)?;
        }
        // Upper levels: the first key of every node of the level below, bottom-up.
        let mut level_keys = above;
        let (b, stride) = (layout.node_keys as usize, layout.node_stride as usize);
        for level in (0..bottom).rev() {
            debug_assert_eq!(
                level_keys.len() as u64,
                layout.levels[level] * key_entry as u64
            );
            let mut bytes = vec![0u8; layout.level_bytes(level) as usize];
            for (node, keys) in level_keys.chunks(b * key_entry).enumerate() {
                let node = &mut bytes[node * stride..(node + 1) * stride];
                node[..keys.len()].copy_from_slice(keys);
                seal_node(node);
            }
            file.write_all_at(&bytes, layout.level_offset(level))
                .map_err(io)?;
            level_keys = level_keys
                .chunks(b * key_entry)
                .flat_map(|node| node[..key_entry].iter().copied())
                .collect();
        }
    }
    let body_checksum = checksum_body(file, layout.file_bytes()).map_err(io)?;
    let header = Header::for_shard(shard, layout, body_checksum)?;
    file.write_all_at(&header.encode(), 0).map_err(io)
}

/// Ends `node` with the checksum of the rest of it.
fn seal_node(node: &mut [u8]) {
    let (body, sum) = node.split_at_mut(node.len() - NODE_CHECKSUM_BYTES as usize);
    sum.copy_from_slice(&xxhash_rust::xxh3::xxh3_64(body).to_le_bytes());
}

/// The key of the suffix at `rank`: its first `key_bytes` bytes, zero-padded,
/// then how many it has.
fn write_key(shard: &Shard, rank: u64, out: &mut [u8]) -> Result<()> {
    let key_bytes = out.len() - 1;
    let ptr = shard.ptr_at(rank)?;
    let text = shard.tokenized_file().read_clipped(ptr, key_bytes as u64)?;
    out[..text.len()].copy_from_slice(&text);
    out[text.len()..key_bytes].fill(0);
    out[key_bytes] = text.len() as u8;
    Ok(())
}

/// The blind trie of the bucket of `rate` ranks from `first` (see
/// [`BucketTrie`]): `rate` LCP bytes, then `rate` branching bytes.
fn write_trie(shard: &Shard, first: u64, rate: u64, out: &mut [u8]) -> Result<()> {
    let (lcp, branch) = out.split_at_mut(rate as usize);
    let text = shard.tokenized_file();
    let end = (first + rate).min(shard.num_tokens());
    let mut previous: Option<Cow<'_, [u8]>> = None;
    for (i, rank) in (first..end).enumerate() {
        let ptr = shard.ptr_at(rank)?;
        let suffix = text.read_clipped(ptr, TRIE_SPAN)?;
        if let Some(prev) = &previous {
            let shared = prev
                .iter()
                .zip(suffix.iter())
                .take(LCP_SATURATED as usize)
                .take_while(|(a, b)| a == b)
                .count();
            lcp[i] = shared as u8;
            branch[i] = suffix.get(shared).copied().unwrap_or(0);
        }
        previous = Some(suffix);
    }
    (lcp[0], branch[0]) = (0, 0);
    Ok(())
}

/// XXH3-64 of the levels (everything after the header), read back in order.
fn checksum_body(file: &File, file_bytes: u64) -> std::io::Result<u64> {
    let mut hash = Xxh3::new();
    let mut buf = vec![0u8; 8 << 20];
    let mut at = HEADER_BYTES;
    while at < file_bytes {
        let n = buf.len().min((file_bytes - at) as usize);
        file.read_exact_at(&mut buf[..n], at)?;
        hash.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hash.digest())
}

/// `anygram verify`'s checks of shard `shard`'s accelerator, if it has one:
/// the header against the shard, the body's checksum, and the keys' order
/// (each level sorted; each key of a level equal to its key in the level below).
pub fn verify_shard(dir: &Path, shard: &Shard) -> Vec<String> {
    let accel = match Accelerator::open(dir, shard, 0) {
        Ok(Some(accel)) => accel,
        Ok(None) => return Vec::new(),
        Err(e) => return vec![e.to_string()],
    };
    let path = accel.file.path().display().to_string();
    accel.file.advise_sequential();
    let body = match accel.file.local_bytes() {
        Ok(bytes) => &bytes[HEADER_BYTES as usize..],
        Err(e) => return vec![e.to_string()],
    };
    if xxhash_rust::xxh3::xxh3_64(body) != accel.body_checksum {
        return vec![format!(
            "{path}: search accelerator checksum mismatch (the file changed since it was written); rebuild it with `anygram index add-accelerator`"
        )];
    }
    let layout = &accel.layout;
    for (level, &keys) in layout.levels.iter().enumerate() {
        let below = layout
            .levels
            .get(level + 1)
            .map(|_| layout.fan_out(level + 1));
        let entry = |level: usize, index: u64| accel.entry(level, index).ok().flatten();
        for index in 0..keys {
            let key = entry(level, index);
            if key.is_none() {
                return vec![format!(
                    "{path}: search accelerator node of key {index} of level {level} fails its checksum"
                )];
            }
            if index > 0 && entry(level, index - 1) > key {
                return vec![format!(
                    "{path}: search accelerator level {level} is not sorted at key {index}"
                )];
            }
            if let Some(fan_out) = below {
                if entry(level + 1, index * fan_out) != key {
                    return vec![format!(
                        "{path}: search accelerator key {index} of level {level} differs from the level below"
                    )];
                }
            }
        }
    }
    Vec::new()
}
