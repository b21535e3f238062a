//! Exact counts of the tokens that follow a suffix-array range, by galloping
//! over the runs of equal next tokens.
//!
//! Inside the range of a context every suffix shares the context's bytes, so
//! the suffixes are sorted by what follows: the ranks followed by one value
//! form one contiguous run (the end of the shard first, the tokens in byte
//! order, the separator last). Counting them exactly means finding each run's
//! end: from a run's first rank, probe 1, 2, 4, … ranks ahead until the value
//! changes, then bisect the last step. A run of `L` ranks costs about
//! `2·log2(L) + 1` lookups, so a context followed by `D` distinct tokens in
//! `R` ranks costs `O(D·log(R/D))`. Where runs are short (a frequent context
//! followed by thousands of tokens), probing each one costs more than reading
//! every rank: after a run shorter than [`SCAN_AFTER_RUNS_BELOW`] ranks, the
//! next [`SCAN_RANKS`] ranks are read in one tight pass (their pointers lie
//! side by side), and the next ones too while runs keep ending in each pass;
//! a pass that meets no end gallops on. So a range never costs much more than
//! about `R` lookups.
//!
//! This module owns exact next-token counting: ntd's exact case, the
//! tokengrams shim, Kneser-Ney and the samplers all come here. Where pages are
//! in RAM the gallop reads the mapped files directly (a lookup is one pointer
//! and one token, no system call). Where reads are slow (object storage, a cold
//! shard with an accelerator) or being counted, it takes
//! [`Shard::count_next_tokens`]' breadth-first bisection instead, whose lookups
//! of one level share a round of reads: fewer rounds for the same answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use rayon::prelude::*;

use crate::engine::Engine;
use crate::error::Result;
use crate::shard::{RankRange, Shard, END_OF_SHARD};

/// Ranges at least this wide are split into pieces counted on the pool.
const PARALLEL_MIN_RANKS: u64 = 1 << 18;
/// Ranks per piece of a range counted on the pool.
const PIECE_RANKS: u64 = 1 << 16;

/// The counts of the values that follow the `skip_bytes`-long matches at
/// `range` in `shard` as `(token, count)` pairs, one per distinct token in the
/// suffix array's (byte) order; a document end (the separator or the end of
/// the shard) counts as `document_end`, once per run, so that it may appear
/// twice (at the start and at the end).
pub fn next_token_runs(
    shard: &Shard,
    skip_bytes: usize,
    range: RankRange,
    document_end: u32,
) -> Result<Vec<(u32, u64)>> {
    let (lo, hi) = range;
    if lo >= hi {
        return Ok(Vec::new());
    }
    if shard.reads_are_slow() || crate::reads::active() {
        let mut counts = BTreeMap::new();
        shard.count_next_tokens(skip_bytes, range, 1, document_end, &mut counts)?;
        return Ok(counts.into_iter().collect());
    }
    let reader = LocalValues::new(shard, skip_bytes)?;
    if hi - lo < PARALLEL_MIN_RANKS {
        let mut runs = Vec::new();
        reader.gallop(lo, hi, &mut runs)?;
        return Ok(reader.as_tokens(runs, document_end));
    }
    // Pieces counted apart; a run cut by a piece boundary is joined back.
    let pieces: Vec<RankRange> = (lo..hi)
        .step_by(PIECE_RANKS as usize)
        .map(|start| (start, (start + PIECE_RANKS).min(hi)))
        .collect();
    let per_piece = crate::pool::install(|| {
        pieces
            .par_iter()
            .map(|&(start, end)| {
                let mut runs = Vec::new();
                reader.gallop(start, end, &mut runs)?;
                Ok(runs)
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for piece in per_piece {
        for (value, count) in piece {
            match runs.last_mut() {
                Some(last) if last.0 == value => last.1 += count,
                _ => runs.push((value, count)),
            }
        }
    }
    Ok(reader.as_tokens(runs, document_end))
}

/// Adds the counts of every shard's range (one range per shard) and returns
/// them in ascending token order, document ends as `document_end`.
pub fn next_token_counts_in(
    shards: &[std::sync::Arc<Shard>],
    skip_bytes: usize,
    ranges: &[RankRange],
    document_end: u32,
) -> Result<Vec<(u32, u64)>> {
    let mut all = Vec::new();
    for (shard, &range) in shards.iter().zip(ranges) {
        all.extend(next_token_runs(shard, skip_bytes, range, document_end)?);
    }
    all.sort_unstable_by_key(|&(token, _)| token);
    let mut merged: Vec<(u32, u64)> = Vec::with_capacity(all.len());
    for (token, count) in all {
        match merged.last_mut() {
            Some(last) if last.0 == token => last.1 += count,
            _ => merged.push((token, count)),
        }
    }
    Ok(merged)
}

/// The stored values after the suffixes of a local shard, read from its mapped files.
struct LocalValues<'a> {
    shard: &'a Shard,
    text: &'a [u8],
    table: &'a [u8],
    ptr_size: usize,
    skip_bytes: usize,
    width: usize,
}

/// Lanes galloped in lockstep: enough misses in flight to fill a core's
/// line-fill buffers ([`crate::interleave::AHEAD`] and a few more).
const LANES: usize = 16;
/// Fewest ranks a lane gallops over (a narrower range takes fewer lanes).
const LANE_MIN_RANKS: u64 = 64;
/// A lane whose last run was shorter than this reads the next ranks in one
/// pass rather than galloping. A gallop's probe costs a lockstep round (about
/// 20 ns on a hot index), a scanned rank about 2-5 ns, so a run of `L` ranks is
/// cheaper to scan up to about `L = 10·(2·log2(L) + 1)`, some 100 ranks
/// (measured on tokengrams' count_next of frequent tokens: 64 beat 8).
const SCAN_AFTER_RUNS_BELOW: u64 = 64;
/// Ranks one scan reads (three to six cache lines of pointers).
const SCAN_RANKS: u64 = 64;

/// One lane's walk over its piece of the range: where its current run started,
/// its value, and the gallop or bisection that finds where the run ends.
#[derive(Clone, Copy)]
struct Lane {
    /// First rank past the piece.
    end: u64,
    /// First rank of the current run.
    start: u64,
    /// Length of the last finished run (`u64::MAX` before the first).
    last_run: u64,
    phase: Phase,
}

/// What a lane wants read next.
#[derive(Clone, Copy)]
enum Probe {
    /// The value at one rank.
    One(u64),
    /// The values at every rank of `[from, to)`, read in one pass.
    Scan(u64, u64),
}

#[derive(Clone, Copy)]
enum Phase {
    /// The value at `start` is wanted.
    Begin,
    /// `same` holds `value`; the next probe is `same + step`.
    Gallop { value: u64, same: u64, step: u64 },
    /// The run of `value` ends in `[lo, hi]`: ranks before `lo` hold it, `hi` does not (or is the end).
    Bisect { value: u64, lo: u64, hi: u64 },
    /// Runs are short here: the ranks from `next` on are read in one pass,
    /// the open run (from `start`) holding `value`.
    Scanning { value: u64, next: u64 },
    /// The piece is counted.
    Done,
}

impl Lane {
    /// What to read next, emitting finished runs to `runs` on the way;
    /// `None` when the piece is done.
    fn next_probe(&mut self, runs: &mut Vec<(u64, u64)>) -> Option<Probe> {
        loop {
            match self.phase {
                Phase::Done => return None,
                Phase::Begin if self.start >= self.end => self.phase = Phase::Done,
                Phase::Begin if self.last_run < SCAN_AFTER_RUNS_BELOW => {
                    return Some(Probe::Scan(
                        self.start,
                        (self.start + SCAN_RANKS).min(self.end),
                    ))
                }
                Phase::Begin => return Some(Probe::One(self.start)),
                Phase::Gallop { value, same, step } => match same.checked_add(step) {
                    Some(probe) if probe < self.end => return Some(Probe::One(probe)),
                    _ => {
                        self.phase = Phase::Bisect {
                            value,
                            lo: same + 1,
                            hi: self.end,
                        }
                    }
                },
                Phase::Bisect { value, lo, hi } if lo >= hi => {
                    runs.push((value, lo - self.start));
                    self.last_run = lo - self.start;
                    self.start = lo;
                    self.phase = Phase::Begin;
                }
                Phase::Bisect { lo, hi, .. } => return Some(Probe::One(lo + (hi - lo) / 2)),
                Phase::Scanning { value, next } if next >= self.end => {
                    runs.push((value, self.end - self.start));
                    self.start = self.end;
                    self.phase = Phase::Begin;
                }
                Phase::Scanning { next, .. } => {
                    return Some(Probe::Scan(next, (next + SCAN_RANKS).min(self.end)))
                }
            }
        }
    }

    /// Takes the values of a [`Probe::Scan`] of the ranks from `from`: every
    /// run that ends inside them is finished. While runs keep ending, the next
    /// ranks are scanned too; a scan that met no end gallops on from its last rank.
    fn read_scan(&mut self, from: u64, values: &[u64], runs: &mut Vec<(u64, u64)>) {
        let last_read = from + values.len() as u64 - 1;
        // A scan from `Begin` starts the open run at its first rank.
        let (mut value, skip) = match self.phase {
            Phase::Scanning { value, .. } => (value, 0),
            _ => (values[0], 1),
        };
        let mut ended = false;
        for (i, &next) in values.iter().enumerate().skip(skip) {
            if next != value {
                let at = from + i as u64;
                runs.push((value, at - self.start));
                self.last_run = at - self.start;
                self.start = at;
                value = next;
                ended = true;
            }
        }
        self.phase = if ended {
            Phase::Scanning {
                value,
                next: last_read + 1,
            }
        } else {
            Phase::Gallop {
                value,
                same: last_read,
                step: 1,
            }
        };
    }

    /// Takes the value read at `probe` (the rank [`Lane::next_probe`] named).
    fn read(&mut self, probe: u64, found: u64) {
        self.phase = match self.phase {
            Phase::Begin => Phase::Gallop {
                value: found,
                same: probe,
                step: 1,
            },
            Phase::Gallop { value, step, .. } if found == value => Phase::Gallop {
                value,
                same: probe,
                step: step.saturating_mul(2),
            },
            Phase::Gallop { value, same, .. } => Phase::Bisect {
                value,
                lo: same + 1,
                hi: probe,
            },
            Phase::Bisect { value, hi, .. } if found == value => Phase::Bisect {
                value,
                lo: probe + 1,
                hi,
            },
            Phase::Bisect { value, lo, .. } => Phase::Bisect {
                value,
                lo,
                hi: probe,
            },
            Phase::Scanning { .. } | Phase::Done => self.phase,
        };
    }
}

impl<'a> LocalValues<'a> {
    fn new(shard: &'a Shard, skip_bytes: usize) -> Result<Self> {
        Ok(LocalValues {
            shard,
            text: shard.tokenized()?,
            table: shard.table()?,
            ptr_size: shard.ptr_size(),
            skip_bytes,
            width: shard.token_width().bytes(),
        })
    }

    /// The text offset stored at `rank`, checked to lie on the token grid.
    #[inline]
    fn ptr(&self, rank: u64) -> Result<usize> {
        let at = rank as usize * self.ptr_size;
        let ptr = match crate::format::read_uint_le_at(self.table, at, self.ptr_size) {
            Some(ptr) => ptr,
            None => return self.shard.ptr_at(rank).map(|p| p as usize),
        };
        // Widths are 1, 2 or 4 bytes: a mask, not a division, on this hot path.
        if ptr >= self.text.len() as u64 || ptr & (self.width as u64 - 1) != 0 {
            // The shard's own check names the entry and the file.
            return self.shard.ptr_at(rank).map(|p| p as usize);
        }
        Ok(ptr as usize)
    }

    /// The value after the match whose suffix starts at text offset `ptr`: a
    /// token, the separator, or [`END_OF_SHARD`].
    #[inline]
    fn value_at(&self, ptr: usize) -> u64 {
        let at = ptr + self.skip_bytes;
        // Read by width here: a call per value would cost as much as the loop.
        match (self.width, self.text.get(at..at + self.width)) {
            (1, Some(b)) => b[0] as u64,
            (2, Some(b)) => u16::from_le_bytes([b[0], b[1]]) as u64,
            (_, Some(b)) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64,
            (_, None) => END_OF_SHARD,
        }
    }

    /// Appends the runs `(value, ranks)` of `[lo, hi)` in rank order: the range
    /// cut into up to [`LANES`] pieces galloped in lockstep, each round's
    /// pointers then texts hinted together, so that their misses overlap.
    fn gallop(&self, lo: u64, hi: u64, runs: &mut Vec<(u64, u64)>) -> Result<()> {
        if lo >= hi {
            return Ok(());
        }
        let lanes_wanted = ((hi - lo) / LANE_MIN_RANKS).clamp(1, LANES as u64);
        let piece = (hi - lo).div_ceil(lanes_wanted);
        let mut lanes: Vec<Lane> = (lo..hi)
            .step_by(piece as usize)
            .map(|start| Lane {
                end: (start + piece).min(hi),
                start,
                last_run: u64::MAX,
                phase: Phase::Begin,
            })
            .collect();
        let mut lane_runs: Vec<Vec<(u64, u64)>> = vec![Vec::new(); lanes.len()];
        // Per lane this round: its probe and where its pointers start in `ptrs`.
        let mut probes: Vec<(usize, Probe, usize)> = Vec::with_capacity(lanes.len());
        let mut ptrs: Vec<usize> = Vec::new();
        let mut values: Vec<u64> = Vec::new();
        loop {
            probes.clear();
            ptrs.clear();
            for (i, lane) in lanes.iter_mut().enumerate() {
                if let Some(probe) = lane.next_probe(&mut lane_runs[i]) {
                    let (from, to) = match probe {
                        Probe::One(rank) => (rank, rank + 1),
                        Probe::Scan(from, to) => (from, to),
                    };
                    // The pointers of a scan lie side by side: a hint per cache line,
                    // and for the next scan's too (a lane scans on while runs are short),
                    // so that they arrive a round ahead.
                    let ahead = match probe {
                        Probe::Scan(..) => SCAN_RANKS,
                        Probe::One(_) => 0,
                    };
                    let hinted = from..(to + ahead).min(lane.end);
                    for rank in hinted.step_by((64 / self.ptr_size).max(1)) {
                        crate::interleave::prefetch(self.table, rank as usize * self.ptr_size);
                    }
                    crate::interleave::prefetch(self.table, (to - 1) as usize * self.ptr_size);
                    probes.push((i, probe, 0));
                }
            }
            if probes.is_empty() {
                break;
            }
            for probe in probes.iter_mut() {
                probe.2 = ptrs.len();
                let (from, to) = match probe.1 {
                    Probe::One(rank) => (rank, rank + 1),
                    Probe::Scan(from, to) => (from, to),
                };
                for rank in from..to {
                    let ptr = self.ptr(rank)?;
                    crate::interleave::prefetch(self.text, ptr + self.skip_bytes);
                    ptrs.push(ptr);
                }
            }
            for (k, &(i, probe, first)) in probes.iter().enumerate() {
                let last = probes.get(k + 1).map_or(ptrs.len(), |next| next.2);
                match probe {
                    Probe::One(rank) => lanes[i].read(rank, self.value_at(ptrs[first])),
                    Probe::Scan(from, _) => {
                        values.clear();
                        values.extend(ptrs[first..last].iter().map(|&ptr| self.value_at(ptr)));
                        lanes[i].read_scan(from, &values, &mut lane_runs[i]);
                    }
                }
            }
        }
        // A run cut by a piece boundary is joined back.
        for (value, count) in lane_runs.into_iter().flatten() {
            match runs.last_mut() {
                Some(last) if last.0 == value => last.1 += count,
                _ => runs.push((value, count)),
            }
        }
        Ok(())
    }

    /// Stored values as tokens, a document end as `document_end`.
    fn as_tokens(&self, runs: Vec<(u64, u64)>, document_end: u32) -> Vec<(u32, u64)> {
        let separator = self.shard.token_width().separator() as u64;
        runs.into_iter()
            .map(|(value, count)| {
                let token = if value == END_OF_SHARD || value == separator {
                    document_end
                } else {
                    value as u32
                };
                (token, count)
            })
            .collect()
    }
}

/// Marks a document end in raw next-token counts (no token has this id: the
/// largest vocabulary leaves `u32::MAX` to the separator).
pub const DOCUMENT_END: u32 = u32::MAX;

/// Exact counts of the tokens after `context` in ascending token order,
/// document ends as [`DOCUMENT_END`] (last, as it is the largest id).
pub fn raw_next_counts(engine: &Engine, context: &[u32]) -> Result<Vec<(u32, u64)>> {
    let query = engine.encode(context)?;
    let found = engine.find_bytes(&query, &engine.full_ranges())?;
    next_token_counts_in(engine.shards(), query.len(), &found.ranges, DOCUMENT_END)
}

/// Raw next-token counts as a memo hands them out.
pub type SharedCounts = Arc<Vec<(u32, u64)>>;

/// Remembered next-token counts of one engine's contexts (the index is
/// immutable, so an answer never goes stale): a frequent context's exact count
/// visits thousands of runs spread over the text, while a context that
/// occurs a few times costs less than remembering it. A memo belongs with the
/// engine it was filled from (a Kneser-Ney model, an index object of the
/// tokengrams shim, one batch of samples).
pub struct NextTokenMemo {
    /// Contexts with fewer occurrences are counted afresh each time.
    min_occurrences: u64,
    /// Most `(token, count)` pairs held; past it the memo starts over empty.
    max_pairs: usize,
    entries: RwLock<HashMap<Vec<u32>, SharedCounts>>,
    pairs: AtomicUsize,
}

/// Occurrences from which a long-lived memo keeps a context's counts.
pub const MEMO_MIN_OCCURRENCES: u64 = 1024;
/// Pairs a long-lived memo holds (12 bytes each: ~48 MiB).
pub const MEMO_MAX_PAIRS: usize = 1 << 22;

impl std::fmt::Debug for NextTokenMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NextTokenMemo({} pairs, contexts of at least {} occurrences)",
            self.pairs.load(Ordering::Relaxed),
            self.min_occurrences
        )
    }
}

impl NextTokenMemo {
    /// A memo of the contexts that occur at least `min_occurrences` times, up
    /// to `max_pairs` pairs in all.
    pub fn new(min_occurrences: u64, max_pairs: usize) -> NextTokenMemo {
        NextTokenMemo {
            min_occurrences,
            max_pairs,
            entries: RwLock::new(HashMap::new()),
            pairs: AtomicUsize::new(0),
        }
    }

    /// The long-lived memo: frequent contexts only ([`MEMO_MIN_OCCURRENCES`], [`MEMO_MAX_PAIRS`]).
    pub fn frequent() -> NextTokenMemo {
        NextTokenMemo::new(MEMO_MIN_OCCURRENCES, MEMO_MAX_PAIRS)
    }

    /// [`raw_next_counts`] of `context` in `engine` (the engine this memo was
    /// filled from), remembered when the context is frequent.
    pub fn counts(&self, engine: &Engine, context: &[u32]) -> Result<SharedCounts> {
        if let Some(known) = self.get(context) {
            return Ok(known);
        }
        let counts = Arc::new(raw_next_counts(engine, context)?);
        self.offer(context, &counts);
        Ok(counts)
    }

    /// The remembered counts of `context`, if any.
    pub fn get(&self, context: &[u32]) -> Option<SharedCounts> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(context).cloned()
    }

    /// Keeps `counts` (the raw counts of `context` in this memo's engine) if
    /// the context is frequent enough.
    pub fn offer(&self, context: &[u32], counts: &SharedCounts) {
        let occurrences: u64 = counts.iter().map(|&(_, c)| c).sum();
        if occurrences < self.min_occurrences || counts.len() > self.max_pairs {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if self.pairs.load(Ordering::Relaxed) + counts.len() > self.max_pairs {
            entries.clear();
            self.pairs.store(0, Ordering::Relaxed);
        }
        if entries.insert(context.to_vec(), counts.clone()).is_none() {
            self.pairs.fetch_add(counts.len(), Ordering::Relaxed);
        }
    }
}
