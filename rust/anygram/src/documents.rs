//! Documents: where an n-gram occurs, shown as the documents that hold it.
//!
//! Document indexes are global: shard 0's documents first, then shard 1's, and
//! so on. A document's tokens exclude its separator.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::engine::Engine;
use crate::error::{Error, Result};

/// One document, or a window of it around a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Global document index.
    pub doc_ix: u64,
    /// Tokens in the whole document.
    pub doc_len: u64,
    /// Tokens in `token_ids` (the window shown).
    pub disp_len: u64,
    /// Where the match starts inside `token_ids` (0 for a whole document).
    pub needle_offset: u64,
    /// Where the match starts inside the document, in tokens.
    pub offset: u64,
    /// The document's metadata line as stored (empty when the index has none).
    pub metadata: String,
    /// The tokens of the window.
    pub token_ids: Vec<u32>,
    /// Shard holding the document.
    pub shard: usize,
    /// Byte offset of the match (or of the document's first token) in its shard.
    pub ptr: u64,
}

/// Documents holding an n-gram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    /// Occurrences of the n-gram in the corpus.
    pub count: u64,
    /// Which occurrences are shown: positions in `0..count`, numbering the
    /// occurrences shard by shard in suffix-array order.
    pub idxs: Vec<u64>,
    /// The document of each shown occurrence, with a window around it.
    pub documents: Vec<Document>,
}

impl Engine {
    fn check_max_disp_len(max_disp_len: u64) -> Result<()> {
        if max_disp_len == 0 {
            return Err(Error::InvalidQuery(
                "max_disp_len must be a positive integer".into(),
            ));
        }
        Ok(())
    }

    /// The document holding byte `ptr` of shard `shard`, with a window of at most
    /// `max_disp_len` tokens around it: half before, half after (as infini-gram).
    pub fn get_doc_by_ptr(&self, shard: usize, ptr: u64, max_disp_len: u64) -> Result<Document> {
        Self::check_max_disp_len(max_disp_len)?;
        self.get_doc_window(shard, ptr, max_disp_len / 2, max_disp_len.div_ceil(2))
    }

    /// The document at suffix-array rank `rank` of shard `shard` (see [`Engine::get_doc_by_ptr`]).
    pub fn get_doc_by_rank(&self, shard: usize, rank: u64, max_disp_len: u64) -> Result<Document> {
        Self::check_max_disp_len(max_disp_len)?;
        self.get_doc_window_by_rank(shard, rank, max_disp_len / 2, max_disp_len.div_ceil(2))
    }

    /// Document `doc_ix` (global), its first `max_disp_len` tokens.
    pub fn get_doc_by_ix(&self, doc_ix: u64, max_disp_len: u64) -> Result<Document> {
        Self::check_max_disp_len(max_disp_len)?;
        self.get_doc_head(doc_ix, max_disp_len)
    }

    /// infini-gram's asymmetric window (its `_2` calls): the document holding byte
    /// `ptr` of shard `shard`, with at most `before` tokens before `ptr` and `after`
    /// tokens from it on, clipped to the document; either may be 0.
    /// [`Engine::get_doc_by_ptr`] is the window of `max_disp_len / 2` and the rest.
    pub fn get_doc_window(
        &self,
        shard: usize,
        ptr: u64,
        before: u64,
        after: u64,
    ) -> Result<Document> {
        let s = self.shards().get(shard).ok_or_else(|| {
            Error::InvalidQuery(format!(
                "shard {shard} is out of range [0, {})",
                self.shards().len()
            ))
        })?;
        let w = self.token_width().bytes() as u64;
        let size = s.num_tokens() * w;
        if ptr >= size || !ptr.is_multiple_of(w) {
            return Err(Error::InvalidQuery(format!(
                "ptr {ptr} must be a multiple of {w} in [0, {size}) for shard {shard}"
            )));
        }
        let local = s.document_of(ptr)?;
        let (doc_start, doc_end) = s.document_tokens_span(local)?;
        let disp_start = doc_start
            .max(ptr.saturating_sub(before.saturating_mul(w)))
            .min(doc_end);
        let disp_end = doc_end
            .min(ptr.saturating_add(after.saturating_mul(w)))
            .max(disp_start);
        self.document(shard, local, disp_start, disp_end, ptr)
    }

    /// [`Engine::get_doc_window`] at suffix-array rank `rank` of shard `shard`.
    pub fn get_doc_window_by_rank(
        &self,
        shard: usize,
        rank: u64,
        before: u64,
        after: u64,
    ) -> Result<Document> {
        let s = self.shards().get(shard).ok_or_else(|| {
            Error::InvalidQuery(format!(
                "shard {shard} is out of range [0, {})",
                self.shards().len()
            ))
        })?;
        if rank >= s.num_tokens() {
            return Err(Error::InvalidQuery(format!(
                "rank {rank} is out of range [0, {}) for shard {shard}",
                s.num_tokens()
            )));
        }
        self.get_doc_window(shard, s.ptr_at(rank)?, before, after)
    }

    /// The first `max_tokens` tokens of document `doc_ix` (global); 0 is an empty
    /// window (infini-gram's `get_doc_by_ix_2`).
    pub fn get_doc_head(&self, doc_ix: u64, max_tokens: u64) -> Result<Document> {
        let mut local = doc_ix;
        for (shard, s) in self.shards().iter().enumerate() {
            if local < s.num_documents() {
                let w = self.token_width().bytes() as u64;
                let (doc_start, doc_end) = s.document_tokens_span(local)?;
                let disp_end = doc_end.min(doc_start.saturating_add(max_tokens.saturating_mul(w)));
                return self.document(shard, local, doc_start, disp_end, doc_start);
            }
            local -= s.num_documents();
        }
        Err(Error::InvalidQuery(format!(
            "document index {doc_ix} is out of range [0, {})",
            self.num_documents()
        )))
    }

    fn document(
        &self,
        shard: usize,
        local: u64,
        disp_start: u64,
        disp_end: u64,
        ptr: u64,
    ) -> Result<Document> {
        let s = &self.shards()[shard];
        let w = self.token_width().bytes() as u64;
        let (doc_start, doc_end) = s.document_tokens_span(local)?;
        let first_doc: u64 = self.shards()[..shard]
            .iter()
            .map(|s| s.num_documents())
            .sum();
        let metadata = s
            .metadata_line(local)?
            .map(|line| String::from_utf8_lossy(&line).into_owned())
            .unwrap_or_default();
        Ok(Document {
            doc_ix: first_doc + local,
            doc_len: (doc_end - doc_start) / w,
            disp_len: (disp_end - disp_start) / w,
            needle_offset: (ptr.max(disp_start) - disp_start) / w,
            offset: (ptr.max(doc_start) - doc_start) / w,
            metadata,
            token_ids: s.tokens_between(disp_start, disp_end)?,
            shard,
            ptr,
        })
    }

    /// Documents holding `tokens`: every occurrence when there are at most
    /// `maxnum`, otherwise `maxnum` distinct occurrences drawn uniformly at random
    /// (infini-gram draws with replacement and can repeat one; we do not). Each
    /// comes with a window of at most `max_disp_len` tokens around the match.
    /// `seed` makes the draw repeatable.
    pub fn search_docs(
        &self,
        tokens: &[u32],
        maxnum: u64,
        max_disp_len: u64,
        seed: Option<u64>,
    ) -> Result<SearchResult> {
        if maxnum == 0 {
            return Err(Error::InvalidQuery(
                "maxnum must be a positive integer".into(),
            ));
        }
        Self::check_max_disp_len(max_disp_len)?;
        let found = self.find(tokens)?;
        let idxs: Vec<u64> = if found.count <= maxnum {
            (0..found.count).collect()
        } else {
            let mut rng = match seed {
                Some(seed) => StdRng::seed_from_u64(seed),
                None => StdRng::from_entropy(),
            };
            let mut chosen = sample_distinct(&mut rng, found.count, maxnum);
            chosen.sort_unstable();
            chosen
        };
        let documents = idxs
            .iter()
            .map(|&idx| {
                let mut rest = idx;
                for (shard, &(lo, hi)) in found.ranges.iter().enumerate() {
                    if rest < hi - lo {
                        return self.get_doc_by_rank(shard, lo + rest, max_disp_len);
                    }
                    rest -= hi - lo;
                }
                unreachable!("idx {idx} < count {}", found.count)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SearchResult {
            count: found.count,
            idxs,
            documents,
        })
    }
}

impl Engine {
    /// Documents where the CNF query holds (see [`crate::cnf`]): every satisfying
    /// window when there are at most `maxnum`, else `maxnum` distinct ones drawn at
    /// random; each document's window is centred on the window's start.
    #[allow(clippy::too_many_arguments)]
    pub fn search_docs_cnf(
        &self,
        cnf: &[Vec<Vec<u32>>],
        maxnum: u64,
        max_disp_len: u64,
        max_clause_freq: u64,
        max_diff_tokens: u64,
        seed: Option<u64>,
    ) -> Result<(SearchResult, bool)> {
        if maxnum == 0 {
            return Err(Error::InvalidQuery(
                "maxnum must be a positive integer".into(),
            ));
        }
        Self::check_max_disp_len(max_disp_len)?;
        let found = self.find_cnf(cnf, max_clause_freq, max_diff_tokens)?;
        let total: u64 = found.ptrs_by_shard.iter().map(|p| p.len() as u64).sum();
        let idxs: Vec<u64> = if total <= maxnum {
            (0..total).collect()
        } else {
            let mut rng = match seed {
                Some(seed) => StdRng::seed_from_u64(seed),
                None => StdRng::from_entropy(),
            };
            let mut chosen = sample_distinct(&mut rng, total, maxnum);
            chosen.sort_unstable();
            chosen
        };
        let documents = idxs
            .iter()
            .map(|&idx| {
                let mut rest = idx;
                for (shard, ptrs) in found.ptrs_by_shard.iter().enumerate() {
                    if rest < ptrs.len() as u64 {
                        return self.get_doc_by_ptr(shard, ptrs[rest as usize], max_disp_len);
                    }
                    rest -= ptrs.len() as u64;
                }
                unreachable!("idx {idx} < total {total}")
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((
            SearchResult {
                count: found.count,
                idxs,
                documents,
            },
            found.approx,
        ))
    }
}

/// `k` distinct numbers from `0..n`, uniformly (Floyd's algorithm: k draws, no
/// table of size n).
///
/// Not `rand::seq::index::sample`: for the same seed it draws other numbers (it
/// draws `u32`s below 2^32, switches algorithm with `k / n` and shuffles), and
/// the documents `search_docs` answers for a given seed are part of the API.
fn sample_distinct(rng: &mut StdRng, n: u64, k: u64) -> Vec<u64> {
    let mut chosen = std::collections::HashSet::with_capacity(k as usize);
    for j in (n - k)..n {
        let t = rng.gen_range(0..=j);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.into_iter().collect()
}
