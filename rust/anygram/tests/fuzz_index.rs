//! Fuzzing index loading, bounded in time so that it runs in CI.
//!
//! Each case builds a small random index with a manifest, damages it (byte
//! flips, truncations, extensions, offsets set to random, misaligned or huge
//! values, suffix-array entries swapped or overwritten, manifest fields
//! changed, files removed) and then asserts that opening it, every query kind
//! and `verify` never panic; and that whenever `verify` finds nothing wrong,
//! every answer equals a brute-force oracle over the damaged files' tokens (no
//! wrong answer that verify misses).
//!
//! `ANYGRAM_FUZZ_SECS` bounds the run (default 3 seconds); `ANYGRAM_FUZZ_SEED`
//! picks the first seed (default 0). Case `i` uses seed `first + i`, printed
//! with its damage when it fails, so `ANYGRAM_FUZZ_SEED=<seed>` replays it first.

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use anygram::format::read_u64_at;
use anygram::scan::ScanControl;
use anygram::{Engine, ScoreOptions, TokenWidth};
use common::{byte_order_tokens, write_index, IndexSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const FILES: &[&str] = &[
    "tokenized",
    "table",
    "offset",
    "metadata",
    "metaoff",
    "anygram.json",
];

/// Damages the index in `dir` once, returning what it did.
fn mutate(dir: &Path, rng: &mut StdRng, shards: usize, width: TokenWidth) -> String {
    let shard = rng.gen_range(0..shards);
    let pick = |rng: &mut StdRng| -> std::path::PathBuf {
        let name = FILES[rng.gen_range(0..FILES.len())];
        if name == "anygram.json" {
            dir.join(name)
        } else {
            dir.join(format!("{name}.{shard}"))
        }
    };
    let w = width.bytes() as u64;
    match rng.gen_range(0..10) {
        0 => {
            let path = pick(rng);
            let Ok(mut bytes) = std::fs::read(&path) else {
                return format!("flip: no {}", path.display());
            };
            if bytes.is_empty() {
                return format!("flip: {} is empty", path.display());
            }
            let at = rng.gen_range(0..bytes.len());
            bytes[at] ^= 1 << rng.gen_range(0..8);
            std::fs::write(&path, bytes).unwrap();
            format!("flip a bit of byte {at} of {}", path.display())
        }
        1 => {
            let path = pick(rng);
            let Ok(bytes) = std::fs::read(&path) else {
                return format!("truncate: no {}", path.display());
            };
            let len = rng.gen_range(0..=bytes.len());
            std::fs::write(&path, &bytes[..len]).unwrap();
            format!("truncate {} to {len}", path.display())
        }
        2 => {
            let path = pick(rng);
            let Ok(mut bytes) = std::fs::read(&path) else {
                return format!("extend: no {}", path.display());
            };
            let extra: Vec<u8> = (0..rng.gen_range(1..=16)).map(|_| rng.gen()).collect();
            bytes.extend_from_slice(&extra);
            std::fs::write(&path, bytes).unwrap();
            format!("extend {} by {extra:?}", path.display())
        }
        3 | 4 => {
            let path = dir.join(format!("offset.{shard}"));
            let Ok(mut bytes) = std::fs::read(&path) else {
                return format!("no {}", path.display());
            };
            let entries = bytes.len() / 8;
            if entries == 0 {
                return "offset: none".into();
            }
            let entry = rng.gen_range(0..entries);
            let old = read_u64_at(&bytes, entry);
            let size =
                std::fs::metadata(dir.join(format!("tokenized.{shard}"))).map_or(0, |m| m.len());
            let value = match rng.gen_range(0..6) {
                0 => rng.gen(),
                1 => old.wrapping_add(1), // misaligned (or a byte off for u8)
                2 => u64::MAX - rng.gen_range(0..4),
                3 => size.wrapping_sub(rng.gen_range(0..2 * w)),
                4 => rng.gen_range(0..size.max(1)) / w * w, // on the grid, anywhere
                _ => {
                    if entry > 0 {
                        read_u64_at(&bytes, entry - 1)
                    } else {
                        size
                    }
                }
            };
            bytes[entry * 8..entry * 8 + 8].copy_from_slice(&value.to_le_bytes());
            std::fs::write(&path, bytes).unwrap();
            format!("offset.{shard} entry {entry}: {old} -> {value}")
        }
        5 => {
            let path = dir.join(format!("table.{shard}"));
            let Ok(mut bytes) = std::fs::read(&path) else {
                return format!("no {}", path.display());
            };
            let tokens = std::fs::metadata(dir.join(format!("tokenized.{shard}")))
                .map_or(0, |m| m.len())
                / w;
            if tokens < 2 || !(bytes.len() as u64).is_multiple_of(tokens) {
                return "swap: too small".into();
            }
            let ps = bytes.len() / tokens as usize;
            let (a, b) = (
                rng.gen_range(0..tokens as usize),
                rng.gen_range(0..tokens as usize),
            );
            for k in 0..ps {
                bytes.swap(a * ps + k, b * ps + k);
            }
            std::fs::write(&path, bytes).unwrap();
            format!("table.{shard}: swap entries {a} and {b}")
        }
        6 => {
            let path = dir.join(format!("table.{shard}"));
            let Ok(mut bytes) = std::fs::read(&path) else {
                return format!("no {}", path.display());
            };
            let tokens = std::fs::metadata(dir.join(format!("tokenized.{shard}")))
                .map_or(0, |m| m.len())
                / w;
            if tokens == 0 || !(bytes.len() as u64).is_multiple_of(tokens) {
                return "table entry: none".into();
            }
            let ps = bytes.len() / tokens as usize;
            if ps > 8 {
                return "table entry: wider than 8 bytes".into();
            }
            let entry = rng.gen_range(0..tokens as usize);
            let value: u64 = if rng.gen() {
                rng.gen()
            } else {
                rng.gen_range(0..tokens * w)
            };
            bytes[entry * ps..(entry + 1) * ps].copy_from_slice(&value.to_le_bytes()[..ps]);
            std::fs::write(&path, bytes).unwrap();
            format!("table.{shard} entry {entry} -> {value}")
        }
        7 | 8 => {
            let path = dir.join("anygram.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                return "manifest: none".into();
            };
            let Ok(mut json) = serde_json::from_str::<serde_json::Value>(&text) else {
                return "manifest: no longer JSON".into();
            };
            if !json.is_object() || !json["shards"].is_array() {
                return "manifest: not an object with shards".into();
            }
            let change = match rng.gen_range(0..9) {
                0 => {
                    json["vocab_size"] = rng.gen_range(0..300u64).into();
                    "vocab_size"
                }
                1 => {
                    json["eos_token_id"] = rng.gen_range(0..300u64).into();
                    "eos_token_id"
                }
                2 => {
                    json["token_width"] = [1u64, 2, 3, 4, 8][rng.gen_range(0..5)].into();
                    "token_width"
                }
                3 => {
                    if let Some(entry) = json["shards"].get_mut(shard) {
                        entry["num_tokens"] = rng.gen_range(0..64u64).into();
                    }
                    "num_tokens"
                }
                4 => {
                    if let Some(entry) = json["shards"].get_mut(shard) {
                        entry["num_documents"] = rng.gen_range(0..8u64).into();
                    }
                    "num_documents"
                }
                5 => {
                    if let Some(entry) = json["shards"].get_mut(shard) {
                        entry["ptr_size"] = rng.gen_range(0..9u64).into();
                    }
                    "ptr_size"
                }
                6 => {
                    let file =
                        ["../x", "/etc/passwd", "tokenizer.json", "a/b"][rng.gen_range(0..4)];
                    json["tokenizer"] = serde_json::json!({ "file": file });
                    "tokenizer"
                }
                7 => {
                    json["format_version"] = rng.gen_range(0..3u64).into();
                    "format_version"
                }
                _ => {
                    json["shards"].as_array_mut().unwrap().pop();
                    "shards"
                }
            };
            std::fs::write(&path, json.to_string()).unwrap();
            format!("manifest: {change} -> {json}")
        }
        _ => {
            let path = pick(rng);
            let _ = std::fs::remove_file(&path);
            format!("remove {}", path.display())
        }
    }
}

/// What the damaged files say, read naively.
struct Corpus {
    width: TokenWidth,
    /// Per shard, its tokens (separators included).
    streams: Vec<Vec<u32>>,
    /// Every document's tokens and metadata, in global order.
    docs: Vec<(Vec<u32>, String)>,
}

fn read_corpus(engine: &Engine) -> Corpus {
    let width = engine.token_width();
    let w = width.bytes();
    let mut streams = Vec::new();
    let mut docs = Vec::new();
    for shard in engine.shards() {
        let stream: Vec<u32> = shard
            .tokenized()
            .expect("a local index")
            .chunks_exact(w)
            .map(|c| width.read_token(c))
            .collect();
        let starts: Vec<usize> = (0..stream.len())
            .filter(|&i| stream[i] == width.separator())
            .collect();
        for (d, &start) in starts.iter().enumerate() {
            let end = starts.get(d + 1).copied().unwrap_or(stream.len());
            let metadata = match shard.metadata().expect("a local index") {
                Some((meta, metaoff)) => {
                    let from = read_u64_at(metaoff, d) as usize;
                    let to = if d + 1 < starts.len() {
                        read_u64_at(metaoff, d + 1) as usize
                    } else {
                        meta.len()
                    };
                    String::from_utf8_lossy(&meta[from..to]).into_owned()
                }
                None => String::new(),
            };
            docs.push((stream[start + 1..end].to_vec(), metadata));
        }
        streams.push(stream);
    }
    Corpus {
        width,
        streams,
        docs,
    }
}

impl Corpus {
    fn count(&self, q: &[u32]) -> u64 {
        self.streams
            .iter()
            .map(|s| (0..s.len()).filter(|&i| s[i..].starts_with(q)).count() as u64)
            .sum()
    }
    fn next(&self, q: &[u32], eos: u32) -> Vec<(u32, u64)> {
        let mut counts = BTreeMap::new();
        for s in &self.streams {
            for i in (0..s.len()).filter(|&i| s[i..].starts_with(q)) {
                let t = s
                    .get(i + q.len())
                    .copied()
                    .unwrap_or(self.width.separator());
                let t = if t == self.width.separator() { eos } else { t };
                *counts.entry(t).or_insert(0u64) += 1;
            }
        }
        counts.into_iter().collect()
    }
    fn longest_suffix(&self, context: &[u32]) -> usize {
        (0..=context.len())
            .rev()
            .find(|&n| self.count(&context[context.len() - n..]) > 0)
            .unwrap_or(0)
    }
}

/// Every query kind; panics propagate to the caller. When `oracle` is given
/// (verify found nothing wrong), each answer is compared with it.
fn exercise(engine: &Engine, rng: &mut StdRng, alphabet: &[u32], oracle: Option<&Corpus>) {
    let vocab = engine.vocab_size();
    let eos = engine.eos_token_id();
    let control = ScanControl::default();
    let big = 1u64 << 40;
    for _ in 0..6 {
        let len = rng.gen_range(0..4);
        let q: Vec<u32> = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        let valid = q.iter().all(|&t| (t as u64) < vocab);
        let count = engine.count(&q);
        let ntd = engine.ntd(&q, big);
        let _ = engine.ntd(&q, 1);
        let _ = engine.find(&q);
        let _ = engine.infgram_ntd(&q, 2);
        let _ = engine.search_docs(&q, 3, 4, Some(7));
        let _ = engine.contamination(&q, 1, 3);
        let cnf = vec![vec![q.clone()], vec![alphabet[..2].to_vec()]];
        let _ = engine.find_cnf(&cnf, 3, 2);
        let _ = engine.search_docs_cnf(&cnf, 2, 5, 100, 3, Some(1));
        let _ = engine.score(
            &q,
            &ScoreOptions {
                sparse: true,
                top_max_support: Some(2),
                doc_start: true,
            },
        );
        let scores = engine.score(
            &q,
            &ScoreOptions {
                sparse: true,
                top_max_support: Some(2),
                doc_start: false,
            },
        );
        let Some(oracle) = oracle else { continue };
        if !valid {
            assert!(count.is_err() && ntd.is_err());
            continue;
        }
        assert_eq!(count.unwrap(), oracle.count(&q), "count {q:?}");
        assert_eq!(ntd.unwrap().counts, oracle.next(&q, eos), "ntd {q:?}");
        if let Some((&last, context)) = q.split_last() {
            let p = engine.prob(context, last).unwrap();
            assert_eq!(
                (p.prompt_count, p.cont_count),
                (
                    oracle.count(context),
                    if oracle.count(context) > 0 {
                        oracle.count(&q)
                    } else {
                        0
                    }
                ),
                "prob {q:?}"
            );
            let n = oracle.longest_suffix(context);
            let suffix = &context[context.len() - n..];
            let inf = engine.infgram_prob(context, last).unwrap();
            assert_eq!(
                (inf.suffix_len, inf.prompt_count, inf.cont_count),
                (
                    n,
                    oracle.count(suffix),
                    oracle.count(&[suffix, &[last]].concat())
                ),
                "infgram_prob {q:?}"
            );
            assert_eq!(
                engine.infgram_ntd(context, big).unwrap().counts,
                oracle.next(suffix, eos),
                "infgram_ntd {q:?}"
            );
        }
        let scores = scores.unwrap();
        for i in 0..q.len() {
            let n = oracle.longest_suffix(&q[..i]);
            let suffix = &q[i - n..i];
            assert_eq!(
                (
                    scores.suffix_len[i] as usize,
                    scores.prompt_count[i],
                    scores.cont_count[i]
                ),
                (
                    n,
                    oracle.count(suffix),
                    oracle.count(&[suffix, &[q[i]]].concat())
                ),
                "score {q:?} at {i}"
            );
        }
        let found = engine.search_docs(&q, big, big, Some(3)).unwrap();
        assert_eq!(found.count, oracle.count(&q));
        for doc in &found.documents {
            assert_eq!(
                (&doc.token_ids, &doc.metadata),
                (
                    &oracle.docs[doc.doc_ix as usize].0,
                    &oracle.docs[doc.doc_ix as usize].1
                )
            );
        }
        if let [t] = q.as_slice() {
            let one = engine.find_cnf(&[vec![vec![*t]]], big, 1).unwrap();
            assert_eq!(one.count, oracle.count(&q), "cnf {q:?}");
        }
    }
    let docs = engine.num_documents();
    for d in 0..docs.min(16) {
        let doc = engine.get_doc_by_ix(d, big);
        let _ = engine.get_doc_by_ix(d, 1);
        if let Some(oracle) = oracle {
            let doc = doc.unwrap();
            assert_eq!(
                (&doc.token_ids, &doc.metadata),
                (&oracle.docs[d as usize].0, &oracle.docs[d as usize].1),
                "doc {d}"
            );
        }
    }
    for (s, shard) in engine.shards().iter().enumerate() {
        for rank in 0..shard.num_tokens().min(64) {
            let doc = engine.get_doc_by_rank(s, rank, 3);
            if let Some(oracle) = oracle {
                let doc = doc.unwrap();
                let (full, _) = &oracle.docs[doc.doc_ix as usize];
                assert_eq!(doc.doc_len as usize, full.len());
                let from = doc.offset as usize - doc.needle_offset as usize;
                assert_eq!(doc.token_ids, full[from..from + doc.disp_len as usize]);
            }
        }
    }
    let dedup = engine.dedup_self(2, &control);
    let _ = engine.dedup_against(
        engine,
        0,
        0..engine.shards()[0].num_documents(),
        2,
        &control,
    );
    let _ = engine.dedup_against_all(engine, 1, &control);
    if oracle.is_some() {
        dedup.unwrap();
    }
}

#[test]
fn damaged_indexes_never_panic_and_never_answer_wrong_unnoticed() {
    let secs: f64 = std::env::var("ANYGRAM_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let first: u64 = std::env::var("ANYGRAM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let (mut cases, mut opened, mut verified) = (0u64, 0u64, 0u64);
    // Panics are caught and reported with their seed; keep the default message short.
    while cases == 0 || Instant::now() < deadline {
        let seed = first + cases;
        cases += 1;
        let mut rng = StdRng::seed_from_u64(seed);
        let width = [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32][rng.gen_range(0..3)];
        let tokens = byte_order_tokens(width);
        let alphabet = &tokens[..rng.gen_range(2..=tokens.len())];
        let num_shards = rng.gen_range(1..=2);
        let shards: Vec<Vec<Vec<u32>>> = (0..num_shards)
            .map(|_| {
                (0..rng.gen_range(1..5))
                    .map(|_| {
                        (0..rng.gen_range(0..7))
                            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let spec = IndexSpec {
            shards,
            metadata: rng.gen(),
            manifest: true,
            tokenizer: rng.gen(),
            vocab_size: width.max_vocab_size(),
            eos_token_id: alphabet[0] as u64,
        };
        let dir = tempfile::tempdir().unwrap();
        write_index(dir.path(), &spec, width);
        let mut damage = Vec::new();
        // The damage runs under catch_unwind too, so that a panic anywhere names its seed.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if rng.gen_bool(0.5) {
                // Without checksums, verify's structural checks alone must catch damage.
                let path = dir.path().join("anygram.json");
                let mut json: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                json.as_object_mut().unwrap().remove("files");
                std::fs::write(&path, json.to_string()).unwrap();
                damage.push("manifest without checksums".to_string());
            }
            for _ in 0..rng.gen_range(1..=3) {
                damage.push(mutate(dir.path(), &mut rng, num_shards, width));
            }
            let options = anygram::OpenOptions {
                sample_keys: false,
                ..Default::default()
            };
            let Ok(engine) = Engine::open(dir.path(), &options) else {
                return (false, false);
            };
            let report = anygram::verify::verify(&engine);
            let oracle = report.problems.is_empty().then(|| read_corpus(&engine));
            exercise(&engine, &mut rng, alphabet, oracle.as_ref());
            // Once more through the sampled keys.
            engine
                .shards()
                .iter()
                .for_each(|s| s.build_samples_every(2));
            exercise(&engine, &mut rng, alphabet, oracle.as_ref());
            (true, oracle.is_some())
        }));
        match outcome {
            Ok((o, v)) => {
                opened += o as u64;
                verified += v as u64;
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("seed {seed} (width {width:?}, {spec:?}) after {damage:#?}: {message}\nreplay: ANYGRAM_FUZZ_SEED={seed}");
            }
        }
    }
    eprintln!("fuzz_index: {cases} damaged indexes, {opened} opened, {verified} passed verify");
    assert!(
        opened > 0 && verified > 0,
        "the damage never left an index that opens and verifies: the fuzzer tests nothing"
    );
}
