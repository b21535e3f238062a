//! `anygram._anygram.Engine`: the native engine. `anygram.Engine` (Python)
//! subclasses it to add tokenizers and `open`; every query method lives here so
//! that a call with token ids goes straight from Python to Rust.

use std::path::PathBuf;
use std::sync::Arc;

use anygram::{Engine, NtdResult, OpenOptions, ProbResult};
use numpy::{IntoPyArray, PyReadonlyArray1, PyUntypedArray};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use rayon::prelude::*;

use crate::errors::{invalid_query, to_py, to_py_at};

/// Default cap on exact next-token counting (infini-gram's default).
const DEFAULT_MAX_SUPPORT: u64 = 1000;

#[pyclass(subclass, frozen, module = "anygram._anygram", name = "Engine")]
pub struct PyEngine {
    inner: Arc<Engine>,
    /// `str -> list[int]`, set by the Python layer when the index has a tokenizer.
    encoder: Option<Py<PyAny>>,
}

impl PyEngine {
    /// Token ids from a `str` (through the tokenizer), a sequence of ints or a
    /// 1-D numpy integer array.
    pub(crate) fn ids(&self, py: Python<'_>, query: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        if query.is_instance_of::<PyString>() {
            let Some(encoder) = &self.encoder else {
                return Err(invalid_query(
                    "this index has no tokenizer: pass token ids, or open it with tokenizer=..."
                        .into(),
                ));
            };
            return encoder.bind(py).call1((query,))?.extract::<Vec<u32>>();
        }
        let values: Vec<i64> =
            if query.cast::<PyUntypedArray>().is_ok() {
                let as_i64 = query.call_method1("astype", ("int64",))?;
                let array: PyReadonlyArray1<i64> = as_i64.extract().map_err(|_| {
                    invalid_query("a numpy query must be a 1-D array of integers".into())
                })?;
                array.as_slice()?.to_vec()
            } else {
                query.extract::<Vec<i64>>().map_err(|_| {
                    invalid_query(format!(
                    "a query must be a string, a list of token ids or a 1-D integer array, not {}",
                    query.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                ))
                })?
            };
        values
            .iter()
            .enumerate()
            .map(|(position, &v)| {
                u32::try_from(v).map_err(|_| {
                    invalid_query(format!(
                        "token id {v} at position {position} is outside the vocabulary [0, {})",
                        self.inner.vocab_size()
                    ))
                })
            })
            .collect()
    }

    /// A continuation token: an id, or a string that must tokenize to exactly one id.
    fn token_arg(&self, py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<u32> {
        if token.is_instance_of::<PyString>() {
            let ids = self.ids(py, token)?;
            return match ids.as_slice() {
                [id] => Ok(*id),
                _ => Err(invalid_query(format!(
                    "the next token {} is {} tokens {:?}; it must be exactly one",
                    token.repr()?,
                    ids.len(),
                    ids
                ))),
            };
        }
        let id: i64 = token.extract().map_err(|_| {
            invalid_query("the next token must be a token id or a one-token string".into())
        })?;
        self.token(id)
    }

    fn cnf_ids(&self, cnf: Vec<Vec<Vec<i64>>>) -> PyResult<Vec<Vec<Vec<u32>>>> {
        cnf.into_iter()
            .map(|clause| {
                clause
                    .into_iter()
                    .map(|term| term.into_iter().map(|t| self.token(t)).collect())
                    .collect()
            })
            .collect()
    }

    fn token(&self, token: i64) -> PyResult<u32> {
        u32::try_from(token).map_err(|_| {
            invalid_query(format!(
                "token id {token} is outside the vocabulary [0, {})",
                self.inner.vocab_size()
            ))
        })
    }

    /// The core engine (for bindings in other files).
    pub(crate) fn core(&self) -> &Arc<Engine> {
        &self.inner
    }

    pub(crate) fn many(
        &self,
        py: Python<'_>,
        queries: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Vec<u32>>> {
        let mut out = Vec::new();
        for (i, query) in queries.try_iter()?.enumerate() {
            out.push(
                self.ids(py, &query?)
                    .map_err(|e| invalid_query(format!("query {i}: {}", e.value(py))))?,
            );
        }
        Ok(out)
    }

    fn tokens_many(&self, py: Python<'_>, tokens: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        if tokens.cast::<PyUntypedArray>().is_ok() {
            let array: PyReadonlyArray1<i64> =
                tokens.call_method1("astype", ("int64",))?.extract()?;
            return array.as_slice()?.iter().map(|&t| self.token(t)).collect();
        }
        tokens
            .try_iter()?
            .map(|t| self.token_arg(py, &t?))
            .collect()
    }
}

fn prob_dict<'py>(py: Python<'py>, r: &ProbResult) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("prompt_cnt", r.prompt_count)?;
    d.set_item("cont_cnt", r.cont_count)?;
    d.set_item("prob", r.prob)?;
    d.set_item("suffix_len", r.suffix_len)?;
    Ok(d)
}

fn ntd_dict<'py>(py: Python<'py>, r: &NtdResult) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let by_token = PyDict::new(py);
    for &(token, count) in &r.counts {
        let entry = PyDict::new(py);
        entry.set_item("cont_cnt", count)?;
        entry.set_item("prob", count as f64 / r.prompt_count as f64)?;
        by_token.set_item(token, entry)?;
    }
    d.set_item("prompt_cnt", r.prompt_count)?;
    d.set_item("result_by_token_id", by_token)?;
    d.set_item("approx", r.approx)?;
    d.set_item("suffix_len", r.suffix_len)?;
    Ok(d)
}

fn doc_dict<'py>(
    py: Python<'py>,
    d: &anygram::documents::Document,
) -> PyResult<Bound<'py, PyDict>> {
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

fn prob_arrays<'py>(py: Python<'py>, results: Vec<ProbResult>) -> PyResult<Bound<'py, PyDict>> {
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

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (path, token_width = None, vocab_size = None, eos_token_id = None, encoder = None, resident_mem = None, accelerator = true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        token_width: Option<usize>,
        vocab_size: Option<u64>,
        eos_token_id: Option<u64>,
        encoder: Option<Py<PyAny>>,
        resident_mem: Option<u64>,
        accelerator: bool,
    ) -> PyResult<Self> {
        let options = OpenOptions {
            token_width,
            vocab_size,
            eos_token_id,
            resident_mem,
            accelerator,
            ..OpenOptions::default()
        };
        let inner = py.detach(|| Engine::open(&path, &options)).map_err(to_py)?;
        Ok(PyEngine {
            inner: Arc::new(inner),
            encoder,
        })
    }

    /// Bytes per token (1, 2 or 4).
    #[getter]
    fn token_width(&self) -> usize {
        self.inner.token_width().bytes()
    }
    /// Token ids are in `[0, vocab_size)`.
    #[getter]
    fn vocab_size(&self) -> u64 {
        self.inner.vocab_size()
    }
    /// The token reported as the continuation at a document's end.
    #[getter]
    fn eos_token_id(&self) -> u32 {
        self.inner.eos_token_id()
    }
    /// Number of shards.
    #[getter]
    fn num_shards(&self) -> usize {
        self.inner.shards().len()
    }
    /// Token positions over all shards (document separators included).
    #[getter]
    fn num_tokens(&self) -> u64 {
        self.inner.num_tokens()
    }
    /// Documents over all shards.
    #[getter]
    fn num_documents(&self) -> u64 {
        self.inner.num_documents()
    }
    /// The index directory.
    #[getter]
    fn path(&self) -> String {
        self.inner.dir().to_string_lossy().into_owned()
    }
    /// Per shard: tokens, documents, pointer size.
    fn shard_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for s in self.inner.shards() {
            let d = PyDict::new(py);
            d.set_item("shard", s.number)?;
            d.set_item("num_tokens", s.num_tokens())?;
            d.set_item("num_documents", s.num_documents())?;
            d.set_item("ptr_size", s.ptr_size())?;
            d.set_item("has_metadata", s.metadata().is_some())?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Occurrences of an n-gram (the empty n-gram counts every token position).
    fn count(&self, py: Python<'_>, query: &Bound<'_, PyAny>) -> PyResult<u64> {
        let ids = self.ids(py, query)?;
        py.detach(|| self.inner.count(&ids)).map_err(to_py)
    }

    /// Where an n-gram occurs: `{"cnt", "segment_by_shard": [(lo, hi), ...]}`.
    fn find<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ids = self.ids(py, query)?;
        let r = py.detach(|| self.inner.find(&ids)).map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("cnt", r.count)?;
        d.set_item("segment_by_shard", r.ranges)?;
        Ok(d)
    }

    /// `P(token | context)`: the n-gram estimate from the last n−1 tokens when
    /// `n` is given, the ∞-gram (longest occurring suffix) when it is None.
    #[pyo3(signature = (context, token, n = None))]
    fn prob<'py>(
        &self,
        py: Python<'py>,
        context: &Bound<'py, PyAny>,
        token: &Bound<'py, PyAny>,
        n: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ids = self.ids(py, context)?;
        let token = self.token_arg(py, token)?;
        let r = py
            .detach(|| self.inner.ngram_prob(&ids, token, n))
            .map_err(to_py)?;
        prob_dict(py, &r)
    }

    /// Next-token distribution after the last n−1 tokens (`n` given) or the
    /// longest occurring suffix (`n=None`); sampled beyond `max_support`.
    #[pyo3(signature = (context, n = None, max_support = DEFAULT_MAX_SUPPORT))]
    fn ntd<'py>(
        &self,
        py: Python<'py>,
        context: &Bound<'py, PyAny>,
        n: Option<usize>,
        max_support: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ids = self.ids(py, context)?;
        let r = py
            .detach(|| self.inner.ngram_ntd(&ids, n, max_support))
            .map_err(to_py)?;
        ntd_dict(py, &r)
    }

    /// ∞-gram probability (infini-gram's name): `prob(context, token, n=None)`.
    fn infgram_prob<'py>(
        &self,
        py: Python<'py>,
        context: &Bound<'py, PyAny>,
        token: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.prob(py, context, token, None)
    }

    /// ∞-gram next-token distribution (infini-gram's name): `ntd(context, n=None)`.
    #[pyo3(signature = (context, max_support = DEFAULT_MAX_SUPPORT))]
    fn infgram_ntd<'py>(
        &self,
        py: Python<'py>,
        context: &Bound<'py, PyAny>,
        max_support: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.ntd(py, context, None, max_support)
    }

    /// Counts of many n-grams at once, on all cores: a uint64 array.
    fn count_batch<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let queries = self.many(py, queries)?;
        let counts = py
            .detach(|| {
                queries
                    .par_iter()
                    .enumerate()
                    .map(|(i, q)| self.inner.count(q).map_err(|e| (i, e)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(to_py_at)?;
        Ok(counts.into_pyarray(py).into_any())
    }

    /// `prob` for many (context, token) pairs on all cores: a dict of arrays
    /// `prob`, `prompt_cnt`, `cont_cnt`, `suffix_len`.
    #[pyo3(signature = (contexts, tokens, n = None))]
    fn prob_batch<'py>(
        &self,
        py: Python<'py>,
        contexts: &Bound<'py, PyAny>,
        tokens: &Bound<'py, PyAny>,
        n: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let contexts = self.many(py, contexts)?;
        let tokens = self.tokens_many(py, tokens)?;
        if contexts.len() != tokens.len() {
            return Err(invalid_query(format!(
                "{} contexts but {} tokens: give one token per context",
                contexts.len(),
                tokens.len()
            )));
        }
        let results = py
            .detach(|| {
                contexts
                    .par_iter()
                    .zip(&tokens)
                    .enumerate()
                    .map(|(i, (c, &t))| self.inner.ngram_prob(c, t, n).map_err(|e| (i, e)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(to_py_at)?;
        prob_arrays(py, results)
    }

    /// ∞-gram `prob_batch`.
    fn infgram_prob_batch<'py>(
        &self,
        py: Python<'py>,
        contexts: &Bound<'py, PyAny>,
        tokens: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.prob_batch(py, contexts, tokens, None)
    }

    /// `ntd` for many contexts on all cores: a list of dicts.
    #[pyo3(signature = (contexts, n = None, max_support = DEFAULT_MAX_SUPPORT))]
    fn ntd_batch<'py>(
        &self,
        py: Python<'py>,
        contexts: &Bound<'py, PyAny>,
        n: Option<usize>,
        max_support: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        let contexts = self.many(py, contexts)?;
        let results = py
            .detach(|| {
                contexts
                    .par_iter()
                    .enumerate()
                    .map(|(i, c)| self.inner.ngram_ntd(c, n, max_support).map_err(|e| (i, e)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(to_py_at)?;
        let list = PyList::empty(py);
        for r in &results {
            list.append(ntd_dict(py, r)?)?;
        }
        Ok(list)
    }

    /// ∞-gram `ntd_batch`.
    #[pyo3(signature = (contexts, max_support = DEFAULT_MAX_SUPPORT))]
    fn infgram_ntd_batch<'py>(
        &self,
        py: Python<'py>,
        contexts: &Bound<'py, PyAny>,
        max_support: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        self.ntd_batch(py, contexts, None, max_support)
    }

    /// Documents holding an n-gram: `{"cnt", "approx", "idxs", "documents"}`.
    /// All occurrences when there are at most `maxnum`, else `maxnum` distinct ones
    /// drawn at random (`seed` makes the draw repeatable).
    #[pyo3(signature = (query, maxnum = 1, max_disp_len = 1000, seed = None))]
    fn search_docs<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
        maxnum: u64,
        max_disp_len: u64,
        seed: Option<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ids = self.ids(py, query)?;
        let r = py
            .detach(|| self.inner.search_docs(&ids, maxnum, max_disp_len, seed))
            .map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("cnt", r.count)?;
        d.set_item("approx", false)?;
        d.set_item("idxs", r.idxs)?;
        let docs = PyList::empty(py);
        for doc in &r.documents {
            docs.append(doc_dict(py, doc)?)?;
        }
        d.set_item("documents", docs)?;
        Ok(d)
    }

    /// Occurrences of a CNF query (clauses of n-grams, as token ids):
    /// `{"count", "approx"}`.
    #[pyo3(signature = (cnf, max_clause_freq = 50000, max_diff_tokens = 100))]
    fn count_cnf<'py>(
        &self,
        py: Python<'py>,
        cnf: Vec<Vec<Vec<i64>>>,
        max_clause_freq: u64,
        max_diff_tokens: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let cnf = self.cnf_ids(cnf)?;
        let r = py
            .detach(|| self.inner.find_cnf(&cnf, max_clause_freq, max_diff_tokens))
            .map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("count", r.count)?;
        d.set_item("approx", r.approx)?;
        Ok(d)
    }

    /// Where a CNF query holds: `{"cnt", "approx", "ptrs_by_shard"}`.
    #[pyo3(signature = (cnf, max_clause_freq = 50000, max_diff_tokens = 100))]
    fn find_cnf<'py>(
        &self,
        py: Python<'py>,
        cnf: Vec<Vec<Vec<i64>>>,
        max_clause_freq: u64,
        max_diff_tokens: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let cnf = self.cnf_ids(cnf)?;
        let r = py
            .detach(|| self.inner.find_cnf(&cnf, max_clause_freq, max_diff_tokens))
            .map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("cnt", r.count)?;
        d.set_item("approx", r.approx)?;
        d.set_item("ptrs_by_shard", r.ptrs_by_shard)?;
        Ok(d)
    }

    /// Documents where a CNF query holds (see `search_docs`).
    #[pyo3(signature = (cnf, maxnum = 1, max_disp_len = 1000, max_clause_freq = 50000, max_diff_tokens = 100, seed = None))]
    #[allow(clippy::too_many_arguments)]
    fn search_docs_cnf<'py>(
        &self,
        py: Python<'py>,
        cnf: Vec<Vec<Vec<i64>>>,
        maxnum: u64,
        max_disp_len: u64,
        max_clause_freq: u64,
        max_diff_tokens: u64,
        seed: Option<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let cnf = self.cnf_ids(cnf)?;
        let (r, approx) = py
            .detach(|| {
                self.inner.search_docs_cnf(
                    &cnf,
                    maxnum,
                    max_disp_len,
                    max_clause_freq,
                    max_diff_tokens,
                    seed,
                )
            })
            .map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("cnt", r.count)?;
        d.set_item("approx", approx)?;
        d.set_item("idxs", r.idxs)?;
        let docs = PyList::empty(py);
        for doc in &r.documents {
            docs.append(doc_dict(py, doc)?)?;
        }
        d.set_item("documents", docs)?;
        Ok(d)
    }

    /// Document `doc_ix` (global over shards): its first `max_disp_len` tokens and metadata.
    #[pyo3(signature = (doc_ix, max_disp_len = 1000))]
    fn get_doc_by_ix<'py>(
        &self,
        py: Python<'py>,
        doc_ix: i64,
        max_disp_len: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ix = u64::try_from(doc_ix).map_err(|_| {
            invalid_query(format!(
                "document index {doc_ix} is out of range [0, {})",
                self.inner.num_documents()
            ))
        })?;
        let doc = py
            .detach(|| self.inner.get_doc_by_ix(ix, max_disp_len))
            .map_err(to_py)?;
        doc_dict(py, &doc)
    }

    /// Many documents by index, on all cores.
    #[pyo3(signature = (doc_ixs, max_disp_len = 1000))]
    fn get_docs_by_ixs<'py>(
        &self,
        py: Python<'py>,
        doc_ixs: Vec<i64>,
        max_disp_len: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        let docs = py
            .detach(|| {
                doc_ixs
                    .par_iter()
                    .enumerate()
                    .map(|(i, &ix)| {
                        let ix = u64::try_from(ix).map_err(|_| {
                            (
                                i,
                                anygram::Error::InvalidQuery(format!(
                                    "document index {ix} is negative"
                                )),
                            )
                        })?;
                        self.inner
                            .get_doc_by_ix(ix, max_disp_len)
                            .map_err(|e| (i, e))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(to_py_at)?;
        let list = PyList::empty(py);
        for doc in &docs {
            list.append(doc_dict(py, doc)?)?;
        }
        Ok(list)
    }

    /// The document holding byte `ptr` of shard `shard`, with a window of
    /// `max_disp_len` tokens around it.
    #[pyo3(signature = (shard, ptr, max_disp_len = 1000))]
    fn get_doc_by_ptr<'py>(
        &self,
        py: Python<'py>,
        shard: usize,
        ptr: u64,
        max_disp_len: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let doc = py
            .detach(|| self.inner.get_doc_by_ptr(shard, ptr, max_disp_len))
            .map_err(to_py)?;
        doc_dict(py, &doc)
    }

    /// Many documents by `(shard, ptr)`, on all cores.
    #[pyo3(signature = (shard_ptrs, max_disp_len = 1000))]
    fn get_docs_by_ptrs<'py>(
        &self,
        py: Python<'py>,
        shard_ptrs: Vec<(usize, u64)>,
        max_disp_len: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        let docs = py
            .detach(|| {
                shard_ptrs
                    .par_iter()
                    .enumerate()
                    .map(|(i, &(shard, ptr))| {
                        self.inner
                            .get_doc_by_ptr(shard, ptr, max_disp_len)
                            .map_err(|e| (i, e))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(to_py_at)?;
        let list = PyList::empty(py);
        for doc in &docs {
            list.append(doc_dict(py, doc)?)?;
        }
        Ok(list)
    }

    /// The document at suffix-array rank `rank` of shard `shard`.
    #[pyo3(signature = (shard, rank, max_disp_len = 1000))]
    fn get_doc_by_rank<'py>(
        &self,
        py: Python<'py>,
        shard: usize,
        rank: u64,
        max_disp_len: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let doc = py
            .detach(|| self.inner.get_doc_by_rank(shard, rank, max_disp_len))
            .map_err(to_py)?;
        doc_dict(py, &doc)
    }

    /// Full structural check (checksums, every pointer, sampled order, offsets):
    /// `{"ok", "problems", ...}`.
    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let report = py.detach(|| anygram::verify::verify(&self.inner));
        let d = PyDict::new(py);
        d.set_item("ok", report.problems.is_empty())?;
        d.set_item("problems", report.problems)?;
        d.set_item("checksums_checked", report.checksums_checked)?;
        d.set_item("pointers_checked", report.pointers_checked)?;
        d.set_item("pairs_checked", report.pairs_checked)?;
        Ok(d)
    }
}
