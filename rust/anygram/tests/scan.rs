//! Scans (matching statistics, contamination, self and cross dedup) against
//! brute force on random small multi-shard corpora of every token width. Small
//! vocabularies make repeats common, also across document and shard boundaries
//! (which must never count).

mod common;

use std::path::Path;

use anygram::scan::ScanControl;
use anygram::{Engine, OpenOptions, TokenWidth};
use common::IndexSpec;
use proptest::prelude::*;

/// Writes each element of `shards` (its documents) as one shard of `dir`.
fn write_index(dir: &Path, shards: &[Vec<Vec<u32>>], width: TokenWidth) -> Engine {
    let spec = IndexSpec {
        shards: shards.to_vec(),
        ..IndexSpec::default()
    };
    common::write_index(dir, &spec, width);
    let options = OpenOptions {
        token_width: Some(width.bytes()),
        sample_keys: false,
        ..OpenOptions::default()
    };
    let engine = Engine::open(dir, &options).unwrap();
    // Exercise the sampled-key path too, with a tiny rate.
    engine
        .shards()
        .iter()
        .for_each(|s| s.build_samples_every(2));
    engine
}

/// Every document of the corpus in global order.
fn all_docs(shards: &[Vec<Vec<u32>>]) -> Vec<&Vec<u32>> {
    shards.iter().flatten().collect()
}

fn occurs_in(docs: &[&Vec<u32>], needle: &[u32]) -> bool {
    docs.iter()
        .any(|d| d.len() >= needle.len() && d.windows(needle.len()).any(|w| w == needle))
}

fn brute_ms(docs: &[&Vec<u32>], query: &[u32]) -> Vec<u32> {
    (0..query.len())
        .map(|i| {
            let mut len = 0;
            while i + len < query.len() && occurs_in(docs, &query[i..i + len + 1]) {
                len += 1;
            }
            len as u32
        })
        .collect()
}

/// Union of `[a, a + min_len)` over the marked window starts, as maximal ranges.
fn ranges_of(marked: &[bool], min_len: usize) -> Vec<(u64, u64)> {
    let mut covered = vec![false; marked.len()];
    for (a, _) in marked.iter().enumerate().filter(|(_, &m)| m) {
        covered[a..a + min_len].iter_mut().for_each(|c| *c = true);
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < covered.len() {
        if covered[i] {
            let start = i;
            while i < covered.len() && covered[i] {
                i += 1;
            }
            out.push((start as u64, i as u64));
        } else {
            i += 1;
        }
    }
    out
}

/// The definition, by brute force: a window is removed when an earlier
/// position of the corpus (global document order) holds the same tokens.
fn brute_dedup_self(shards: &[Vec<Vec<u32>>], min_len: usize) -> Vec<(u64, Vec<(u64, u64)>)> {
    let docs = all_docs(shards);
    let mut out = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        let marked: Vec<bool> = (0..doc.len())
            .map(|a| {
                a + min_len <= doc.len() && {
                    let window = &doc[a..a + min_len];
                    occurs_in(&docs[..d], window)
                        || (0..a)
                            .any(|b| b + min_len <= doc.len() && &doc[b..b + min_len] == window)
                }
            })
            .collect();
        let ranges = ranges_of(&marked, min_len);
        if !ranges.is_empty() {
            out.push((d as u64, ranges));
        }
    }
    out
}

fn brute_dedup_against(
    shards: &[Vec<Vec<u32>>],
    other: &[&Vec<u32>],
    min_len: usize,
) -> Vec<(u64, Vec<(u64, u64)>)> {
    let mut out = Vec::new();
    for (d, doc) in all_docs(shards).iter().enumerate() {
        let marked: Vec<bool> = (0..doc.len())
            .map(|a| a + min_len <= doc.len() && occurs_in(other, &doc[a..a + min_len]))
            .collect();
        let ranges = ranges_of(&marked, min_len);
        if !ranges.is_empty() {
            out.push((d as u64, ranges));
        }
    }
    out
}

fn engine_dedup_self(engine: &Engine, min_len: u64) -> Vec<(u64, Vec<(u64, u64)>)> {
    let control = ScanControl::default();
    let got: Vec<_> = engine
        .dedup_self(min_len, &control)
        .unwrap()
        .into_iter()
        .map(|d| (d.doc_ix, d.ranges))
        .collect();
    assert_eq!(control.done(), engine.dedup_self_work());
    got
}

fn engine_dedup_against(
    engine: &Engine,
    other: &Engine,
    min_len: u64,
) -> Vec<(u64, Vec<(u64, u64)>)> {
    let control = ScanControl::default();
    (0..engine.shards().len())
        .flat_map(|s| {
            let docs = engine.shards()[s].num_documents();
            // Two chunks per shard, as a resumable caller would split it.
            let mid = docs / 2;
            let mut a = engine
                .dedup_against(other, s, 0..mid, min_len, &control)
                .unwrap();
            a.extend(
                engine
                    .dedup_against(other, s, mid..docs, min_len, &control)
                    .unwrap(),
            );
            a
        })
        .map(|d| (d.doc_ix, d.ranges))
        .collect()
}

/// 1-3 shards of 1-5 documents of up to 14 tokens over a tiny vocabulary, plus the largest id.
fn corpus(width: TokenWidth) -> impl Strategy<Value = Vec<Vec<Vec<u32>>>> {
    let max_id = width.separator() - 1;
    let token = prop_oneof![6 => (0u32..3).prop_map(move |s| common::mixed_id(width, s)), 1 => Just(max_id)];
    let doc = prop::collection::vec(token, 0..14);
    prop::collection::vec(prop::collection::vec(doc, 1..5), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn matching_statistics_agree_with_brute_force(
        (width, shards, query) in common::any_width().prop_flat_map(|w| {
            let max_id = w.separator() - 1;
            let token = prop_oneof![6 => (0u32..3).prop_map(move |s| common::mixed_id(w, s)), 1 => Just(max_id)];
            (Just(w), corpus(w), prop::collection::vec(token, 0..20))
        }),
        min_len in 1u64..5,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = write_index(dir.path(), &shards, width);
        let docs = all_docs(&shards);
        // Also a query made of the end of one document and the start of the next:
        // the engine must not match across the separator.
        let mut across = docs[0].clone();
        if let Some(next) = docs.get(1) { across.extend(next.iter()); }
        for q in [&query, &across] {
            let expected = brute_ms(&docs, q);
            prop_assert_eq!(&engine.matching_statistics(q).unwrap(), &expected);
            let c = engine.contamination(q, min_len, 3).unwrap();
            prop_assert_eq!(&c.matching, &expected);
            let covered: Vec<bool> = (0..q.len())
                .map(|p| (0..=p).any(|i| expected[i] as u64 >= min_len && i + expected[i] as usize > p))
                .collect();
            prop_assert_eq!(c.num_covered, covered.iter().filter(|&&x| x).count() as u64);
            let longest = expected.iter().copied().max().unwrap_or(0) as u64;
            prop_assert_eq!(c.longest_len, longest);
            if longest > 0 {
                let s = c.longest_start as usize;
                let span = &q[s..s + longest as usize];
                let count: usize = docs.iter().map(|d| d.windows(span.len()).filter(|w| *w == span).count()).sum();
                prop_assert_eq!(c.longest_count, count as u64);
                prop_assert_eq!(c.occurrences.len(), count.min(3));
                for o in &c.occurrences {
                    let doc = docs[o.doc_ix as usize];
                    prop_assert_eq!(&doc[o.offset as usize..o.offset as usize + span.len()], span);
                    prop_assert_eq!(o.doc_len, doc.len() as u64);
                }
            }
        }
    }

    #[test]
    fn dedup_self_agrees_with_brute_force(
        (width, shards) in common::any_width().prop_flat_map(|w| (Just(w), corpus(w))),
        min_len in 1u64..5,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = write_index(dir.path(), &shards, width);
        prop_assert_eq!(engine_dedup_self(&engine, min_len), brute_dedup_self(&shards, min_len as usize));
    }

    #[test]
    fn dedup_against_agrees_with_brute_force(
        (width, shards, other) in common::any_width().prop_flat_map(|w| (Just(w), corpus(w), corpus(w))),
        min_len in 1u64..5,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let engine = write_index(dir.path(), &shards, width);
        let other_engine = write_index(other_dir.path(), &other, width);
        let expected = brute_dedup_against(&shards, &all_docs(&other), min_len as usize);
        prop_assert_eq!(engine_dedup_against(&engine, &other_engine, min_len), expected.clone());
        let control = ScanControl::default();
        let merged: Vec<_> = engine
            .dedup_against_all(&other_engine, min_len, &control)
            .unwrap()
            .into_iter()
            .map(|d| (d.doc_ix, d.ranges))
            .collect();
        prop_assert_eq!(merged, expected);
        prop_assert_eq!(control.done(), engine.dedup_against_work(&other_engine));
    }
}

#[test]
fn self_dedup_of_a_long_run_keeps_one_copy_and_spans_chunks() {
    // A run longer than one chunk of ranks: every window but the first repeats.
    let dir = tempfile::tempdir().unwrap();
    let n = (anygram::scan::DEDUP_CHUNK_RANKS * 2 + 7) as usize;
    let shards = vec![vec![vec![3u32; n], vec![1, 2, 3, 3, 3, 3]]];
    let engine = write_index(dir.path(), &shards, TokenWidth::U16);
    let got = engine_dedup_self(&engine, 4);
    assert_eq!(got, vec![(0, vec![(1, n as u64)]), (1, vec![(2, 6)])]);
}

#[test]
fn cancelled_scans_stop_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = write_index(dir.path(), &[vec![vec![1, 2, 3]]], TokenWidth::U8);
    let control = ScanControl::default();
    control
        .cancel
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(
        engine.dedup_self(2, &control),
        Err(anygram::Error::Cancelled)
    ));
    assert!(engine
        .contamination_batch(&[vec![1, 2]], 2, 1, &control)
        .is_err());
    assert!(matches!(
        engine.contamination(&[1], 0, 1),
        Err(anygram::Error::InvalidArgument(_))
    ));
}

/// The definition with a hash map of windows, for corpora too large for the
/// quadratic oracle.
fn hashed_dedup_self(shards: &[Vec<Vec<u32>>], min_len: usize) -> Vec<(u64, Vec<(u64, u64)>)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (d, doc) in all_docs(shards).iter().enumerate() {
        let marked: Vec<bool> = (0..doc.len())
            .map(|a| a + min_len <= doc.len() && !seen.insert(&doc[a..a + min_len]))
            .collect();
        let ranges = ranges_of(&marked, min_len);
        if !ranges.is_empty() {
            out.push((d as u64, ranges));
        }
    }
    out
}

#[test]
fn self_dedup_merges_large_shards_in_parallel_parts() {
    // Shards larger than one part of the merge, over 3 token values: windows of
    // 10 tokens repeat within and across shards, and around part cuts.
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let shards: Vec<Vec<Vec<u32>>> = [300_000usize, 40_000, 280_000]
        .iter()
        .map(|&size| {
            let mut docs = Vec::new();
            let mut total = 0;
            while total < size {
                let len = rng.gen_range(0..3000);
                docs.push((0..len).map(|_| rng.gen_range(0..3)).collect::<Vec<u32>>());
                total += len + 1;
            }
            docs
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let engine = write_index(dir.path(), &shards, TokenWidth::U16);
    for min_len in [10u64, 16] {
        assert_eq!(
            engine_dedup_self(&engine, min_len),
            hashed_dedup_self(&shards, min_len as usize)
        );
    }
    // Cross: the first two shards against an index of the third, merged in parts.
    let other_dir = tempfile::tempdir().unwrap();
    let mine_dir = tempfile::tempdir().unwrap();
    let other = write_index(other_dir.path(), &shards[2..], TokenWidth::U16);
    let mine = write_index(mine_dir.path(), &shards[..2], TokenWidth::U16);
    let control = ScanControl::default();
    let merged: Vec<_> = mine
        .dedup_against_all(&other, 12, &control)
        .unwrap()
        .into_iter()
        .map(|d| (d.doc_ix, d.ranges))
        .collect();
    assert_eq!(merged, engine_dedup_against(&mine, &other, 12));
    assert!(!merged.is_empty());
}
