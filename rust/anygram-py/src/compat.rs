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
use pyo3::sync::PyOnceLock;
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

/// Lists of many Python floats, made as cheaply as CPython allows: one float
/// object per distinct value (a Kneser-Ney row of 50,257 holds about a
/// thousand values: those of its unseen tokens repeat; allocating,
/// page-faulting and freeing a float each was most of a call), stored
/// straight into the list's item array, each float's references added once
/// at the end. `PyList_SetItem`, the stable ABI's way to fill a list, and
/// `Py_IncRef` are a function call each per item (about 250 µs a row). The
/// item array's place (`ob_item`, right after the variable-size header) and
/// the reference count's (the first word of an object; a fresh float is never
/// immortal) are the same in every CPython that loads this abi3 module (3.10
/// on, not free-threaded); the array's place is checked once against
/// `PyList_GetItem`, and where it differs the lists are filled item by item.
mod float_lists {
    use std::sync::OnceLock;

    use pyo3::ffi;
    use pyo3::prelude::*;
    use pyo3::types::PyList;

    /// # Safety
    /// `list` is a live list object and the layout was found (`item_array_found`).
    unsafe fn item_array(list: *mut ffi::PyObject) -> *mut *mut ffi::PyObject {
        unsafe {
            *(list as *mut u8)
                .add(std::mem::size_of::<ffi::PyVarObject>())
                .cast::<*mut *mut ffi::PyObject>()
        }
    }

    fn item_array_found(py: Python<'_>) -> bool {
        static FOUND: OnceLock<bool> = OnceLock::new();
        *FOUND.get_or_init(|| unsafe {
            let Ok(probe) = Bound::from_owned_ptr_or_err(py, ffi::PyList_New(2)) else {
                return false;
            };
            let stored = ffi::PyList_SetItem(probe.as_ptr(), 1, py.Ellipsis().into_ptr()) == 0
                && ffi::PyList_SetItem(probe.as_ptr(), 0, py.None().into_ptr()) == 0;
            stored
                && *item_array(probe.as_ptr()) == ffi::PyList_GetItem(probe.as_ptr(), 0)
                && *item_array(probe.as_ptr()).add(1) == ffi::PyList_GetItem(probe.as_ptr(), 1)
        })
    }

    /// One list of floats per row.
    pub fn lists<'py>(py: Python<'py>, rows: &[Vec<f64>]) -> PyResult<Vec<Bound<'py, PyList>>> {
        // Every list made first (items NULL: one dropped on an error frees nothing).
        let lists = rows
            .iter()
            .map(|row| {
                let len = ffi::Py_ssize_t::try_from(row.len())
                    .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("row too long"))?;
                unsafe {
                    Ok(Bound::from_owned_ptr_or_err(py, ffi::PyList_New(len))?
                        .cast_into_unchecked::<PyList>())
                }
            })
            .collect::<PyResult<Vec<_>>>()?;
        if !item_array_found(py) {
            for (list, row) in lists.iter().zip(rows) {
                for (i, &value) in row.iter().enumerate() {
                    list.set_item(i, value)?;
                }
            }
            return Ok(lists);
        }
        const SLOT_BITS: u32 = 12;
        // Direct-mapped by value: a slot keeps the last value hashed to it (a
        // collision only costs another float of an equal value), with the
        // number of items that point to its float.
        struct Slot {
            bits: u64,
            float: *mut ffi::PyObject,
            uses: ffi::Py_ssize_t,
        }
        /// The references the lists' items hold, added once per float.
        fn settle(slot: &mut Slot) {
            if !slot.float.is_null() {
                // A fresh float, never immortal: the items' references, then ours dropped.
                unsafe {
                    (*slot.float).ob_refcnt += slot.uses;
                    ffi::Py_DecRef(slot.float);
                }
            }
        }
        let mut slots: Vec<Slot> = (0..1 << SLOT_BITS)
            .map(|_| Slot {
                bits: 0,
                float: std::ptr::null_mut(),
                uses: 0,
            })
            .collect();
        let mut failed = false;
        'rows: for (list, row) in lists.iter().zip(rows) {
            let items =
                unsafe { std::slice::from_raw_parts_mut(item_array(list.as_ptr()), row.len()) };
            for (item, &value) in items.iter_mut().zip(row) {
                let bits = value.to_bits();
                // Fibonacci hashing: the top bits of the product mix all of the value's bits.
                let slot = &mut slots
                    [(bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOT_BITS)) as usize];
                if slot.float.is_null() || slot.bits != bits {
                    settle(slot);
                    let float = unsafe { ffi::PyFloat_FromDouble(value) };
                    if float.is_null() {
                        slot.float = std::ptr::null_mut();
                        failed = true;
                        break 'rows;
                    }
                    *slot = Slot {
                        bits,
                        float,
                        uses: 0,
                    };
                }
                slot.uses += 1;
                *item = slot.float;
            }
        }
        slots.iter_mut().for_each(settle);
        if failed {
            return Err(PyErr::fetch(py));
        }
        Ok(lists)
    }
}

/// tokengrams' dense count row: `width` ints, 0 but for the sparse `counts`:
/// `[0] * width` (CPython's own loop over the one cached small int, the
/// cheapest list of that shape) with the tokens that occur set.
fn count_row<'py>(
    zeros: &Bound<'py, PyList>,
    width: usize,
    counts: Vec<(u32, u64)>,
) -> PyResult<Bound<'py, PyList>> {
    let row = zeros.as_any().mul(width)?.cast_into::<PyList>()?;
    for (token, n) in counts {
        if token as usize >= width {
            return Err(crate::errors::invalid_query(format!(
                "token {token} follows this context but does not fit width {width}"
            )));
        }
        row.set_item(token as usize, n)?;
    }
    Ok(row)
}

/// A tokengrams index's per-query methods, bound straight to Rust (the shim
/// sets them on its instance: no Python frame between the caller and the
/// search); answers as tokengrams' (Python lists; the empty query occurs
/// nowhere).
#[pyclass(frozen, module = "anygram._anygram", name = "TokengramsIndex")]
pub struct PyTokengramsIndex {
    /// The `anygram.Engine` (its Python subclass: `kneser_ney` is Python's).
    engine: Py<PyEngine>,
    memo: Py<PyNextTokenMemo>,
    vocab: usize,
    /// The engine's `kneser_ney("skip")`, made on first use (a pass over the
    /// distinct tokens) and shared with the engine, so that `estimate_deltas`
    /// through either is seen by both.
    kneser_ney: PyOnceLock<Py<crate::smoothing::PyKneserNey>>,
}

impl PyTokengramsIndex {
    fn model(&self, py: Python<'_>) -> PyResult<std::sync::Arc<anygram::smoothing::KneserNey>> {
        let model = self.kneser_ney.get_or_try_init(py, || {
            self.engine
                .bind(py)
                .call_method1(intern!(py, "kneser_ney"), ("skip",))?
                .cast_into::<crate::smoothing::PyKneserNey>()
                .map(Bound::unbind)
                .map_err(PyErr::from)
        })?;
        Ok(model.get().model())
    }

    fn counts_rows<'py>(
        &self,
        py: Python<'py>,
        contexts: &Bound<'py, PyAny>,
        single: bool,
    ) -> PyResult<Vec<Bound<'py, PyList>>> {
        let engine = self.engine.bind(py).get();
        let memo = &self.memo.get().memo;
        let core = engine.core();
        let contexts = engine.many(py, contexts)?;
        let contexts = slices(&contexts);
        let count =
            |c: &&[u32]| smoothing::next_token_counts_memo(core, memo, c, DocumentEnds::Skip);
        // One context runs here: a hop to the pool would cost more than it saves.
        let sparse = if single {
            vec![quick(py, || count(&contexts[0]))?]
        } else {
            batch(py, &contexts, count)?
        };
        let zeros = PyList::new(py, [0u64])?;
        sparse
            .into_iter()
            .map(|counts| count_row(&zeros, self.vocab, counts))
            .collect()
    }
}

#[pymethods]
impl PyTokengramsIndex {
    #[new]
    fn new(
        engine: Py<PyEngine>,
        memo: Py<PyNextTokenMemo>,
        vocab: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let vocab = int_arg(vocab, "vocab", 1..=smoothing::MAX_DENSE_VOCAB as i128)?;
        Ok(PyTokengramsIndex {
            engine,
            memo,
            vocab,
            kneser_ney: PyOnceLock::new(),
        })
    }

    fn count(&self, py: Python<'_>, query: &Bound<'_, PyAny>) -> PyResult<u64> {
        let engine = self.engine.bind(py).get();
        let ids = engine.ids(py, query, "query")?;
        let ids = ids.as_slice();
        if ids.is_empty() {
            return Ok(0); // tokengrams finds no positions for it
        }
        let core = engine.core();
        quick(py, || core.count(ids))
    }

    /// Whether the n-gram occurs (a search for existence only; a count
    /// searches for two bounds).
    fn contains(&self, py: Python<'_>, query: &Bound<'_, PyAny>) -> PyResult<bool> {
        let engine = self.engine.bind(py).get();
        let ids = engine.ids(py, query, "query")?;
        let ids = ids.as_slice();
        if ids.is_empty() {
            return Ok(false); // tokengrams counts it 0
        }
        let core = engine.core();
        quick(py, || core.occurs(&core.encode(ids)?))
    }

    /// Where the n-gram starts in the documents laid end to end (unordered).
    fn positions<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let engine = self.engine.bind(py).get();
        let ids = engine.ids(py, query, "query")?;
        let ids = ids.as_slice();
        if ids.is_empty() {
            return Ok(PyList::empty(py));
        }
        let core = engine.core();
        let positions = quick(py, || {
            anygram::positions::stream_positions(core, ids, 1 << 32)
        })?;
        PyList::new(py, positions)
    }

    fn count_next<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let wrapped = PyList::new(py, [query])?;
        Ok(self.counts_rows(py, wrapped.as_any(), true)?.remove(0))
    }

    /// The contexts counted on the pool with the GIL released, the lists built after.
    fn batch_count_next<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.counts_rows(py, queries, false)?)
    }

    fn get_smoothed_probs<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let engine = self.engine.bind(py).get();
        let context = engine.ids(py, query, "query")?;
        let context = context.as_slice();
        let model = self.model(py)?;
        let core = engine.core();
        let row = quick(py, || model.probs(core, context))?;
        Ok(float_lists::lists(py, &[row])?.remove(0))
    }

    /// The rows computed on the pool with the GIL released, then the lists
    /// built, sharing one float per distinct value across the whole batch.
    fn batch_get_smoothed_probs<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let engine = self.engine.bind(py).get();
        let contexts = engine.many(py, queries)?;
        let model = self.model(py)?;
        let core = engine.core();
        let rows = batch(py, &slices(&contexts), |c| model.probs(core, c))?;
        PyList::new(py, float_lists::lists(py, &rows)?)
    }
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyNextTokenMemo>()?;
    m.add_class::<PyTokengramsIndex>()?;
    m.add_function(wrap_pyfunction!(tokengrams_sample_unsmoothed, m)?)?;
    m.add_function(wrap_pyfunction!(infinigram_windows, m)?)?;
    m.add_function(wrap_pyfunction!(infinigram_heads, m)?)?;
    Ok(())
}
