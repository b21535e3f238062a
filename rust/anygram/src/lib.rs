//! # anygram
//!
//! Exact n-gram and ∞-gram statistics over suffix arrays of tokenized corpora,
//! on infini-gram's own index files.
//!
//! An index is a directory of shards (see [`format`]): the token stream of every
//! document, and its suffix array, whose entries are byte offsets sorted by the
//! bytes that follow them. Every occurrence of an n-gram is then one contiguous
//! range of the suffix array, found with two binary searches; its length is the
//! count. Probabilities divide two counts, and the next-token distribution reads
//! the token after each occurrence in the range.
//!
//! ```no_run
//! use anygram::{Engine, OpenOptions};
//! let engine = Engine::open("my-index", &OpenOptions::default())?;
//! let count = engine.count(&[464, 2068])?;
//! let p = engine.infgram_prob(&[464, 2068, 7586], 21831)?;
//! println!("{count} {} (suffix {})", p.prob, p.suffix_len);
//! # Ok::<(), anygram::Error>(())
//! ```
//!
//! ## Memory
//! Files are memory-mapped: an open engine costs a few kilobytes of heap; the
//! page cache holds whatever the queries touch. A count touches about
//! 2·log2(tokens) pages of the suffix array and of the token stream; with a
//! search accelerator ([`accel`]) it is 3 rounds of reads per shard.
//!
//! ## Quirks
//! * Suffixes sort by their little-endian bytes, not by token id (as infini-gram).
//! * Index files must not change while mapped (SIGBUS, see [`mmap`]).
#![deny(missing_docs)]

pub mod accel;
pub mod atomic;
pub mod attribution;
#[cfg(feature = "build")]
pub mod build;
pub mod cnf;
pub mod context_table;
pub mod documents;
pub mod engine;
pub mod error;
pub mod format;
pub mod interleave;
pub mod lm;
pub mod manifest;
pub mod mmap;
pub mod next_tokens;
pub mod pool;
pub mod positions;
pub mod reads;
pub mod scan;
pub mod shard;
pub mod smoothing;
pub mod storage;
#[cfg(feature = "build")]
pub mod tokenize;
pub mod verify;

pub use engine::{Engine, FindResult, NtdResult, OpenOptions, ProbResult};
pub use error::{Error, Result};
pub use format::TokenWidth;
pub use lm::{ScoreOptions, Scores};
