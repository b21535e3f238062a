//! `anygram.json`: what anygram records beside the infini-gram shard files.
//!
//! The Python side writes it at the end of a build (it knows the inputs and the
//! tokenizer); the core reads the fields it needs and checks the version range.
//! Unknown fields are kept by Python and ignored here, so adding fields is not a
//! format change.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

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

/// Files that only an anygram build writes into an index directory: when one
/// of them is there but the manifest is not, the directory is an anygram index
/// that lost its manifest, and opening it as infini-gram's would lose the
/// tokenizer and the end-of-document token (answers silently change).
pub const ANYGRAM_ONLY_FILES: &[&str] = &["tokenizer.json"];

/// The tokenizer an index was built with, copied into the index directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenizerMeta {
    /// A name for messages (e.g. the model it came from).
    #[serde(default)]
    pub name: Option<String>,
    /// Its file name inside the index directory: a plain name, checked when the
    /// manifest is read (use [`Manifest::tokenizer_path`]).
    pub file: String,
    /// SHA-256 of the file, hex.
    #[serde(default)]
    pub sha256: Option<String>,
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
    /// The tokenizer, `None` for an index of UTF-8 bytes or of given token ids.
    #[serde(default)]
    pub tokenizer: Option<TokenizerMeta>,
}

impl Manifest {
    /// Reads and checks `dir/anygram.json`; `Ok(None)` when there is none
    /// (an index built by infini-gram), unless the directory holds a file only
    /// anygram writes ([`ANYGRAM_ONLY_FILES`]): then the manifest is missing.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        /// Far above any real manifest (a few bytes per file): a bigger one is not one.
        const MAX_MANIFEST_BYTES: u64 = 256 << 20;
        let path = dir.join(MANIFEST_FILE);
        // Through the storage layer: the index may be in object storage.
        let bytes = match crate::storage::read_whole(
            &path,
            "the index manifest",
            MAX_MANIFEST_BYTES,
        ) {
            Ok(bytes) => bytes,
            Err(Error::MissingFile { .. }) => {
                if let Some(found) = ANYGRAM_ONLY_FILES
                    .iter()
                    .find(|name| crate::storage::file_exists(&dir.join(name)).unwrap_or(false))
                {
                    return Err(Error::corrupt(
                        &path,
                        format!("anygram.json is missing, but {found} (written by anygram's build) is there: this is an anygram index without its manifest; restore anygram.json or rebuild the index"),
                    ));
                }
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let text = String::from_utf8(bytes)
            .map_err(|e| Error::corrupt(&path, format!("manifest is not UTF-8: {e}")))?;
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
        if let Some(tokenizer) = &manifest.tokenizer {
            if !is_plain_file_name(&tokenizer.file) {
                return Err(Error::corrupt(
                    &path,
                    format!(
                        "tokenizer.file {:?} is not a plain file name inside the index directory",
                        tokenizer.file
                    ),
                ));
            }
        }
        for name in manifest.files.keys() {
            if !is_plain_file_name(name) {
                return Err(Error::corrupt(
                    &path,
                    format!("files lists {name:?}, which is not a plain file name inside the index directory"),
                ));
            }
        }
        Ok(Some(manifest))
    }

    /// The tokenizer file of the index in `dir` (the file name was checked to be
    /// a plain name when the manifest was read, so this path is inside `dir`).
    pub fn tokenizer_path(&self, dir: &Path) -> Option<PathBuf> {
        self.tokenizer.as_ref().map(|t| dir.join(&t.file))
    }
}

/// Whether `name` names a file directly inside a directory: one normal path
/// component (no separator, not `.` or `..`, not absolute, not empty).
fn is_plain_file_name(name: &str) -> bool {
    let mut components = Path::new(name).components();
    matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(only)), None) if only == name
    ) && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_are_plain() {
        for good in ["tokenizer.json", "a", "tok..json"] {
            assert!(is_plain_file_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "/etc/passwd",
            "../tokenizer.json",
            "sub/tokenizer.json",
            "a/",
            "./a",
            "a\\b",
            "C:\\x",
        ] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
    }
}
