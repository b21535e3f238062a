//! The ∞-gram paths through the search accelerator: `infgram_prob`,
//! `infgram_ntd` and `longest_suffix` probe their candidate suffix lengths in
//! batches that share rounds of reads; answers equal the plain engine's and
//! brute force, and an ∞-gram prob costs at most twice a count's rounds.
//! `Shard::find_next` over a wide range finishes k-ary in few counted rounds.

mod common;

use std::path::Path;

use anygram::accel::{self, WriteOptions};
use anygram::TokenWidth;
use common::{big_corpus, open_with as open, shard_streams, write_plain_index};
use proptest::prelude::*;

/// Writes every shard's accelerator.
fn accelerate(dir: &Path, width: TokenWidth, options: &WriteOptions) {
    let plain = open(dir, width, false, None);
    for shard in plain.shards() {
        accel::write(dir, shard, options).unwrap();
    }
}

fn brute_count(streams: &[Vec<u32>], query: &[u32]) -> u64 {
    streams
        .iter()
        .map(|s| {
            if query.is_empty() {
                return s.len() as u64;
            }
            s.windows(query.len()).filter(|w| *w == query).count() as u64
        })
        .sum()
}

/// `(suffix_len, prompt_count, cont_count)` of the ∞-gram by brute force.
fn brute_infgram(streams: &[Vec<u32>], context: &[u32], token: u32) -> (usize, u64, u64) {
    let longest = (0..=context.len())
        .rev()
        .find(|&n| brute_count(streams, &context[context.len() - n..]) > 0)
        .unwrap_or(0);
    let suffix = &context[context.len() - longest..];
    let mut with_token = suffix.to_vec();
    with_token.push(token);
    (
        longest,
        brute_count(streams, suffix),
        brute_count(streams, &with_token),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn batched_infgram_equals_plain_search_and_brute_force(
        alphabet in 2u32..5,
        shards in 1usize..3,
        seed in any::<u64>(),
        rate in 1u64..6,
        key_bytes in 2usize..9,
        node_keys in 2u64..5,
        queries in prop::collection::vec((0usize..70, 0usize..40, any::<u64>()), 12),
    ) {
        use rand::{Rng, SeedableRng};
        let width = TokenWidth::U16;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // Few distinct tokens and repeated passages: long suffixes occur, so the
        // later batches (beyond the first SUFFIX_BATCH lengths) are exercised.
        let base: Vec<u32> = (0..300).map(|_| rng.gen_range(0..alphabet)).collect();
        let docs: Vec<Vec<u32>> = (0..6)
            .map(|_| {
                let start = rng.gen_range(0..150);
                let mut doc = base[start..start + rng.gen_range(50..150)].to_vec();
                doc.extend((0..rng.gen_range(0..40)).map(|_| rng.gen_range(0..alphabet)));
                doc
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        write_plain_index(dir.path(), &docs, width, shards);
        accelerate(dir.path(), width, &WriteOptions { rate, key_bytes, node_keys: Some(node_keys) });
        let plain = open(dir.path(), width, false, None);
        let fast = open(dir.path(), width, true, Some(0));
        prop_assert!(fast.shards().iter().all(|s| s.accelerator().is_some()));
        let streams = shard_streams(&docs, width.separator(), shards);
        for (prefix, len, pick) in queries {
            let mut context: Vec<u32> = (0..prefix % 8).map(|_| rng.gen_range(0..alphabet + 1)).collect();
            let start = (pick as usize) % (base.len() - len);
            context.extend_from_slice(&base[start..start + len]);
            let token = (pick >> 32) as u32 % (alphabet + 1);
            let (suffix_len, prompt, cont) = brute_infgram(&streams, &context, token);
            let got = fast.infgram_prob(&context, token).unwrap();
            prop_assert_eq!(got, plain.infgram_prob(&context, token).unwrap());
            prop_assert_eq!((got.suffix_len, got.prompt_count, got.cont_count), (suffix_len, prompt, cont));
            let (n, found) = fast.longest_suffix(&context).unwrap();
            prop_assert_eq!((n, &found), (suffix_len, &plain.longest_suffix(&context).unwrap().1));
            prop_assert_eq!(
                fast.infgram_ntd(&context, 1 + pick % 7).unwrap(),
                plain.infgram_ntd(&context, 1 + pick % 7).unwrap()
            );
            prop_assert_eq!(
                fast.ngram_prob(&context, token, None).unwrap(),
                plain.ngram_prob(&context, token, None).unwrap()
            );
        }
        // The empty context backs off to the unigram.
        let got = fast.infgram_prob(&[], 1).unwrap();
        prop_assert_eq!(got, plain.infgram_prob(&[], 1).unwrap());
        prop_assert_eq!(got.cont_count, brute_count(&streams, &[1]));
    }
}

#[test]
fn infgram_prob_costs_at_most_twice_a_count_in_rounds() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let width = TokenWidth::U16;
    let docs = big_corpus(200_000, 11);
    write_plain_index(dir.path(), &docs, width, 2);
    let options = WriteOptions {
        node_keys: Some(8),
        ..WriteOptions::default()
    };
    accelerate(dir.path(), width, &options);
    let plain = open(dir.path(), width, false, None);
    // All levels but the bottom one resident: a count costs ≤ 3 rounds a shard.
    let probe = open(dir.path(), width, true, Some(0));
    let levels = probe.shards()[0].accelerator().unwrap().num_levels();
    assert!(levels >= 3, "{levels} levels");
    let budget: u64 = probe
        .shards()
        .iter()
        .map(|s| s.accelerator().unwrap().top_levels_bytes(levels - 1))
        .sum::<u64>()
        * 2;
    let fast = open(dir.path(), width, true, Some(budget));

    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut count_rounds = 0;
    let mut infgram_rounds = 0;
    let mut long_matches = 0;
    let mut past_keys_rounds = 0;
    for i in 0..120 {
        let doc = &docs[rng.gen_range(0..docs.len())];
        // Either a passage of the corpus (its whole length occurs: up to 100
        // tokens) or unseen tokens then a short passage (backs off to ~its length).
        let take = rng.gen_range(1..=doc.len().min(if i % 2 == 0 { 100 } else { 12 }));
        let start = rng.gen_range(0..=doc.len() - take);
        let mut context: Vec<u32> = if i % 2 == 0 {
            Vec::new()
        } else {
            (0..30).map(|_| rng.gen_range(0..600)).collect()
        };
        context.extend_from_slice(&doc[start..start + take]);
        let token = rng.gen_range(0..600);
        let (got, reads) = anygram::reads::record(|| fast.infgram_prob(&context, token).unwrap());
        assert_eq!(got, plain.infgram_prob(&context, token).unwrap());
        long_matches += (got.suffix_len > 16) as usize;
        infgram_rounds = infgram_rounds.max(reads.max_rounds_per_shard());
        if got.suffix_len > 32 {
            // Longer than the 64-byte keys: settled from the text of the rare
            // 32-token suffix's occurrences, not by searches tied on keys.
            past_keys_rounds = past_keys_rounds.max(reads.max_rounds_per_shard());
        }
        let (_, reads) = anygram::reads::record(|| fast.count(&context).unwrap());
        count_rounds = count_rounds.max(reads.max_rounds_per_shard());
    }
    assert!(
        long_matches > 10,
        "{long_matches} contexts past the first lengths"
    );
    assert!(count_rounds <= 3, "a count: {count_rounds} rounds");
    assert!(
        infgram_rounds <= 2 * count_rounds,
        "infgram_prob {infgram_rounds} rounds, a count {count_rounds}"
    );
    assert!(
        (1..=count_rounds + 2).contains(&past_keys_rounds),
        "a match past the keys: {past_keys_rounds} rounds, a count {count_rounds}"
    );
}

#[test]
fn find_next_over_a_wide_range_is_exact_in_few_counted_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let width = TokenWidth::U8;
    // Three tokens: each one-token context covers ~10,000 ranks.
    let docs: Vec<Vec<u32>> = (0..30)
        .map(|d| (0..1000u32).map(|i| (i * 7 + d * 3 + i / 13) % 3).collect())
        .collect();
    write_plain_index(dir.path(), &docs, width, 1);
    let engine = open(dir.path(), width, false, None);
    let shard = &engine.shards()[0];
    for context in [vec![0u32], vec![1], vec![2], vec![0, 1], vec![2, 2]] {
        let range = engine.find(&context).unwrap().ranges[0];
        let skip = context.len() * width.bytes();
        for next in 0..4u32 {
            let (found, reads) = anygram::reads::record(|| {
                shard
                    .find_next(range, skip, &engine.encode(&[next]).unwrap())
                    .unwrap()
            });
            let mut extended = context.clone();
            extended.push(next);
            assert_eq!(
                found,
                engine.find(&extended).unwrap().ranges[0],
                "{extended:?}"
            );
            let rounds = reads.max_rounds_per_shard();
            // Bisection over ~10,000 ranks: ~28 rounds; k-ary with 64 probes: ≤ 3 pairs.
            if range.1 - range.0 > 4096 {
                assert!(
                    (1..=6).contains(&rounds),
                    "{extended:?} over {range:?}: {reads:?}"
                );
            } else if range.0 < range.1 {
                assert!(rounds >= 1, "reads are counted: {reads:?}");
            }
        }
    }
}

#[test]
fn a_rare_context_after_boilerplate_longer_than_the_keys_costs_a_count_and_two_rounds() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let width = TokenWidth::U16;
    // Every document opens with the same 48 tokens (more than the 32 a 64-byte
    // key holds), so a context that spans them ties on its key over every
    // document; ids up to 600, whose bytes sort unlike their values.
    let boilerplate: Vec<u32> = (0..48).map(|_| rng.gen_range(0..600)).collect();
    let docs: Vec<Vec<u32>> = (0..400)
        .map(|_| {
            let mut doc = boilerplate.clone();
            doc.extend((0..40).map(|_| rng.gen_range(0..600u32)));
            doc
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_plain_index(dir.path(), &docs, width, 1);
    accelerate(dir.path(), width, &WriteOptions::default());
    let plain = open(dir.path(), width, false, None);
    let fast = open(dir.path(), width, true, None);
    let streams = shard_streams(&docs, width.separator(), 1);
    for doc in docs.iter().take(20) {
        let context = &doc[..58];
        let token = doc[58];
        let (got, reads) = anygram::reads::record(|| fast.infgram_prob(context, token).unwrap());
        assert_eq!(got, plain.infgram_prob(context, token).unwrap());
        let (suffix_len, prompt, cont) = brute_infgram(&streams, context, token);
        assert_eq!(
            (got.suffix_len, got.prompt_count, got.cont_count),
            (suffix_len, prompt, cont)
        );
        // A count of a pattern within the keys' length costs 3 rounds here.
        let (_, count_reads) = anygram::reads::record(|| fast.count(&context[..32]).unwrap());
        assert!(count_reads.max_rounds_per_shard() <= 3);
        assert!(
            reads.max_rounds_per_shard() <= 3 + 2,
            "infgram_prob {} rounds",
            reads.max_rounds_per_shard(),
        );
    }
}
