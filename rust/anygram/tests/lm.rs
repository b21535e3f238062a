//! `Engine::score` against brute force and against `infgram_prob` at every
//! position, on random small corpora of every token width and several shards.

mod common;

use anygram::{Engine, OpenOptions, ScoreOptions, Scores, TokenWidth};
use common::{shard_streams, write_plain_index};
use proptest::prelude::*;

/// `(count, next-token counts)` of `query` (separators and shard ends as `eos`).
fn brute(streams: &[Vec<u32>], query: &[u32], sep: u32, eos: u32) -> (u64, Vec<(u32, u64)>) {
    let mut next = std::collections::BTreeMap::new();
    for stream in streams {
        for start in 0..stream.len() {
            if stream[start..].starts_with(query) {
                let t = stream.get(start + query.len()).copied().unwrap_or(sep);
                *next.entry(if t == sep { eos } else { t }).or_insert(0u64) += 1;
            }
        }
    }
    (next.values().sum(), next.into_iter().collect())
}

fn corpus() -> impl Strategy<Value = (TokenWidth, Vec<Vec<u32>>, usize, Vec<u32>, u32)> {
    prop_oneof![
        Just(TokenWidth::U8),
        Just(TokenWidth::U16),
        Just(TokenWidth::U32)
    ]
    .prop_flat_map(|width| {
        let max_id = width.separator() - 1;
        // Few symbols make long matches likely; the largest id and eos (2) occur too.
        // Symbols stand for ids whose byte order differs from their order.
        let token = prop_oneof![5 => (0u32..4).prop_map(move |s| common::mixed_id(width, s)), 1 => Just(max_id)];
        (
            Just(width),
            prop::collection::vec(prop::collection::vec(token.clone(), 0..14), 1..7),
            1usize..4,
            prop::collection::vec(token, 0..40),
            prop_oneof![Just(2u32), Just(width.separator())],
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn score_is_infgram_prob_at_every_position(
        (width, docs, shards, text, eos) in corpus(),
        sample_keys in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let shards = shards.min(docs.len());
        write_plain_index(dir.path(), &docs, width, shards);
        let engine = Engine::open(dir.path(), &OpenOptions {
            token_width: Some(width.bytes()),
            vocab_size: None,
            eos_token_id: Some(eos as u64),
            sample_keys: false,
            ..OpenOptions::default()
        }).unwrap();
        if sample_keys {
            for shard in engine.shards() {
                shard.build_samples_every(2);
            }
        }
        let sep = width.separator();
        let all = shard_streams(&docs, sep, shards);
        let options = ScoreOptions { sparse: true, top_max_support: Some(u64::MAX / 4), doc_start: false };
        let scores = engine.score(&text, &options).unwrap();
        prop_assert_eq!(scores.len(), text.len());
        for i in 0..text.len() {
            let context = &text[..i];
            // Brute force: the longest suffix of the context that occurs.
            let n = (0..=i).rev().find(|&n| brute(&all, &context[i - n..], sep, eos).0 > 0).unwrap_or(0);
            let suffix = &context[i - n..];
            let (prompt, next) = brute(&all, suffix, sep, eos);
            let mut extended = suffix.to_vec();
            extended.push(text[i]);
            let (cont, _) = brute(&all, &extended, sep, eos);
            prop_assert_eq!(scores.suffix_len[i] as usize, n, "suffix at {}", i);
            prop_assert_eq!(scores.prompt_count[i], prompt, "prompt at {}", i);
            prop_assert_eq!(scores.cont_count[i], cont, "cont at {}", i);
            prop_assert_eq!(scores.prob[i], cont as f64 / prompt as f64);
            prop_assert_eq!(scores.sparse[i], next.len() == 1, "sparse at {}: {:?}", i, next);
            let top = next.iter().fold((u32::MAX, 0u64), |b, &(t, c)| if c > b.1 { (t, c) } else { b });
            prop_assert_eq!(scores.top_token[i], top.0, "top at {}", i);
            prop_assert_eq!(scores.top_prob[i], top.1 as f64 / prompt as f64);
            prop_assert!(!scores.top_approx[i]);

            let p = engine.infgram_prob(context, text[i]).unwrap();
            prop_assert_eq!(
                (p.prob, p.prompt_count, p.cont_count, p.suffix_len),
                (scores.prob[i], scores.prompt_count[i], scores.cont_count[i], scores.suffix_len[i] as usize)
            );
        }
        // As a whole document: contexts may reach back to the separator before it.
        let doc = engine.score(&text, &ScoreOptions { doc_start: true, ..options }).unwrap();
        prop_assert_eq!(doc.len(), text.len());
        let mut with_start = vec![sep];
        with_start.extend_from_slice(&text);
        for i in 0..text.len() {
            let context = &with_start[..i + 1];
            let n = (0..=i + 1).rev().find(|&n| brute(&all, &context[i + 1 - n..], sep, eos).0 > 0).unwrap_or(0);
            let suffix = &context[i + 1 - n..];
            let (prompt, next) = brute(&all, suffix, sep, eos);
            let mut extended = suffix.to_vec();
            extended.push(text[i]);
            let (cont, _) = brute(&all, &extended, sep, eos);
            prop_assert_eq!(doc.suffix_len[i] as usize, n, "doc suffix at {}", i);
            prop_assert_eq!((doc.prompt_count[i], doc.cont_count[i]), (prompt, cont), "doc counts at {}", i);
            prop_assert_eq!(doc.sparse[i], next.len() == 1, "doc sparse at {}", i);
        }
        // Batch form: the same answers.
        let batch = engine.score_batch(&[text.clone(), Vec::new()], &options).unwrap();
        prop_assert_eq!(&batch[0], &scores);
        prop_assert!(batch[1].is_empty());
    }
}

/// A text longer than a chunk is scored in parallel pieces that must join up
/// exactly: compare with `infgram_prob` at every position.
#[test]
fn long_texts_join_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let width = TokenWidth::U16;
    // A repetitive corpus so that contexts at chunk borders are long, and large
    // enough that short contexts occur more than 4096 times (searched with the
    // sampled keys rather than extended token by token).
    let doc: Vec<u32> = (0..40_000u32).map(|i| (i * 7 + i / 13) % 11).collect();
    let docs = vec![doc.clone(), doc[500..].to_vec(), vec![1, 2, 3]];
    write_plain_index(dir.path(), &docs, width, 2);
    let engine = Engine::open(dir.path(), &OpenOptions::default()).unwrap();
    engine.build_samples();
    assert!(engine.count(&[3]).unwrap() > 4096);
    let mut text: Vec<u32> = doc.iter().cycle().take(9000).copied().collect();
    text[4095] = 12; // an unseen token right at a chunk border
    text[4096] = 10;
    let scores = engine.score(&text, &ScoreOptions::default()).unwrap();
    for (i, &token) in text.iter().enumerate() {
        let p = engine.infgram_prob(&text[..i], token).unwrap();
        assert_eq!(p.prob, scores.prob[i], "position {i}");
        assert_eq!(p.suffix_len, scores.suffix_len[i] as usize, "position {i}");
        assert_eq!(p.prompt_count, scores.prompt_count[i], "position {i}");
    }
}

#[test]
fn out_of_vocabulary_tokens_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_plain_index(dir.path(), &[vec![1, 2, 3]], TokenWidth::U8, 1);
    let engine = Engine::open(
        dir.path(),
        &OpenOptions {
            vocab_size: Some(10),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let err = engine
        .score(&[1, 2, 10], &ScoreOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("position 2"), "{err}");
}

/// Texts of stretches copied from the corpus (long matches, contexts with few
/// occurrences) alternating with random stretches that fail to extend (drops of
/// every length, tokens the corpus never has).
/// The index of a [`lockstep_case`] in `dir`, opened, with sampled keys every
/// second suffix when `sample_keys` (their narrowing path) and none otherwise.
fn lockstep_engine(
    dir: &std::path::Path,
    width: TokenWidth,
    docs: &[Vec<u32>],
    shards: usize,
    sample_keys: bool,
) -> Engine {
    write_plain_index(dir, docs, width, shards.min(docs.len()));
    let engine = Engine::open(
        dir,
        &OpenOptions {
            token_width: Some(width.bytes()),
            vocab_size: None,
            eos_token_id: Some(2),
            sample_keys: false,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    if sample_keys {
        for shard in engine.shards() {
            shard.build_samples_every(2);
        }
    }
    engine
}

const SPARSE: ScoreOptions = ScoreOptions {
    sparse: true,
    top_max_support: None,
    doc_start: false,
};

/// `score_batch` of `texts`, with one text longer than a piece (64-512 tokens)
/// appended so that pieces must join up exactly, is `infgram_prob`'s answer at
/// every position; returns the batch.
fn score_batch_is_infgram_prob(
    engine: &Engine,
    texts: &mut Vec<Vec<u32>>,
) -> Result<Vec<Scores>, TestCaseError> {
    let long: Vec<u32> = texts.iter().flatten().copied().cycle().take(1100).collect();
    texts.push(long);
    let batch = engine.score_batch(texts, &SPARSE).unwrap();
    prop_assert_eq!(batch.len(), texts.len());
    for (text, scores) in texts.iter().zip(&batch) {
        prop_assert_eq!(scores.len(), text.len());
        for i in 0..text.len() {
            let p = engine.infgram_prob(&text[..i], text[i]).unwrap();
            prop_assert_eq!(
                (p.prob, p.prompt_count, p.cont_count, p.suffix_len),
                (
                    scores.prob[i],
                    scores.prompt_count[i],
                    scores.cont_count[i],
                    scores.suffix_len[i] as usize
                ),
                "position {}",
                i
            );
        }
    }
    Ok(batch)
}

fn lockstep_case() -> impl Strategy<Value = (TokenWidth, Vec<Vec<u32>>, usize, Vec<Vec<u32>>, bool)>
{
    prop_oneof![
        Just(TokenWidth::U8),
        Just(TokenWidth::U16),
        Just(TokenWidth::U32)
    ]
    .prop_flat_map(|width| {
        // Four frequent symbols (ids whose byte order differs from their order)
        // and a tail of rarer ids.
        let token = prop_oneof![
            4 => (0u32..4).prop_map(move |s| common::mixed_id(width, s)),
            1 => 6u32..40,
        ];
        let docs = prop::collection::vec(prop::collection::vec(token.clone(), 1..60), 1..6);
        (Just(width), docs, 1usize..4).prop_flat_map(move |(width, docs, shards)| {
            let flat: Vec<u32> = docs.concat();
            let n = flat.len();
            let stretch = prop_oneof![
                (0..n, 1usize..30).prop_map(move |(at, len)| flat[at..(at + len).min(n)].to_vec()),
                prop::collection::vec(prop_oneof![0u32..45, Just(width.separator() - 1)], 1..6),
            ];
            let text = prop::collection::vec(stretch, 0..12).prop_map(|parts| parts.concat());
            (
                Just(width),
                Just(docs),
                Just(shards),
                prop::collection::vec(text, 1..45),
                any::<bool>(),
            )
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// `score_batch` steps many texts (and pieces of long ones) in lockstep:
    /// every position must still be `infgram_prob`'s answer, with the sparse
    /// flag of the exact next-token distribution.
    #[test]
    fn score_batch_in_lockstep_is_infgram_prob(
        (width, docs, shards, mut texts, sample_keys) in lockstep_case(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = lockstep_engine(dir.path(), width, &docs, shards, sample_keys);
        let batch = score_batch_is_infgram_prob(&engine, &mut texts)?;
        for (text, scores) in texts.iter().zip(&batch) {
            for i in 0..text.len() {
                let ntd = engine.infgram_ntd(&text[..i], u64::MAX / 4).unwrap();
                prop_assert_eq!(scores.sparse[i], ntd.counts.len() == 1, "sparse at {}", i);
            }
        }
        // One text by itself: the same answers as in the batch.
        let last = texts.len() - 1;
        prop_assert_eq!(&engine.score(&texts[last], &SPARSE).unwrap(), &batch[last]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// The unigram and bigram table behind lockstep scoring: every covered
    /// n-gram's ranges are exactly what a search finds (absent ones empty),
    /// truncated tables cover a prefix of the tokens in suffix order and answer
    /// "not covered" for the rest, and scoring through any of them (whole,
    /// truncated to nothing, cut mid-way) is `infgram_prob` at every position.
    #[test]
    fn context_table_ranges_and_scores_through_it(
        (width, docs, shards, mut texts, sample_keys) in lockstep_case(),
        budget in prop_oneof![Just(0u64), 0u64..600, Just(64u64 << 20)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = lockstep_engine(dir.path(), width, &docs, shards, sample_keys);
        let table = anygram::context_table::ContextTable::build(&engine, budget).unwrap();
        let stats = table.stats();
        prop_assert!(stats.bytes <= budget, "{:?} over {}", stats, budget);
        // Every symbol of the corpus and of the texts (some the corpus never has).
        let mut symbols: Vec<u32> = docs.iter().chain(&texts).flatten().copied().collect();
        symbols.sort_unstable();
        symbols.dedup();
        let mut covered = 0;
        for &a in &symbols {
            let uni = table.find(&engine.encode(&[a]).unwrap());
            if let Some(uni) = &uni {
                covered += 1;
                prop_assert_eq!(uni.count, engine.find(&[a]).unwrap().count);
            }
            for &b in &symbols {
                let found = table.find(&engine.encode(&[a, b]).unwrap());
                // A covered first token covers its bigrams.
                prop_assert_eq!(found.is_some(), uni.is_some());
                if let Some(found) = found {
                    let searched = engine.find(&[a, b]).unwrap();
                    prop_assert_eq!(found.count, searched.count, "bigram {} {}", a, b);
                    for (f, s) in found.ranges.iter().zip(&searched.ranges) {
                        if s.0 < s.1 {
                            prop_assert_eq!(f, s);
                        } else {
                            prop_assert_eq!(f.0, f.1);
                        }
                    }
                }
            }
        }
        if budget >= 64 << 20 {
            prop_assert!(stats.complete);
            prop_assert_eq!(covered, symbols.len());
        }
        // Scoring through this table (the engine keeps the first one built).
        engine.build_context_table(budget).unwrap();
        score_batch_is_infgram_prob(&engine, &mut texts)?;
    }
}
