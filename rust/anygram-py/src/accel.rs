//! The search accelerator's bindings: writing `accel.{s}` files for an index,
//! and counting the dependent reads of a query (for tests and benchmarks).

use std::path::PathBuf;

use anygram::accel::WriteOptions;
use anygram::{Engine, OpenOptions};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::args::maybe_int_arg;
use crate::batch::call;
use crate::engine::{PyEngine, DEFAULT_MAX_SUPPORT, POSITIVE};
use crate::errors::invalid_query;

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

/// A query while counting its reads: a dict with `count` (`count`'s answer,
/// else the context's count), `rounds` (dependent reads by shard) and `pages`
/// (distinct 4 KiB pages by file). `method` is one of `count`, `prob`,
/// `infgram_prob` (these two need `token`), `ntd`, `infgram_ntd`, `search_docs`.
#[pyfunction]
#[pyo3(signature = (engine, tokens, method = "count", token = None, max_support = None))]
pub fn count_reads<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    tokens: &Bound<'py, PyAny>,
    method: &str,
    token: Option<&Bound<'py, PyAny>>,
    max_support: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let engine = engine.get();
    let ids = engine.ids(py, tokens, "tokens")?;
    let ids = ids.as_slice();
    let core = engine.core();
    let vocab = core.vocab_size() as i128;
    let token: Option<u32> = maybe_int_arg(token, "token", 0..=vocab - 1)?;
    let max_support: u64 =
        maybe_int_arg(max_support, "max_support", POSITIVE)?.unwrap_or(DEFAULT_MAX_SUPPORT);
    let needs_token = || {
        token.ok_or_else(|| invalid_query(format!("count_reads: method {method:?} needs a token")))
    };
    type Query<'a> = Box<dyn Fn() -> anygram::Result<u64> + Send + Sync + 'a>;
    let query: Query = match method {
        "count" => Box::new(|| core.count(ids)),
        "prob" => {
            let token = needs_token()?;
            Box::new(move || Ok(core.prob(ids, token)?.prompt_count))
        }
        "infgram_prob" => {
            let token = needs_token()?;
            Box::new(move || Ok(core.infgram_prob(ids, token)?.prompt_count))
        }
        "ntd" => Box::new(move || Ok(core.ntd(ids, max_support)?.prompt_count)),
        "infgram_ntd" => Box::new(move || Ok(core.infgram_ntd(ids, max_support)?.prompt_count)),
        "search_docs" => Box::new(|| Ok(core.search_docs(ids, 1, 100, Some(0))?.count)),
        other => {
            return Err(invalid_query(format!(
                "count_reads: method must be count, prob, infgram_prob, ntd, infgram_ntd or search_docs, not {other:?}"
            )))
        }
    };
    // Recorded on the one pool thread that runs the query (the counter is thread-local).
    let (count, reads) = call(py, || {
        let (count, reads) = anygram::reads::record(&query);
        count.map(|count| (count, reads))
    })?;
    let out = PyDict::new(py);
    out.set_item("count", count)?;
    out.set_item("rounds", reads.rounds)?;
    out.set_item("pages", reads.pages)?;
    Ok(out)
}
