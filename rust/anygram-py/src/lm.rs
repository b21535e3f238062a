//! The ∞-gram LM bindings: `score`, `score_batch` and `ntd_dense`, free
//! functions over a native engine that `anygram.Engine` exposes as methods.
//! Every call runs in the core with the GIL released.

use anygram::{ScoreOptions, Scores};
use numpy::ndarray::Array2;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rayon::prelude::*;

use crate::args::maybe_int_arg;
use crate::batch::{batch, call};
use crate::engine::{slices, PyEngine, DEFAULT_MAX_SUPPORT, POSITIVE};
use crate::errors::{invalid_query, out_of_memory};

/// Most elements `ntd_dense` allocates in one call (16 GiB of float32).
const MAX_DENSE_ELEMENTS: u128 = 1 << 32;

fn options(
    sparse: bool,
    top: bool,
    max_support: Option<&Bound<'_, PyAny>>,
    doc_start: bool,
) -> PyResult<ScoreOptions> {
    let max_support = max_support_arg(max_support)?;
    Ok(ScoreOptions {
        sparse,
        top_max_support: top.then_some(max_support),
        doc_start,
    })
}

fn max_support_arg(value: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    Ok(maybe_int_arg(value, "max_support", POSITIVE)?.unwrap_or(DEFAULT_MAX_SUPPORT))
}

fn scores_dict<'py>(
    py: Python<'py>,
    s: Scores,
    options: &ScoreOptions,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("prob", s.prob.into_pyarray(py))?;
    d.set_item("suffix_len", s.suffix_len.into_pyarray(py))?;
    d.set_item("prompt_cnt", s.prompt_count.into_pyarray(py))?;
    d.set_item("cont_cnt", s.cont_count.into_pyarray(py))?;
    if options.sparse {
        d.set_item("sparse", s.sparse.into_pyarray(py))?;
    }
    if options.top_max_support.is_some() {
        // −1 where the distribution is empty (an empty index).
        let top: Vec<i64> = s
            .top_token
            .iter()
            .map(|&t| if t == u32::MAX { -1 } else { t as i64 })
            .collect();
        d.set_item("top_token", top.into_pyarray(py))?;
        d.set_item("top_prob", s.top_prob.into_pyarray(py))?;
        d.set_item("top_approx", s.top_approx.into_pyarray(py))?;
    }
    Ok(d)
}

/// The ∞-gram probability of every token of a text given the tokens before it.
#[pyfunction]
#[pyo3(signature = (engine, tokens, sparse = true, top = false, max_support = None, doc_start = false))]
pub fn score<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    tokens: &Bound<'py, PyAny>,
    sparse: bool,
    top: bool,
    max_support: Option<&Bound<'py, PyAny>>,
    doc_start: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let engine = engine.get();
    let ids = engine.ids(py, tokens, "tokens")?;
    let ids = ids.as_slice();
    let options = options(sparse, top, max_support, doc_start)?;
    let scores = call(py, || engine.core().score(ids, &options))?;
    scores_dict(py, scores, &options)
}

/// `score` of many texts, on all cores: a list of dicts.
#[pyfunction]
#[pyo3(signature = (engine, texts, sparse = true, top = false, max_support = None, doc_start = false))]
pub fn score_batch<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    texts: &Bound<'py, PyAny>,
    sparse: bool,
    top: bool,
    max_support: Option<&Bound<'py, PyAny>>,
    doc_start: bool,
) -> PyResult<Bound<'py, PyList>> {
    let engine = engine.get();
    let texts = engine.many(py, texts)?;
    let options = options(sparse, top, max_support, doc_start)?;
    // One core call for the whole batch: it scores the texts' pieces in lockstep.
    let texts = slices(&texts);
    let results = call(py, || engine.core().score_many(&texts, &options))?;
    let list = PyList::empty(py);
    for scores in results {
        list.append(scores_dict(py, scores, &options)?)?;
    }
    Ok(list)
}

/// Room for `len` floats, or an `anygram.errors.OutOfMemoryError` (a
/// `MemoryError`) naming the size: an allocation failure must not abort the
/// interpreter, as an infallible `vec![0; len]` would.
fn reserve_f32(len: usize, shape: (usize, usize)) -> PyResult<Vec<f32>> {
    let mut buffer: Vec<f32> = Vec::new();
    buffer.try_reserve_exact(len).map_err(|_| {
        out_of_memory(format!(
            "cannot allocate a dense [{}, {}] float32 array ({:.2} GiB): pass fewer contexts at once, or a smaller vocab_size",
            shape.0,
            shape.1,
            len as f64 * 4.0 / (1u64 << 30) as f64
        ))
    })?;
    Ok(buffer)
}

/// The ∞-gram next-token distribution of every context as a dense
/// `[B, vocab_size]` float32 array, with each row's suffix length, context
/// count, sparse flag and whether it was sampled.
#[pyfunction]
#[pyo3(signature = (engine, contexts, max_support = None, vocab_size = None))]
pub fn ntd_dense<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    contexts: &Bound<'py, PyAny>,
    max_support: Option<&Bound<'py, PyAny>>,
    vocab_size: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let engine = engine.get();
    let contexts = engine.many(py, contexts)?;
    let max_support = max_support_arg(max_support)?;
    let vocab: u64 = maybe_int_arg(vocab_size, "vocab_size", 1..=u32::MAX as i128)?
        .unwrap_or(engine.core().vocab_size());
    let eos = engine.core().eos_token_id() as u64;
    if vocab == 0 || vocab > u32::MAX as u64 {
        return Err(invalid_query(format!(
            "vocab_size must be in [1, 2^32), not {vocab}"
        )));
    }
    if eos >= vocab {
        return Err(invalid_query(format!(
            "document ends are reported as eos token {eos}, which does not fit a vocabulary of {vocab}: open the index with eos_token_id=... or pass a larger vocab_size"
        )));
    }
    let vocab = vocab as usize;
    let elements = (contexts.len() as u128) * vocab as u128;
    if elements > MAX_DENSE_ELEMENTS {
        return Err(invalid_query(format!(
            "a dense [{}, {vocab}] float32 array would take {:.1} GiB (the limit is {} GiB): pass fewer contexts at once, or a smaller vocab_size",
            contexts.len(),
            elements as f64 * 4.0 / (1u64 << 30) as f64,
            (MAX_DENSE_ELEMENTS * 4) >> 30
        )));
    }
    let rows = batch(py, &slices(&contexts), |c| {
        engine.core().infgram_ntd_sparse(c, max_support)
    })?;
    let mut probs = reserve_f32(rows.len() * vocab, (rows.len(), vocab))?;
    let probs = call(py, || {
        probs.resize(rows.len() * vocab, 0.0);
        probs
            .par_chunks_mut(vocab.max(1))
            .zip(&rows)
            .enumerate()
            .try_for_each(|(i, (row, (ntd, _)))| {
                for &(token, count) in &ntd.counts {
                    let slot = row.get_mut(token as usize).ok_or_else(|| {
                        anygram::Error::InvalidQuery(format!(
                            "context {i}: token {token} follows this context in the index but does not fit vocab_size {vocab}"
                        ))
                    })?;
                    *slot = (count as f64 / ntd.prompt_count as f64) as f32;
                }
                Ok(())
            })?;
        Array2::from_shape_vec((rows.len(), vocab), probs)
            .map_err(|e| anygram::Error::InvalidArgument(format!("dense array shape: {e}")))
    })?;
    let d = PyDict::new(py);
    d.set_item("probs", probs.into_pyarray(py))?;
    d.set_item(
        "suffix_len",
        rows.iter()
            .map(|(n, _)| n.suffix_len as u32)
            .collect::<Vec<_>>()
            .into_pyarray(py),
    )?;
    d.set_item(
        "prompt_cnt",
        rows.iter()
            .map(|(n, _)| n.prompt_count)
            .collect::<Vec<_>>()
            .into_pyarray(py),
    )?;
    d.set_item(
        "sparse",
        rows.iter()
            .map(|(_, s)| *s)
            .collect::<Vec<_>>()
            .into_pyarray(py),
    )?;
    d.set_item(
        "approx",
        rows.iter()
            .map(|(n, _)| n.approx)
            .collect::<Vec<_>>()
            .into_pyarray(py),
    )?;
    Ok(d)
}
