//! infini-gram's document calls for `anygram.compat.InfiniGramEngine`: each
//! answer is infini-gram's dict (its seven keys, `doc_ix` counted from
//! `first_doc`, the directory's first document), built here in one call for a
//! whole list of requests, so that the shim spends no Python per document.
//! The shim checks the arguments first (infini-gram's error dicts); the core
//! checks them again (an out-of-range value is an error, never a wrong window).

use anygram::documents::Document;
use anygram::next_tokens::NextTokenMemo;
use anygram::smoothing::{self, DocumentEnds};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::args::int_arg;
use crate::batch::{batch, quick};
use crate::engine::{slices, PyEngine};

fn infinigram_doc<'py>(
    py: Python<'py>,
    d: &Document,
    first_doc: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let doc_ix = first_doc.checked_add(d.doc_ix).ok_or_else(|| {
        pyo3::exceptions::PyOverflowError::new_err("first_doc + doc_ix overflows")
    })?;
    out.set_item(intern!(py, "doc_ix"), doc_ix)?;
    out.set_item(intern!(py, "doc_len"), d.doc_len)?;
    out.set_item(intern!(py, "disp_len"), d.disp_len)?;
    out.set_item(intern!(py, "needle_offset"), d.needle_offset)?;
    out.set_item(intern!(py, "metadata"), &d.metadata)?;
    out.set_item(intern!(py, "token_ids"), PyList::new(py, &d.token_ids)?)?;
    out.set_item(intern!(py, "blocked"), false)?;
    Ok(out)
}

fn infinigram_docs<'py>(
    py: Python<'py>,
    docs: &[Document],
    first_doc: u64,
) -> PyResult<Bound<'py, PyList>> {
    let dicts = docs
        .iter()
        .map(|d| infinigram_doc(py, d, first_doc))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, dicts)
}

/// Windows `(shard, ptr or rank, tokens before, tokens from it on)` of one
/// directory's engine (`Engine::get_doc_window`), as infini-gram's dicts.
#[pyfunction]
pub fn infinigram_windows<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    requests: Vec<(usize, u64, u64, u64)>,
    by_rank: bool,
    first_doc: u64,
) -> PyResult<Bound<'py, PyList>> {
    let core = engine.get().core();
    let docs = quick(py, || {
        requests
            .iter()
            .map(|&(shard, at, before, after)| {
                if by_rank {
                    core.get_doc_window_by_rank(shard, at, before, after)
                } else {
                    core.get_doc_window(shard, at, before, after)
                }
            })
            .collect::<anygram::Result<Vec<_>>>()
    })?;
    infinigram_docs(py, &docs, first_doc)
}

/// The first tokens of documents `(doc_ix in the directory, max tokens)`
/// (`Engine::get_doc_head`), as infini-gram's dicts.
#[pyfunction]
pub fn infinigram_heads<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    requests: Vec<(u64, u64)>,
    first_doc: u64,
) -> PyResult<Bound<'py, PyList>> {
    let core = engine.get().core();
    let docs = quick(py, || {
        requests
            .iter()
            .map(|&(doc_ix, max_tokens)| core.get_doc_head(doc_ix, max_tokens))
            .collect::<anygram::Result<Vec<_>>>()
    })?;
    infinigram_docs(py, &docs, first_doc)
}

/// Remembered exact next-token counts of one engine's frequent contexts
/// (`anygram::next_tokens::NextTokenMemo`): the tokengrams shim keeps one per
/// index object, so that a context of a common token is counted once.
#[pyclass(frozen, module = "anygram._anygram", name = "NextTokenMemo")]
pub struct PyNextTokenMemo {
    engine: Py<PyEngine>,
    memo: NextTokenMemo,
}

#[pymethods]
impl PyNextTokenMemo {
    #[new]
    fn new(engine: Py<PyEngine>) -> Self {
        PyNextTokenMemo {
            engine,
            memo: NextTokenMemo::frequent(),
        }
    }
}

/// tokengrams' `count_next` / `batch_count_next`: for each context a list of
/// `width` counts, one per next token (a document end counts as nothing, as
/// tokengrams sees one token stream), through the memo's engine and counts.
/// Built as Python lists here, tokengrams' answer type, from the sparse counts:
/// a list of zeros made whole, then the tokens that occur set, instead of a
/// dense array converted element by element.
#[pyfunction]
pub fn tokengrams_count_next<'py>(
    py: Python<'py>,
    memo: &Bound<'py, PyNextTokenMemo>,
    contexts: &Bound<'py, PyAny>,
    width: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let memo = memo.get();
    let engine = memo.engine.bind(py).get();
    let core = engine.core();
    let width: usize = int_arg(width, "width", 1..=smoothing::MAX_DENSE_VOCAB as i128)?;
    let contexts = engine.many(py, contexts)?;
    let contexts = slices(&contexts);
    let count =
        |c: &&[u32]| smoothing::next_token_counts_memo(core, &memo.memo, c, DocumentEnds::Skip);
    // One context runs here: a hop to the pool would cost more than it saves.
    let sparse = if contexts.len() == 1 {
        vec![quick(py, || count(&contexts[0]))?]
    } else {
        batch(py, &contexts, count)?
    };
    let zeros = PyList::new(py, [0u64])?;
    let rows = PyList::empty(py);
    for counts in sparse {
        let row = zeros.as_any().mul(width)?.cast_into::<PyList>()?;
        for (token, n) in counts {
            if token as usize >= width {
                return Err(crate::errors::invalid_query(format!(
                    "token {token} follows this context but does not fit width {width}"
                )));
            }
            row.set_item(token as usize, n)?;
        }
        rows.append(row)?;
    }
    Ok(rows)
}

/// tokengrams' `sample_unsmoothed`: `num_samples` samples of `k` tokens after
/// each context from the order-`n` counts (a document end counts as nothing),
/// the frequent contexts' counts kept in the memo between calls:
/// uint32[len(contexts) · num_samples, k].
#[pyfunction]
#[pyo3(signature = (memo, contexts, n, k, num_samples = None, seed = None))]
pub fn tokengrams_sample_unsmoothed<'py>(
    py: Python<'py>,
    memo: &Bound<'py, PyNextTokenMemo>,
    contexts: &Bound<'py, PyAny>,
    n: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    num_samples: Option<&Bound<'py, PyAny>>,
    seed: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, numpy::PyArray2<u32>>> {
    let n = int_arg(n, "n", crate::engine::POSITIVE)?;
    let memo = memo.get();
    let how = smoothing::Sampling::Unsmoothed {
        n,
        ends: DocumentEnds::Skip,
        memo: Some(&memo.memo),
    };
    crate::smoothing::run_sampler(
        py,
        memo.engine.bind(py),
        contexts,
        how,
        k,
        num_samples,
        seed,
    )
}

/// tokengrams' `contains`: whether the n-gram occurs, each shard searched for
/// one bound only (a count searches for two).
#[pyfunction]
pub fn tokengrams_contains(
    py: Python<'_>,
    engine: &Bound<'_, PyEngine>,
    query: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let engine = engine.get();
    let ids = engine.ids(py, query, "query")?;
    let ids = ids.as_slice();
    let core = engine.core();
    quick(py, || {
        let bytes = core.encode(ids)?;
        for shard in core.shards() {
            if shard.contains(&bytes, (0, shard.num_tokens()))? {
                return Ok(true);
            }
        }
        Ok::<_, anygram::Error>(false)
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyNextTokenMemo>()?;
    m.add_function(wrap_pyfunction!(tokengrams_contains, m)?)?;
    m.add_function(wrap_pyfunction!(tokengrams_sample_unsmoothed, m)?)?;
    m.add_function(wrap_pyfunction!(tokengrams_count_next, m)?)?;
    m.add_function(wrap_pyfunction!(infinigram_windows, m)?)?;
    m.add_function(wrap_pyfunction!(infinigram_heads, m)?)?;
    Ok(())
}
