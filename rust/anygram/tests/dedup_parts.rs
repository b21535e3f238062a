//! Self dedup split by key range (`Engine::dedup_self_split_keys`,
//! `Engine::dedup_self_part`, the unit of work of a Ray task): on random small
//! multi-shard corpora of every token width, with ids whose byte order differs
//! from their numeric order, the parts' ranges united per document are
//! `dedup_self`'s and a brute-force oracle's, and the parts cover every suffix
//! exactly once.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anygram::scan::{DocRanges, ScanControl};
use anygram::{Engine, OpenOptions, TokenWidth};
use common::IndexSpec;
use proptest::prelude::*;

type Ranges = Vec<(u64, Vec<(u64, u64)>)>;

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
    Engine::open(dir, &options).unwrap()
}

/// The definition: a window is removed when an earlier position of the corpus
/// (documents in global order) holds the same tokens; ranges are the union of
/// removed windows.
fn oracle(shards: &[Vec<Vec<u32>>], min_len: usize) -> Ranges {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (d, doc) in shards.iter().flatten().enumerate() {
        let mut covered = vec![false; doc.len()];
        for a in 0..doc.len().saturating_sub(min_len - 1) {
            if !seen.insert(&doc[a..a + min_len]) {
                covered[a..a + min_len].iter_mut().for_each(|c| *c = true);
            }
        }
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for (i, _) in covered.iter().enumerate().filter(|(_, &c)| c) {
            match ranges.last_mut() {
                Some(last) if last.1 == i as u64 => last.1 += 1,
                _ => ranges.push((i as u64, i as u64 + 1)),
            }
        }
        if !ranges.is_empty() {
            out.push((d as u64, ranges));
        }
    }
    out
}

/// Ranges united per document (overlapping or touching ranges become one), as
/// the Ray driver merges the parts' results.
fn united(parts: Vec<Vec<DocRanges>>) -> Ranges {
    let mut per_doc: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for part in parts {
        for d in part {
            per_doc.entry(d.doc_ix).or_default().extend(d.ranges);
        }
    }
    per_doc
        .into_iter()
        .map(|(doc, mut ranges)| {
            ranges.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::new();
            for (a, b) in ranges {
                match merged.last_mut() {
                    Some(last) if a <= last.1 => last.1 = last.1.max(b),
                    _ => merged.push((a, b)),
                }
            }
            (doc, merged)
        })
        .collect()
}

fn plain(docs: Vec<DocRanges>) -> Ranges {
    docs.into_iter().map(|d| (d.doc_ix, d.ranges)).collect()
}

/// The parts of `keys` (`[keys[j-1], keys[j])`, open at both ends), each run on
/// its own, checking the progress each reports against its work.
fn by_parts(engine: &Engine, min_len: u64, keys: &[Vec<u8>]) -> Vec<Vec<DocRanges>> {
    let mut bounds: Vec<Option<&[u8]>> = vec![None];
    bounds.extend(keys.iter().map(|k| Some(k.as_slice())));
    bounds.push(None);
    let mut work = 0;
    let parts = bounds
        .windows(2)
        .map(|b| {
            let control = ScanControl::default();
            let part = engine
                .dedup_self_part(min_len, b[0], b[1], &control)
                .unwrap();
            let part_work = engine.dedup_self_part_work(min_len, b[0], b[1]).unwrap();
            assert_eq!(control.done(), part_work);
            work += part_work;
            part
        })
        .collect();
    assert_eq!(
        work,
        engine.num_tokens(),
        "the parts cover every suffix once"
    );
    parts
}

/// 1-4 shards of 1-6 documents of up to 20 tokens over three ids whose byte
/// order differs from their values, and the largest id.
fn corpus(width: TokenWidth) -> impl Strategy<Value = Vec<Vec<Vec<u32>>>> {
    let max_id = width.separator() - 1;
    let token = prop_oneof![
        6 => (0u32..3).prop_map(move |s| common::mixed_id(width, s)),
        1 => Just(max_id)
    ];
    let doc = prop::collection::vec(token, 0..20);
    prop::collection::vec(prop::collection::vec(doc, 1..6), 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn parts_united_are_the_whole_self_dedup(
        (width, shards) in common::any_width().prop_flat_map(|w| (Just(w), corpus(w))),
        min_len in 1u64..6,
        parts in 1u64..8,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = write_index(dir.path(), &shards, width);
        let keys = engine.dedup_self_split_keys(min_len, parts).unwrap();
        prop_assert!(keys.len() < parts as usize);
        prop_assert!(keys.windows(2).all(|k| k[0] < k[1]), "split keys increase");
        let whole = plain(engine.dedup_self(min_len, &ScanControl::default()).unwrap());
        prop_assert_eq!(&whole, &oracle(&shards, min_len as usize));
        prop_assert_eq!(united(by_parts(&engine, min_len, &keys)), whole.clone());
        // Any increasing whole-token keys split it as well, not only sampled windows:
        // here every window of one shard, so that parts are cut between the
        // neighbours of every run.
        let w = width.bytes();
        let text = engine.shards()[0].tokenized().unwrap();
        let mut every: Vec<Vec<u8>> = (0..text.len() / w)
            .map(|t| text[t * w..text.len().min((t + min_len as usize) * w)].to_vec())
            .collect();
        every.sort();
        every.dedup();
        prop_assert_eq!(united(by_parts(&engine, min_len, &every)), whole);
    }
}

#[test]
fn split_keys_give_parts_of_similar_sizes_on_a_large_corpus() {
    // Three shards of ~100K u16 tokens, windows of 8 tokens mostly distinct.
    let shards: Vec<Vec<Vec<u32>>> = (0..3).map(|s| common::big_corpus(100_000, s)).collect();
    let dir = tempfile::tempdir().unwrap();
    let engine = write_index(dir.path(), &shards, TokenWidth::U16);
    let keys = engine.dedup_self_split_keys(8, 6).unwrap();
    assert_eq!(keys.len(), 5);
    let parts = by_parts(&engine, 8, &keys);
    let mut bounds: Vec<Option<&[u8]>> = vec![None];
    bounds.extend(keys.iter().map(|k| Some(k.as_slice())));
    bounds.push(None);
    let ideal = engine.num_tokens() / 6;
    for b in bounds.windows(2) {
        let work = engine.dedup_self_part_work(8, b[0], b[1]).unwrap();
        assert!(
            work.abs_diff(ideal) < ideal / 5,
            "a part of {work} suffixes, ideally {ideal}"
        );
    }
    let whole = plain(engine.dedup_self(8, &ScanControl::default()).unwrap());
    assert_eq!(united(parts), whole);
    assert_eq!(whole, oracle(&shards, 8));
}

#[test]
fn a_window_repeated_everywhere_is_never_cut() {
    // One token repeated: every whole window inside a document is the same key,
    // so however many parts are asked for, its run stays in one and only the
    // first copy is kept.
    let shards = vec![vec![vec![7u32; 50], vec![7; 30]], vec![vec![7; 40]]];
    let dir = tempfile::tempdir().unwrap();
    let engine = write_index(dir.path(), &shards, TokenWidth::U16);
    let keys = engine.dedup_self_split_keys(4, 7).unwrap();
    let whole = plain(engine.dedup_self(4, &ScanControl::default()).unwrap());
    assert_eq!(united(by_parts(&engine, 4, &keys)), whole);
    assert_eq!(whole, oracle(&shards, 4));
}

#[test]
fn bad_part_arguments_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let engine = write_index(dir.path(), &[vec![vec![1, 2, 3]]], TokenWidth::U16);
    let control = ScanControl::default();
    let invalid =
        |r: anygram::Result<Vec<DocRanges>>| matches!(r, Err(anygram::Error::InvalidArgument(_)));
    assert!(invalid(engine.dedup_self_part(
        2,
        Some(&[1]),
        None,
        &control
    )));
    assert!(invalid(engine.dedup_self_part(
        2,
        Some(&[0, 2]),
        Some(&[0, 1]),
        &control
    )));
    assert!(invalid(engine.dedup_self_part(0, None, None, &control)));
    for parts in [0, anygram::scan::MAX_DEDUP_PARTS + 1] {
        assert!(matches!(
            engine.dedup_self_split_keys(2, parts),
            Err(anygram::Error::InvalidArgument(_))
        ));
    }
    // lo == hi: an empty part.
    assert_eq!(
        engine
            .dedup_self_part(2, Some(&[0, 2]), Some(&[0, 2]), &control)
            .unwrap(),
        vec![]
    );
}
