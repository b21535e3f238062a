//! `anygram.json`: what anygram records beside the infini-gram shard files.
//!
//! The Python side writes it at the end of a build (it knows the inputs and the
//! tokenizer); the core reads the fields it needs and checks the version range.
//! Unknown fields are kept by Python and ignored here, so adding fields is not a
//! format change.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File name of the manifest inside an index directory.
pub const MANIFEST_FILE: &str = "anygram.json";
/// Format version written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Oldest format version this build still reads.
pub const OLDEST_SUPPORTED_FORMAT_VERSION: u32 = 1;

/// A file's size and checksum as recorded at build time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileMeta {
    /// Size in bytes.
    pub size: u64,
    /// XXH3-64 of the contents, 16 lowercase hex digits.
    pub xxh3_64: String,
}

/// Per-shard counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardMeta {
    /// Token positions in the shard, separators included.
    pub num_tokens: u64,
    /// Documents in the shard.
    pub num_documents: u64,
    /// Bytes per suffix-array pointer.
    pub ptr_size: u32,
}

/// The parts of the manifest the core reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version (see [`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Bytes per token: 1, 2 or 4.
    pub token_width: u32,
    /// Token ids are in `[0, vocab_size)`.
    pub vocab_size: u64,
    /// Reported as the continuation at a document's end.
    pub eos_token_id: u64,
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardMeta>,
    /// Size and checksum of every file of the index, by file name.
    #[serde(default)]
    pub files: BTreeMap<String, FileMeta>,
}

impl Manifest {
    /// Reads and checks `dir/anygram.json`; `Ok(None)` when there is none
    /// (an index built by infini-gram).
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::corrupt(&path, format!("manifest is not valid: {e}")))?;
        if !(OLDEST_SUPPORTED_FORMAT_VERSION..=FORMAT_VERSION).contains(&manifest.format_version) {
            return Err(Error::UnsupportedVersion {
                path,
                got: manifest.format_version,
                oldest: OLDEST_SUPPORTED_FORMAT_VERSION,
                current: FORMAT_VERSION,
            });
        }
        if manifest.shards.is_empty() {
            return Err(Error::corrupt(&path, "manifest lists no shards"));
        }
        Ok(Some(manifest))
    }
}
