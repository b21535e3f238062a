//! Kneser-Ney distributions, exact next-token counts and the samplers
//! (`anygram::smoothing`): `_anygram.KneserNey` keeps a model (its unigram
//! distribution and discounts, made once per engine) and the functions take an
//! engine. Distributions are dense float64 rows, samples uint32 arrays.

use std::sync::{Arc, RwLock};

use anygram::smoothing::{self, DocumentEnds, KneserNey, Sampling};
use anygram::Engine;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::args::{int_arg, opt_int_arg, U64_MAX};
use crate::batch::{batch, call, quick};
use crate::engine::{slices, PyEngine, POSITIVE};
use crate::errors::invalid_query;

/// Most values one call returns as a dense array (2 GiB of float64).
const MAX_DENSE_VALUES: usize = 1 << 28;

fn ends_arg(value: &str) -> PyResult<DocumentEnds> {
    match value {
        "eos" => Ok(DocumentEnds::Eos),
        "skip" => Ok(DocumentEnds::Skip),
        other => Err(invalid_query(format!(
            "document_ends must be 'eos' (a document end counts as the eos token) or 'skip' (it counts as nothing), not {other:?}"
        ))),
    }
}

fn check_dense(rows: usize, width: usize) -> PyResult<()> {
    if rows.saturating_mul(width) > MAX_DENSE_VALUES {
        return Err(invalid_query(format!(
            "a dense [{rows}, {width}] array is over the limit of {MAX_DENSE_VALUES} values: pass fewer contexts at once"
        )));
    }
    Ok(())
}

fn rows_to_array<T: numpy::Element + Copy + Default>(
    rows: Vec<Vec<T>>,
    width: usize,
) -> PyResult<Array2<T>> {
    let n = rows.len();
    let flat: Vec<T> = rows.into_iter().flatten().collect();
    Array2::from_shape_vec((n, width), flat).map_err(|e| invalid_query(format!("array shape: {e}")))
}

/// An interpolated Kneser-Ney model over an engine (tokengrams' definition,
/// see `anygram::smoothing`).
#[pyclass(frozen, module = "anygram._anygram", name = "KneserNey")]
pub struct PyKneserNey {
    engine: Arc<Engine>,
    /// Replaced whole when discounts are estimated; calls hold their own `Arc`.
    model: RwLock<Arc<KneserNey>>,
}

impl PyKneserNey {
    /// The current model (an `Arc`: estimating discounts replaces it whole).
    pub(crate) fn model(&self) -> Arc<KneserNey> {
        self.model
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[pymethods]
impl PyKneserNey {
    /// Counts the unigrams and estimates the order-1 discount.
    #[new]
    #[pyo3(signature = (engine, document_ends = "eos"))]
    fn new(py: Python<'_>, engine: &Bound<'_, PyEngine>, document_ends: &str) -> PyResult<Self> {
        let ends = ends_arg(document_ends)?;
        let engine = engine.get().core().clone();
        let model = call(py, || KneserNey::new(&engine, ends))?;
        Ok(PyKneserNey {
            engine,
            model: RwLock::new(Arc::new(model)),
        })
    }

    /// Estimates the discounts of orders 1..=n (each distinct prefix of up to
    /// n − 1 tokens is visited once).
    fn estimate_deltas(&self, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<()> {
        let n: usize = int_arg(n, "n", 1..=64)?;
        let mut model = KneserNey::clone(&self.model());
        call(py, || model.estimate_deltas(&self.engine, n))?;
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(model);
        Ok(())
    }

    /// The discounts by order (orders never estimated use 0.5).
    fn deltas<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (order, delta) in self.model().deltas() {
            d.set_item(order, delta)?;
        }
        Ok(d)
    }

    /// The smoothed next-token distribution after `context`: float64[vocab_size].
    fn probs<'py>(
        &self,
        py: Python<'py>,
        engine: &Bound<'py, PyEngine>,
        context: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let context = engine.get().ids(py, context, "context")?;
        let model = self.model();
        let context = context.as_slice();
        let row = quick(py, || model.probs(&self.engine, context))?;
        Ok(row.into_pyarray(py))
    }

    /// `probs` of each context, on all cores: float64[len(contexts), vocab_size].
    fn probs_batch<'py>(
        &self,
        py: Python<'py>,
        engine: &Bound<'py, PyEngine>,
        contexts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let contexts = engine.get().many(py, contexts)?;
        let vocab = self.engine.vocab_size() as usize;
        check_dense(contexts.len(), vocab)?;
        let model = self.model();
        let rows = batch(py, &slices(&contexts), |c| model.probs(&self.engine, c))?;
        Ok(rows_to_array(rows, vocab)?.into_pyarray(py))
    }

    /// `num_samples` samples of `k` tokens after each context from the
    /// order-`n` smoothed distributions: uint32[len(contexts) · num_samples, k].
    #[pyo3(signature = (engine, contexts, n, k, num_samples = None, seed = None))]
    #[allow(clippy::too_many_arguments)]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        engine: &Bound<'py, PyEngine>,
        contexts: &Bound<'py, PyAny>,
        n: &Bound<'py, PyAny>,
        k: &Bound<'py, PyAny>,
        num_samples: Option<&Bound<'py, PyAny>>,
        seed: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray2<u32>>> {
        let n = int_arg(n, "n", POSITIVE)?;
        let model = self.model();
        run_sampler(
            py,
            engine,
            contexts,
            Sampling::KneserNey { n, model: &model },
            k,
            num_samples,
            seed,
        )
    }
}

pub(crate) fn run_sampler<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    contexts: &Bound<'py, PyAny>,
    how: Sampling<'_>,
    k: &Bound<'py, PyAny>,
    num_samples: Option<&Bound<'py, PyAny>>,
    seed: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray2<u32>>> {
    let k: usize = int_arg(k, "k", 0..=1 << 20)?;
    let num_samples: usize = opt_int_arg(num_samples, "num_samples", 1..=1 << 24, 1)?;
    let seed: u64 = opt_int_arg(seed, "seed", 0..=U64_MAX, 0)?;
    let engine = engine.get();
    let contexts = engine.many(py, contexts)?;
    check_dense(contexts.len().saturating_mul(num_samples), k)?;
    let core = engine.core();
    let slices = slices(&contexts);
    let rows = call(py, || {
        smoothing::sample_batch(core, &slices, how, k, num_samples, seed)
    })?;
    Ok(rows_to_array(rows, k)?.into_pyarray(py))
}

/// Samples from the unsmoothed order-`n` distributions (the counts after the
/// last n − 1 tokens): uint32[len(contexts) · num_samples, k].
#[pyfunction]
#[pyo3(signature = (engine, contexts, n, k, num_samples = None, seed = None, document_ends = "eos"))]
#[allow(clippy::too_many_arguments)]
pub fn sample_unsmoothed<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    contexts: &Bound<'py, PyAny>,
    n: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    num_samples: Option<&Bound<'py, PyAny>>,
    seed: Option<&Bound<'py, PyAny>>,
    document_ends: &str,
) -> PyResult<Bound<'py, PyArray2<u32>>> {
    let n = int_arg(n, "n", POSITIVE)?;
    let ends = ends_arg(document_ends)?;
    run_sampler(
        py,
        engine,
        contexts,
        Sampling::Unsmoothed {
            n,
            ends,
            memo: None,
        },
        k,
        num_samples,
        seed,
    )
}

/// Samples from the ∞-gram distributions (exact `infgram_ntd` after the whole
/// sequence so far): uint32[len(contexts) · num_samples, k].
#[pyfunction]
#[pyo3(signature = (engine, contexts, k, num_samples = None, seed = None))]
pub fn sample_infgram<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    contexts: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    num_samples: Option<&Bound<'py, PyAny>>,
    seed: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray2<u32>>> {
    run_sampler(
        py,
        engine,
        contexts,
        Sampling::InfGram,
        k,
        num_samples,
        seed,
    )
}

/// Exact counts of each token after each context, dense:
/// uint64[len(contexts), width] (`width` defaults to the vocabulary size; a
/// token at or past it is an error).
#[pyfunction]
#[pyo3(signature = (engine, contexts, width = None, document_ends = "eos"))]
pub fn count_next_dense<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    contexts: &Bound<'py, PyAny>,
    width: Option<&Bound<'py, PyAny>>,
    document_ends: &str,
) -> PyResult<Bound<'py, PyArray2<u64>>> {
    let ends = ends_arg(document_ends)?;
    let engine = engine.get();
    let core = engine.core();
    let width: usize = opt_int_arg(
        width,
        "width",
        1..=smoothing::MAX_DENSE_VOCAB as i128,
        core.vocab_size().min(smoothing::MAX_DENSE_VOCAB) as usize,
    )?;
    let contexts = engine.many(py, contexts)?;
    check_dense(contexts.len(), width)?;
    let rows = batch(py, &slices(&contexts), |c| {
        let mut row = vec![0u64; width];
        for (token, count) in smoothing::next_token_counts(core, c, ends)? {
            *row.get_mut(token as usize).ok_or_else(|| {
                anygram::Error::InvalidQuery(format!(
                    "token {token} follows this context but does not fit width {width}"
                ))
            })? = count;
        }
        Ok(row)
    })?;
    Ok(rows_to_array(rows, width)?.into_pyarray(py))
}

/// How many distinct n-grams occur once and twice (the counts behind a discount).
#[pyfunction]
pub fn ngrams_seen_once_and_twice(
    py: Python<'_>,
    engine: &Bound<'_, PyEngine>,
    n: &Bound<'_, PyAny>,
) -> PyResult<(u64, u64)> {
    let n: usize = int_arg(n, "n", 1..=64)?;
    let core = engine.get().core().clone();
    call(py, || smoothing::ngrams_seen_once_and_twice(&core, n))
}

/// Positions of an n-gram in the documents laid end to end (separators left
/// out; tokengrams' `positions`): uint64 array, at most `limit` (default 2^32).
#[pyfunction]
#[pyo3(signature = (engine, query, limit = None))]
pub fn stream_positions<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    query: &Bound<'py, PyAny>,
    limit: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let limit: u64 = opt_int_arg(limit, "limit", 0..=U64_MAX, 1 << 32)?;
    let engine = engine.get();
    let ids = engine.ids(py, query, "query")?;
    let ids = ids.as_slice();
    let core = engine.core();
    // On the calling thread: most n-grams occur a few times (the core takes
    // the pool itself for many occurrences).
    let positions = quick(py, || {
        anygram::positions::stream_positions(core, ids, limit)
    })?;
    Ok(positions.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyKneserNey>()?;
    m.add_function(wrap_pyfunction!(sample_unsmoothed, m)?)?;
    m.add_function(wrap_pyfunction!(sample_infgram, m)?)?;
    m.add_function(wrap_pyfunction!(count_next_dense, m)?)?;
    m.add_function(wrap_pyfunction!(ngrams_seen_once_and_twice, m)?)?;
    m.add_function(wrap_pyfunction!(stream_positions, m)?)?;
    Ok(())
}
