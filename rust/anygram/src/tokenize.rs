//! Tokenizing a corpus for a build: a HuggingFace `tokenizer.json`, on all cores.
//!
//! Any tokenizer goes through the `tokenizers` library (`encode_fast`, no special
//! tokens added). Byte-level BPE tokenizers of the GPT-2 kind (no normalizer, the
//! `ByteLevel` pre-tokenizer with its standard regex, a BPE model without dropout)
//! take a faster road that gives the same ids: the text is split with the same
//! pattern compiled by the `regex` crate (a DFA, where the library backtracks), and
//! each distinct piece is run through the library's BPE model once and cached.
//!
//! The pattern's one lookahead, `\s+(?!\S)`, is not expressible in `regex`: it is
//! emulated by giving back the last character of a run of whitespace that is
//! followed by a non-space, which is what the backtracking engine does.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use aho_corasick::{AhoCorasick, MatchKind};
use rayon::prelude::*;
use regex::Regex;
use tokenizers::Model;

use crate::error::{Error, Result};

/// GPT-2's pre-tokenization pattern without its lookahead alternative.
const BYTE_LEVEL_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";
/// Distinct pieces cached per worker thread before the cache is cleared.
const CACHE_LIMIT: usize = 1 << 20;

/// Tokenizes documents with a `tokenizer.json`, in parallel.
pub struct CorpusTokenizer {
    hf: tokenizers::Tokenizer,
    fast: Option<ByteLevelSplitter>,
}

/// Token ids of pre-tokenized pieces already encoded, by piece.
type PieceCache = HashMap<Box<str>, Box<[u32]>>;

struct ByteLevelSplitter {
    pattern: Regex,
    /// Added tokens (e.g. `<|endoftext|>`) are matched in the raw text first.
    added: Option<(AhoCorasick, Vec<u32>)>,
    /// GPT-2's byte → printable character map.
    byte_chars: [char; 256],
    /// One cache per rayon worker (index `current_thread_index + 1`; 0 outside a pool).
    caches: Vec<Mutex<PieceCache>>,
}

impl CorpusTokenizer {
    /// Loads `path` (a HuggingFace `tokenizer.json`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let hf = tokenizers::Tokenizer::from_file(path).map_err(|e| {
            Error::InvalidArgument(format!(
                "{}: not a HuggingFace tokenizer.json ({e})",
                path.display()
            ))
        })?;
        let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::InvalidArgument(format!("{}: not valid JSON ({e})", path.display()))
        })?;
        let fast = ByteLevelSplitter::for_config(&config);
        Ok(CorpusTokenizer { hf, fast })
    }

    /// Whether the fast byte-level road is taken.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// Token ids of one text, no special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.fast {
            Some(fast) => fast.encode(text, &self.hf),
            None => self.exact(text),
        }
    }

    /// Token ids through the library alone (the reference the fast road must match).
    pub fn exact(&self, text: &str) -> Result<Vec<u32>> {
        self.hf
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::InvalidArgument(format!("tokenizer failed: {e}")))
    }

    /// Token ids of many texts, on all cores, in order.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts.par_iter().map(|t| self.encode(t)).collect()
    }
}

impl ByteLevelSplitter {
    /// The fast road, when the tokenizer is exactly of the kind it reproduces.
    fn for_config(config: &serde_json::Value) -> Option<Self> {
        let pre = &config["pre_tokenizer"];
        let model = &config["model"];
        let post = &config["post_processor"];
        let eligible = config["normalizer"].is_null()
            && pre["type"] == "ByteLevel"
            && pre["add_prefix_space"] == false
            && pre["use_regex"] != false
            && (post.is_null() || post["type"] == "ByteLevel")
            && model["type"] == "BPE"
            && model["dropout"].is_null()
            && model["byte_fallback"] != true;
        if !eligible {
            return None;
        }
        let mut contents = Vec::new();
        let mut ids = Vec::new();
        for token in config["added_tokens"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if token["single_word"] == true || token["lstrip"] == true || token["rstrip"] == true {
                return None;
            }
            contents.push(token["content"].as_str()?.to_string());
            ids.push(token["id"].as_u64()? as u32);
        }
        let added = if contents.is_empty() {
            None
        } else {
            let matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&contents)
                .ok()?;
            Some((matcher, ids))
        };
        let threads = rayon::current_num_threads() + 1;
        Some(ByteLevelSplitter {
            pattern: Regex::new(BYTE_LEVEL_PATTERN).ok()?,
            added,
            byte_chars: byte_chars(),
            caches: (0..threads).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    fn encode(&self, text: &str, hf: &tokenizers::Tokenizer) -> Result<Vec<u32>> {
        let slot = rayon::current_thread_index().map_or(0, |i| i + 1) % self.caches.len();
        let mut cache = self.caches[slot].lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > CACHE_LIMIT {
            cache.clear();
        }
        let mut ids = Vec::with_capacity(text.len() / 3);
        let mut segment_start = 0;
        if let Some((matcher, added_ids)) = &self.added {
            for m in matcher.find_iter(text) {
                self.encode_segment(&text[segment_start..m.start()], hf, &mut cache, &mut ids)?;
                ids.push(added_ids[m.pattern().as_usize()]);
                segment_start = m.end();
            }
        }
        self.encode_segment(&text[segment_start..], hf, &mut cache, &mut ids)?;
        Ok(ids)
    }

    fn encode_segment(
        &self,
        segment: &str,
        hf: &tokenizers::Tokenizer,
        cache: &mut PieceCache,
        ids: &mut Vec<u32>,
    ) -> Result<()> {
        let mut at = 0;
        while at < segment.len() {
            let Some(m) = self.pattern.find_at(segment, at) else {
                break;
            };
            let mut end = m.end();
            let piece = m.as_str();
            // `\s+(?!\S)`: a whitespace run followed by a non-space gives back its last
            // character, which then starts the next piece (as " word", or alone).
            if end < segment.len() && piece.chars().all(char::is_whitespace) {
                if let Some((last, _)) = piece.char_indices().last() {
                    if last > 0 {
                        end = m.start() + last;
                    }
                }
            }
            let piece = &segment[m.start()..end];
            match cache.get(piece) {
                Some(cached) => ids.extend_from_slice(cached),
                None => {
                    let mapped: String =
                        piece.bytes().map(|b| self.byte_chars[b as usize]).collect();
                    let tokens = hf
                        .get_model()
                        .tokenize(&mapped)
                        .map_err(|e| Error::InvalidArgument(format!("tokenizer failed: {e}")))?;
                    let piece_ids: Box<[u32]> = tokens.iter().map(|t| t.id).collect();
                    ids.extend_from_slice(&piece_ids);
                    cache.insert(piece.into(), piece_ids);
                }
            }
            at = end;
        }
        Ok(())
    }
}

/// GPT-2's reversible map of bytes to printable characters: printable Latin-1
/// bytes map to themselves, the others to U+0100 onwards in byte order.
fn byte_chars() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        map[b as usize] = if printable {
            char::from_u32(b).expect("Latin-1")
        } else {
            let c = char::from_u32(next).expect("in range");
            next += 1;
            c
        };
    }
    map
}
