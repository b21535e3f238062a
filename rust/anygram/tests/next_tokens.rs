//! Exact next-token counts (`anygram::next_tokens`, behind tokengrams'
//! `count_next`, Kneser-Ney and the samplers) against brute force over the
//! shards' token streams: random corpora of ids whose byte order differs from
//! their numeric order, every width, one to three shards, document ends as eos
//! or as nothing; and one range wide enough to be counted in pieces on the pool.

mod common;

use std::collections::BTreeMap;

use anygram::smoothing::{next_token_counts, DocumentEnds};
use anygram::{Engine, OpenOptions, TokenWidth};
use common::{mixed_id, shard_streams, write_plain_index};
use proptest::prelude::*;

/// What follows each occurrence of `context` in the streams (separators
/// included, so that matches never span documents): a token, or a document end
/// (the separator or the end of the stream) as `eos` or nothing.
fn brute_next(
    streams: &[Vec<u32>],
    sep: u32,
    context: &[u32],
    eos: Option<u32>,
) -> Vec<(u32, u64)> {
    let mut counts = BTreeMap::new();
    for stream in streams {
        // One suffix per stream position (none starts past the end).
        for i in 0..stream.len() {
            if i + context.len() > stream.len() || stream[i..i + context.len()] != *context {
                continue;
            }
            let next = match stream.get(i + context.len()) {
                Some(&t) if t != sep => Some(t),
                _ => eos,
            };
            if let Some(token) = next {
                *counts.entry(token).or_insert(0u64) += 1;
            }
        }
    }
    counts.into_iter().collect()
}

fn open(dir: &std::path::Path, width: TokenWidth, vocab: u64, eos: u32) -> Engine {
    Engine::open(
        dir,
        &OpenOptions {
            token_width: Some(width.bytes()),
            vocab_size: Some(vocab),
            eos_token_id: Some(eos as u64),
            sample_keys: false,
            ..OpenOptions::default()
        },
    )
    .unwrap()
}

const WIDTHS: [TokenWidth; 3] = [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn next_token_counts_equal_brute_force(
        width_ix in 0usize..3,
        shards in 1usize..4,
        // Small alphabets make long runs (galloping far), large ones many short runs.
        alphabet in 1u32..7,
        skew in 0u32..4,
        docs in prop::collection::vec(prop::collection::vec(any::<u32>(), 0..60), 1..9),
        contexts in prop::collection::vec((0usize..9, 0usize..60, 0usize..4), 10),
    ) {
        let width = WIDTHS[width_ix];
        // Symbol 0 takes most of the text when skewed: runs of very unequal lengths.
        let symbol = |r: u32| if r % 4 < skew { 0 } else { r % alphabet };
        let docs: Vec<Vec<u32>> = docs
            .iter()
            .map(|d| d.iter().map(|&r| mixed_id(width, symbol(r))).collect())
            .collect();
        let sep = width.separator();
        let vocab = (0..6).map(|s| u64::from(mixed_id(width, s))).max().unwrap() + 1;
        let eos = mixed_id(width, 3);
        let dir = tempfile::tempdir().unwrap();
        write_plain_index(dir.path(), &docs, width, shards);
        let engine = open(dir.path(), width, vocab, eos);
        let streams = shard_streams(&docs, sep, shards);
        let mut queries: Vec<Vec<u32>> = vec![Vec::new()];
        for &(doc, start, len) in &contexts {
            let d = &docs[doc % docs.len()];
            let start = start.min(d.len());
            queries.push(d[start..(start + len).min(d.len())].to_vec());
        }
        queries.push(vec![mixed_id(width, 5)]);
        for query in &queries {
            prop_assert_eq!(
                next_token_counts(&engine, query, DocumentEnds::Skip).unwrap(),
                brute_next(&streams, sep, query, None),
                "skip, context {:?}", query
            );
            prop_assert_eq!(
                next_token_counts(&engine, query, DocumentEnds::Eos).unwrap(),
                brute_next(&streams, sep, query, Some(eos)),
                "eos, context {:?}", query
            );
        }
    }
}

/// Ranges wide enough to be split (the empty context over 500,000 tokens, and
/// a frequent token's ~300,000) is counted in pieces on the pool; a run cut by a
/// piece boundary is counted once.
#[test]
fn wide_ranges_counted_in_pieces_equal_brute_force() {
    use rand::{Rng, SeedableRng};
    let width = TokenWidth::U16;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // A Zipf-like skew: id 0x0100 most of the time, so its range is wide too.
    let docs: Vec<Vec<u32>> = (0..500)
        .map(|_| {
            (0..1000)
                .map(|_| {
                    if rng.gen_bool(0.6) {
                        0x0100
                    } else {
                        [0x0001, 0x00FF, 0x01FE, 0x0201, 0x02FF, 0x0300, 0xFF00]
                            [rng.gen_range(0..7)]
                    }
                })
                .collect()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_plain_index(dir.path(), &docs, width, 1);
    let engine = open(dir.path(), width, 0x10000 - 1, 0x00FF);
    let streams = shard_streams(&docs, width.separator(), 1);
    for (query, split) in [
        (vec![], true),
        (vec![0x0100], true),
        (vec![0x0100, 0x0100], false),
    ] {
        let found = engine.find(&query).unwrap();
        assert_eq!(
            found.count >= 1 << 18,
            split,
            "{query:?} occurs {} times",
            found.count
        );
        assert_eq!(
            next_token_counts(&engine, &query, DocumentEnds::Eos).unwrap(),
            brute_next(&streams, width.separator(), &query, Some(0x00FF)),
            "context {query:?}"
        );
    }
}

/// A frequent context followed by hundreds of distinct tokens, some often and
/// most rarely: runs of one rank beside runs of thousands, so that lanes switch
/// between scanning short runs and galloping over long ones, in every width,
/// with ids whose byte order differs from their numeric order (but in u8).
#[test]
fn short_and_long_runs_mixed_equal_brute_force() {
    use rand::{Rng, SeedableRng};
    for width in WIDTHS {
        let id = |s: u32| match width {
            TokenWidth::U8 => s + 3,
            TokenWidth::U16 => (s << 8) | (250 - s),
            TokenWidth::U32 => (s << 24) | (250 - s),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let frequent = id(0);
        let docs: Vec<Vec<u32>> = (0..300)
            .map(|_| {
                (0..300)
                    .map(|_| {
                        if rng.gen_bool(0.3) {
                            frequent
                        } else {
                            // Skewed toward small symbols: a few long runs, many short ones.
                            id(1 + (199.0 * rng.gen::<f64>().powi(3)) as u32)
                        }
                    })
                    .collect()
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        write_plain_index(dir.path(), &docs, width, 1);
        let eos = id(1);
        let engine = open(dir.path(), width, u64::from(id(199).max(id(0))) + 1, eos);
        let streams = shard_streams(&docs, width.separator(), 1);
        for query in [
            vec![],
            vec![frequent],
            vec![frequent, frequent],
            vec![id(1)],
        ] {
            for (ends, eos) in [(DocumentEnds::Eos, Some(eos)), (DocumentEnds::Skip, None)] {
                assert_eq!(
                    next_token_counts(&engine, &query, ends).unwrap(),
                    brute_next(&streams, width.separator(), &query, eos),
                    "{width:?}, context {query:?}"
                );
            }
        }
    }
}
