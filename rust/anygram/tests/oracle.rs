//! Every query against a brute-force oracle on random small corpora of every
//! token width: the engine must agree exactly.

mod common;

use anygram::{Engine, OpenOptions, TokenWidth};
use common::{shard_streams, write_plain_index};
use proptest::prelude::*;

fn brute_count(stream: &[u32], query: &[u32]) -> u64 {
    if query.is_empty() {
        return stream.len() as u64;
    }
    stream.windows(query.len()).filter(|w| *w == query).count() as u64
}

/// Next-token counts after every occurrence (end of corpus and separators are `eos`).
fn brute_next(stream: &[u32], query: &[u32], sep: u32, eos: u32) -> Vec<(u32, u64)> {
    let mut counts = std::collections::BTreeMap::new();
    for start in 0..stream.len() {
        if stream[start..].starts_with(query) {
            let next = stream.get(start + query.len()).copied().unwrap_or(sep);
            let next = if next == sep { eos } else { next };
            *counts.entry(next).or_insert(0u64) += 1;
        }
    }
    counts.into_iter().collect()
}

fn corpus_strategy() -> impl Strategy<Value = (TokenWidth, u32, Vec<Vec<u32>>)> {
    prop_oneof![
        Just(TokenWidth::U8),
        Just(TokenWidth::U16),
        Just(TokenWidth::U32)
    ]
    .prop_flat_map(|width| {
        // Small vocabularies make repeats likely; the largest id is always allowed.
        // Symbols stand for ids whose byte order differs from their order.
        (Just(width), 1u32..6)
    })
    .prop_flat_map(|(width, vocab_small)| {
        let max_id = width.separator() - 1;
        let token = prop_oneof![4 => (0..vocab_small).prop_map(move |s| common::mixed_id(width, s)), 1 => Just(max_id)];
        let doc = prop::collection::vec(token, 0..12);
        (
            Just(width),
            Just(vocab_small),
            prop::collection::vec(doc, 1..8),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn queries_agree_with_brute_force(
        (width, vocab_small, docs) in corpus_strategy(),
        queries in prop::collection::vec(prop::collection::vec(0u32..7, 0..7), 1..6),
        sample_rate in 1u64..5,
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_plain_index(dir.path(), &docs, width, 1);
        let sep = width.separator();
        let eos = 3u32;
        let engine = Engine::open(dir.path(), &OpenOptions {
            token_width: Some(width.bytes()),
            vocab_size: None,
            eos_token_id: Some(eos as u64),
            sample_keys: false,
            ..OpenOptions::default()
        }).unwrap();
        let all = shard_streams(&docs, sep, 1).concat();
        let max_id = sep - 1;
        // First plain binary searches, then narrowed by sampled keys at a small rate.
        for pass in 0..2 {
        if pass == 1 {
            for shard in engine.shards() {
                shard.build_samples_every(sample_rate);
            }
        }
        for raw in &queries {
            // Map query symbol 6 to the largest id, so it appears in queries too.
            let query: Vec<u32> = raw.iter().map(|&t| if t == 6 { max_id } else { common::mixed_id(width, t.min(vocab_small)) }).collect();
            let expected = brute_count(&all, &query);
            prop_assert_eq!(engine.count(&query).unwrap(), expected, "count {:?}", query);

            // ntd with a support large enough to be exact.
            let ntd = engine.ntd(&query, u64::MAX / 4).unwrap();
            prop_assert!(!ntd.approx);
            prop_assert_eq!(ntd.prompt_count, expected);
            prop_assert_eq!(&ntd.counts, &brute_next(&all, &query, sep, eos));

            // prob of every possible continuation.
            if let Some((&last, context)) = query.split_last() {
                let p = engine.prob(context, last).unwrap();
                let prompt = brute_count(&all, context);
                prop_assert_eq!(p.prompt_count, prompt);
                if prompt == 0 {
                    prop_assert_eq!(p.prob, -1.0);
                } else {
                    prop_assert_eq!(p.cont_count, expected);
                    prop_assert_eq!(p.prob, expected as f64 / prompt as f64);
                }
                // ∞-gram: longest suffix of the context that occurs.
                let suffix_len = (0..=context.len()).rev()
                    .find(|&n| brute_count(&all, &context[context.len() - n..]) > 0)
                    .unwrap();
                let inf = engine.infgram_prob(context, last).unwrap();
                let suffix = &context[context.len() - suffix_len..];
                prop_assert_eq!(inf.suffix_len, suffix_len);
                prop_assert_eq!(inf.prompt_count, brute_count(&all, suffix));
                let mut with_last = suffix.to_vec();
                with_last.push(last);
                prop_assert_eq!(inf.cont_count, brute_count(&all, &with_last));
                let inf_ntd = engine.infgram_ntd(context, 1 << 40).unwrap();
                prop_assert_eq!(inf_ntd.suffix_len, suffix_len);
                prop_assert_eq!(&inf_ntd.counts, &brute_next(&all, suffix, sep, eos));
            }

            // Sampled ntd still accounts for every occurrence.
            let sampled = engine.ntd(&query, 2).unwrap();
            prop_assert_eq!(sampled.prompt_count, expected);
            prop_assert_eq!(sampled.approx, expected > 2);
        }
        }
        let report = anygram::verify::verify(&engine);
        prop_assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}

#[test]
fn out_of_vocabulary_token_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_plain_index(dir.path(), &[vec![1, 2, 3]], TokenWidth::U16, 1);
    let engine = Engine::open(
        dir.path(),
        &OpenOptions {
            vocab_size: Some(10),
            ..Default::default()
        },
    )
    .unwrap();
    let err = engine.count(&[1, 10]).unwrap_err().to_string();
    assert!(err.contains("token id 10 at position 1"), "{err}");
}

#[test]
fn missing_table_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    write_plain_index(dir.path(), &[vec![1, 2, 3]], TokenWidth::U16, 1);
    std::fs::remove_file(dir.path().join("table.0")).unwrap();
    let err = Engine::open(dir.path(), &OpenOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("table.0"), "{err}");
}

#[test]
fn truncated_table_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_plain_index(dir.path(), &[vec![1, 2, 3], vec![4, 5]], TokenWidth::U16, 1);
    let table = std::fs::read(dir.path().join("table.0")).unwrap();
    std::fs::write(dir.path().join("table.0"), &table[..table.len() - 1]).unwrap();
    let err = Engine::open(
        dir.path(),
        &OpenOptions {
            token_width: Some(2),
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("table.0") && err.contains("corrupt"), "{err}");
}

#[test]
fn width_is_inferred_without_a_manifest() {
    for width in [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32] {
        let dir = tempfile::tempdir().unwrap();
        let docs: Vec<Vec<u32>> = (0..50).map(|i| vec![i % 7, i % 5, 1, 2]).collect();
        write_plain_index(dir.path(), &docs, width, 1);
        let engine = Engine::open(dir.path(), &OpenOptions::default()).unwrap();
        assert_eq!(engine.token_width(), width);
        let all = shard_streams(&docs, width.separator(), 1).concat();
        assert_eq!(engine.count(&[1, 2]).unwrap(), brute_count(&all, &[1, 2]));
    }
}
