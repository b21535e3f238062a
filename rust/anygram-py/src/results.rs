//! Result shaping: core results → the dicts and numpy arrays of infini-gram's API.

use anygram::documents::{Document, SearchResult};
use anygram::{NtdResult, ProbResult};
use numpy::IntoPyArray;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

pub fn prob_dict<'py>(py: Python<'py>, r: &ProbResult) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "prompt_cnt"), r.prompt_count)?;
    d.set_item(intern!(py, "cont_cnt"), r.cont_count)?;
    d.set_item(intern!(py, "prob"), r.prob)?;
    d.set_item(intern!(py, "suffix_len"), r.suffix_len)?;
    Ok(d)
}

/// infini-gram's ntd dict. Its keys are interned strings (made once, not per
/// entry): a batch of ntds builds hundreds of thousands of entry dicts.
pub fn ntd_dict<'py>(py: Python<'py>, r: &NtdResult) -> PyResult<Bound<'py, PyDict>> {
    let (cont_cnt, prob) = (intern!(py, "cont_cnt"), intern!(py, "prob"));
    let d = PyDict::new(py);
    let by_token = PyDict::new(py);
    let total = r.prompt_count as f64;
    for &(token, count) in &r.counts {
        let entry = PyDict::new(py);
        entry.set_item(cont_cnt, count)?;
        entry.set_item(prob, count as f64 / total)?;
        by_token.set_item(token, entry)?;
    }
    d.set_item(intern!(py, "prompt_cnt"), r.prompt_count)?;
    d.set_item(intern!(py, "result_by_token_id"), by_token)?;
    d.set_item(intern!(py, "approx"), r.approx)?;
    d.set_item(intern!(py, "suffix_len"), r.suffix_len)?;
    Ok(d)
}

pub fn doc_dict<'py>(py: Python<'py>, d: &Document) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("doc_ix", d.doc_ix)?;
    out.set_item("doc_len", d.doc_len)?;
    out.set_item("disp_len", d.disp_len)?;
    out.set_item("needle_offset", d.needle_offset)?;
    out.set_item("offset", d.offset)?;
    out.set_item("metadata", &d.metadata)?;
    out.set_item("token_ids", &d.token_ids)?;
    out.set_item("blocked", false)?;
    out.set_item("shard", d.shard)?;
    out.set_item("ptr", d.ptr)?;
    Ok(out)
}

pub fn doc_list<'py>(py: Python<'py>, docs: &[Document]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for doc in docs {
        list.append(doc_dict(py, doc)?)?;
    }
    Ok(list)
}

/// `{"cnt", "approx", "idxs", "documents"}` of `search_docs` and `search_docs_cnf`.
pub fn search_dict<'py>(
    py: Python<'py>,
    r: &SearchResult,
    approx: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("cnt", r.count)?;
    d.set_item("approx", approx)?;
    d.set_item("idxs", &r.idxs)?;
    d.set_item("documents", doc_list(py, &r.documents)?)?;
    Ok(d)
}

/// `prob_batch`'s dict of arrays `prob`, `prompt_cnt`, `cont_cnt`, `suffix_len`.
pub fn prob_arrays<'py>(py: Python<'py>, results: Vec<ProbResult>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let n = results.len();
    let (mut prob, mut prompt, mut cont, mut suffix) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for r in results {
        prob.push(r.prob);
        prompt.push(r.prompt_count);
        cont.push(r.cont_count);
        suffix.push(r.suffix_len as u64);
    }
    d.set_item("prob", prob.into_pyarray(py))?;
    d.set_item("prompt_cnt", prompt.into_pyarray(py))?;
    d.set_item("cont_cnt", cont.into_pyarray(py))?;
    d.set_item("suffix_len", suffix.into_pyarray(py))?;
    Ok(d)
}
