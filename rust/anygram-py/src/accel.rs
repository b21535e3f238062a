//! The search accelerator's bindings: writing `accel.{s}` files for an index,
//! and counting the dependent reads of a query (for tests and benchmarks).

use std::path::PathBuf;

use anygram::accel::WriteOptions;
use anygram::{Engine, OpenOptions};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::engine::PyEngine;
use crate::errors::to_py;

/// Writes the accelerator of every shard of the index in `path` (atomically,
/// replacing old ones); returns the files written.
#[pyfunction]
#[pyo3(signature = (path, token_width = None, rate = anygram::accel::DEFAULT_RATE, key_bytes = anygram::accel::DEFAULT_KEY_BYTES, node_keys = None))]
pub fn write_accelerators(
    py: Python<'_>,
    path: PathBuf,
    token_width: Option<usize>,
    rate: u64,
    key_bytes: usize,
    node_keys: Option<u64>,
) -> PyResult<Vec<PathBuf>> {
    let open = OpenOptions {
        token_width,
        sample_keys: false,
        accelerator: false,
        ..OpenOptions::default()
    };
    let options = WriteOptions {
        rate,
        key_bytes,
        node_keys,
    };
    py.detach(|| {
        let engine = Engine::open(&path, &open)?;
        anygram::accel::write_all(&engine, &options)
    })
    .map_err(to_py)
}

/// `find(tokens)` while counting its reads: a dict with `count`, `rounds`
/// (dependent reads by shard) and `pages` (distinct 4 KiB pages by file).
#[pyfunction]
pub fn count_reads<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    tokens: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let engine = engine.get();
    let ids = engine.ids(py, tokens)?;
    let (found, reads) = py.detach(|| anygram::reads::record(|| engine.core().find(&ids)));
    let found = found.map_err(to_py)?;
    let out = PyDict::new(py);
    out.set_item("count", found.count)?;
    out.set_item("rounds", reads.rounds)?;
    out.set_item("pages", reads.pages)?;
    Ok(out)
}
