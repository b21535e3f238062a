//! The interleaved batch count (`anygram::interleave::count_many`) against a brute-force
//! count over the shard streams: every width, several shards, ids whose byte order differs
//! from their value order, with and without sampled keys (which narrow its searches),
//! groups larger than one, empty queries and out-of-vocabulary ids among the others.

mod common;

use anygram::interleave::{count_many, GROUP};
use anygram::TokenWidth;
use common::{byte_order_tokens, open, shard_streams, write_plain_index};
use rand::{Rng, SeedableRng};

fn brute_count(streams: &[Vec<u32>], query: &[u32]) -> u64 {
    streams
        .iter()
        .map(|s| {
            if query.is_empty() {
                s.len() as u64
            } else {
                s.windows(query.len()).filter(|w| *w == query).count() as u64
            }
        })
        .sum()
}

#[test]
fn interleaved_counts_match_brute_force() {
    for (case, width) in [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32]
        .into_iter()
        .enumerate()
    {
        let mut rng = rand::rngs::StdRng::seed_from_u64(case as u64);
        let ids = byte_order_tokens(width);
        let docs: Vec<Vec<u32>> = (0..40)
            .map(|_| {
                (0..rng.gen_range(0..60))
                    .map(|_| ids[rng.gen_range(0..ids.len())])
                    .collect()
            })
            .collect();
        for shards in [1, 3] {
            let dir = tempfile::tempdir().unwrap();
            write_plain_index(dir.path(), &docs, width, shards);
            let streams = shard_streams(&docs, width.separator(), shards);
            let engine = open(dir.path(), width).unwrap();
            let mut queries: Vec<Vec<u32>> = (0..5 * GROUP + 3)
                .map(|_| {
                    (0..rng.gen_range(0..5))
                        .map(|_| ids[rng.gen_range(0..ids.len())])
                        .collect()
                })
                .collect();
            queries[7] = vec![ids[0], width.separator()]; // the separator is no token id
            let slices: Vec<&[u32]> = queries.iter().map(Vec::as_slice).collect();
            // Sampled keys are set once per shard: first without, then with them.
            for rate in [None, Some(3)] {
                if let Some(rate) = rate {
                    engine
                        .shards()
                        .iter()
                        .for_each(|s| s.build_samples_every(rate));
                }
                let counts = count_many(&engine, &slices);
                for (query, count) in queries.iter().zip(counts) {
                    match engine.count(query) {
                        Ok(want) => {
                            assert_eq!(want, brute_count(&streams, query), "{query:?}");
                            assert_eq!(
                                count.unwrap(),
                                want,
                                "{width:?} {shards} {rate:?} {query:?}"
                            );
                        }
                        Err(e) => assert_eq!(count.unwrap_err().to_string(), e.to_string()),
                    }
                }
            }
        }
    }
}

/// A single count on a shard with sampled keys takes the hot search (k-ary bounds,
/// `interleave::find_hot`); it and the interleaved batch against brute force, on a small alphabet so that matches span many ranks
/// and many probe rounds, with queries taken from the text (they occur) and random.
#[test]
fn hot_searches_match_brute_force() {
    for (case, width) in [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32]
        .into_iter()
        .enumerate()
    {
        let mut rng = rand::rngs::StdRng::seed_from_u64(100 + case as u64);
        let ids = &byte_order_tokens(width)[..3];
        let docs: Vec<Vec<u32>> = (0..30)
            .map(|_| {
                (0..rng.gen_range(0..400))
                    .map(|_| ids[rng.gen_range(0..ids.len())])
                    .collect()
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        write_plain_index(dir.path(), &docs, width, 2);
        let streams = shard_streams(&docs, width.separator(), 2);
        let engine = open(dir.path(), width).unwrap();
        let rate = [1, 16, 64][case];
        engine
            .shards()
            .iter()
            .for_each(|s| s.build_samples_every(rate));
        let queries: Vec<Vec<u32>> = (0..300)
            .map(|_| {
                let len = rng.gen_range(1..24);
                let doc = &docs[rng.gen_range(0..docs.len())];
                if rng.gen_bool(0.7) && doc.len() > len {
                    let at = rng.gen_range(0..doc.len() - len);
                    doc[at..at + len].to_vec()
                } else {
                    (0..len).map(|_| ids[rng.gen_range(0..ids.len())]).collect()
                }
            })
            .collect();
        for query in &queries {
            assert_eq!(
                engine.count(query).unwrap(),
                brute_count(&streams, query),
                "{width:?} rate {rate} {query:?}"
            );
        }
        let slices: Vec<&[u32]> = queries.iter().map(Vec::as_slice).collect();
        for (query, count) in queries.iter().zip(count_many(&engine, &slices)) {
            assert_eq!(count.unwrap(), brute_count(&streams, query), "{query:?}");
        }
    }
}
