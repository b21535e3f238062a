//! The search accelerator (`accel.{s}`): a search through it equals the plain
//! binary search and a brute-force count, whatever its shape; a stale or damaged
//! file never changes an answer; the read counter shows ≤ 3 dependent reads per
//! shard once the levels above the bottom one are resident.

mod common;

use std::path::Path;

use anygram::accel::SearchPath;
use anygram::accel::{self, WriteOptions};
use anygram::TokenWidth;
use common::{big_corpus, open_searching, open_with as open, write_plain_index};
use proptest::prelude::*;

fn brute_count(stream: &[u32], query: &[u32]) -> u64 {
    stream.windows(query.len()).filter(|w| *w == query).count() as u64
}

/// Ids whose little-endian bytes sort differently from their values (256 < 255
/// by bytes), and the largest id, which is all ones but the separator.
fn alphabet(width: TokenWidth) -> Vec<u32> {
    match width {
        TokenWidth::U8 => vec![0, 1, 2, 0x80, 0xFE],
        TokenWidth::U16 => vec![0, 1, 0xFF, 0x100, 0x101, 0xFFFE],
        TokenWidth::U32 => vec![0, 1, 0x100, 0x1_0000, 0x100_0000, 0xFFFF_FFFE],
    }
}

fn corpus() -> impl Strategy<Value = (TokenWidth, Vec<Vec<u32>>)> {
    prop_oneof![
        Just(TokenWidth::U8),
        Just(TokenWidth::U16),
        Just(TokenWidth::U32)
    ]
    .prop_flat_map(|width| {
        let symbols = alphabet(width);
        // Few symbols, often the same: long repeats, so long ties on the keys.
        let token = prop::sample::select(symbols);
        let doc = prop::collection::vec(token, 0..40);
        (Just(width), prop::collection::vec(doc, 1..6))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn accelerated_search_equals_plain_search(
        (width, docs) in corpus(),
        rate in 1u64..5,
        key_bytes in 1usize..7,
        node_keys in 2u64..5,
        resident in prop_oneof![Just(Some(0u64)), Just(None), Just(Some(u64::MAX))],
        picks in prop::collection::vec((0usize..1000, 0usize..1000, 1usize..12), 1..8),
        random in prop::collection::vec(prop::collection::vec(0usize..6, 1..10), 1..5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_plain_index(dir.path(), &docs, width, 1);
        let plain = open(dir.path(), width, false, None);
        accel::write(dir.path(), &plain.shards()[0], &WriteOptions { rate, key_bytes, node_keys: Some(node_keys) }).unwrap();
        let fast = open(dir.path(), width, true, resident);
        // The search a shard whose reads come from RAM runs: the plain one
        // inside the bracket of the tree's keys.
        let narrowed = open_searching(dir.path(), width, true, resident, SearchPath::Narrowed);
        let tree = fast.shards()[0].accelerator().expect("the accelerator is attached");
        prop_assert!(tree.resident_levels() >= 1);
        prop_assert!(anygram::verify::verify(&fast).problems.is_empty());

        let sep = width.separator();
        let stream: Vec<u32> = docs.iter().flat_map(|d| std::iter::once(sep).chain(d.iter().copied())).collect();
        let symbols = alphabet(width);
        // Substrings of the corpus (matches, often longer than a key) and random patterns.
        let mut queries: Vec<Vec<u32>> = picks.iter().map(|&(doc, start, len)| {
            let doc = &docs[doc % docs.len()];
            if doc.is_empty() { return vec![symbols[0]]; }
            let start = start % doc.len();
            doc[start..doc.len().min(start + len)].to_vec()
        }).collect();
        queries.extend(random.iter().map(|q| q.iter().map(|&i| symbols[i % symbols.len()]).collect::<Vec<u32>>()));
        for query in &queries {
            let expected = plain.find(query).unwrap();
            let got = fast.find(query).unwrap();
            prop_assert_eq!(&got, &expected, "query {:?}", query);
            prop_assert_eq!(got.count, brute_count(&stream, query));
            prop_assert_eq!(&narrowed.find(query).unwrap(), &expected, "narrowed, query {:?}", query);
            // Narrow windows (a context's range) and ∞-gram back-off.
            if let Some((&last, context)) = query.split_last() {
                let (prob, infgram) = (plain.prob(context, last).unwrap(), plain.infgram_prob(context, last).unwrap());
                prop_assert_eq!(fast.prob(context, last).unwrap(), prob);
                prop_assert_eq!(fast.infgram_prob(context, last).unwrap(), infgram);
                prop_assert_eq!(narrowed.prob(context, last).unwrap(), prob);
                prop_assert_eq!(narrowed.infgram_prob(context, last).unwrap(), infgram);
            }
        }
        prop_assert!(!tree.is_disabled(), "a correct accelerator was found inconsistent");
        prop_assert!(!narrowed.shards()[0].accelerator().unwrap().is_disabled());
    }
}

#[test]
fn three_dependent_reads_per_shard_after_the_resident_levels() {
    let dir = tempfile::tempdir().unwrap();
    let width = TokenWidth::U16;
    let docs = big_corpus(300_000, 7);
    write_plain_index(dir.path(), &docs, width, 1);
    let plain = open(dir.path(), width, false, None);
    // Small nodes, so that the tree has several levels on this small shard.
    let options = WriteOptions {
        node_keys: Some(8),
        ..WriteOptions::default()
    };
    accel::write(dir.path(), &plain.shards()[0], &options).unwrap();
    let probe = open(dir.path(), width, true, Some(0));
    let tree = probe.shards()[0].accelerator().unwrap();
    let levels = tree.num_levels();
    assert!(levels >= 3, "{levels} levels");
    assert_eq!(
        tree.resident_levels(),
        1,
        "a zero budget keeps only the root"
    );
    // All levels but the bottom one in RAM.
    let budget = tree.top_levels_bytes(levels - 1);
    let fast = open(dir.path(), width, true, Some(budget));
    assert_eq!(
        fast.shards()[0].accelerator().unwrap().resident_levels(),
        levels - 1
    );

    let max_tokens = accel::DEFAULT_KEY_BYTES / width.bytes();
    let mut plain_rounds = 0;
    for (i, doc) in docs.iter().take(200).enumerate() {
        let len = 1 + i % max_tokens;
        let query = &doc[..doc.len().min(len)];
        let (found, reads) = anygram::reads::record(|| fast.find(query).unwrap());
        assert_eq!(found, plain.find(query).unwrap());
        assert!(reads.max_rounds_per_shard() <= 3, "{query:?}: {reads:?}");
        let pages: u64 = reads
            .pages
            .iter()
            .filter(|(f, _)| f.starts_with("accel"))
            .map(|(_, p)| p)
            .sum();
        assert!(pages <= 2, "one bottom node per bound: {reads:?}");
        // The tries: one pointer (and the text at it, which may straddle two
        // pages) per bound, never the k-ary finishing over the bucket.
        let table = reads.pages.get("table.0").copied().unwrap_or(0);
        let text = reads.pages.get("tokenized.0").copied().unwrap_or(0);
        assert!(table <= 2 && text <= 4, "{query:?}: {reads:?}");
        let (_, reads) = anygram::reads::record(|| plain.find(query).unwrap());
        plain_rounds = plain_rounds.max(reads.max_rounds_per_shard());
        // With only the root in RAM, each level below costs one more round.
        let (found, reads) = anygram::reads::record(|| probe.find(query).unwrap());
        assert_eq!(found, plain.find(query).unwrap());
        assert!(
            reads.max_rounds_per_shard() <= (levels - 1) as u64 + 2,
            "{reads:?}"
        );
    }
    // The plain binary search: two reads per probe, about 2·log2(tokens).
    assert!(plain_rounds >= 30, "{plain_rounds}");
}

#[test]
fn long_patterns_tied_on_their_keys_finish_in_few_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let width = TokenWidth::U8;
    // One long repeated document: every suffix shares its first key bytes with thousands of others.
    let docs = vec![vec![7u32; 50_000]];
    write_plain_index(dir.path(), &docs, width, 1);
    let plain = open(dir.path(), width, false, None);
    accel::write(
        dir.path(),
        &plain.shards()[0],
        &WriteOptions {
            rate: 4,
            key_bytes: 4,
            node_keys: None,
        },
    )
    .unwrap();
    let fast = open(dir.path(), width, true, Some(u64::MAX));
    for len in [5, 100, 20_000, 49_999, 50_000, 50_001] {
        let query = vec![7u32; len];
        let (found, reads) = anygram::reads::record(|| fast.find(&query).unwrap());
        assert_eq!(found, plain.find(&query).unwrap(), "len {len}");
        assert_eq!(found.count, 50_001u64.saturating_sub(len as u64));
        // k-ary rounds of 16+ probes over 50,000 ranks: a handful of pointer+text pairs.
        assert!(reads.max_rounds_per_shard() <= 10, "len {len}: {reads:?}");
    }
}

/// A 5,000-token corpus; `shift` changes every token, keeping the sizes.
fn corpus_files(dir: &Path, shift: u32, width: TokenWidth) -> Vec<Vec<u32>> {
    let docs: Vec<Vec<u32>> = big_corpus(5_000, 3)
        .into_iter()
        .map(|d| d.into_iter().map(|t| (t + shift) % 600).collect())
        .collect();
    write_plain_index(dir, &docs, width, 1);
    docs
}

#[test]
fn a_stale_accelerator_is_ignored() {
    let width = TokenWidth::U16;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Same sizes, other content: only the fingerprint tells them apart.
    corpus_files(a.path(), 0, width);
    corpus_files(b.path(), 1, width);
    assert_eq!(
        std::fs::metadata(a.path().join("table.0")).unwrap().len(),
        std::fs::metadata(b.path().join("table.0")).unwrap().len()
    );
    let engine_a = open(a.path(), width, false, None);
    accel::write(a.path(), &engine_a.shards()[0], &WriteOptions::default()).unwrap();
    std::fs::copy(a.path().join("accel.0"), b.path().join("accel.0")).unwrap();
    let engine_b = open(b.path(), width, true, None);
    assert!(engine_b.shards()[0].accelerator().is_none());
    let problems = anygram::verify::verify(&engine_b).problems;
    assert!(problems.iter().any(|p| p.contains("stale")), "{problems:?}");
}

#[test]
fn a_damaged_accelerator_never_changes_an_answer() {
    let width = TokenWidth::U16;
    let dir = tempfile::tempdir().unwrap();
    let docs = corpus_files(dir.path(), 0, width);
    let plain = open(dir.path(), width, false, None);
    let options = WriteOptions {
        rate: 4,
        node_keys: Some(4),
        ..WriteOptions::default()
    };
    let path = accel::write(dir.path(), &plain.shards()[0], &options).unwrap();
    let original = std::fs::read(&path).unwrap();

    // The body: the header still matches, so it is attached; the first search
    // that lands on a damaged key sees the contradiction and stops using it.
    let mut damaged = original.clone();
    let len = damaged.len();
    for byte in &mut damaged[len - 3000..] {
        *byte = 0xFF;
    }
    std::fs::write(&path, &damaged).unwrap();
    let fast = open(dir.path(), width, true, Some(0));
    assert!(fast.shards()[0].accelerator().is_some());
    for doc in docs.iter().take(60) {
        for len in [1, 2, 3] {
            let query = &doc[..doc.len().min(len)];
            assert_eq!(
                fast.find(query).unwrap(),
                plain.find(query).unwrap(),
                "{query:?}"
            );
        }
    }
    assert!(fast.shards()[0].accelerator().unwrap().is_disabled());
    let problems = anygram::verify::verify(&fast).problems;
    assert!(
        problems.iter().any(|p| p.contains("checksum")),
        "{problems:?}"
    );

    // The header: detected at open.
    let mut damaged = original.clone();
    damaged[20] ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    let fast = open(dir.path(), width, true, None);
    assert!(fast.shards()[0].accelerator().is_none());
    assert!(!anygram::verify::verify(&fast).problems.is_empty());

    // Truncated.
    std::fs::write(&path, &original[..original.len() - 1]).unwrap();
    let fast = open(dir.path(), width, true, None);
    assert!(fast.shards()[0].accelerator().is_none());

    // Restored: attached and clean.
    std::fs::write(&path, &original).unwrap();
    let fast = open(dir.path(), width, true, None);
    assert!(fast.shards()[0].accelerator().is_some());
    assert!(anygram::verify::verify(&fast).problems.is_empty());
}

#[test]
fn write_options_are_checked() {
    let width = TokenWidth::U8;
    let dir = tempfile::tempdir().unwrap();
    write_plain_index(dir.path(), &[vec![1, 2, 3]], width, 1);
    let engine = open(dir.path(), width, false, None);
    let shard = &engine.shards()[0];
    for (options, needle) in [
        (
            WriteOptions {
                rate: 0,
                ..WriteOptions::default()
            },
            "rate",
        ),
        (
            WriteOptions {
                key_bytes: 0,
                ..WriteOptions::default()
            },
            "key bytes",
        ),
        (
            WriteOptions {
                key_bytes: 256,
                ..WriteOptions::default()
            },
            "key bytes",
        ),
        (
            WriteOptions {
                node_keys: Some(1),
                ..WriteOptions::default()
            },
            "node",
        ),
        (
            WriteOptions {
                key_bytes: 255,
                node_keys: Some(17),
                ..WriteOptions::default()
            },
            "node",
        ),
    ] {
        let err = accel::write(dir.path(), shard, &options).unwrap_err();
        assert!(matches!(err, anygram::Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert!(!dir.path().join("accel.0").exists());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().contains("tmp")),
        "{names:?}"
    );
}

/// Corpora longer than the tries' 256-byte span (suffixes that end inside it
/// are at the shard's end), with long repeats:
/// copies of one document, so that neighbouring suffixes share ≥ 255 bytes and
/// long patterns tie on their keys across buckets.
fn repetitive_corpus() -> impl Strategy<Value = (TokenWidth, Vec<Vec<u32>>)> {
    prop_oneof![
        Just(TokenWidth::U8),
        Just(TokenWidth::U16),
        Just(TokenWidth::U32)
    ]
    .prop_flat_map(|width| {
        let token = prop::sample::select(alphabet(width));
        let base = prop::collection::vec(token.clone(), 100..400);
        let other = prop::collection::vec(prop::collection::vec(token, 0..300), 1..6);
        (Just(width), base, 2usize..8, other)
    })
    .prop_map(|(width, base, copies, other)| {
        let mut docs: Vec<Vec<u32>> = (0..copies).map(|_| base.clone()).collect();
        docs.extend(other);
        (width, docs)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// The tries' blind descent and placement against brute force and the plain
    /// search: every width, ids whose byte order differs from their value order,
    /// LCPs that saturate at 255, patterns past 254 bytes (finished in the suffix
    /// array), and a correct file is never found inconsistent.
    #[test]
    fn trie_search_equals_brute_force(
        (width, docs) in repetitive_corpus(),
        rate in prop_oneof![Just(2u64), Just(5), Just(16), Just(64)],
        key_bytes in prop_oneof![Just(1usize), Just(3), Just(8), Just(32)],
        node_keys in prop_oneof![Just(None), Just(Some(2u64)), Just(Some(3))],
        picks in prop::collection::vec((0usize..1000, 0usize..1000, 1usize..150), 1..12),
        random in prop::collection::vec(prop::collection::vec(0usize..6, 1..6), 1..5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_plain_index(dir.path(), &docs, width, 1);
        let plain = open(dir.path(), width, false, None);
        accel::write(dir.path(), &plain.shards()[0], &WriteOptions { rate, key_bytes, node_keys }).unwrap();
        let fast = open(dir.path(), width, true, Some(0));
        let tree = fast.shards()[0].accelerator().expect("the accelerator is attached");

        let sep = width.separator();
        let stream: Vec<u32> = docs.iter().flat_map(|d| std::iter::once(sep).chain(d.iter().copied())).collect();
        let symbols = alphabet(width);
        let mut queries: Vec<Vec<u32>> = picks.iter().map(|&(doc, start, len)| {
            let doc = &docs[doc % docs.len()];
            if doc.is_empty() { return vec![symbols[1]]; }
            let start = start % doc.len();
            doc[start..doc.len().min(start + len)].to_vec()
        }).collect();
        // A match plus one more token: right beside the matches in suffix order.
        let extended: Vec<Vec<u32>> = queries.iter().flat_map(|q| {
            symbols.iter().map(move |&s| q.iter().copied().chain(std::iter::once(s)).collect())
        }).collect();
        queries.extend(extended);
        queries.extend(random.iter().map(|q| q.iter().map(|&i| symbols[i % symbols.len()]).collect::<Vec<u32>>()));
        let narrowed = open_searching(dir.path(), width, true, Some(0), SearchPath::Narrowed);
        // The default: the tree until the shard's reads prove to come from RAM, then mostly narrowed.
        let adaptive = open_searching(dir.path(), width, true, Some(0), SearchPath::Adaptive);
        for query in queries.iter().chain(&queries) {
            let got = fast.find(query).unwrap();
            prop_assert_eq!(got.count, brute_count(&stream, query), "query {:?}", query);
            prop_assert_eq!(&got, &plain.find(query).unwrap(), "query {:?}", query);
            prop_assert_eq!(&narrowed.find(query).unwrap(), &got, "narrowed, query {:?}", query);
            prop_assert_eq!(&adaptive.find(query).unwrap(), &got, "adaptive, query {:?}", query);
        }
        prop_assert!(!tree.is_disabled(), "a correct accelerator was found inconsistent");
    }
}

/// Flips one bit in the trie bytes of every bottom node that the resident
/// levels do not hold: each damaged node fails its checksum when read, the
/// search finishes without the accelerator (warned once), and every answer
/// stays right.
#[test]
fn a_flipped_bit_in_a_trie_is_never_a_wrong_answer() {
    let dir = tempfile::tempdir().unwrap();
    let width = TokenWidth::U16;
    let docs = big_corpus(60_000, 11);
    write_plain_index(dir.path(), &docs, width, 1);
    let plain = open(dir.path(), width, false, None);
    let path = accel::write(dir.path(), &plain.shards()[0], &WriteOptions::default()).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let probe = open(dir.path(), width, true, Some(0));
    let tree = probe.shards()[0].accelerator().unwrap();
    // The bottom level is the file's tail; its nodes are whole pages (default layout).
    let bottom_start = 4096 + tree.top_levels_bytes(tree.num_levels() - 1) as usize;
    assert_eq!(bottom_start % 4096, 0);
    // Byte key_bytes + 1 + 5 of a node: the LCP of rank 5 in its first bucket.
    let lcp_5 = tree.key_bytes() + 1 + 5;
    for node in (bottom_start..bytes.len()).step_by(4096) {
        bytes[node + lcp_5] ^= 0x04;
    }
    std::fs::write(&path, &bytes).unwrap();
    let fast = open(dir.path(), width, true, Some(0));
    let narrowed = open_searching(dir.path(), width, true, Some(0), SearchPath::Narrowed);
    assert!(
        fast.shards()[0].accelerator().is_some(),
        "the header and root are intact"
    );
    for doc in docs.iter().take(40) {
        for len in [1, 2, 4] {
            let query = &doc[..doc.len().min(len)];
            let expected = plain.find(query).unwrap();
            assert_eq!(fast.find(query).unwrap(), expected, "{query:?}");
            assert_eq!(
                narrowed.find(query).unwrap(),
                expected,
                "narrowed, {query:?}"
            );
        }
    }
    assert!(fast.shards()[0].accelerator().unwrap().is_disabled());
    assert!(narrowed.shards()[0].accelerator().unwrap().is_disabled());
    // A resident damaged node is refused at open.
    let resident = open(dir.path(), width, true, Some(u64::MAX));
    assert!(resident.shards()[0].accelerator().is_none());
    let problems = anygram::verify::verify(&fast).problems;
    assert!(
        problems.iter().any(|p| p.contains("checksum")),
        "{problems:?}"
    );
}

/// A version-1 file (the k-ary accelerator, no tries) is ignored with a
/// warning, and `verify` says to rebuild it.
#[test]
fn a_version_1_accelerator_is_ignored_and_verify_says_to_rebuild_it() {
    let width = TokenWidth::U16;
    let dir = tempfile::tempdir().unwrap();
    corpus_files(dir.path(), 0, width);
    let plain = open(dir.path(), width, false, None);
    let path = accel::write(dir.path(), &plain.shards()[0], &WriteOptions::default()).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        accel::FORMAT_VERSION
    );
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    // Re-seal the header so that only the version differs.
    let levels = u32::from_le_bytes(bytes[36..40].try_into().unwrap()) as usize;
    let checksum_at = 88 + 8 * levels;
    let checksum = xxhash_rust::xxh3::xxh3_64(&bytes[..checksum_at]);
    bytes[checksum_at..checksum_at + 8].copy_from_slice(&checksum.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let engine = open(dir.path(), width, true, None);
    assert!(engine.shards()[0].accelerator().is_none());
    let problems = anygram::verify::verify(&engine).problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("version 1") && p.contains("add-accelerator")),
        "{problems:?}"
    );
    assert_eq!(engine.find(&[1]).unwrap(), plain.find(&[1]).unwrap());
}

/// Next-token sampling reads a pointer and a token per sampled rank: the
/// counter sees them (an ntd costs more than its context's search).
#[test]
fn next_token_sampling_reads_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let width = TokenWidth::U16;
    let docs = big_corpus(20_000, 5);
    write_plain_index(dir.path(), &docs, width, 1);
    let engine = open(dir.path(), width, false, None);
    let context = &docs[0][..1];
    let (_, search) = anygram::reads::record(|| engine.find(context).unwrap());
    let (ntd, sampled) = anygram::reads::record(|| engine.ntd(context, 1000).unwrap());
    assert!(ntd.prompt_count > 1);
    assert!(
        sampled.max_rounds_per_shard() >= search.max_rounds_per_shard() + 2,
        "{search:?} {sampled:?}"
    );
    assert!(
        sampled.pages["tokenized.0"] > search.pages["tokenized.0"],
        "{sampled:?}"
    );
}
