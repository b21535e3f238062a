//! Bindings of the index writer (`anygram::build::writer`) and the typed
//! manifest (`anygram::manifest`): Python hands the core documents and build
//! facts, and reads back the manifest as a dict; the format's constants and
//! rules come from the core.
//!
//! Structured values cross as JSON (Python's `json` module on this side of the
//! call): the core's serde types, with unknown fields refused, decode them.

use std::path::PathBuf;

use pyo3::prelude::*;
use serde::de::DeserializeOwned;

use anygram::build::writer::{self, FinishOptions, StreamWriter, Streams, TokenizerSource};
use anygram::manifest::{self, BuildRecord, Manifest, ShardMeta};
use anygram::TokenWidth;

use crate::args::{int_arg, maybe_int_arg, token_ids, U64_MAX};
use crate::batch::call;
use crate::errors;

fn width_arg(token_width: &Bound<'_, PyAny>) -> PyResult<TokenWidth> {
    let bytes: usize = int_arg(token_width, "token_width", 1..=4)?;
    TokenWidth::from_bytes(bytes).map_err(errors::to_py)
}

/// A Python value (dicts, lists, numbers, strings) as the core type `T`;
/// `what` names it in the error.
fn from_py<T: DeserializeOwned>(value: &Bound<'_, PyAny>, what: &str) -> PyResult<T> {
    let text: String = value
        .py()
        .import("json")?
        .call_method1("dumps", (value,))?
        .extract()?;
    serde_json::from_str(&text)
        .map_err(|e| errors::to_py(anygram::Error::InvalidArgument(format!("{what}: {e}"))))
}

/// A core value as plain Python values.
fn to_py<'py, T: serde::Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| errors::to_py(anygram::Error::InvalidArgument(e.to_string())))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// The manifest of the index in `path` as a dict, checked (format version,
/// every field known, plain file names, sha256 form); None for an index
/// without one (infini-gram's). Raises `CorruptIndexError`.
#[pyfunction]
pub fn read_manifest(py: Python<'_>, path: PathBuf) -> PyResult<Option<Bound<'_, PyAny>>> {
    match call(py, || Manifest::read(&path))? {
        Some(manifest) => Ok(Some(to_py(py, &manifest)?)),
        None => Ok(None),
    }
}

/// Writes `manifest` (a dict of the manifest's fields, nothing else) as the
/// manifest of the index in `path`, atomically. Raises `InvalidArgumentError`
/// for a field the format does not know.
#[pyfunction]
pub fn write_manifest(py: Python<'_>, path: PathBuf, manifest: &Bound<'_, PyAny>) -> PyResult<()> {
    let manifest: Manifest = from_py(manifest, "manifest")?;
    call(py, || manifest.write(&path))
}

/// `manifest` through the core's type and back: what the core reads of it
/// (a field it does not know is an `InvalidArgumentError`).
#[pyfunction]
pub fn check_manifest<'py>(
    py: Python<'py>,
    manifest: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let typed: Manifest = from_py(manifest, "manifest")?;
    let text = typed.to_json();
    let checked = Manifest::parse(&text)
        .map_err(|e| errors::to_py(e.at(std::path::Path::new(manifest::MANIFEST_FILE))))?;
    to_py(py, &checked)
}

/// Records the sizes and checksums of files `names` of the index in `path`
/// in its manifest (when it has one); returns whether it did.
#[pyfunction]
pub fn record_files(py: Python<'_>, path: PathBuf, names: Vec<String>) -> PyResult<bool> {
    call(py, || Manifest::record_files(&path, &names))
}

/// `(path, sha256)` of the tokenizer stored in the index in `path`, or None
/// (UTF-8 bytes or token ids): its name checked to be a plain file name, a
/// link checked not to lead outside the directory. sha256 is None when the
/// manifest records none.
#[pyfunction]
pub fn stored_tokenizer(
    py: Python<'_>,
    path: PathBuf,
) -> PyResult<Option<(PathBuf, Option<String>)>> {
    call(py, || match Manifest::read(&path)? {
        Some(manifest) => manifest.stored_tokenizer(&path),
        None => Ok(None),
    })
}

/// `(vocab_size, eos_token_id)` with their defaults for `token_width`-byte
/// tokens, checked (see `anygram::format::check_token_parameters`).
#[pyfunction]
#[pyo3(signature = (token_width, vocab_size = None, eos_token_id = None))]
pub fn token_parameters(
    token_width: &Bound<'_, PyAny>,
    vocab_size: Option<&Bound<'_, PyAny>>,
    eos_token_id: Option<&Bound<'_, PyAny>>,
) -> PyResult<(u64, u64)> {
    let width = width_arg(token_width)?;
    let vocab = maybe_int_arg(vocab_size, "vocab_size", 0..=U64_MAX)?;
    let eos = maybe_int_arg(eos_token_id, "eos_token_id", 0..=U64_MAX)?;
    anygram::format::check_token_parameters(width, vocab, eos).map_err(errors::to_py)
}

/// The token width of an index built with a tokenizer of `vocab_size` ids.
#[pyfunction]
pub fn tokenizer_token_width(vocab_size: &Bound<'_, PyAny>) -> PyResult<usize> {
    let vocab: u64 = int_arg(vocab_size, "vocab_size", 0..=U64_MAX)?;
    anygram::format::width_for_tokenizer(vocab)
        .map(|w| w.bytes())
        .map_err(errors::to_py)
}

/// Bytes per suffix-array pointer for a token file of `tokenized_bytes` bytes.
#[pyfunction]
pub fn ptr_size_for(tokenized_bytes: &Bound<'_, PyAny>) -> PyResult<usize> {
    let bytes: u64 = int_arg(tokenized_bytes, "tokenized_bytes", 0..=U64_MAX)?;
    Ok(anygram::format::ptr_size_for(bytes))
}

/// Raises unless a build can work within `mem_bytes` when the process holds
/// `held_bytes` (the core's memory model, `anygram::build::check_budget`).
#[pyfunction]
pub fn check_build_budget(
    mem_bytes: &Bound<'_, PyAny>,
    held_bytes: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let mem: u64 = int_arg(mem_bytes, "mem_bytes", 0..=U64_MAX)?;
    let held: u64 = int_arg(held_bytes, "held_bytes", 0..=U64_MAX)?;
    anygram::build::check_budget(mem, held).map_err(errors::to_py)
}

/// The fewest shards of `num_tokens` whose suffix arrays sort in memory within
/// `mem_bytes` when the process holds `held_bytes` (`anygram::build::shards_for_budget`).
#[pyfunction]
pub fn shards_for_budget(
    num_tokens: &Bound<'_, PyAny>,
    token_width: &Bound<'_, PyAny>,
    mem_bytes: &Bound<'_, PyAny>,
    held_bytes: &Bound<'_, PyAny>,
) -> PyResult<u64> {
    let tokens: u64 = int_arg(num_tokens, "num_tokens", 0..=U64_MAX)?;
    let width = width_arg(token_width)?;
    let mem: u64 = int_arg(mem_bytes, "mem_bytes", 0..=U64_MAX)?;
    let held: u64 = int_arg(held_bytes, "held_bytes", 0..=U64_MAX)?;
    anygram::build::shards_for_budget(tokens, width, mem, held).map_err(errors::to_py)
}

/// Appends documents to an index directory's streams (`tokenized.all`,
/// `metadata.all`): `add(tokens, metadata_line)`, then `finish(starts_dir)`.
#[pyclass(name = "StreamWriter", module = "anygram._anygram")]
pub struct PyStreamWriter {
    inner: Option<StreamWriter>,
}

impl PyStreamWriter {
    fn open(&mut self) -> PyResult<&mut StreamWriter> {
        self.inner.as_mut().ok_or_else(|| {
            errors::to_py(anygram::Error::InvalidArgument(
                "the stream writer is finished".into(),
            ))
        })
    }
}

#[pymethods]
impl PyStreamWriter {
    #[new]
    fn new(
        path: PathBuf,
        token_width: &Bound<'_, PyAny>,
        vocab_size: &Bound<'_, PyAny>,
        metadata: bool,
    ) -> PyResult<Self> {
        let width = width_arg(token_width)?;
        let vocab: u64 = int_arg(vocab_size, "vocab_size", 1..=U64_MAX)?;
        let inner = StreamWriter::create(&path, width, vocab, metadata).map_err(errors::to_py)?;
        Ok(PyStreamWriter { inner: Some(inner) })
    }

    /// Appends a document: token ids (list or integer array) and, when the
    /// streams have metadata, its line (bytes, ending with its only newline).
    #[pyo3(signature = (tokens, metadata_line = None))]
    fn add(&mut self, tokens: &Bound<'_, PyAny>, metadata_line: Option<&[u8]>) -> PyResult<()> {
        let ids = token_ids(tokens, u32::MAX as u64, "tokens")?;
        self.open()?
            .add(ids.as_slice(), metadata_line)
            .map_err(errors::to_py)
    }

    /// Documents added so far.
    #[getter]
    fn num_documents(&self) -> u64 {
        self.inner.as_ref().map_or(0, |w| w.num_documents())
    }

    /// Token positions added so far, separators included.
    #[getter]
    fn num_tokens(&self) -> u64 {
        self.inner.as_ref().map_or(0, |w| w.num_tokens())
    }

    /// Syncs the streams, writes the start offsets into `starts_dir`; returns
    /// `{num_documents, num_tokens, bytes, meta_bytes}`.
    fn finish<'py>(&mut self, py: Python<'py>, starts_dir: PathBuf) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.take().ok_or_else(|| {
            errors::to_py(anygram::Error::InvalidArgument(
                "the stream writer is finished".into(),
            ))
        })?;
        let streams = call(py, || inner.finish(&starts_dir))?;
        to_py(py, &streams)
    }
}

/// Cuts the streams of `index_dir` into `num_shards` shards (see
/// `anygram::build::writer::split_shards`); returns each shard's counts.
#[pyfunction]
pub fn split_shards<'py>(
    py: Python<'py>,
    index_dir: PathBuf,
    starts_dir: PathBuf,
    streams: &Bound<'py, PyAny>,
    num_shards: &Bound<'py, PyAny>,
    token_width: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let streams: Streams = from_py(streams, "streams")?;
    let num_shards: usize = int_arg(num_shards, "num_shards", 1..=1 << 20)?;
    let width = width_arg(token_width)?;
    let shards = call(py, || {
        writer::split_shards(&index_dir, &starts_dir, &streams, num_shards, width)
    })?;
    to_py(py, &shards)
}

/// Removes the streams once the shards are written.
#[pyfunction]
pub fn remove_streams(py: Python<'_>, index_dir: PathBuf, starts_dir: PathBuf) -> PyResult<()> {
    call(py, || writer::remove_streams(&index_dir, &starts_dir))
}

/// Puts the finished index `tmp` at `output`, a directory or an object storage
/// URL (see `anygram::build::writer::publish_index_recorded`); an index there is
/// replaced only with `replace`, once the caller has checked it holds index files
/// only. `upload_record`: where an upload records its files (a resumed one skips them).
#[pyfunction]
#[pyo3(signature = (tmp, output, replace, upload_record=None))]
pub fn publish_index(
    py: Python<'_>,
    tmp: PathBuf,
    output: PathBuf,
    replace: bool,
    upload_record: Option<PathBuf>,
) -> PyResult<()> {
    call(py, || {
        writer::publish_index_recorded(&tmp, &output, replace, upload_record.as_deref())
    })
}

/// Uploads the finished local file `local` to the URL `url` (the core's
/// `storage::upload_file`); with `upload_record`, skipped when recorded there
/// and unchanged. Returns whether it uploaded.
#[pyfunction]
#[pyo3(signature = (local, url, upload_record=None))]
pub fn upload_index_file(
    py: Python<'_>,
    local: PathBuf,
    url: PathBuf,
    upload_record: Option<PathBuf>,
) -> PyResult<bool> {
    call(py, || {
        anygram::storage::upload_file(&local, &url, upload_record.as_deref())
    })
}

/// Checks that an index may be published at the directory URL `url` (the
/// core's `storage::check_destination`): no index there unless `replace`,
/// nothing but index files, the bucket reachable with the credentials given.
#[pyfunction]
pub fn check_index_destination(py: Python<'_>, url: PathBuf, replace: bool) -> PyResult<()> {
    call(py, || anygram::storage::check_destination(&url, replace))
}

/// Completes the index in `index_dir` (see `anygram::build::writer::finish_index`):
/// accelerators, stored tokenizer (`{"path", "name", "sha256"}` or None),
/// marker, checksums and the manifest (`build`: the build record, a dict of
/// its known fields). Returns the manifest written, as a dict.
#[pyfunction]
#[pyo3(signature = (index_dir, token_width, vocab_size, eos_token_id, shards, tokenizer = None, build = None,
                    accelerator = true))]
#[allow(clippy::too_many_arguments)]
pub fn finish_index<'py>(
    py: Python<'py>,
    index_dir: PathBuf,
    token_width: &Bound<'py, PyAny>,
    vocab_size: &Bound<'py, PyAny>,
    eos_token_id: &Bound<'py, PyAny>,
    shards: &Bound<'py, PyAny>,
    tokenizer: Option<&Bound<'py, PyAny>>,
    build: Option<&Bound<'py, PyAny>>,
    accelerator: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let options = FinishOptions {
        width: width_arg(token_width)?,
        vocab_size: int_arg(vocab_size, "vocab_size", 1..=U64_MAX)?,
        eos_token_id: int_arg(eos_token_id, "eos_token_id", 0..=U64_MAX)?,
        shards: from_py::<Vec<ShardMeta>>(shards, "shards")?,
        tokenizer: tokenizer
            .filter(|t| !t.is_none())
            .map(|t| from_py::<TokenizerSource>(t, "tokenizer"))
            .transpose()?,
        build: build
            .filter(|b| !b.is_none())
            .map(|b| from_py::<BuildRecord>(b, "build"))
            .transpose()?,
        accelerator,
    };
    let manifest = call(py, || writer::finish_index(&index_dir, &options))?;
    to_py(py, &manifest)
}

/// A whole build from token arrays (a Ray task, a script with its own
/// tokenizer): `IndexWriter(output, token_width, ...)`, `add(tokens,
/// metadata_line)` per document, then `finish()` publishes the index at
/// `output` and returns its manifest. Nothing is at `output` before.
#[pyclass(name = "IndexWriter", module = "anygram._anygram")]
pub struct PyIndexWriter {
    inner: Option<writer::IndexWriter>,
}

#[pymethods]
impl PyIndexWriter {
    #[new]
    #[pyo3(signature = (output, token_width, vocab_size = None, eos_token_id = None, shards = None,
                        metadata = false, mem_bytes = None, accelerator = true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        output: PathBuf,
        token_width: &Bound<'_, PyAny>,
        vocab_size: Option<&Bound<'_, PyAny>>,
        eos_token_id: Option<&Bound<'_, PyAny>>,
        shards: Option<&Bound<'_, PyAny>>,
        metadata: bool,
        mem_bytes: Option<&Bound<'_, PyAny>>,
        accelerator: bool,
    ) -> PyResult<Self> {
        let options = writer::IndexWriterOptions {
            width: width_arg(token_width)?,
            vocab_size: maybe_int_arg(vocab_size, "vocab_size", 0..=U64_MAX)?,
            eos_token_id: maybe_int_arg(eos_token_id, "eos_token_id", 0..=U64_MAX)?,
            num_shards: maybe_int_arg(shards, "shards", 1..=1 << 20)?.unwrap_or(1),
            metadata,
            suffix_array: anygram::build::SuffixArrayOptions {
                mem_bytes: maybe_int_arg(mem_bytes, "mem_bytes", 1..=U64_MAX)?,
                ..Default::default()
            },
            accelerator,
            tokenizer: None,
        };
        let inner = writer::IndexWriter::create(&output, options).map_err(errors::to_py)?;
        Ok(PyIndexWriter { inner: Some(inner) })
    }

    /// Appends a document: token ids and, when `metadata` was set, its line.
    #[pyo3(signature = (tokens, metadata_line = None))]
    fn add(&mut self, tokens: &Bound<'_, PyAny>, metadata_line: Option<&[u8]>) -> PyResult<()> {
        let ids = token_ids(tokens, u32::MAX as u64, "tokens")?;
        self.inner
            .as_mut()
            .ok_or_else(|| {
                errors::to_py(anygram::Error::InvalidArgument(
                    "the index writer is finished".into(),
                ))
            })?
            .add(ids.as_slice(), metadata_line)
            .map_err(errors::to_py)
    }

    /// Splits, sorts (on the pool, the GIL released), finishes and publishes;
    /// returns the manifest.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.take().ok_or_else(|| {
            errors::to_py(anygram::Error::InvalidArgument(
                "the index writer is finished".into(),
            ))
        })?;
        let manifest = call(py, || inner.finish(None))?;
        to_py(py, &manifest)
    }
}

/// The format's constants, as module attributes.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStreamWriter>()?;
    m.add_class::<PyIndexWriter>()?;
    for f in [
        wrap_pyfunction!(read_manifest, m)?,
        wrap_pyfunction!(write_manifest, m)?,
        wrap_pyfunction!(check_manifest, m)?,
        wrap_pyfunction!(stored_tokenizer, m)?,
        wrap_pyfunction!(record_files, m)?,
        wrap_pyfunction!(token_parameters, m)?,
        wrap_pyfunction!(tokenizer_token_width, m)?,
        wrap_pyfunction!(ptr_size_for, m)?,
        wrap_pyfunction!(check_build_budget, m)?,
        wrap_pyfunction!(shards_for_budget, m)?,
        wrap_pyfunction!(split_shards, m)?,
        wrap_pyfunction!(remove_streams, m)?,
        wrap_pyfunction!(finish_index, m)?,
        wrap_pyfunction!(publish_index, m)?,
        wrap_pyfunction!(upload_index_file, m)?,
        wrap_pyfunction!(check_index_destination, m)?,
    ] {
        m.add_function(f)?;
    }
    m.add("MANIFEST_FILE", manifest::MANIFEST_FILE)?;
    m.add("MARKER_FILE", manifest::MARKER_FILE)?;
    m.add("TOKENIZER_FILE", manifest::TOKENIZER_FILE)?;
    m.add("ANYGRAM_ONLY_FILES", manifest::ANYGRAM_ONLY_FILES.to_vec())?;
    m.add("FORMAT_VERSION", manifest::FORMAT_VERSION)?;
    m.add(
        "OLDEST_SUPPORTED_FORMAT_VERSION",
        manifest::OLDEST_SUPPORTED_FORMAT_VERSION,
    )?;
    Ok(())
}
