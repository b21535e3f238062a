//! `creativity` and `attribute` (`anygram::attribution`) for Python: infini-gram's
//! result shapes (`rs`; spans with `l`, `r`, `length`, `count`, `docs` of `{s, ptr}`).

use anygram::attribution::{self, AttributeOptions};
use numpy::{IntoPyArray, PyArray1};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::args::{int_arg, token_ids, U64_MAX};
use crate::batch::call;
use crate::engine::{PyEngine, MAX_AMOUNT};

/// `rs[l]`: where the longest n-gram of `tokens` starting at `l` that occurs ends.
#[pyfunction]
pub fn creativity<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    tokens: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let engine = engine.get();
    let ids = engine.ids(py, tokens, "input_ids")?;
    let ids = ids.as_slice();
    let core = engine.core();
    let rs = call(py, || attribution::creativity(core, ids))?;
    Ok(rs
        .into_iter()
        .map(|r| r as u64)
        .collect::<Vec<_>>()
        .into_pyarray(py))
}

/// The rare spans of `tokens` and where they occur (infini-gram's `attribute`).
#[pyfunction]
#[pyo3(signature = (engine, tokens, delim_ids, min_len, max_cnt, bow_ids = None))]
pub fn attribute<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
    tokens: &Bound<'py, PyAny>,
    delim_ids: &Bound<'py, PyAny>,
    min_len: &Bound<'py, PyAny>,
    max_cnt: &Bound<'py, PyAny>,
    bow_ids: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let engine = engine.get();
    let vocab = engine.core().vocab_size();
    let ids = engine.ids(py, tokens, "input_ids")?;
    let options = AttributeOptions {
        delim_ids: token_ids(delim_ids, vocab, "delim_ids")?
            .as_slice()
            .to_vec(),
        min_len: int_arg(min_len, "min_len", 0..=MAX_AMOUNT)?,
        max_cnt: int_arg(max_cnt, "max_cnt", 1..=U64_MAX)?,
        bow_ids: match bow_ids {
            Some(b) if !b.is_none() => Some(token_ids(b, vocab, "bow_ids")?.as_slice().to_vec()),
            _ => None,
        },
    };
    let ids = ids.as_slice();
    let core = engine.core();
    let spans = call(py, || attribution::attribute(core, ids, &options))?;
    // Interned keys: a text's spans can hold tens of thousands of occurrences, and a
    // key made afresh for each of their dicts costs as much as the dict.
    let (key_s, key_ptr) = (intern!(py, "s"), intern!(py, "ptr"));
    let out = PyList::empty(py);
    for span in spans {
        let d = PyDict::new(py);
        d.set_item(intern!(py, "l"), span.l)?;
        d.set_item(intern!(py, "r"), span.r)?;
        d.set_item(intern!(py, "length"), span.r - span.l)?;
        d.set_item(intern!(py, "count"), span.count)?;
        let docs = span
            .occurrences
            .into_iter()
            .map(|(s, ptr)| {
                let doc = PyDict::new(py);
                doc.set_item(key_s, s)?;
                doc.set_item(key_ptr, ptr)?;
                Ok(doc)
            })
            .collect::<PyResult<Vec<_>>>()?;
        d.set_item(intern!(py, "docs"), PyList::new(py, docs)?)?;
        out.append(d)?;
    }
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(creativity, m)?)?;
    m.add_function(wrap_pyfunction!(attribute, m)?)?;
    Ok(())
}
