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
//! A clause occurring more than `max_clause_freq` times (split evenly over shards,
//! rounded up) is subsampled: each of its n-grams keeps a proportional, contiguous
//! run of its suffix-array range, and the count is scaled back up by the integer
//! ratio of occurrences to kept ones and flagged `approx` when that ratio exceeds 1.
//! Each run starts where infini-gram's generator puts it: a Mersenne Twister seeded
//! 19260817 afresh for every clause of every shard, one draw per n-gram, scaled as
//! libstdc++'s `uniform_int_distribution` does, so approximate counts agree too.

use rayon::prelude::*;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::shard::RankRange;

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
    count: u64,
    subsampled: bool,
    scale: f64,
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
        let encoded = self.check_cnf(cnf, max_clause_freq, max_diff_tokens)?;
        let num_shards = self.shards().len() as u64;
        let per_shard_budget = max_clause_freq.div_ceil(num_shards);
        let per_shard = (0..self.shards().len())
            .into_par_iter()
            .map(|s| self.find_cnf_in_shard(s, &encoded, per_shard_budget, max_diff_tokens))
            .collect::<Result<Vec<_>>>()?;
        let mut count = 0u64;
        let mut approx = false;
        let mut ptrs_by_shard = Vec::with_capacity(per_shard.len());
        let mut absent_everywhere = vec![true; cnf.len()];
        for (ptrs, scale, present) in per_shard {
            approx |= scale > 1.0;
            count += (ptrs.len() as f64 * scale) as u64;
            ptrs_by_shard.push(ptrs);
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
    ) -> Result<(Vec<u64>, f64, Vec<bool>)> {
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
                        ranges,
                        count,
                        subsampled: false,
                        scale: 1.0,
                    });
                }
                // Keep a proportional run of every n-gram's range, placed as infini-gram does.
                let mut rng = Mt19937::new(19260817);
                let mut kept = 0;
                let ranges: Vec<RankRange> = ranges
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
                    ranges,
                    count,
                    subsampled: true,
                    // infini-gram's ratio: an integer division, so a small excess is not scaled.
                    scale: (count / kept.max(1)) as f64,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let present: Vec<bool> = clauses.iter().map(|c| c.count > 0).collect();
        if clauses.iter().any(|c| c.count == 0) {
            return Ok((Vec::new(), 1.0, present));
        }
        clauses.sort_by_key(|c| c.count);
        let ptrs_of = |clause: &Clause| -> Result<Vec<u64>> {
            let mut ptrs = Vec::new();
            for &(lo, hi) in &clause.ranges {
                for rank in lo..hi {
                    ptrs.push(shard.ptr_at(rank)?);
                }
            }
            Ok(ptrs)
        };
        let w = self.token_width().bytes() as u64;
        // A reach past the whole shard is the same as no limit: saturate, never wrap.
        let reach = max_diff_tokens.saturating_mul(w);
        let mut windows: Vec<(u64, u64)> =
            ptrs_of(&clauses[0])?.into_iter().map(|p| (p, p)).collect();
        let mut scale = clauses[0].scale;
        for clause in &clauses[1..] {
            // The clause's occurrences nearest to each window: by reading the text
            // around the window when there are few windows and the clause is frequent
            // (and not subsampled: every occurrence counts), else from its sorted
            // suffix-array entries.
            let span = max_diff_tokens.saturating_mul(2).saturating_add(1);
            let scan_text = !clause.subsampled
                && (windows.len() as u64)
                    .saturating_mul(span.saturating_mul(clause.terms.len() as u64))
                    < clause.count.saturating_mul(16);
            let sorted = if scan_text {
                Vec::new()
            } else {
                let mut ptrs = ptrs_of(clause)?;
                ptrs.par_sort_unstable();
                ptrs
            };
            // Each window extends on its own: in parallel when there are many.
            let longest_term = clause
                .terms
                .iter()
                .map(|t| t.len() as u64)
                .max()
                .unwrap_or(0);
            let extend = |&(l, r): &(u64, u64)| -> Result<[Option<(u64, u64)>; 2]> {
                // The last occurrence starting before r, and the first at or after l.
                let (new_l, new_r) = if scan_text {
                    // Only the bytes within reach of the window matter: read those
                    // (through the storage layer) and search them.
                    let from = l.saturating_sub(reach);
                    let to = r.saturating_add(reach).saturating_add(longest_term);
                    let near = shard.tokenized_file().read_clipped(from, to - from)?;
                    let (nl, nr) =
                        nearest_in_text(&near, clause.terms, l - from, r - from, reach, w);
                    (nl.map(|p| p + from), nr.map(|p| p + from))
                } else {
                    let before = sorted.partition_point(|&p| p < r);
                    let after = sorted.partition_point(|&p| p < l);
                    (
                        (before > 0).then(|| l.min(sorted[before - 1])),
                        sorted.get(after).map(|&p| r.max(p)),
                    )
                };
                let left = new_l.filter(|&nl| nl.saturating_add(reach) >= l);
                let right = new_r.filter(|&nr| nr <= r.saturating_add(reach));
                Ok(match (left, right) {
                    (Some(nl), Some(nr)) => [Some((nl, nr)), None],
                    (left, right) => [left.map(|nl| (nl, r)), right.map(|nr| (l, nr))],
                })
            };
            let next: Vec<[Option<(u64, u64)>; 2]> = if windows.len() > 4096 {
                windows.par_iter().map(extend).collect::<Result<_>>()?
            } else {
                windows.iter().map(extend).collect::<Result<_>>()?
            };
            windows = next.into_iter().flatten().flatten().collect();
            scale *= clause.scale;
        }
        let text = shard.tokenized_file();
        let separator = &vec![0xFFu8; w as usize][..];
        let mut ptrs = Vec::with_capacity(windows.len());
        for (l, r) in windows {
            let spans_documents = text
                .read_at(l, r - l)?
                .chunks_exact(w as usize)
                .any(|token| token == separator);
            if !spans_documents {
                ptrs.push(l);
            }
        }
        Ok((ptrs, scale, present))
    }
}

/// The window bounds a clause extends `[l, r]` to, read off the text: the last
/// occurrence starting before `r` (as `min(l, it)`) and the first at or after `l`
/// (as `max(r, it)`), looking no further than `reach` bytes outside the window;
/// beyond that an occurrence could not be used, so `None` is the same answer.
fn nearest_in_text(
    text: &[u8],
    terms: &[Vec<u8>],
    l: u64,
    r: u64,
    reach: u64,
    w: u64,
) -> (Option<u64>, Option<u64>) {
    let occurs_at = |p: u64| {
        let p = p as usize;
        terms
            .iter()
            .any(|t| text.len() >= p + t.len() && &text[p..p + t.len()] == t.as_slice())
    };
    let mut new_l = None;
    let mut p = r;
    let floor = l.saturating_sub(reach);
    while p >= floor + w {
        p -= w;
        if occurs_at(p) {
            new_l = Some(l.min(p));
            break;
        }
    }
    let new_r = if matches!(new_l, Some(nl) if nl == l && p >= l) {
        // An occurrence inside the window: the first one at or after l is inside too.
        Some(r)
    } else {
        let end = r.saturating_add(reach);
        let mut p = r;
        let mut found = None;
        while p <= end && (p as usize) < text.len() {
            if occurs_at(p) {
                found = Some(p);
                break;
            }
            p += w;
        }
        found
    };
    (new_l, new_r)
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
    use super::Mt19937;

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
