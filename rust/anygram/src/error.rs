//! The one error type of the core. Every variant carries the evidence (the file,
//! the offending value) and, where there is one, the remedy.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in anygram's core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A required index file does not exist.
    #[error("{path}: missing index file ({what})")]
    MissingFile {
        /// The file that should exist.
        path: PathBuf,
        /// What the file is for.
        what: String,
    },

    /// Index files that exist but disagree with each other or with the manifest.
    #[error("{path}: corrupt or inconsistent index: {detail}; run `anygram verify` or rebuild the index")]
    Corrupt {
        /// The file in which the problem was found.
        path: PathBuf,
        /// What exactly is wrong.
        detail: String,
    },

    /// The manifest was written by a format version this build cannot read.
    #[error("{path}: index format version {got} is not supported (this build reads versions {oldest}..={current}); rebuild the index or upgrade anygram")]
    UnsupportedVersion {
        /// The manifest path.
        path: PathBuf,
        /// The version found.
        got: u32,
        /// Oldest readable version.
        oldest: u32,
        /// Newest readable version.
        current: u32,
    },

    /// A query token id that is not in the index's vocabulary.
    #[error("token id {token} at position {position} is outside the vocabulary [0, {vocab_size})")]
    TokenOutOfRange {
        /// The bad id.
        token: u64,
        /// Where it sits in the query.
        position: usize,
        /// The index's vocabulary size.
        vocab_size: u64,
    },

    /// A malformed query or argument (empty where it must not be, zero limits, ...).
    #[error("invalid query: {0}")]
    InvalidQuery(String),

    /// Bad parameters given to open or build.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A build's destination already holds an index, and replacing it was not asked for.
    #[error("{location} already holds an index; the new index is not published (replace it explicitly to overwrite)")]
    IndexExists {
        /// The destination (a directory or an object storage URL).
        location: String,
    },

    /// The suffix sorter failed.
    #[error("suffix array construction failed for {path}: {detail}")]
    Build {
        /// The shard being built.
        path: PathBuf,
        /// What libsais reported.
        detail: String,
    },

    /// A scan was cancelled through its [`crate::scan::ScanControl`] (e.g. Ctrl-C).
    #[error("scan cancelled")]
    Cancelled,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            detail: detail.into(),
        }
    }
}
