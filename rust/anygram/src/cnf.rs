//! CNF queries, as infini-gram defines them: an AND of clauses, each an OR of
//! n-grams, all occurring in one document within `max_diff_tokens` of each other.
//!
//! Per shard, the clause with the fewest occurrences is the anchor: each of its
//! occurrences starts a window `[l, r]` (byte offsets of match starts). Every other
//! clause, in order of frequency, then extends the window to its nearest
//! occurrence on either side: to both when both are within `max_diff_tokens` of
//! the window, else to the one that is, else the window is dropped. Windows that contain a document separator are
//! dropped. The count is the number of windows left.
//!
//! **Quirk, kept for identical answers:** when a clause has occurrences within
//! reach on both sides, the window spans both, and is dropped if either lies in
//! another document, even though the other alone would satisfy the query. So a
//! CNF count can be lower than the number of places where the query holds.
//!
//! A clause's occurrences nearest to each window are found one of two ways, by a
//! cost model: reading the text within reach of the window (a substring search per
//! n-gram; cheap when the windows are few), or from all the clause's (kept)
//! occurrences bucket-sorted by block of text, each window a table read and a
//! gallop away (when the windows are many; its table and occurrences hinted a few
//! windows ahead, as is the text read, so that the cache misses of the windows
//! overlap). The windows are extended in pieces (on the pool when there are many),
//! the last clause's pieces checked for separators as they are made: no list of all
//! nearest occurrences or of all final windows is built. When only their number is
//! wanted (`count_cnf`) and the anchor's occurrences are many, they are radix-sorted
//! first, so the windows come in text order: the sorted occurrences are then read in
//! order, and the separator check walks the document offsets instead of reading each
//! window's text (when every separator is at an offset, else it reads the text).
//!
//! A clause's occurrences sorted in text order (1,024 or more of them) are kept in
//! the engine's [`ClauseMemo`] for the next query that has the clause: frequent
//! n-grams (punctuation, stop words) recur across queries, and reading and sorting
//! their occurrences is most of such a query's time.
//!
//! A subsampled clause's occurrence in the text counts only if its suffix lies in
//! the kept run of ranks, which comparing it with the run's two bounding suffixes
//! tells without its rank.
//!
//! A clause occurring more than `max_clause_freq` times (split evenly over shards,
//! rounded up) is subsampled: each of its n-grams keeps a proportional, contiguous
//! run of its suffix-array range, and the count is scaled back up by the integer
//! ratio of occurrences to kept ones and flagged `approx` when that ratio exceeds 1.
//! Each run starts where infini-gram's generator puts it: a Mersenne Twister seeded
//! 19260817 afresh for every clause of every shard, one draw per n-gram, scaled as
//! libstdc++'s `uniform_int_distribution` does, so approximate counts agree too.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock, TryLockError};

use memchr::memmem;
use rayon::prelude::*;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::shard::RankRange;

/// Text offsets into a shard: as `u32`s when every offset fits (the text is
/// under 4 GiB), so that sorting, remembering and walking them moves half the
/// bytes (50,000 offsets then stay in a core's L2 cache with a sort's buffer).
enum TextOffsets {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

impl TextOffsets {
    /// Bytes they take.
    fn bytes(&self) -> u64 {
        match self {
            TextOffsets::Narrow(list) => 4 * list.len() as u64,
            TextOffsets::Wide(list) => 8 * list.len() as u64,
        }
    }
}

/// A text offset as [`TextOffsets`] holds it.
trait Offset: Copy + Send + Sync + Into<u64> {}
impl Offset for u32 {}
impl Offset for u64 {}

/// `$body` with `$list` bound to the list inside `$offsets` (a `&TextOffsets`),
/// whichever its width: the code is made once for each.
macro_rules! with_width {
    ($offsets:expr, $list:ident => $body:expr) => {
        match $offsets {
            TextOffsets::Narrow($list) => $body,
            TextOffsets::Wide($list) => $body,
        }
    };
}

/// Where a CNF query holds.
#[derive(Debug, Clone, PartialEq)]
pub struct CnfResult {
    /// Windows that satisfy every clause (scaled up when subsampled).
    pub count: u64,
    /// Whether a clause was subsampled.
    pub approx: bool,
    /// Per shard, the start (byte offset) of every satisfying window.
    pub ptrs_by_shard: Vec<Vec<u64>>,
}

struct Clause<'q> {
    /// The clause's n-grams, as stored bytes.
    terms: &'q [Vec<u8>],
    /// Per n-gram of the clause, its (possibly subsampled) rank range in this shard.
    ranges: Vec<RankRange>,
    /// Per n-gram, its whole rank range (the same as `ranges` unless subsampled).
    full: Vec<RankRange>,
    count: u64,
    subsampled: bool,
    scale: f64,
}

impl Clause<'_> {
    /// Its occurrences left after subsampling.
    fn kept(&self) -> u64 {
        self.ranges.iter().map(|(lo, hi)| hi - lo).sum()
    }
}

impl Engine {
    fn check_cnf(
        &self,
        cnf: &[Vec<Vec<u32>>],
        max_clause_freq: u64,
        max_diff_tokens: u64,
    ) -> Result<Vec<Vec<Vec<u8>>>> {
        if max_clause_freq == 0 {
            return Err(Error::InvalidQuery(
                "max_clause_freq must be a positive integer".into(),
            ));
        }
        if max_diff_tokens == 0 {
            return Err(Error::InvalidQuery(
                "max_diff_tokens must be a positive integer".into(),
            ));
        }
        if cnf.is_empty() {
            return Err(Error::InvalidQuery(
                "a CNF query needs at least one clause".into(),
            ));
        }
        cnf.iter()
            .enumerate()
            .map(|(c, clause)| {
                if clause.is_empty() {
                    return Err(Error::InvalidQuery(format!(
                        "clause {c} of the CNF query is empty"
                    )));
                }
                clause
                    .iter()
                    .enumerate()
                    .map(|(t, term)| {
                        if term.is_empty() {
                            return Err(Error::InvalidQuery(format!(
                                "n-gram {t} of clause {c} is empty"
                            )));
                        }
                        self.encode(term).map_err(|e| {
                            Error::InvalidQuery(format!("clause {c}, n-gram {t}: {e}"))
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// Where the CNF `cnf` (clauses of n-grams) holds; see the module docs.
    pub fn find_cnf(
        &self,
        cnf: &[Vec<Vec<u32>>],
        max_clause_freq: u64,
        max_diff_tokens: u64,
    ) -> Result<CnfResult> {
        self.cnf_windows(cnf, max_clause_freq, max_diff_tokens, WindowOrder::Ranks)
    }

    /// How many windows [`Engine::find_cnf`] finds (scaled up when subsampled),
    /// and whether that is approximate. Faster with many windows: they need not
    /// be listed in infini-gram's order.
    pub fn count_cnf(
        &self,
        cnf: &[Vec<Vec<u32>>],
        max_clause_freq: u64,
        max_diff_tokens: u64,
    ) -> Result<(u64, bool)> {
        let found = self.cnf_windows(cnf, max_clause_freq, max_diff_tokens, WindowOrder::Text)?;
        Ok((found.count, found.approx))
    }

    /// [`Engine::find_cnf`], each shard's window starts in `order`.
    fn cnf_windows(
        &self,
        cnf: &[Vec<Vec<u32>>],
        max_clause_freq: u64,
        max_diff_tokens: u64,
        order: WindowOrder,
    ) -> Result<CnfResult> {
        let encoded = self.check_cnf(cnf, max_clause_freq, max_diff_tokens)?;
        let num_shards = self.shards().len() as u64;
        let per_shard_budget = max_clause_freq.div_ceil(num_shards);
        let in_shard =
            |s| self.find_cnf_in_shard(s, &encoded, per_shard_budget, max_diff_tokens, order);
        // A query runs on the calling thread; only its parallel parts go to the pool.
        let per_shard = if self.shards().len() == 1 {
            vec![in_shard(0)?]
        } else {
            crate::pool::install(|| {
                (0..self.shards().len())
                    .into_par_iter()
                    .map(in_shard)
                    .collect::<Result<Vec<_>>>()
            })?
        };
        let mut count = 0u64;
        let mut approx = false;
        let mut ptrs_by_shard = Vec::with_capacity(per_shard.len());
        let mut absent_everywhere = vec![true; cnf.len()];
        for ShardWindows {
            count: windows,
            starts,
            scale,
            present,
        } in per_shard
        {
            approx |= scale > 1.0;
            count += (windows as f64 * scale) as u64;
            ptrs_by_shard.push(starts);
            for (absent, here) in absent_everywhere.iter_mut().zip(present) {
                *absent &= !here;
            }
        }
        if absent_everywhere.iter().any(|&a| a) {
            // As infini-gram: a clause that occurs nowhere gives no per-shard lists.
            return Ok(CnfResult {
                count: 0,
                approx: false,
                ptrs_by_shard: Vec::new(),
            });
        }
        Ok(CnfResult {
            count,
            approx,
            ptrs_by_shard,
        })
    }

    fn find_cnf_in_shard(
        &self,
        s: usize,
        cnf: &[Vec<Vec<u8>>],
        budget: u64,
        max_diff_tokens: u64,
        order: WindowOrder,
    ) -> Result<ShardWindows> {
        let shard = &self.shards()[s];
        let full = (0, shard.num_tokens());
        let mut clauses = cnf
            .iter()
            .map(|terms: &Vec<Vec<u8>>| {
                let terms = terms.as_slice();
                let ranges = terms
                    .iter()
                    .map(|t| shard.find(t, full))
                    .collect::<Result<Vec<_>>>()?;
                let count: u64 = ranges.iter().map(|(lo, hi)| hi - lo).sum();
                if count <= budget {
                    return Ok(Clause {
                        terms,
                        full: ranges.clone(),
                        ranges,
                        count,
                        subsampled: false,
                        scale: 1.0,
                    });
                }
                // Keep a proportional run of every n-gram's range, placed as infini-gram does.
                let mut rng = Mt19937::new(19260817);
                let mut kept = 0;
                let kept_ranges: Vec<RankRange> = ranges
                    .iter()
                    .map(|&(lo, hi)| {
                        let len = hi - lo;
                        // count > budget here; u128 keeps len * budget exact.
                        let keep = (len as u128 * budget as u128).div_ceil(count as u128) as u64;
                        kept += keep;
                        let start = lo + rng.uniform_up_to(len - keep);
                        (start, start + keep)
                    })
                    .collect();
                Ok(Clause {
                    terms,
                    ranges: kept_ranges,
                    full: ranges,
                    count,
                    subsampled: true,
                    // infini-gram's ratio: an integer division, so a small excess is not scaled.
                    scale: (count / kept.max(1)) as f64,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let present: Vec<bool> = clauses.iter().map(|c| c.count > 0).collect();
        if clauses.iter().any(|c| c.count == 0) {
            return Ok(ShardWindows::listed(Vec::new(), 1.0, present));
        }
        clauses.sort_by_key(|c| c.count);
        let ptrs_of = |clause: &Clause| -> Result<Vec<u64>> {
            // One n-gram (most clauses): its pointers as read, not copied again.
            if let [(lo, hi)] = clause.ranges[..] {
                return shard.ptrs_in(lo, hi);
            }
            let mut ptrs = Vec::with_capacity(clause.kept() as usize);
            for &(lo, hi) in &clause.ranges {
                ptrs.extend(shard.ptrs_in(lo, hi)?);
            }
            Ok(ptrs)
        };
        let w = self.token_width().bytes() as u64;
        // A reach past the whole shard is the same as no limit: saturate, never wrap.
        let reach = max_diff_tokens.saturating_mul(w);
        let text_len = shard.tokenized_file().len();
        // Every clause's subsampling scales the count, also after no window is left.
        let scale: f64 = clauses.iter().map(|c| c.scale).product();
        if clauses.len() == 1 {
            // Every window is one occurrence: empty, so within its document.
            return Ok(ShardWindows::listed(ptrs_of(&clauses[0])?, scale, present));
        }
        let num_anchors = clauses[0].kept();
        let memo = self.clause_memo();
        // Only a count in text order reads remembered occurrences.
        let remembered = |c: usize| match order {
            WindowOrder::Text => memo.get(s, &clauses[c].ranges),
            WindowOrder::Ranks => None,
        };
        let next_remembered = remembered(1);
        // Many windows in text order: each clause's nearest occurrences are then
        // read in the order they are stored, and the document check is a walk
        // over the document offsets, not a miss in the text per window. So are
        // few when the next clause is one the memo takes (it may be remembered
        // sorted, or become so).
        let in_text_order = order == WindowOrder::Text
            && (num_anchors >= TEXT_ORDER_ANCHORS || memo.takes(&clauses[1].ranges));
        let separators = if in_text_order {
            SeparatorCheck::for_shard(shard)?
        } else {
            SeparatorCheck::Text(shard.tokenized_file())
        };
        let in_text_order_of = |clause: &Clause| -> Result<Arc<TextOffsets>> {
            memo.in_text_order(s, &clause.ranges, || {
                Ok(sort_text_offsets(ptrs_of(clause)?, text_len))
            })
        };
        let sorted_of = |clause: &Clause| -> Result<SortedOccurrences> {
            Ok(SortedOccurrences::new(&ptrs_of(clause)?, text_len))
        };
        let anchors_remembered = match in_text_order {
            true => remembered(0),
            false => None,
        };
        let anchors_in_order = || {
            if let Some(anchors) = anchors_remembered.clone() {
                Ok(anchors)
            } else if in_text_order {
                in_text_order_of(&clauses[0])
            } else {
                ptrs_of(&clauses[0]).map(|ptrs| Arc::new(TextOffsets::Wide(ptrs)))
            }
        };
        let probe_of = |c: usize, num_windows: usize| -> Result<Probe> {
            let clause = &clauses[c];
            let known = match c {
                1 => next_remembered.clone(),
                _ => remembered(c),
            };
            let costs =
                || ProbeCosts::new(clause, num_windows as u64, reach, shard.num_tokens(), w);
            let text_probe = match FORCED_PROBE.load(AtomicOrdering::Relaxed) {
                FORCE_TEXT => true,
                FORCE_SORTED => false,
                _ if !in_text_order => costs().prefers_text(false),
                _ if known.is_some() => costs().prefers_text(true),
                _ => {
                    // Read the text while that has cost less in all than sorting
                    // once, then sort (the sorted list is remembered): the clause
                    // recurs, and ski rental bounds the loss at 2x either way.
                    let costs = costs();
                    costs.prefers_text(false)
                        && memo.rent(s, &clause.ranges, costs.text) < costs.sort
                }
            };
            Ok(if text_probe {
                Probe::Text(TextProbe::new(shard, clause)?)
            } else if let (Some(sorted), true) = (known, in_text_order) {
                Probe::InOrder(sorted)
            } else if in_text_order {
                Probe::InOrder(in_text_order_of(clause)?)
            } else {
                Probe::Sorted(sorted_of(clause)?)
            })
        };
        // The anchors and the next clause's probe are independent: with many
        // anchors, each is made on a core of its own (unless one is remembered:
        // waking the pool would then cost more than it saves).
        let make_both = next_remembered.is_none() && anchors_remembered.is_none();
        let (anchors, first_probe) = if num_anchors > PARALLEL_ITEMS as u64 && make_both {
            crate::pool::join(anchors_in_order, || probe_of(1, num_anchors as usize))
        } else {
            (anchors_in_order(), probe_of(1, num_anchors as usize))
        };
        let (anchors, mut first_probe) = (anchors?, Some(first_probe?));
        let last = clauses.len() - 1;
        let mut windows: Vec<(u64, u64)> = Vec::new();
        let mut starts = Vec::new();
        for (c, clause) in clauses.iter().enumerate().skip(1) {
            let sorted_ptrs = || sorted_of(clause);
            let probe = match first_probe.take() {
                Some(probe) => probe,
                None => probe_of(c, windows.len())?,
            };
            let step = Step {
                shard,
                probe,
                sorted_ptrs: &sorted_ptrs,
                reach,
                w,
            };
            if c == last {
                if let (Probe::InOrder(sorted), SeparatorCheck::Offsets(offsets)) =
                    (&step.probe, &separators)
                {
                    // Only their number is wanted: nothing is written.
                    let count = with_width!(&**sorted, sorted => match c {
                        1 => with_width!(&*anchors, anchors => {
                            count_within_documents(anchors, sorted, offsets, reach)
                        }),
                        _ => count_within_documents(&windows, sorted, offsets, reach),
                    });
                    return Ok(ShardWindows {
                        count,
                        starts: Vec::new(),
                        scale,
                        present,
                    });
                }
                // The last clause's windows are checked for separators piece by piece
                // as they are made: never gathered into one list.
                let finish =
                    |piece: Vec<(u64, u64)>| separators.windows_within_documents(&piece, w);
                starts = match c {
                    1 => with_width!(&*anchors, anchors => step.extend(anchors, finish)?),
                    _ => step.extend(&windows, finish)?,
                };
            } else {
                let keep = |piece: Vec<(u64, u64)>| Ok(piece);
                windows = match c {
                    1 => with_width!(&*anchors, anchors => step.extend(anchors, keep)?),
                    _ => step.extend(&windows, keep)?,
                };
                if windows.is_empty() {
                    break;
                }
            }
        }
        Ok(ShardWindows::listed(starts, scale, present))
    }
}

/// One shard's part of a CNF answer.
struct ShardWindows {
    /// The windows left (before scaling).
    count: u64,
    /// Their starts in the order asked for; none when only their number is wanted
    /// and a walk in text order counted them without listing them.
    starts: Vec<u64>,
    /// The product of the clauses' subsampling ratios.
    scale: f64,
    /// Per clause of the query, whether it occurs in the shard.
    present: Vec<bool>,
}

impl ShardWindows {
    fn listed(starts: Vec<u64>, scale: f64, present: Vec<bool>) -> Self {
        ShardWindows {
            count: starts.len() as u64,
            starts,
            scale,
            present,
        }
    }
}

/// The order a shard's CNF windows are listed in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WindowOrder {
    /// infini-gram's: by the suffix-array rank of each window's anchor occurrence.
    Ranks,
    /// Any order (only the windows' number is wanted): with many windows, by text offset.
    Text,
}

/// Windows at least this many are taken in text order when [`WindowOrder::Text`]
/// allows it; fewer cost less than sorting them saves.
const TEXT_ORDER_ANCHORS: u64 = 1024;

/// RAM an engine's [`ClauseMemo`] may hold by default.
pub const DEFAULT_CNF_MEMO_BYTES: u64 = 64 << 20;

/// Clauses with fewer kept occurrences are read and sorted afresh each time: it
/// costs little more than a lookup. (Fewer anchors than this are never sorted.)
const MEMO_MIN_OCCURRENCES: u64 = TEXT_ORDER_ANCHORS;

/// An engine's remembered CNF clauses: each one's kept occurrences in a shard,
/// sorted in text order. They are fixed by the clause's kept rank ranges in that
/// shard (subsampling included, as it is deterministic), which are the key, and
/// the index is immutable, so an entry never goes stale. Past its byte budget the
/// memo starts over empty. Its lock is only ever tried, never waited for: a lock
/// held elsewhere, or held by a thread that did not survive a `fork()`, is a miss,
/// never a hang.
pub struct ClauseMemo {
    max_bytes: u64,
    bytes: AtomicU64,
    entries: RwLock<HashMap<ClauseInShard, Arc<TextOffsets>>>,
    /// Per clause not remembered, what reading the text around its windows has
    /// cost so far (rough ns, [`ProbeCosts`]): past the cost of sorting it once,
    /// it is sorted and remembered.
    rent: Mutex<HashMap<ClauseInShard, f64>>,
}

/// Clauses whose rent [`ClauseMemo`] keeps at most (it starts over past them).
const MAX_RENTED: usize = 1 << 16;

/// A clause as [`ClauseMemo`] knows it: a shard and the clause's kept rank ranges there.
type ClauseInShard = (usize, Vec<RankRange>);

impl ClauseMemo {
    /// A memo of at most `max_bytes` of occurrences (0: none are kept).
    pub fn new(max_bytes: u64) -> Self {
        ClauseMemo {
            max_bytes,
            bytes: AtomicU64::new(0),
            entries: RwLock::new(HashMap::new()),
            rent: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the clause of `kept_ranges` would be remembered.
    fn takes(&self, kept_ranges: &[RankRange]) -> bool {
        let kept: u64 = kept_ranges.iter().map(|(lo, hi)| hi - lo).sum();
        kept >= MEMO_MIN_OCCURRENCES && kept.saturating_mul(8) <= self.max_bytes
    }

    /// Adds `cost` to what reading the text around the windows of the clause of
    /// `kept_ranges` has cost in all, which it returns (0 for a clause that would
    /// not be remembered, or when the lock is held elsewhere).
    fn rent(&self, shard: usize, kept_ranges: &[RankRange], cost: f64) -> f64 {
        if !self.takes(kept_ranges) {
            return 0.0;
        }
        let Some(mut rent) = tried(self.rent.try_lock()) else {
            return 0.0;
        };
        if rent.len() >= MAX_RENTED {
            rent.clear();
        }
        let paid = rent.entry((shard, kept_ranges.to_vec())).or_insert(0.0);
        *paid += cost;
        *paid
    }

    /// The remembered occurrences of the clause whose kept rank ranges in shard
    /// `shard` are `kept_ranges`, if any.
    fn get(&self, shard: usize, kept_ranges: &[RankRange]) -> Option<Arc<TextOffsets>> {
        if !self.takes(kept_ranges) {
            return None;
        }
        let key = (shard, kept_ranges.to_vec());
        tried(self.entries.try_read())?.get(&key).cloned()
    }

    /// The occurrences of a clause whose kept rank ranges in shard `shard` are
    /// `kept_ranges`, in text order: remembered, else `sorted()` (then remembered
    /// when the clause is frequent enough).
    fn in_text_order(
        &self,
        shard: usize,
        kept_ranges: &[RankRange],
        sorted: impl FnOnce() -> Result<TextOffsets>,
    ) -> Result<Arc<TextOffsets>> {
        if !self.takes(kept_ranges) {
            return sorted().map(Arc::new);
        }
        if let Some(occurrences) = self.get(shard, kept_ranges) {
            return Ok(occurrences);
        }
        let occurrences = Arc::new(sorted()?);
        let bytes = occurrences.bytes();
        let key = (shard, kept_ranges.to_vec());
        let Some(mut entries) = tried(self.entries.try_write()) else {
            return Ok(occurrences);
        };
        if self.bytes.load(AtomicOrdering::Relaxed) + bytes > self.max_bytes {
            entries.clear();
            self.bytes.store(0, AtomicOrdering::Relaxed);
        }
        if entries.insert(key, occurrences.clone()).is_none() {
            self.bytes.fetch_add(bytes, AtomicOrdering::Relaxed);
        }
        Ok(occurrences)
    }
}

/// The guard of a lock just tried: `None` when it is held elsewhere (the memo
/// never waits), the data as it is when a holder panicked (it is only a cache).
fn tried<G>(attempt: std::sync::TryLockResult<G>) -> Option<G> {
    match attempt {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// How windows are checked for document separators.
enum SeparatorCheck<'s> {
    /// Every separator is at one of these document offsets (ascending).
    Offsets(&'s [u64]),
    /// Reading each window's text.
    Text(&'s crate::storage::IndexFile),
}

impl<'s> SeparatorCheck<'s> {
    /// How `shard`'s windows are checked: by its document offsets when they are
    /// all of its separators (then a window holds one exactly when an offset lies
    /// in it) and can be read in place, else by reading each window's text.
    fn for_shard(shard: &'s crate::shard::Shard) -> Result<Self> {
        let text = SeparatorCheck::Text(shard.tokenized_file());
        let Some(offsets) = shard.document_offsets_in_place() else {
            return Ok(text);
        };
        let width = shard.token_width();
        let mut separator = Vec::with_capacity(width.bytes());
        width.encode_into(&[width.separator()], &mut separator);
        let (lo, hi) = shard.find(&separator, (0, shard.num_tokens()))?;
        // Each offset is at a separator (`verify` checks it): as many separators
        // as offsets are then all at offsets. More are ids inside documents.
        Ok(if hi - lo == offsets.len() as u64 {
            SeparatorCheck::Offsets(offsets)
        } else {
            text
        })
    }

    /// The starts of the windows `[l, r]` that hold no document separator, in order.
    fn windows_within_documents(&self, windows: &[(u64, u64)], w: u64) -> Result<Vec<u64>> {
        match *self {
            SeparatorCheck::Text(file) => windows_within_documents(file, windows, w as usize),
            SeparatorCheck::Offsets(offsets) => {
                // Windows in text order: each lookup gallops on from the last.
                let mut at = 0;
                Ok(windows
                    .iter()
                    .filter_map(|&(l, r)| {
                        at = first_not_below_anywhere(offsets, at, l);
                        offsets
                            .get(at)
                            .is_none_or(|&offset| offset >= r)
                            .then_some(l)
                    })
                    .collect())
            }
        }
    }
}

/// Whether `tokens` (whole tokens of `w` bytes) hold a document separator (all ones):
/// the bytes 0xFF found by `memchr` (vectorized; rare in text), each checked for a
/// whole separator token around it.
fn holds_separator(tokens: &[u8], w: usize) -> bool {
    memchr::memchr_iter(0xFF, tokens).any(|at| {
        let start = at - at % w;
        tokens[start..start + w].iter().all(|&byte| byte == 0xFF)
    })
}

/// The starts of the windows that hold no document separator, in order. Each
/// window's text is a miss at an unrelated place of the file: for a mapped file the
/// text of the windows ahead is prefetched so that the misses overlap.
fn windows_within_documents(
    file: &crate::storage::IndexFile,
    windows: &[(u64, u64)],
    w: usize,
) -> Result<Vec<u64>> {
    let mut starts = Vec::with_capacity(windows.len());
    let mapped = match file {
        crate::storage::IndexFile::Local(_) => Some(file.local_bytes()?),
        _ => None,
    };
    for (i, &(l, r)) in windows.iter().enumerate() {
        let text = match mapped {
            Some(mapped) => {
                if let Some(&(ahead, _)) = windows.get(i + crate::interleave::AHEAD) {
                    crate::interleave::prefetch(mapped, ahead as usize);
                }
                match mapped.get(l as usize..r as usize) {
                    Some(text) => std::borrow::Cow::Borrowed(text),
                    None => file.read_at(l, r - l)?, // out of range: its error
                }
            }
            None => file.read_at(l, r - l)?,
        };
        if !holds_separator(&text, w) {
            starts.push(l);
        }
    }
    Ok(starts)
}

/// The index of the first of `sorted[from..]` that is not below `bound` (`sorted` is
/// ascending): a galloping search from `from`, so a lookup that starts near its
/// answer pays the logarithm of the distance, not of the whole list.
fn first_not_below<T: Offset>(sorted: &[T], from: usize, bound: u64) -> usize {
    let mut step = 1;
    let mut hi = from;
    while hi < sorted.len() && sorted[hi].into() < bound {
        hi = from + step;
        step *= 2;
    }
    let hi = hi.min(sorted.len());
    let lo = (from + step / 4).min(hi); // the last probe known below `bound` (or `from`)
    lo + sorted[lo..hi].partition_point(|&p| p.into() < bound)
}

/// The index of the first of `sorted` that is not below `bound`: galloping on
/// from `from` when the answer lies there (lookups whose bounds mostly ascend),
/// else a binary search before it.
fn first_not_below_anywhere<T: Offset>(sorted: &[T], from: usize, bound: u64) -> usize {
    match from.checked_sub(1).and_then(|before| sorted.get(before)) {
        Some(&before) if before.into() >= bound => {
            sorted[..from].partition_point(|&p| p.into() < bound)
        }
        _ => first_not_below(sorted, from.min(sorted.len()), bound),
    }
}

/// A clause's kept occurrences, sorted, with a table of where each block of
/// `2^shift` bytes of text starts among them: a window's nearest occurrences are
/// a table read and a short gallop away, with no binary search over the whole list
/// (and no sort of the windows). The blocks also sort the occurrences: a counting
/// sort by block, then each block's few occurrences sorted, in linear time.
struct SortedOccurrences {
    sorted: Vec<u64>,
    shift: u32,
    /// `block_start[b]`: the first occurrence at or after byte `b << shift`; two
    /// more entries than blocks, both the end.
    block_start: Vec<usize>,
}

impl SortedOccurrences {
    /// `ptrs` in any order, each below `text_len`.
    fn new(ptrs: &[u64], text_len: u64) -> Self {
        // About one block per occurrence (the table stays as small as the list).
        let shift = (text_len / (ptrs.len() as u64).max(1)).max(1).ilog2();
        let blocks = (text_len >> shift) as usize + 1;
        // Counts at `b + 2`, summed: `b + 1` is then where block `b` starts, the
        // cursor that placing its occurrences moves to where block `b + 1` starts.
        let mut block_start = vec![0usize; blocks + 2];
        for &p in ptrs {
            block_start[(p >> shift) as usize + 2] += 1;
        }
        for b in 1..block_start.len() {
            block_start[b] += block_start[b - 1];
        }
        let mut sorted = vec![0u64; ptrs.len()];
        for &p in ptrs {
            let slot = &mut block_start[(p >> shift) as usize + 1];
            sorted[*slot] = p;
            *slot += 1;
        }
        for pair in block_start.windows(2) {
            if pair[1] - pair[0] > 1 {
                sorted[pair[0]..pair[1]].sort_unstable();
            }
        }
        SortedOccurrences {
            sorted,
            shift,
            block_start,
        }
    }

    /// The index of the first occurrence at or after `bound`.
    fn first_not_below(&self, bound: u64) -> usize {
        first_not_below(&self.sorted, self.block_start[self.block_of(bound)], bound)
    }

    fn block_of(&self, bound: u64) -> usize {
        ((bound >> self.shift) as usize).min(self.block_start.len() - 1)
    }

    /// Hints the reads of `nearest` for windows ahead of `windows[i]`, in two stages
    /// (the table entry of the window far ahead; the occurrences of the one nearer,
    /// whose table entry is then in cache), so that the misses of many windows overlap.
    #[inline(always)]
    fn prefetch_ahead<W: Window>(&self, windows: &[W], i: usize) {
        use crate::interleave::{prefetch_item, AHEAD};
        if let Some(window) = windows.get(i + 2 * AHEAD) {
            prefetch_item(&self.block_start, self.block_of(window.bounds().0));
        }
        if let Some(window) = windows.get(i + AHEAD) {
            let at = self.block_start[self.block_of(window.bounds().0)];
            prefetch_item(&self.sorted, at);
            prefetch_item(&self.sorted, at.wrapping_sub(1));
        }
    }

    /// The last occurrence before `r` (as `min(l, it)`) and the first at or after `l`
    /// (as `max(r, it)`), as `nearest_in_text` gives them.
    fn nearest(&self, l: u64, r: u64) -> (Option<u64>, Option<u64>) {
        nearest_from(&self.sorted, self.first_not_below(l), l, r)
    }
}

/// [`SortedOccurrences::nearest`] in the ascending `sorted`, given `after`, the
/// index of its first occurrence at or after `l`.
fn nearest_from<T: Offset>(
    sorted: &[T],
    after: usize,
    l: u64,
    r: u64,
) -> (Option<u64>, Option<u64>) {
    let before = first_not_below(sorted, after, r);
    (
        (before > 0).then(|| l.min(sorted[before - 1].into())),
        sorted.get(after).map(|&p| r.max(p.into())),
    )
}

/// What finding a clause's occurrences near each window costs each way, in
/// rough nanoseconds. Reading the text around the windows costs a substring
/// search of each window's neighbourhood per n-gram, plus, for a subsampled
/// clause, suffix comparisons per occurrence met there (its expected number from
/// the clause's density). Sorting costs a pointer read and a sort step per kept
/// occurrence (`sort`, nothing when they are remembered sorted), then a search
/// per window (`walk`).
struct ProbeCosts {
    text: f64,
    sort: f64,
    walk: f64,
}

impl ProbeCosts {
    fn new(clause: &Clause, windows: u64, reach: u64, shard_tokens: u64, w: u64) -> Self {
        let span_bytes = reach.saturating_mul(2).saturating_add(w) as f64;
        let windows = windows as f64;
        // A cache miss to reach the window's text, then the search itself.
        let mut text = windows * clause.terms.len() as f64 * (300.0 + span_bytes / 4.0);
        if clause.subsampled {
            let met = clause.count as f64 * (span_bytes / w as f64) / shard_tokens.max(1) as f64;
            // Each occurrence met: resuming the search, two suffix comparisons.
            text += windows * met * 200.0;
        }
        // Calibrated with examples/cnf_profile on the docs index: below 50 and 120
        // (the constants before the radix sort and the walks in text order), clauses
        // of 1,000 to 10,000 occurrences took the sort more often, their p99 halved.
        ProbeCosts {
            text,
            sort: clause.kept() as f64 * 25.0,
            walk: windows * 60.0,
        }
    }

    /// Whether reading the text is cheaper than sorting (`sorted`: the
    /// occurrences are remembered sorted, only the walk is left).
    fn prefers_text(&self, sorted: bool) -> bool {
        match sorted {
            true => self.text < self.walk,
            false => self.text < self.sort + self.walk,
        }
    }
}

/// How a clause's occurrences nearest to each window are found.
enum Probe<'c> {
    Text(TextProbe<'c>),
    /// The clause's kept occurrences, sorted.
    Sorted(SortedOccurrences),
    /// The same without the table, for windows in text order: each piece's
    /// lookups gallop on from the last.
    InOrder(Arc<TextOffsets>),
}

/// Finding a clause's occurrences in the text around a window: a substring search
/// per n-gram. When the clause is subsampled, an occurrence counts only if its
/// suffix-array rank lies in the n-gram's kept run, which comparing its suffix with
/// the suffixes bounding the run tells without knowing its rank.
struct TextProbe<'c> {
    terms: Vec<TermProbe<'c>>,
    longest_term: u64,
}

struct TermProbe<'c> {
    forward: memmem::Finder<'c>,
    backward: memmem::FinderRev<'c>,
    /// A subsampled n-gram's kept run `[start, end)` of its range `[lo, hi)`: the
    /// suffix at `start` when `start > lo` (an occurrence must not sort before it),
    /// the one at `end` when `end < hi` (an occurrence must sort before it).
    kept_from: Option<u64>,
    kept_until: Option<u64>,
}

/// Tests only: every clause takes one probe (`FORCE_TEXT`, `FORCE_SORTED`),
/// so that both are checked against infini-gram on the same queries; 0 chooses.
static FORCED_PROBE: AtomicU8 = AtomicU8::new(0);
const FORCE_TEXT: u8 = 1;
const FORCE_SORTED: u8 = 2;

/// Tests only: `Some(true)` makes every clause read the text around its windows,
/// `Some(false)` sort its occurrences, `None` restores the cost model's choice.
#[doc(hidden)]
pub fn force_probe_for_tests(text: Option<bool>) {
    let mode = match text {
        Some(true) => FORCE_TEXT,
        Some(false) => FORCE_SORTED,
        None => 0,
    };
    FORCED_PROBE.store(mode, AtomicOrdering::Relaxed);
}

/// Below this many windows or occurrences, a step runs on the calling thread:
/// handing it to the pool would cost more than it saves.
const PARALLEL_ITEMS: usize = 4096;

/// Suffix comparisons longer than this (a passage repeated many times) give up:
/// the clause then takes the sorted path, so no query pays more than this per check.
const SUFFIX_COMPARE_LIMIT: u64 = 1 << 16;

impl<'c> TextProbe<'c> {
    fn new(shard: &crate::shard::Shard, clause: &'c Clause) -> Result<Self> {
        let mut terms = Vec::new();
        for ((term, &(start, end)), &(lo, hi)) in
            clause.terms.iter().zip(&clause.ranges).zip(&clause.full)
        {
            if start == end {
                continue;
            }
            let bound = |subsampled_side: bool, rank: u64| -> Result<Option<u64>> {
                if clause.subsampled && subsampled_side {
                    shard.ptr_at(rank).map(Some)
                } else {
                    Ok(None)
                }
            };
            terms.push(TermProbe {
                forward: memmem::Finder::new(term.as_slice()),
                backward: memmem::FinderRev::new(term.as_slice()),
                kept_from: bound(start > lo, start)?,
                kept_until: bound(end < hi, end)?,
            });
        }
        let longest_term = clause
            .terms
            .iter()
            .map(|t| t.len() as u64)
            .max()
            .unwrap_or(0);
        Ok(TextProbe {
            terms,
            longest_term,
        })
    }
}

/// Windows handed to one task of the pool: enough to amortize the hand-off, few
/// enough that a piece's windows stay in cache between its steps.
const PIECE: usize = 2048;

/// A window `[l, r]` (byte offsets of match starts); an anchor's occurrence `p` is
/// the window `[p, p]`.
trait Window: Copy + Send + Sync {
    fn bounds(self) -> (u64, u64);
}

impl Window for u64 {
    fn bounds(self) -> (u64, u64) {
        (self, self)
    }
}

impl Window for u32 {
    fn bounds(self) -> (u64, u64) {
        (self.into(), self.into())
    }
}

impl Window for (u64, u64) {
    fn bounds(self) -> (u64, u64) {
        self
    }
}

/// One clause's extension of the windows.
struct Step<'a, 'c, S: Fn() -> Result<SortedOccurrences>> {
    shard: &'a crate::shard::Shard,
    probe: Probe<'c>,
    /// The clause's occurrences sorted, for when a kept-run check gives up.
    sorted_ptrs: &'a S,
    reach: u64,
    w: u64,
}

impl<S: Fn() -> Result<SortedOccurrences>> Step<'_, '_, S> {
    /// [`extend_pieces`] with its probe, else (a kept-run check met suffixes equal for
    /// too long: a much repeated passage) with the clause's sorted occurrences.
    fn extend<W: Window, T: Send + Copy>(
        &self,
        windows: &[W],
        finish: impl Fn(Vec<(u64, u64)>) -> Result<Vec<T>> + Sync,
    ) -> Result<Vec<T>> {
        let (shard, reach, w) = (self.shard, self.reach, self.w);
        if let Some(out) = extend_pieces(shard, windows, &self.probe, reach, w, &finish)? {
            return Ok(out);
        }
        let sorted = Probe::Sorted((self.sorted_ptrs)()?);
        Ok(extend_pieces(shard, windows, &sorted, reach, w, &finish)?
            .expect("the sorted probe always decides"))
    }
}

/// `offsets` sorted ascending, narrowed to `u32`s when every offset fits (each
/// is below `text_len`, as [`crate::shard::Shard::ptrs_in`] checked, and the
/// text is under 4 GiB).
fn sort_text_offsets(mut offsets: Vec<u64>, text_len: u64) -> TextOffsets {
    if text_len > u32::MAX as u64 {
        radsort::sort(&mut offsets);
        return TextOffsets::Wide(offsets);
    }
    let mut narrow: Vec<u32> = offsets.iter().map(|&o| o as u32).collect();
    radsort::sort(&mut narrow);
    TextOffsets::Narrow(narrow)
}

/// Extends every window by one clause (see the module docs): each window gives one
/// window, two, or none; `finish` then turns each piece of the new windows into
/// what is kept of it (the windows themselves, or the starts of those within one
/// document), in order. Pieces run on the pool when there are many windows.
/// `None` when a kept-run check gave up.
fn extend_pieces<W: Window, T: Send + Copy>(
    shard: &crate::shard::Shard,
    windows: &[W],
    probe: &Probe,
    reach: u64,
    w: u64,
    finish: impl Fn(Vec<(u64, u64)>) -> Result<Vec<T>> + Sync,
) -> Result<Option<Vec<T>>> {
    let piece_of = |piece: &[W]| -> Result<Option<Vec<T>>> {
        let extended = match probe {
            Probe::Sorted(sorted) => extend_piece(piece, reach, |i, l, r| {
                sorted.prefetch_ahead(piece, i);
                Ok(Some(sorted.nearest(l, r)))
            })?,
            Probe::InOrder(sorted) => with_width!(&**sorted, sorted => {
                let mut after = 0;
                extend_piece(piece, reach, |_, l, r| {
                    after = first_not_below_anywhere(sorted, after, l);
                    Ok(Some(nearest_from(sorted, after, l, r)))
                })?
            }),
            Probe::Text(text) => extend_piece(piece, reach, |_, l, r| {
                nearest_in_text(shard, text, l, r, reach, w)
            })?,
        };
        extended.map(&finish).transpose()
    };
    if windows.len() <= PARALLEL_ITEMS {
        return piece_of(windows);
    }
    let pieces = crate::pool::install(|| {
        windows
            .par_chunks(PIECE)
            .map(piece_of)
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(pieces
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .map(|pieces| pieces.concat()))
}

/// One piece of [`extend_pieces`]: `nearest(i, l, r)` gives, for the piece's window
/// `i`, the last occurrence before `r` (as `min(l, it)`) and the first at or after
/// `l` (as `max(r, it)`), or `None` when a kept-run check gave up.
#[allow(clippy::type_complexity)]
fn extend_piece<W: Window>(
    piece: &[W],
    reach: u64,
    mut nearest: impl FnMut(usize, u64, u64) -> Result<Option<(Option<u64>, Option<u64>)>>,
) -> Result<Option<Vec<(u64, u64)>>> {
    let mut out = Vec::with_capacity(piece.len() + piece.len() / 4);
    for (i, window) in piece.iter().enumerate() {
        let (l, r) = window.bounds();
        let Some((new_l, new_r)) = nearest(i, l, r)? else {
            return Ok(None);
        };
        out.extend(extended(l, r, new_l, new_r, reach));
    }
    Ok(Some(out))
}

/// The window `[l, r]` becomes, given a clause's last occurrence before `r` (as
/// `min(l, it)`) and its first at or after `l` (as `max(r, it)`): it reaches out
/// to each of them that lies within `reach` of it; `None` when neither does.
#[inline(always)]
fn extended(
    l: u64,
    r: u64,
    new_l: Option<u64>,
    new_r: Option<u64>,
    reach: u64,
) -> Option<(u64, u64)> {
    let (kept, l, r) = extension(
        l,
        r,
        (new_l.unwrap_or(0), new_l.is_some()),
        (new_r.unwrap_or(0), new_r.is_some()),
        reach,
    );
    kept.then_some((l, r))
}

/// [`extended`] as `(kept, l, r)`, each side given as (offset, whether there is
/// one), computed without a branch that the data decides (which side a window
/// extends to is a coin toss).
#[inline(always)]
fn extension(
    l: u64,
    r: u64,
    (new_l, has_l): (u64, bool),
    (new_r, has_r): (u64, bool),
    reach: u64,
) -> (bool, u64, u64) {
    let left = has_l & (new_l.saturating_add(reach) >= l);
    let right = has_r & (new_r <= r.saturating_add(reach));
    let l = if left { new_l } else { l };
    let r = if right { new_r } else { r };
    (left | right, l, r)
}

/// How many of `windows` (in text order) are left after the last clause, whose
/// kept occurrences are `sorted`, extends them and those holding a document
/// offset (every separator is at one) are dropped: the two steps of
/// [`extend_pieces`] and [`SeparatorCheck`] in one walk that writes nothing and
/// takes no branch that the data decides (the walk is bound by mispredictions
/// otherwise: which side a window extends to is a coin toss). Many windows are
/// walked in pieces, on the calling thread and on pool threads as they wake.
fn count_within_documents<W: Window, T: Offset>(
    windows: &[W],
    sorted: &[T],
    offsets: &[u64],
    reach: u64,
) -> u64 {
    let piece_count = |piece: &[W]| -> u64 {
        let (mut after, mut at, mut kept) = (0, 0, 0u64);
        for window in piece {
            let (l, r) = window.bounds();
            after = advance_to(sorted, after, l);
            let before = if r == l {
                after
            } else {
                advance_to(sorted, after, r)
            };
            // The last occurrence before r and the first at or after l, as `extended` takes them.
            let new_l = (l.min(at_or_max(sorted, before.wrapping_sub(1))), before > 0);
            let new_r = (r.max(at_or_max(sorted, after)), after < sorted.len());
            let (extends, l, r) = extension(l, r, new_l, new_r, reach);
            at = advance_to(offsets, at, l);
            kept += (extends & (at_or_max(offsets, at) >= r)) as u64;
        }
        kept
    };
    if windows.len() <= PARALLEL_ITEMS {
        return piece_count(windows);
    }
    let pieces: Vec<&[W]> = windows.chunks(PIECE).collect();
    crate::pool::share(pieces.len(), |i| piece_count(pieces[i]))
        .into_iter()
        .sum()
}

/// `sorted[i]`, or the largest offset past the end.
#[inline(always)]
fn at_or_max<T: Offset>(sorted: &[T], i: usize) -> u64 {
    sorted.get(i).map_or(u64::MAX, |&p| p.into())
}

/// The index of the first of `sorted` (ascending) not below `bound`, given `at`,
/// the answer for an earlier bound (bounds mostly ascend, a little at a time):
/// the next three entries are compared at once, without branches, as the answer
/// mostly lies among them; past them a gallop, and back a binary search.
#[inline(always)]
fn advance_to<T: Offset>(sorted: &[T], at: usize, bound: u64) -> usize {
    if at > 0 && sorted[at - 1].into() >= bound {
        return sorted[..at].partition_point(|&p| p.into() < bound);
    }
    let steps = (at_or_max(sorted, at) < bound) as usize
        + (at_or_max(sorted, at + 1) < bound) as usize
        + (at_or_max(sorted, at + 2) < bound) as usize;
    if steps == 3 {
        return first_not_below(sorted, at + 3, bound);
    }
    at + steps
}

/// The window bounds a clause extends `[l, r]` to, read off the text: the last
/// (kept) occurrence starting before `r` (as `min(l, it)`) and the first at or
/// after `l` (as `max(r, it)`), looking no further than `reach` bytes outside the
/// window; beyond that an occurrence could not be used, so `None` is the same
/// answer. `None` overall when a kept-run check gave up.
#[allow(clippy::type_complexity)]
fn nearest_in_text(
    shard: &crate::shard::Shard,
    probe: &TextProbe,
    l: u64,
    r: u64,
    reach: u64,
    w: u64,
) -> Result<Option<(Option<u64>, Option<u64>)>> {
    let file = shard.tokenized_file();
    // `from` is on the token grid (l is, reach is a multiple of w), so an
    // occurrence is on the grid when its offset from `from` is.
    let from = l.saturating_sub(reach);
    let to = r.saturating_add(reach).saturating_add(probe.longest_term);
    let text = file.read_clipped(from, to - from)?;
    let (l_at, r_at) = ((l - from) as usize, (r - from) as usize);
    let right_end = (r_at as u64).saturating_add(reach);
    let mut gave_up = false;
    let mut counts = |term: &TermProbe, at: usize| -> Result<bool> {
        let p = from + at as u64;
        if !(at as u64).is_multiple_of(w) {
            return Ok(false);
        }
        // Not before the kept run's first suffix, and before the suffix past it.
        let checks = [(term.kept_from, false), (term.kept_until, true)];
        for (bound, must_be_less) in checks {
            let Some(bound) = bound else { continue };
            match compare_suffixes(file, p, bound)? {
                None => {
                    gave_up = true;
                    return Ok(false);
                }
                Some(order) if (order == Ordering::Less) != must_be_less => return Ok(false),
                Some(_) => {}
            }
        }
        Ok(true)
    };
    let mut last_before_r: Option<usize> = None;
    for term in &probe.terms {
        let len = term.backward.needle().len();
        // Starts in [searched_from, end) where end shrinks past each rejected match.
        let searched_from = last_before_r.map_or(0, |p| p + 1);
        let mut end = r_at.min(text.len().saturating_sub(len).saturating_add(1));
        while end > searched_from {
            let hay = &text[searched_from..(end - 1 + len).min(text.len())];
            let Some(at) = term.backward.rfind(hay).map(|a| a + searched_from) else {
                break;
            };
            if counts(term, at)? {
                last_before_r = Some(at);
                break;
            }
            end = at;
        }
    }
    let new_l = last_before_r.map(|at| l.min(from + at as u64));
    let new_r = if matches!(last_before_r, Some(at) if at >= l_at) {
        // An occurrence inside the window: the first one at or after l is inside too.
        Some(r)
    } else {
        let mut first_after_l: Option<usize> = None;
        for term in &probe.terms {
            let len = term.forward.needle().len();
            let mut start = l_at;
            // Starts in [start, limit]: no further than reach past the window.
            let limit = match first_after_l {
                Some(0) => break,
                Some(p) => p as u64 - 1,
                None => right_end,
            };
            while start as u64 <= limit && start + len <= text.len() {
                let stop = (limit as usize).saturating_add(len).min(text.len());
                let Some(at) = term.forward.find(&text[start..stop]).map(|a| a + start) else {
                    break;
                };
                if counts(term, at)? {
                    first_after_l = Some(at);
                    break;
                }
                start = at + 1;
            }
        }
        first_after_l.map(|at| r.max(from + at as u64))
    };
    if gave_up {
        return Ok(None);
    }
    Ok(Some((new_l, new_r)))
}

/// The order of the suffixes at byte offsets `a` and `b` of a shard's text (the
/// suffix array's order: bytewise, a proper prefix first); `None` when they agree
/// on their first [`SUFFIX_COMPARE_LIMIT`] bytes.
fn compare_suffixes(file: &crate::storage::IndexFile, a: u64, b: u64) -> Result<Option<Ordering>> {
    if a == b {
        return Ok(Some(Ordering::Equal));
    }
    let (mut offset, mut chunk) = (0u64, 64u64);
    while offset < SUFFIX_COMPARE_LIMIT {
        let x = file.read_clipped(a.saturating_add(offset), chunk)?;
        let y = file.read_clipped(b.saturating_add(offset), chunk)?;
        let common = x.len().min(y.len());
        match x[..common].cmp(&y[..common]) {
            Ordering::Equal => {}
            order => return Ok(Some(order)),
        }
        if x.len() != y.len() || (x.len() as u64) < chunk {
            return Ok(Some(x.len().cmp(&y.len())));
        }
        offset += chunk;
        chunk *= 4;
    }
    Ok(None)
}

/// The 32-bit Mersenne Twister (MT19937, `rand_mt`'s reference implementation),
/// the generator infini-gram samples with, plus the range reduction of its C++
/// standard library.
struct Mt19937(rand_mt::Mt);

impl Mt19937 {
    fn new(seed: u32) -> Self {
        Mt19937(rand_mt::Mt::new(seed))
    }

    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// A number in `[0, max]`, as libstdc++'s `uniform_int_distribution<u64>` draws
    /// it from a 32-bit engine (rejection, then division by the scaling factor).
    /// Ranges of 2^32 or more (never met in practice) take the middle instead.
    fn uniform_up_to(&mut self, max: u64) -> u64 {
        if max >= u32::MAX as u64 {
            return max / 2;
        }
        let buckets = max + 1;
        let scaling = u32::MAX as u64 / buckets;
        let past = buckets * scaling;
        loop {
            let x = self.next_u32() as u64;
            if x < past {
                return x / scaling;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        holds_separator, sort_text_offsets, ClauseMemo, Mt19937, SortedOccurrences, TextOffsets,
        MEMO_MIN_OCCURRENCES,
    };
    use std::sync::Arc;

    #[test]
    fn separator_check_needs_a_whole_aligned_token() {
        // 0x12FF, 0xFF34 (little-endian FF 12 34 FF): 0xFF bytes, no separator.
        assert!(!holds_separator(&[0xFF, 0x12, 0x34, 0xFF], 2));
        // 0xFF00, 0x00FF: FF FF across the two tokens, not a token.
        assert!(!holds_separator(&[0x00, 0xFF, 0xFF, 0x00], 2));
        assert!(holds_separator(&[0x00, 0xFF, 0xFF, 0xFF], 2));
        assert!(holds_separator(&[0x01, 0xFF], 1));
        assert!(!holds_separator(&[0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0], 4));
        assert!(holds_separator(&[0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF], 4));
        assert!(!holds_separator(&[], 2));
    }

    #[test]
    fn clause_memo_remembers_frequent_clauses_within_its_budget() {
        let n = MEMO_MIN_OCCURRENCES;
        let sorted = |len: u64| move || Ok(TextOffsets::Wide((0..len).collect()));
        let memo = ClauseMemo::new(3 * n * 8);
        let first = memo.in_text_order(0, &[(0, n)], sorted(n)).unwrap();
        // Remembered: the same list, not made again.
        let again = memo
            .in_text_order(0, &[(0, n)], || panic!("made again"))
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // Another shard or other kept ranges are other clauses.
        let other_shard = memo.in_text_order(1, &[(0, n)], sorted(n)).unwrap();
        assert!(!Arc::ptr_eq(&first, &other_shard));
        let split = memo
            .in_text_order(0, &[(0, 1), (2, n + 1)], sorted(n))
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &split));
        // A fourth clause is past the budget: the memo starts over with it alone.
        memo.in_text_order(2, &[(0, n)], sorted(n)).unwrap();
        let mut made = false;
        memo.in_text_order(0, &[(0, n)], || {
            made = true;
            sorted(n)()
        })
        .unwrap();
        assert!(made, "forgotten after the memo started over");
        // Rare clauses, and a memo of no bytes, are always made afresh.
        for (memo, len) in [(&memo, n - 1), (&ClauseMemo::new(0), n)] {
            for _ in 0..2 {
                let mut made = false;
                let list = memo
                    .in_text_order(0, &[(5, 5 + len)], || {
                        made = true;
                        sorted(len)()
                    })
                    .unwrap();
                assert!(made && list.bytes() == 8 * len);
            }
        }
        // An error is passed on and nothing is remembered.
        assert!(memo
            .in_text_order(3, &[(0, n)], || Err(crate::Error::InvalidQuery("x".into())))
            .is_err());
        assert!(memo.in_text_order(3, &[(0, n)], sorted(n)).is_ok());
    }

    #[test]
    fn clause_memo_adds_up_rent_of_clauses_it_would_take() {
        let n = MEMO_MIN_OCCURRENCES;
        let memo = ClauseMemo::new(1 << 20);
        assert_eq!(memo.rent(0, &[(0, n)], 5.0), 5.0);
        assert_eq!(memo.rent(0, &[(0, n)], 7.0), 12.0);
        assert_eq!(memo.rent(1, &[(0, n)], 1.0), 1.0);
        // A clause too rare or too large to be remembered pays nothing.
        assert_eq!(memo.rent(0, &[(0, n - 1)], 9.0), 0.0);
        assert_eq!(ClauseMemo::new(8 * n - 1).rent(0, &[(0, n)], 9.0), 0.0);
        // Past MAX_RENTED clauses the rent starts over.
        for i in 0..super::MAX_RENTED as u64 {
            memo.rent(2, &[(i, i + n)], 1.0);
        }
        assert_eq!(memo.rent(0, &[(0, n)], 1.0), 1.0);
    }

    #[test]
    fn clause_memo_never_waits_for_its_lock() {
        // A lock held elsewhere (or by a thread that did not survive a fork) is a
        // miss: the list is made and handed out, and the call returns.
        let n = MEMO_MIN_OCCURRENCES;
        let memo = ClauseMemo::new(1 << 20);
        let held = memo.entries.write().unwrap();
        let list = memo
            .in_text_order(0, &[(0, n)], || Ok(TextOffsets::Wide((0..n).collect())))
            .unwrap();
        assert_eq!(list.bytes(), 8 * n);
        drop(held);
        let read_held = memo.entries.read().unwrap();
        memo.in_text_order(0, &[(0, n)], || Ok(TextOffsets::Wide((0..n).collect())))
            .unwrap();
        drop(read_held);
        assert!(memo.entries.read().unwrap().is_empty());
    }

    #[test]
    fn text_offsets_sort_as_a_comparison_sort_does_on_both_widths() {
        let mut rng = Mt19937::new(11);
        // A text under 4 GiB (sorted as u32s) and one past it (as u64s), with
        // offsets up to the last byte and repeated ones.
        for text_len in [1u64 << 20, u32::MAX as u64, 1 << 40] {
            for n in [0usize, 1, 2, 1000] {
                let offsets: Vec<u64> = (0..n)
                    .map(|i| match i % 5 {
                        0 => text_len - 1,
                        1 => 7,
                        // 48 random bits (one draw gives at most 32).
                        _ => {
                            ((rng.uniform_up_to(0xFF_FFFF) << 24) | rng.uniform_up_to(0xFF_FFFF))
                                % text_len
                        }
                    })
                    .collect();
                let mut expected = offsets.clone();
                expected.sort_unstable();
                let sorted = sort_text_offsets(offsets, text_len);
                let narrow = matches!(sorted, TextOffsets::Narrow(_));
                assert_eq!(narrow, text_len <= u32::MAX as u64);
                fn widened<T: super::Offset>(list: &[T]) -> Vec<u64> {
                    list.iter().map(|&o| o.into()).collect()
                }
                let widened = with_width!(&sorted, list => widened(list));
                assert_eq!(widened, expected, "text_len {text_len}, {n} offsets");
            }
        }
    }

    #[test]
    fn sorted_occurrences_answer_as_binary_searches_do() {
        // Occurrences spread out, clustered in one block (a repeated passage), and
        // none at all; windows anywhere, some wider than blocks.
        let mut rng = Mt19937::new(7);
        for case in 0..60u64 {
            let text_len = 1 + rng.uniform_up_to(if case % 2 == 0 { 5_000 } else { 1 << 20 });
            let n = rng.uniform_up_to(300) as usize * (case % 3 != 0) as usize;
            let ptrs: Vec<u64> = (0..n)
                .map(|i| match i % 4 {
                    0 => (text_len / 2 + rng.uniform_up_to(8)).min(text_len - 1),
                    _ => rng.uniform_up_to(text_len - 1),
                })
                .collect();
            let occurrences = SortedOccurrences::new(&ptrs, text_len);
            let mut sorted = ptrs.clone();
            sorted.sort_unstable();
            assert_eq!(occurrences.sorted, sorted);
            for _ in 0..200 {
                let l = rng.uniform_up_to(text_len - 1);
                let r = (l + rng.uniform_up_to(text_len / 8 + 1)).min(text_len - 1);
                let before = sorted.partition_point(|&p| p < r);
                let after = sorted.partition_point(|&p| p < l);
                let want = (
                    (before > 0).then(|| l.min(sorted[before - 1])),
                    sorted.get(after).map(|&p| r.max(p)),
                );
                assert_eq!(
                    occurrences.nearest(l, r),
                    want,
                    "case {case}, window ({l}, {r})"
                );
            }
        }
    }

    #[test]
    fn offsets_check_keeps_the_windows_no_offset_lies_in() {
        // Windows nearly in text order (as a clause's extension leaves them) and in
        // any order: each lookup gallops on from the last, or searches back.
        let mut rng = Mt19937::new(11);
        for case in 0..40u64 {
            let n = rng.uniform_up_to(50) as usize;
            let mut offsets: Vec<u64> = (0..n).map(|_| rng.uniform_up_to(2_000)).collect();
            offsets.sort_unstable();
            offsets.dedup();
            let mut windows: Vec<(u64, u64)> = (0..300)
                .map(|_| {
                    let l = rng.uniform_up_to(2_000);
                    (l, l + rng.uniform_up_to(60))
                })
                .collect();
            if case % 2 == 0 {
                windows.sort_unstable_by_key(|&(l, _)| l / 50);
            }
            let check = super::SeparatorCheck::Offsets(&offsets);
            let want: Vec<u64> = windows
                .iter()
                .filter(|&&(l, r)| !offsets.iter().any(|&o| l <= o && o < r))
                .map(|&(l, _)| l)
                .collect();
            assert_eq!(
                check.windows_within_documents(&windows, 2).unwrap(),
                want,
                "case {case}"
            );
        }
    }

    #[test]
    fn counting_walk_keeps_what_extension_then_offsets_check_keep() {
        // A brute-force oracle: each window's nearest occurrences by a scan of all
        // of them, the rule of the module docs, then a scan of all offsets. Windows
        // nearly in text order (anchors; windows a clause widened) and any order, few
        // and past PARALLEL_ITEMS (pieces on the pool).
        let mut rng = Mt19937::new(23);
        for case in 0..24u64 {
            let text = 1_000 + rng.uniform_up_to(100_000);
            let draw = |rng: &mut Mt19937, n: u64| -> Vec<u64> {
                let mut v: Vec<u64> = (0..n).map(|_| rng.uniform_up_to(text)).collect();
                v.sort_unstable();
                v
            };
            let (num_sorted, num_offsets) = (rng.uniform_up_to(3_000), rng.uniform_up_to(400));
            let sorted = draw(&mut rng, num_sorted);
            let mut offsets = draw(&mut rng, num_offsets);
            offsets.dedup();
            let reach = 2 * rng.uniform_up_to(300);
            let many = if case % 3 == 0 { 9_000 } else { 600 };
            let mut windows: Vec<(u64, u64)> = draw(&mut rng, many)
                .into_iter()
                .map(|l| (l, l + 2 * rng.uniform_up_to(40) * (case % 2)))
                .collect();
            if case % 4 == 3 {
                windows.reverse();
            }
            let want = windows
                .iter()
                .filter_map(|&(l, r)| {
                    let before = sorted.iter().rev().find(|&&p| p < r).map(|&p| l.min(p));
                    let after = sorted.iter().find(|&&p| p >= l).map(|&p| r.max(p));
                    let left = before.filter(|&p| p + reach >= l);
                    let right = after.filter(|&p| p <= r + reach);
                    match (left, right) {
                        (None, None) => None,
                        _ => Some((left.unwrap_or(l), right.unwrap_or(r))),
                    }
                })
                .filter(|&(l, r)| !offsets.iter().any(|&o| l <= o && o < r))
                .count() as u64;
            let got = super::count_within_documents(&windows, &sorted, &offsets, reach);
            assert_eq!(got, want, "case {case}");
            let narrow: Vec<u32> = sorted.iter().map(|&p| p as u32).collect();
            let got = super::count_within_documents(&windows, &narrow, &offsets, reach);
            assert_eq!(got, want, "case {case}, u32 offsets");
        }
    }

    #[test]
    fn mersenne_twister_matches_the_reference_sequence() {
        // std::mt19937 with the default seed 5489: its 10000th output is 4123659995
        // (a value the C++ standard itself specifies).
        let mut rng = Mt19937::new(5489);
        let mut last = 0;
        for _ in 0..10000 {
            last = rng.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }
}
