//! The search accelerator's bindings: writing `accel.{s}` files for an index,
//! and counting the dependent reads of a query (for tests and benchmarks).

use std::path::PathBuf;

use anygram::accel::WriteOptions;
use anygram::{Engine, OpenOptions};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::args::maybe_int_arg;
use crate::batch::call;
use crate::engine::PyEngine;

/// Writes the accelerator of every shard of the index in `path` (atomically,
/// replacing old ones); returns the files written.
#[pyfunction]
#[pyo3(signature = (path, token_width = None, rate = None, key_bytes = None, node_keys = None))]
pub fn write_accelerators(
    py: Python<'_>,
    path: PathBuf,
    token_width: Option<&Bound<'_, PyAny>>,
    rate: Option<&Bound<'_, PyAny>>,
    key_bytes: Option<&Bound<'_, PyAny>>,
    node_keys: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<PathBuf>> {
    let open = OpenOptions {
        token_width: maybe_int_arg(token_width, "token_width", 1..=4)?,
        sample_keys: false,
        accelerator: false,
        ..OpenOptions::default()
    };
    // The core checks how these relate (WriteOptions); here only that they are integers in range.
    let options = WriteOptions {
        rate: maybe_int_arg(rate, "rate", 1..=u32::MAX as i128)?
            .unwrap_or(anygram::accel::DEFAULT_RATE),
        key_bytes: maybe_int_arg(key_bytes, "key_bytes", 1..=u16::MAX as i128)?
            .unwrap_or(anygram::accel::DEFAULT_KEY_BYTES),
        node_keys: maybe_int_arg(node_keys, "node_keys", 1..=u32::MAX as i128)?,
    };
    call(py, || {
        let engine = Engine::open(&path, &open)?;
        anygram::accel::write_all(&engine, &options)
    })
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
    let ids = engine.ids(py, tokens, "tokens")?;
    let ids = ids.as_slice();
    // Recorded on the one pool thread that runs the search (the counter is thread-local).
    let (found, reads) = call(py, || {
        let (found, reads) = anygram::reads::record(|| engine.core().find(ids));
        found.map(|found| (found, reads))
    })?;
    let out = PyDict::new(py);
    out.set_item("count", found.count)?;
    out.set_item("rounds", reads.rounds)?;
    out.set_item("pages", reads.pages)?;
    Ok(out)
}
