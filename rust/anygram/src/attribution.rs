//! infini-gram's `creativity` and `attribute` over a text: where the longest
//! n-gram starting at each position that occurs in the corpus ends, and the
//! maximal rare spans of the text with where they occur.
//!
//! Both stand on the longest match from each start `i`, found in each shard by
//! one search for the whole rest of the text `tokens[i..]`: where it would sort
//! (its lower bound in the suffix array), the longest prefix it shares with a
//! suffix of the shard is shared with one of the two suffixes beside that
//! place. So each start costs one search and two reads, with no extension
//! searches, and the starts are independent: a long text is cut into chunks
//! searched on all cores of the pool. The suffix-array range of a match is
//! found only for the spans `attribute` keeps, by galloping from that place.
//!
//! Where the time goes (1,000-token text, 30M-token shard, page cache hot): each
//! step of a search is two dependent cache misses (a pointer, then its text),
//! so the design counts steps: infini-gram's way (a count per candidate) and a
//! matching-statistics pass (a search per start, then one per added token)
//! both take several times more.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::engine::Engine;
use crate::error::Result;
use crate::shard::{RankRange, Shard};

/// Tokens of a suffix compared per read.
const READ_TOKENS: usize = 64;

/// Starts per chunk when one text is searched on several cores.
const CHUNK_TOKENS: usize = 64;

/// The longest match from one start in one shard: its length in tokens and
/// where the rest of the text would sort among the shard's suffixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ShardMatch {
    len: u32,
    /// A rank whose suffix starts with the match (any rank for an empty match).
    member: u64,
}

/// The longest matches of a text in every shard: `per_shard[s][i]`.
struct LongestMatches {
    per_shard: Vec<Vec<ShardMatch>>,
}

impl LongestMatches {
    /// The length of the longest prefix of `tokens[i..]` that occurs in some shard.
    fn len(&self, i: usize) -> usize {
        self.per_shard
            .iter()
            .map(|m| m[i].len as usize)
            .max()
            .unwrap_or(0)
    }

    /// The ranges of `tokens[i..i + self.len(i)]` in every shard (empty where the
    /// shard's own match is shorter).
    fn ranges(&self, engine: &Engine, tokens_bytes: &[u8], i: usize) -> Result<Vec<RankRange>> {
        let len = self.len(i);
        let w = engine.token_width().bytes();
        let pattern = &tokens_bytes[i * w..(i + len) * w];
        engine
            .shards()
            .iter()
            .zip(&self.per_shard)
            .map(|(shard, m)| match m[i] {
                _ if len == 0 => Ok((0, shard.num_tokens())),
                found if found.len as usize == len => range_around(shard, pattern, found.member),
                _ => Ok((0, 0)),
            })
            .collect()
    }
}

/// Whole tokens that the suffix at `rank` shares with `rest`.
fn common_tokens(shard: &Shard, rank: u64, rest: &[u8], w: usize) -> Result<usize> {
    let text = shard.tokenized_file();
    let mut at = shard.ptr_at(rank)?;
    let mut done = 0usize;
    while done < rest.len() {
        let want = (rest.len() - done).min(READ_TOKENS * w);
        let bytes = text.read_clipped(at, want as u64)?;
        let same = bytes
            .iter()
            .zip(&rest[done..done + want])
            .position(|(a, b)| a != b)
            .unwrap_or(bytes.len());
        done += same;
        if same < want {
            break;
        }
        at += want as u64;
    }
    Ok(done / w)
}

/// The longest prefix of `rest` (encoded tokens, none of them a separator) that
/// occurs in `shard`, and a rank where it does.
fn longest_match(shard: &Shard, rest: &[u8], w: usize) -> Result<ShardMatch> {
    let n = shard.num_tokens();
    let found = shard.find(rest, (0, n))?;
    if found.0 < found.1 {
        return Ok(ShardMatch {
            len: (rest.len() / w) as u32,
            member: found.0,
        });
    }
    // The suffixes sharing the most with `rest` sort next to where it would.
    let at = found.0;
    let below = if at > 0 {
        common_tokens(shard, at - 1, rest, w)?
    } else {
        0
    };
    let above = if at < n {
        common_tokens(shard, at, rest, w)?
    } else {
        0
    };
    Ok(if above >= below {
        ShardMatch {
            len: above as u32,
            member: at.min(n.saturating_sub(1)),
        }
    } else {
        ShardMatch {
            len: below as u32,
            member: at - 1,
        }
    })
}

/// The ranks whose suffixes start with `pattern`, given one of them (`member`):
/// galloping out from it, then bisecting, on each side.
fn range_around(shard: &Shard, pattern: &[u8], member: u64) -> Result<RankRange> {
    let w = shard.token_width().bytes();
    let tokens = pattern.len() / w;
    let matches =
        |rank: u64| -> Result<bool> { Ok(common_tokens(shard, rank, pattern, w)? == tokens) };
    // first rank of the block: matches(lo_out) is false (or lo_out is "-1"), matches(lo_in) true
    let (mut lo_in, mut step) = (member, 1u64);
    let mut lo_out: Option<u64> = None;
    loop {
        match lo_in.checked_sub(step) {
            Some(r) if matches(r)? => (lo_in, step) = (r, step * 2),
            Some(r) => break lo_out = Some(r),
            None => break,
        }
    }
    let mut lo = lo_out.map_or(0, |r| r + 1);
    let mut hi = lo_in;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if matches(mid)? {
            hi = mid
        } else {
            lo = mid + 1
        }
    }
    let first = lo;
    let n = shard.num_tokens();
    let (mut hi_in, mut step) = (member, 1u64);
    let hi_out = loop {
        let r = hi_in.saturating_add(step);
        if r >= n {
            break n;
        }
        if matches(r)? {
            (hi_in, step) = (r, step * 2);
        } else {
            break r;
        }
    };
    let (mut lo, mut hi) = (hi_in + 1, hi_out);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if matches(mid)? {
            lo = mid + 1
        } else {
            hi = mid
        }
    }
    Ok((first, lo))
}

/// The longest matches of `tokens` (ids checked against the vocabulary) in every
/// shard, and the tokens encoded. Tokens that cannot occur (the separator value
/// or above) only end matches.
fn longest_matches(engine: &Engine, tokens: &[u32]) -> Result<(LongestMatches, Vec<u8>)> {
    let bytes = engine.encode(tokens)?;
    let width = engine.token_width();
    let w = width.bytes();
    let shards = engine.shards();
    // Where the run of tokens that can occur from each start ends.
    let mut run_end = vec![tokens.len(); tokens.len()];
    for i in (0..tokens.len()).rev() {
        run_end[i] = if tokens[i] >= width.separator() {
            i
        } else if i + 1 < tokens.len() {
            run_end[i + 1]
        } else {
            tokens.len()
        };
    }
    let jobs: Vec<(usize, usize)> = (0..shards.len())
        .flat_map(|s| {
            (0..tokens.len())
                .step_by(CHUNK_TOKENS)
                .map(move |from| (s, from))
        })
        .collect();
    let search = |&(s, from): &(usize, usize)| -> Result<Vec<ShardMatch>> {
        (from..(from + CHUNK_TOKENS).min(tokens.len()))
            .map(|i| {
                if run_end[i] == i {
                    return Ok(ShardMatch { len: 0, member: 0 });
                }
                longest_match(&shards[s], &bytes[i * w..run_end[i] * w], w)
            })
            .collect()
    };
    let found: Vec<Vec<ShardMatch>> = if jobs.len() <= 1 {
        jobs.iter().map(search).collect::<Result<_>>()?
    } else {
        crate::pool::install(|| jobs.par_iter().map(search).collect::<Result<_>>())?
    };
    let mut per_shard: Vec<Vec<ShardMatch>> = vec![Vec::with_capacity(tokens.len()); shards.len()];
    for (&(s, _), matches) in jobs.iter().zip(found) {
        per_shard[s].extend(matches);
    }
    Ok((LongestMatches { per_shard }, bytes))
}

/// A span of the text that occurs at most `max_cnt` times, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributedSpan {
    /// First token of the span in the text.
    pub l: usize,
    /// One past its last token.
    pub r: usize,
    /// Occurrences in the corpus.
    pub count: u64,
    /// Every occurrence: (shard, byte offset of the match in that shard).
    pub occurrences: Vec<(usize, u64)>,
}

/// For each position `l`, `l` plus the length of the longest prefix of
/// `tokens[l..]` that occurs (infini-gram's `creativity` `rs`).
pub fn creativity(engine: &Engine, tokens: &[u32]) -> Result<Vec<usize>> {
    let (matches, _) = longest_matches(engine, tokens)?;
    Ok((0..tokens.len()).map(|l| l + matches.len(l)).collect())
}

/// What an attribution keeps (infini-gram's `attribute` arguments).
#[derive(Clone, Debug, Default)]
pub struct AttributeOptions {
    /// A span ends after the first of these tokens in it.
    pub delim_ids: Vec<u32>,
    /// Shortest span kept.
    pub min_len: usize,
    /// Most occurrences a kept span may have.
    pub max_cnt: u64,
    /// When given, spans start and end at the beginning of a word (a token of this set).
    pub bow_ids: Option<Vec<u32>>,
}

/// infini-gram's `attribute`: from each start (a beginning of word when
/// `bow_ids` is given), the longest occurring prefix, cut after its first
/// delimiter and backed off to end where a word begins; kept when at least
/// `min_len` long, occurring at most `max_cnt` times, and reaching past every
/// span kept before it.
pub fn attribute(
    engine: &Engine,
    tokens: &[u32],
    options: &AttributeOptions,
) -> Result<Vec<AttributedSpan>> {
    engine.encode(&options.delim_ids)?;
    let (matches, bytes) = longest_matches(engine, tokens)?;
    let delims: HashSet<u32> = options.delim_ids.iter().copied().collect();
    let bow: Option<HashSet<u32>> = options
        .bow_ids
        .as_ref()
        .map(|ids| ids.iter().copied().collect());
    let begins_word = |t: u32| bow.as_ref().is_none_or(|b| b.contains(&t));
    let n = tokens.len();
    let mut spans = Vec::new();
    let mut last_r = 0usize;
    for l in 0..n {
        if !begins_word(tokens[l]) {
            continue;
        }
        let longest = matches.len(l);
        let mut length = longest;
        if let Some(cut) =
            (l..(l + length).saturating_sub(1)).find(|&p| delims.contains(&tokens[p]))
        {
            length = cut - l + 1;
        }
        if bow.is_some() {
            while length > 0 && l + length < n && !begins_word(tokens[l + length]) {
                length -= 1;
            }
        }
        if length < options.min_len || l + length <= last_r {
            continue;
        }
        // The longest match's ranges were kept by the pass; a cut span is searched.
        let ranges = if length == longest {
            matches.ranges(engine, &bytes, l)?
        } else {
            engine.find(&tokens[l..l + length])?.ranges.to_vec()
        };
        let count: u64 = ranges.iter().map(|(lo, hi)| hi - lo).sum();
        if count > options.max_cnt {
            continue;
        }
        last_r = l + length;
        let mut occurrences = Vec::with_capacity(count as usize);
        for (shard, &(lo, hi)) in ranges.iter().enumerate() {
            for rank in lo..hi {
                occurrences.push((shard, engine.shards()[shard].ptr_at(rank)?));
            }
        }
        spans.push(AttributedSpan {
            l,
            r: l + length,
            count,
            occurrences,
        });
    }
    Ok(spans)
}
