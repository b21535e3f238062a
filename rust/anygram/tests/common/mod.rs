//! Index writing shared by the integrity and fuzz tests: infini-gram's layout,
//! optional metadata, and an anygram manifest with checksums.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::path::Path;

use anygram::accel::SearchPath;
use anygram::build::build_suffix_array;
use anygram::manifest::checksum_file;
use anygram::manifest::{FileMeta, Manifest, ShardMeta, TokenizerMeta, MANIFEST_FILE};
use anygram::{Engine, OpenOptions, TokenWidth};

/// Any of the three token widths, for property tests.
pub fn any_width() -> impl proptest::strategy::Strategy<Value = TokenWidth> {
    use proptest::prelude::*;
    prop_oneof![
        Just(TokenWidth::U8),
        Just(TokenWidth::U16),
        Just(TokenWidth::U32)
    ]
}

/// Token ids whose little-endian bytes order differently from their values
/// (the suffix array sorts bytes), per width, all below the separator.
pub fn byte_order_tokens(width: TokenWidth) -> Vec<u32> {
    match width {
        TokenWidth::U8 => vec![0x00, 0x01, 0x7F, 0x80, 0xFE],
        TokenWidth::U16 => vec![0x0001, 0x00FF, 0x0100, 0x01FE, 0xFF00, 0xFFFE],
        TokenWidth::U32 => vec![
            0x0000_00FF,
            0x0000_0100,
            0x0001_FE00,
            0xFF00_0000,
            0xFFFF_FFFE,
        ],
    }
}

/// How to write a test index.
#[derive(Clone, Debug, Default)]
pub struct IndexSpec {
    /// Documents of each shard.
    pub shards: Vec<Vec<Vec<u32>>>,
    /// Writes `metadata.s` / `metaoff.s` (one JSON line per document).
    pub metadata: bool,
    /// Writes `anygram.json`.
    pub manifest: bool,
    /// Writes `tokenizer.json` (and names it in the manifest, when there is one).
    pub tokenizer: bool,
    /// Vocabulary size recorded in the manifest.
    pub vocab_size: u64,
    /// End-of-document token recorded in the manifest.
    pub eos_token_id: u64,
}

/// The metadata line of a document (global index `doc`).
pub fn metadata_line(doc: usize) -> String {
    format!("{{\"doc\": {doc}}}\n")
}

/// Writes the index described by `spec` into `dir`.
pub fn write_index(dir: &Path, spec: &IndexSpec, width: TokenWidth) {
    let mut shard_meta = Vec::new();
    let mut global = 0;
    for (s, docs) in spec.shards.iter().enumerate() {
        let mut tokenized = Vec::new();
        let mut offsets = Vec::new();
        let mut metadata = Vec::new();
        let mut metaoff = Vec::new();
        for doc in docs {
            offsets.extend_from_slice(&(tokenized.len() as u64).to_le_bytes());
            width.encode_into(&[width.separator()], &mut tokenized);
            width.encode_into(doc, &mut tokenized);
            metaoff.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
            metadata.extend_from_slice(metadata_line(global).as_bytes());
            global += 1;
        }
        let tok = dir.join(format!("tokenized.{s}"));
        std::fs::write(&tok, &tokenized).unwrap();
        std::fs::write(dir.join(format!("offset.{s}")), &offsets).unwrap();
        if spec.metadata {
            std::fs::write(dir.join(format!("metadata.{s}")), &metadata).unwrap();
            std::fs::write(dir.join(format!("metaoff.{s}")), &metaoff).unwrap();
        }
        build_suffix_array(&tok, &dir.join(format!("table.{s}")), width, 1).unwrap();
        let num_tokens = tokenized.len() as u64 / width.bytes() as u64;
        shard_meta.push(ShardMeta {
            num_tokens,
            num_documents: docs.len() as u64,
            ptr_size: std::fs::metadata(dir.join(format!("table.{s}")))
                .unwrap()
                .len() as u32
                / num_tokens.max(1) as u32,
        });
    }
    if spec.tokenizer {
        std::fs::write(dir.join("tokenizer.json"), "{\"model\": {}}\n").unwrap();
    }
    if spec.manifest {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            files.insert(
                name,
                FileMeta {
                    size: entry.metadata().unwrap().len(),
                    xxh3_64: checksum_file(&entry.path()).unwrap(),
                },
            );
        }
        let mut manifest = Manifest::new(
            width.bytes() as u32,
            spec.vocab_size,
            spec.eos_token_id,
            shard_meta,
        );
        manifest.files = files;
        manifest.tokenizer = spec.tokenizer.then(|| TokenizerMeta {
            name: Some("test".into()),
            file: "tokenizer.json".into(),
            sha256: None,
        });
        std::fs::write(
            dir.join(MANIFEST_FILE),
            serde_json::to_string_pretty(&manifest).unwrap(),
        )
        .unwrap();
    }
}

/// Writes `docs` in infini-gram's layout only (no metadata, no manifest: open it
/// with its token width), split into `shards` shards of consecutive documents
/// (one empty shard when there are no documents).
pub fn write_plain_index(dir: &Path, docs: &[Vec<u32>], width: TokenWidth, shards: usize) {
    let per_shard = docs.len().div_ceil(shards).max(1);
    let mut spec = IndexSpec {
        shards: docs.chunks(per_shard).map(<[Vec<u32>]>::to_vec).collect(),
        ..IndexSpec::default()
    };
    if spec.shards.is_empty() {
        spec.shards.push(Vec::new());
    }
    write_index(dir, &spec, width);
}

/// Every shard's token stream as [`write_plain_index`] splits `docs`, separators
/// (`sep`) included, for brute-force oracles.
pub fn shard_streams(docs: &[Vec<u32>], sep: u32, shards: usize) -> Vec<Vec<u32>> {
    let per_shard = docs.len().div_ceil(shards).max(1);
    docs.chunks(per_shard)
        .map(|part| {
            part.iter()
                .flat_map(|d| std::iter::once(sep).chain(d.iter().copied()))
                .collect()
        })
        .collect()
}

/// A corpus of `n` u16 tokens in documents of 1 to 399 tokens, with ids (below
/// 600) whose byte order differs from their value order.
pub fn big_corpus(n: usize, seed: u64) -> Vec<Vec<u32>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut docs = Vec::new();
    let mut left = n;
    while left > 0 {
        let len = rng.gen_range(1..400).min(left);
        docs.push((0..len).map(|_| rng.gen_range(0..600u32)).collect());
        left -= len;
    }
    docs
}

/// Opens without sampled keys, with or without the accelerator and its
/// resident budget; an accelerator is searched through its tree at every
/// search (pinned: the adaptive choice would depend on timing).
pub fn open_with(
    dir: &Path,
    width: TokenWidth,
    accelerator: bool,
    resident_mem: Option<u64>,
) -> Engine {
    open_searching(dir, width, accelerator, resident_mem, SearchPath::Tree)
}

/// [`open_with`] searching the accelerator's shards by `search_path`.
pub fn open_searching(
    dir: &Path,
    width: TokenWidth,
    accelerator: bool,
    resident_mem: Option<u64>,
    search_path: SearchPath,
) -> Engine {
    Engine::open(
        dir,
        &OpenOptions {
            token_width: Some(width.bytes()),
            sample_keys: false,
            accelerator,
            resident_mem,
            search_path,
            ..OpenOptions::default()
        },
    )
    .unwrap()
}

/// Opens without sampled keys (tests set them explicitly when they want them).
pub fn open(dir: &Path, width: TokenWidth) -> anygram::Result<Engine> {
    Engine::open(
        dir,
        &OpenOptions {
            token_width: Some(width.bytes()),
            sample_keys: false,
            ..OpenOptions::default()
        },
    )
}

/// The id that stands for small symbol `symbol` (0..=5) in the oracle tests:
/// ids whose little-endian bytes sort differently from their values on the
/// wider widths (0x00FF < 0x0100 but its first byte is larger). Other values
/// (e.g. the largest id) stand for themselves.
pub fn mixed_id(width: TokenWidth, symbol: u32) -> u32 {
    let table: [u32; 6] = match width {
        TokenWidth::U8 => [0x00, 0x01, 0x7F, 0x80, 0xFD, 0x02],
        TokenWidth::U16 => [0x0001, 0x00FF, 0x0100, 0x01FE, 0xFF00, 0x0002],
        TokenWidth::U32 => [
            0x0000_00FF,
            0x0000_0100,
            0x0001_FE00,
            0xFF00_0000,
            0x0000_0001,
            0x00FF_0000,
        ],
    };
    table.get(symbol as usize).copied().unwrap_or(symbol)
}
