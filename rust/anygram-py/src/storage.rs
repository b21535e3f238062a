//! The storage layer's settings and small-file reads, for opening indexes by URL.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::args::maybe_int_arg;
use crate::batch::call;

/// The whole content of a small index file (manifest, tokenizer) at a local
/// path or URL, read through the core's storage layer; at most `max_bytes`.
#[pyfunction]
pub fn read_index_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    what: String,
    max_bytes: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let max_bytes = maybe_int_arg(Some(max_bytes), "max_bytes", 0..=i64::MAX as i128)?.unwrap_or(0);
    let bytes = call(py, || anygram::storage::read_whole(&path, &what, max_bytes))?;
    Ok(PyBytes::new(py, &bytes))
}

/// Whether an index file exists (a local path, or an object at a URL).
#[pyfunction]
pub fn index_file_exists(py: Python<'_>, path: PathBuf) -> PyResult<bool> {
    call(py, || anygram::storage::file_exists(&path))
}

/// Ranged GET requests the object backend has sent in this process.
#[pyfunction]
pub fn storage_get_count() -> u64 {
    anygram::storage::remote_get_count()
}

/// Round trips (batches of concurrent ranged GETs) the object backend has made in this process.
#[pyfunction]
pub fn storage_batch_count() -> u64 {
    anygram::storage::remote_batch_count()
}

/// Sets the object backend's block size, caches and retries for indexes opened from now on.
#[pyfunction]
#[pyo3(signature = (block_bytes = None, cache_ram_bytes = None, cache_dir = None, cache_disk_bytes = None, retries = None))]
pub fn configure_storage(
    py: Python<'_>,
    block_bytes: Option<&Bound<'_, PyAny>>,
    cache_ram_bytes: Option<&Bound<'_, PyAny>>,
    cache_dir: Option<PathBuf>,
    cache_disk_bytes: Option<&Bound<'_, PyAny>>,
    retries: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let defaults = anygram::storage::StorageOptions::default();
    let options = anygram::storage::StorageOptions {
        block_bytes: maybe_int_arg(block_bytes, "block_bytes", 1..=(64 << 20))?
            .unwrap_or(defaults.block_bytes),
        cache_ram_bytes: maybe_int_arg(cache_ram_bytes, "cache_ram_bytes", 0..=i64::MAX as i128)?
            .unwrap_or(defaults.cache_ram_bytes),
        cache_disk_bytes: maybe_int_arg(
            cache_disk_bytes,
            "cache_disk_bytes",
            0..=i64::MAX as i128,
        )?
        .unwrap_or(if cache_dir.is_some() { 10 << 30 } else { 0 }),
        cache_dir,
        retries: maybe_int_arg::<u64>(retries, "retries", 0..=100)?
            .map_or(defaults.retries, |r| r as usize),
    };
    call(py, || anygram::storage::configure(options))
}

/// Round trips on the calling thread's critical path (object storage): a
/// query's batches, with the shards it searched concurrently counted once
/// (the most any shard made). What a single query's latency is made of.
#[pyfunction]
pub fn storage_round_trips() -> u64 {
    anygram::storage::thread_round_trips()
}
