//! Bindings of the batch scans (`anygram.scan` uses them): contamination of many
//! texts, self dedup of an index and cross dedup of a range of documents. Each runs in the core
//! on all cores with the GIL released, on a worker thread; the calling thread
//! wakes a few times a second to report progress to a Python callback and to
//! turn Ctrl-C into a cancelled scan. The scan itself runs on anygram's
//! fork-safe pool, a panic becoming `InternalError` (see `batch.rs`).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anygram::scan::{Contamination, DocRanges, ScanControl, MAX_DEDUP_PARTS};
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::args::{int_arg, U64_MAX};
use crate::batch::{on_pool, CoreFailure};
use crate::engine::{slices, PyEngine, MAX_AMOUNT, POSITIVE};
use crate::errors::{internal_error, invalid_query};

const POLL: Duration = Duration::from_millis(200);

/// Runs `work` detached on a scoped thread (on the pool) and returns as soon as
/// it ends; meanwhile calls `progress(done)` with the GIL every [`POLL`] and
/// checks for signals (which cancel the scan).
fn run_with_progress<T: Send, E: CoreFailure>(
    py: Python<'_>,
    progress: Option<&Py<PyAny>>,
    work: impl FnOnce(&ScanControl) -> Result<T, E> + Send,
) -> PyResult<T> {
    let control = ScanControl::default();
    let mut interrupted: Option<PyErr> = None;
    let result = py.detach(|| {
        std::thread::scope(|scope| {
            let (sender, receiver) = mpsc::channel();
            let control = &control;
            scope.spawn(move || {
                // The receiver outlives the thread; a failed send cannot happen.
                let _ = sender.send(on_pool(|| work(control)));
            });
            loop {
                match receiver.recv_timeout(POLL) {
                    Ok(result) => return result,
                    Err(RecvTimeoutError::Timeout) => {}
                    // The worker catches panics and always sends; this is a fallback.
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err("the scan's worker thread ended without a result".to_string())
                    }
                }
                if interrupted.is_some() {
                    continue;
                }
                let checked = Python::attach(|py| -> PyResult<()> {
                    py.check_signals()?;
                    if let Some(callback) = progress {
                        callback.call1(py, (control.done(),))?;
                    }
                    Ok(())
                });
                if let Err(e) = checked {
                    control.cancel.store(true, Ordering::Relaxed);
                    interrupted = Some(e);
                }
            }
        })
    });
    if let Some(e) = interrupted {
        return Err(e);
    }
    let result = match result {
        Ok(outcome) => outcome.map_err(CoreFailure::into_py_err)?,
        Err(panic) => return Err(internal_error(&panic)),
    };
    if let Some(callback) = progress {
        callback.call1(py, (control.done(),))?;
    }
    Ok(result)
}

fn contamination_dict<'py>(py: Python<'py>, c: Contamination) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("matching", c.matching.into_pyarray(py))?;
    d.set_item("covered", c.covered)?;
    d.set_item("num_covered", c.num_covered)?;
    d.set_item("longest_start", c.longest_start)?;
    d.set_item("longest_len", c.longest_len)?;
    d.set_item("longest_count", c.longest_count)?;
    let occurrences = PyList::empty(py);
    for o in c.occurrences {
        let od = PyDict::new(py);
        od.set_item("doc_ix", o.doc_ix)?;
        od.set_item("offset", o.offset)?;
        od.set_item("doc_len", o.doc_len)?;
        od.set_item("shard", o.shard)?;
        od.set_item("ptr", o.ptr)?;
        od.set_item("metadata", o.metadata)?;
        occurrences.append(od)?;
    }
    d.set_item("occurrences", occurrences)?;
    Ok(d)
}

/// Contamination of many texts (each a list of ids, a 1-D integer array or a
/// string): per text its matching statistics (numpy u32), covered ranges,
/// longest match and up to `k` occurrences of it. `progress(done)` gets the
/// number of finished texts.
#[pyfunction]
#[pyo3(signature = (engine, texts, min_len, k = None, progress = None))]
pub fn contamination_batch<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    texts: &Bound<'py, PyAny>,
    min_len: &Bound<'py, PyAny>,
    k: Option<&Bound<'py, PyAny>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let this = engine.get();
    let texts = this.many(py, texts)?;
    let texts: Vec<Vec<u32>> = slices(&texts).into_iter().map(<[u32]>::to_vec).collect();
    let min_len: u64 = min_len_arg(min_len)?;
    let k: usize = match k {
        Some(k) if !k.is_none() => int_arg(k, "k", 0..=MAX_AMOUNT)?,
        _ => 5,
    };
    let core = this.core().clone();
    let results = run_with_progress(py, progress.as_ref(), move |control| {
        core.contamination_batch(&texts, min_len, k, control)
    })?;
    let out = PyList::empty(py);
    for c in results {
        out.append(contamination_dict(py, c)?)?;
    }
    Ok(out)
}

/// Flat numpy arrays of removed ranges: `doc_ix`, `doc_len`, `num_ranges` per
/// document, and `starts`, `ends` of all ranges in document order.
fn ranges_dict<'py>(py: Python<'py>, docs: Vec<DocRanges>) -> PyResult<Bound<'py, PyDict>> {
    let mut doc_ix = Vec::with_capacity(docs.len());
    let mut doc_len = Vec::with_capacity(docs.len());
    let mut num_ranges = Vec::with_capacity(docs.len());
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    for d in docs {
        doc_ix.push(d.doc_ix);
        doc_len.push(d.doc_len);
        num_ranges.push(d.ranges.len() as u64);
        for (s, e) in d.ranges {
            starts.push(s);
            ends.push(e);
        }
    }
    let out = PyDict::new(py);
    out.set_item("doc_ix", doc_ix.into_pyarray(py))?;
    out.set_item("doc_len", doc_len.into_pyarray(py))?;
    out.set_item("num_ranges", num_ranges.into_pyarray(py))?;
    out.set_item("starts", starts.into_pyarray(py))?;
    out.set_item("ends", ends.into_pyarray(py))?;
    Ok(out)
}

/// Units of progress `dedup_self` reports (token positions of the index).
#[pyfunction]
pub fn dedup_self_work(engine: &Bound<'_, PyEngine>) -> u64 {
    engine.get().core().dedup_self_work()
}

/// Self dedup of the whole index: every window of `min_len` tokens that
/// repeats an earlier position of the corpus, as removed ranges per document.
#[pyfunction]
#[pyo3(signature = (engine, min_len, progress = None))]
pub fn dedup_self<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    min_len: &Bound<'py, PyAny>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let min_len = min_len_arg(min_len)?;
    let core = engine.get().core().clone();
    let docs = run_with_progress(py, progress.as_ref(), move |control| {
        core.dedup_self(min_len, control)
    })?;
    ranges_dict(py, docs)
}

/// At most `parts - 1` increasing window keys (bytes) that cut self dedup into
/// `parts` key ranges of similar sizes (see `dedup_self_part`).
#[pyfunction]
pub fn dedup_self_split_keys<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    min_len: &Bound<'py, PyAny>,
    parts: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let min_len = min_len_arg(min_len)?;
    let parts: u64 = int_arg(parts, "parts", 1..=i128::from(MAX_DEDUP_PARTS))?;
    let core = engine.get().core().clone();
    let keys = run_with_progress(py, None, move |_| {
        core.dedup_self_split_keys(min_len, parts)
    })?;
    PyList::new(py, keys.iter().map(|k| PyBytes::new(py, k)))
}

/// Units of progress `dedup_self_part` reports for `[lo, hi)` (its suffixes).
#[pyfunction]
#[pyo3(signature = (engine, min_len, lo = None, hi = None))]
pub fn dedup_self_part_work(
    py: Python<'_>,
    engine: &Bound<'_, PyEngine>,
    min_len: &Bound<'_, PyAny>,
    lo: Option<&Bound<'_, PyAny>>,
    hi: Option<&Bound<'_, PyAny>>,
) -> PyResult<u64> {
    let min_len = min_len_arg(min_len)?;
    let (lo, hi) = (key_arg(lo, "lo")?, key_arg(hi, "hi")?);
    let core = engine.get().core().clone();
    run_with_progress(py, None, move |_| {
        core.dedup_self_part_work(min_len, lo.as_deref(), hi.as_deref())
    })
}

/// Self dedup of the windows whose keys lie in `[lo, hi)` (bytes, `None`:
/// unbounded; keys from `dedup_self_split_keys`): the parts' ranges united per
/// document are `dedup_self`'s.
#[pyfunction]
#[pyo3(signature = (engine, min_len, lo = None, hi = None, progress = None))]
pub fn dedup_self_part<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    min_len: &Bound<'py, PyAny>,
    lo: Option<&Bound<'py, PyAny>>,
    hi: Option<&Bound<'py, PyAny>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let min_len = min_len_arg(min_len)?;
    let (lo, hi) = (key_arg(lo, "lo")?, key_arg(hi, "hi")?);
    let core = engine.get().core().clone();
    let docs = run_with_progress(py, progress.as_ref(), move |control| {
        core.dedup_self_part(min_len, lo.as_deref(), hi.as_deref(), control)
    })?;
    ranges_dict(py, docs)
}

/// A split key: bytes or None.
fn key_arg(value: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<Vec<u8>>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => match v.cast::<PyBytes>() {
            Ok(bytes) => Ok(Some(bytes.as_bytes().to_vec())),
            Err(_) => Err(invalid_query(format!(
                "{name} must be bytes (a key from dedup_self_split_keys) or None"
            ))),
        },
    }
}

/// Units of progress `dedup_against_all` reports (token positions of both indexes).
#[pyfunction]
pub fn dedup_against_work(engine: &Bound<'_, PyEngine>, other: &Bound<'_, PyEngine>) -> u64 {
    engine.get().core().dedup_against_work(other.get().core())
}

/// Cross dedup of the whole index against `other` (same token width) in one
/// merged pass over both suffix arrays.
#[pyfunction]
#[pyo3(signature = (engine, other, min_len, progress = None))]
pub fn dedup_against_all<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    other: &Bound<'py, PyEngine>,
    min_len: &Bound<'py, PyAny>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let min_len = min_len_arg(min_len)?;
    let core = engine.get().core().clone();
    let other = other.get().core().clone();
    let docs = run_with_progress(py, progress.as_ref(), move |control| {
        core.dedup_against_all(&other, min_len, control)
    })?;
    ranges_dict(py, docs)
}

/// Cross dedup of documents `[doc_start, doc_end)` (local to `shard`) against
/// `other`: every window of `min_len` tokens that occurs in `other`.
#[pyfunction]
#[pyo3(signature = (engine, other, shard, doc_start, doc_end, min_len, progress = None))]
#[allow(clippy::too_many_arguments)]
pub fn dedup_against<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    other: &Bound<'py, PyEngine>,
    shard: &Bound<'py, PyAny>,
    doc_start: &Bound<'py, PyAny>,
    doc_end: &Bound<'py, PyAny>,
    min_len: &Bound<'py, PyAny>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let shard = engine.get().shard_arg(shard)?;
    let doc_start: u64 = int_arg(doc_start, "doc_start", 0..=U64_MAX)?;
    let doc_end: u64 = int_arg(doc_end, "doc_end", 0..=U64_MAX)?;
    let min_len = min_len_arg(min_len)?;
    let core = engine.get().core().clone();
    let other = other.get().core().clone();
    let docs = run_with_progress(py, progress.as_ref(), move |control| {
        core.dedup_against(&other, shard, doc_start..doc_end, min_len, control)
    })?;
    ranges_dict(py, docs)
}

fn min_len_arg(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    int_arg(value, "min_len", POSITIVE)
}

/// Registers the scan functions on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(contamination_batch, m)?)?;
    m.add_function(wrap_pyfunction!(dedup_self_work, m)?)?;
    m.add_function(wrap_pyfunction!(dedup_self, m)?)?;
    m.add_function(wrap_pyfunction!(dedup_self_split_keys, m)?)?;
    m.add_function(wrap_pyfunction!(dedup_self_part_work, m)?)?;
    m.add_function(wrap_pyfunction!(dedup_self_part, m)?)?;
    m.add_function(wrap_pyfunction!(dedup_against, m)?)?;
    m.add_function(wrap_pyfunction!(dedup_against_work, m)?)?;
    m.add_function(wrap_pyfunction!(dedup_against_all, m)?)?;
    Ok(())
}
