//! `anygram.json`: what anygram records beside the infini-gram shard files.
//!
//! This type is the only reader and writer of the manifest (Python reads and
//! writes it through the bindings: `_anygram.read_manifest`,
//! `_anygram.write_manifest`). Every object is `deny_unknown_fields`: a field
//! that this type does not know is a corrupt manifest when read and an error
//! when written, so the format has one owner. A new field is a new
//! [`FORMAT_VERSION`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// File name of the manifest inside an index directory.
pub const MANIFEST_FILE: &str = "anygram.json";
/// Format version written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Oldest format version this build still reads.
pub const OLDEST_SUPPORTED_FORMAT_VERSION: u32 = 1;
/// The manifest's `format` field.
pub const FORMAT_NAME: &str = "anygram-index";
/// The manifest's `layout` field: the shard files are infini-gram's.
pub const LAYOUT: &str = "infini-gram-v4";
/// A small file every anygram build writes beside the shards (whatever the
/// tokenizer), so that a lost manifest is noticed even for an index of UTF-8
/// bytes or of given token ids.
pub const MARKER_FILE: &str = "anygram.format";
/// File name of the tokenizer copied into an index.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A file's size and checksum as recorded at build time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
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
pub const ANYGRAM_ONLY_FILES: &[&str] = &[TOKENIZER_FILE, MARKER_FILE];

/// The contents of [`MARKER_FILE`].
pub fn marker_contents() -> String {
    format!("{FORMAT_NAME} {FORMAT_VERSION}\n")
}

/// The tokenizer an index was built with, copied into the index directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenizerMeta {
    /// A name for messages (e.g. the model it came from).
    #[serde(default)]
    pub name: Option<String>,
    /// Its file name inside the index directory: a plain name, checked when the
    /// manifest is read (use [`Manifest::tokenizer_path`]).
    #[serde(deserialize_with = "plain_file_name")]
    pub file: String,
    /// SHA-256 of the file, 64 lowercase hex digits.
    #[serde(default, deserialize_with = "sha256_hex")]
    pub sha256: Option<String>,
}

/// Per-shard counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShardMeta {
    /// Token positions in the shard, separators included.
    pub num_tokens: u64,
    /// Documents in the shard.
    pub num_documents: u64,
    /// Bytes per suffix-array pointer.
    pub ptr_size: u32,
}

/// How one shard's suffix array was built (the build's report, for people).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SuffixArrayRecord {
    /// Suffixes sorted.
    pub num_tokens: u64,
    /// Built in parts merged on disk.
    pub external: bool,
    /// Peak bytes the sort was planned to need.
    pub planned_bytes: u64,
    /// Parts (1 in memory).
    pub num_parts: u64,
    /// Suffixes a part (external only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_tokens: Option<u64>,
    /// Tokens read past each part (external only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_tokens: Option<u64>,
    /// Parts found finished on disk by a resumed build.
    #[serde(default)]
    pub parts_reused: u64,
    /// Runs tied on the overlap, re-sorted on the text.
    #[serde(default)]
    pub runs_resorted: u64,
    /// Suffixes in those runs.
    #[serde(default)]
    pub suffixes_in_runs: u64,
}

/// How an index was built: informative only, nothing reads it to answer queries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct BuildRecord {
    /// anygram's version.
    #[serde(default)]
    pub anygram_version: Option<String>,
    /// UTC time, ISO 8601.
    #[serde(default)]
    pub created_at: Option<String>,
    /// The input paths.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// JSON field holding the text.
    #[serde(default)]
    pub text_field: Option<String>,
    /// How text files were cut into documents.
    #[serde(default)]
    pub text_mode: Option<String>,
    /// Documents indexed.
    #[serde(default)]
    pub num_documents: u64,
    /// Documents skipped, by reason.
    #[serde(default)]
    pub skipped_documents: BTreeMap<String, u64>,
    /// A few skipped documents, for people.
    #[serde(default)]
    pub skipped_examples: Vec<String>,
    /// Which tokenizer code ran ("fast byte-level", "tokenizers library ...").
    #[serde(default)]
    pub tokenizer_path: Option<String>,
    /// The memory budget in bytes.
    #[serde(default)]
    pub mem: Option<u64>,
    /// One record per shard.
    #[serde(default)]
    pub suffix_arrays: Vec<SuffixArrayRecord>,
    /// Seconds per step.
    #[serde(default)]
    pub seconds: BTreeMap<String, f64>,
}

/// The manifest, `anygram.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    #[serde(default = "format_name")]
    pub format: String,
    /// Format version (see [`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Always [`LAYOUT`].
    #[serde(default = "layout")]
    pub layout: String,
    /// Bytes per token: 1, 2 or 4.
    pub token_width: u32,
    /// Token ids are in `[0, vocab_size)`.
    pub vocab_size: u64,
    /// Reported as the continuation at a document's end.
    pub eos_token_id: u64,
    /// The tokenizer, `None` for an index of UTF-8 bytes or of given token ids.
    #[serde(default)]
    pub tokenizer: Option<TokenizerMeta>,
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardMeta>,
    /// Size and checksum of every file of the index but the manifest, by file name.
    #[serde(default)]
    pub files: BTreeMap<String, FileMeta>,
    /// How it was built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildRecord>,
}

fn format_name() -> String {
    FORMAT_NAME.into()
}

fn layout() -> String {
    LAYOUT.into()
}

/// `tokenizer.file`: a string that is a plain file name (any other JSON value
/// is named in the error).
fn plain_file_name<'de, D: Deserializer<'de>>(de: D) -> std::result::Result<String, D::Error> {
    let value = serde_json::Value::deserialize(de)?;
    match value.as_str() {
        Some(name) if is_plain_file_name(name) => Ok(name.to_string()),
        _ => Err(serde::de::Error::custom(format!(
            "tokenizer.file {value} is not a plain file name inside the index directory"
        ))),
    }
}

/// `tokenizer.sha256`: null or 64 lowercase hex digits.
fn sha256_hex<'de, D: Deserializer<'de>>(de: D) -> std::result::Result<Option<String>, D::Error> {
    let value = serde_json::Value::deserialize(de)?;
    match &value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(hex) if is_sha256_hex(hex) => Ok(Some(hex.clone())),
        _ => Err(serde::de::Error::custom(format!(
            "tokenizer sha256 {value} is not 64 lowercase hex digits"
        ))),
    }
}

/// Whether `hex` is a SHA-256 digest as the manifest records it.
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Manifest {
    /// A manifest of the current format for an index of these shards (no
    /// tokenizer, no files, no build record yet).
    pub fn new(
        token_width: u32,
        vocab_size: u64,
        eos_token_id: u64,
        shards: Vec<ShardMeta>,
    ) -> Self {
        Manifest {
            format: format_name(),
            format_version: FORMAT_VERSION,
            layout: layout(),
            token_width,
            vocab_size,
            eos_token_id,
            tokenizer: None,
            shards,
            files: BTreeMap::new(),
            build: None,
        }
    }

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
        let manifest = Manifest::parse(&text).map_err(|e| e.at(&path))?;
        if !manifest.files.is_empty() {
            // The manifest lists every file of the index with its size: in object
            // storage that is the directory listing (no LIST, no HEAD per file).
            crate::storage::describe_dir(
                dir,
                manifest
                    .files
                    .iter()
                    .map(|(name, meta)| (name.as_str(), meta.size, meta.xxh3_64.as_str())),
            )?;
        }
        Ok(Some(manifest))
    }

    /// Parses and checks a manifest's JSON text. The version is checked first,
    /// so that a manifest of a newer format is named as such (not as unknown
    /// fields). Errors carry an empty path ([`ManifestError::at`] names the file).
    pub fn parse(text: &str) -> std::result::Result<Manifest, ManifestError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ManifestError::Invalid(format!("manifest is not valid: {e}")))?;
        if let Some(got) = value.get("format_version").and_then(|v| v.as_u64()) {
            let supported = OLDEST_SUPPORTED_FORMAT_VERSION as u64..=FORMAT_VERSION as u64;
            if !supported.contains(&got) {
                return Err(ManifestError::Version(got.min(u32::MAX as u64) as u32));
            }
        }
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| ManifestError::Invalid(format!("manifest is not valid: {e}")))?;
        manifest.check().map_err(ManifestError::Invalid)?;
        Ok(manifest)
    }

    /// The rules a manifest obeys beyond its types.
    fn check(&self) -> std::result::Result<(), String> {
        if self.format != FORMAT_NAME {
            return Err(format!("format {:?} is not {FORMAT_NAME:?}", self.format));
        }
        if self.layout != LAYOUT {
            return Err(format!("layout {:?} is not {LAYOUT:?}", self.layout));
        }
        if self.shards.is_empty() {
            return Err("manifest lists no shards".into());
        }
        for name in self.files.keys() {
            if !is_plain_file_name(name) {
                return Err(format!(
                    "files lists {name:?}, which is not a plain file name inside the index directory"
                ));
            }
        }
        Ok(())
    }

    /// The manifest as written: pretty JSON, fields in the type's order, a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a manifest always serializes");
        text.push('\n');
        text
    }

    /// Writes `dir/anygram.json` atomically (temporary file, fsync, rename,
    /// directory fsync): a reader sees the old one or the new one, never a part
    /// (a served index can gain files, e.g. its search accelerators). The
    /// manifest is checked first: what cannot be read back is never written.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let text = self.to_json();
        Manifest::parse(&text).map_err(|e| match e {
            ManifestError::Invalid(detail) => {
                Error::InvalidArgument(format!("{}: {detail}", path.display()))
            }
            ManifestError::Version(got) => Error::InvalidArgument(format!(
                "{}: format version {got} cannot be written (this build writes {FORMAT_VERSION})",
                path.display()
            )),
        })?;
        crate::atomic::write_file(&path, text.as_bytes())
    }

    /// Records the size and checksum of the files `names` (new or rewritten,
    /// e.g. search accelerators added later) in the manifest of `dir`, if it
    /// has one; returns whether it did.
    pub fn record_files(dir: &Path, names: &[String]) -> Result<bool> {
        let Some(mut manifest) = Manifest::read(dir)? else {
            return Ok(false);
        };
        for name in names {
            if !is_plain_file_name(name) || name == MANIFEST_FILE {
                return Err(Error::InvalidArgument(format!(
                    "{name:?} is not a file of the index to record"
                )));
            }
            let path = dir.join(name);
            let size = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            let xxh3_64 = checksum_file(&path)?;
            manifest
                .files
                .insert(name.clone(), FileMeta { size, xxh3_64 });
        }
        manifest.write(dir)?;
        Ok(true)
    }

    /// The tokenizer file of the index in `dir` (the file name was checked to be
    /// a plain name when the manifest was read, so this path is inside `dir`).
    pub fn tokenizer_path(&self, dir: &Path) -> Option<PathBuf> {
        self.tokenizer.as_ref().map(|t| dir.join(&t.file))
    }

    /// The stored tokenizer's path and recorded SHA-256, checked to stay inside
    /// `dir` when links are followed (a link in the index must not lead anygram
    /// to read a file elsewhere). `None`: an index of UTF-8 bytes or token ids.
    pub fn stored_tokenizer(&self, dir: &Path) -> Result<Option<(PathBuf, Option<String>)>> {
        let (Some(path), Some(meta)) = (self.tokenizer_path(dir), &self.tokenizer) else {
            return Ok(None);
        };
        if let Ok(resolved) = std::fs::canonicalize(&path) {
            let inside = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
            if resolved.parent() != Some(inside.as_path()) {
                return Err(Error::corrupt(
                    dir.join(MANIFEST_FILE),
                    format!(
                        "tokenizer file {:?} leads outside the index directory",
                        meta.file
                    ),
                ));
            }
        }
        Ok(Some((path, meta.sha256.clone())))
    }
}

/// Why a manifest text was refused (before its file is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Not valid JSON, an unknown field, a value out of range...
    Invalid(String),
    /// A format version this build does not read.
    Version(u32),
}

impl ManifestError {
    /// The error for the manifest at `path`.
    pub fn at(self, path: &Path) -> Error {
        match self {
            ManifestError::Invalid(detail) => Error::corrupt(path, detail),
            ManifestError::Version(got) => Error::UnsupportedVersion {
                path: path.to_path_buf(),
                got,
                oldest: OLDEST_SUPPORTED_FORMAT_VERSION,
                current: FORMAT_VERSION,
            },
        }
    }
}

/// XXH3-64 of a file's contents as 16 hex digits (a manifest's `xxh3_64`), read in
/// 8 MiB blocks.
pub fn checksum_file(path: &Path) -> Result<String> {
    let mut file = crate::mmap::open_regular_file(path, "an index file")?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let read = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buf[..read]);
    }
    Ok(format!("{:016x}", hasher.digest()))
}

/// Whether `name` names a file directly inside a directory: one normal path
/// component (no separator, not `.` or `..`, not absolute, not empty).
pub fn is_plain_file_name(name: &str) -> bool {
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
