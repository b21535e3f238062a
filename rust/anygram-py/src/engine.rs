//! `anygram._anygram.Engine`: the native engine. `anygram.Engine` (Python)
//! subclasses it to add tokenizers and `open`; every query method lives here so
//! that a call with token ids goes straight from Python to Rust. Arguments are
//! checked in `args.rs`, core work runs through `batch.rs` (GIL released, on the
//! fork-safe pool, panics mapped), results are shaped in `results.rs`.

use std::path::PathBuf;
use std::sync::Arc;

use anygram::accel::SearchPath;
use anygram::{Engine, OpenOptions};
use numpy::{IntoPyArray, PyUntypedArray};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::args::{
    extend_ids, int_arg, int_list, maybe_int_arg, opt_int_arg, positions_arg, token_ids, type_name,
    BatchLayout, Ids, QueryBatch, U64_MAX,
};
use crate::batch::{batch, batch_grouped, batch_to_list, call, quick};
use crate::errors::invalid_query;
use crate::results::{doc_dict, doc_list, ntd_dict, prob_arrays, prob_dict, search_dict};

/// Default cap on exact next-token counting (infini-gram's default).
pub const DEFAULT_MAX_SUPPORT: u64 = 1000;
/// Ceiling of every count-like argument (`max_support`, `maxnum`, `max_disp_len`,
/// `n`, ...): more than any index holds, and small enough that the core's
/// arithmetic on it (times a token width, plus a pointer) cannot overflow.
pub const MAX_AMOUNT: i128 = 1 << 48;
/// The range of a count-like argument that must be positive.
pub const POSITIVE: std::ops::RangeInclusive<i128> = 1..=MAX_AMOUNT;

#[pyclass(subclass, frozen, module = "anygram._anygram", name = "Engine")]
pub struct PyEngine {
    inner: Arc<Engine>,
    /// `str -> list[int]`, set by the Python layer when the index has a tokenizer.
    encoder: Option<Py<PyAny>>,
}

impl PyEngine {
    /// Token ids from a `str` (through the tokenizer), a sequence of ints or a
    /// 1-D numpy integer array, each in `[0, vocab_size)`.
    pub(crate) fn ids<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
        what: &str,
    ) -> PyResult<Ids<'py>> {
        self.ids_labeled(py, query, &what)
    }

    /// [`Self::ids`] with the argument's name given as anything printable
    /// (formatted only when there is an error to report).
    pub(crate) fn ids_labeled<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
        what: &dyn std::fmt::Display,
    ) -> PyResult<Ids<'py>> {
        if query.is_instance_of::<PyString>() {
            let Some(encoder) = &self.encoder else {
                return Err(invalid_query(format!(
                    "{what}: this index has no tokenizer: pass token ids, or open it with tokenizer=..."
                )));
            };
            let encoded = encoder.bind(py).call1((query,))?;
            return token_ids(&encoded, self.inner.vocab_size(), what);
        }
        token_ids(query, self.inner.vocab_size(), what)
    }

    /// Many queries: any iterable of queries, or one integer array (see `many_with`).
    pub(crate) fn many<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
    ) -> PyResult<QueryBatch<'py>> {
        self.many_with(py, queries, &BatchLayout::default())
    }

    /// Many queries: an iterable of queries (lists of ids, strings, 1-D arrays),
    /// or one integer numpy array cut by `layout` (a 2-D array's rows, a 1-D
    /// array at its offsets), borrowed when it is `uint32`.
    pub(crate) fn many_with<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        layout: &BatchLayout,
    ) -> PyResult<QueryBatch<'py>> {
        let vocab = self.inner.vocab_size();
        if let Ok(array) = queries.cast::<PyUntypedArray>() {
            return QueryBatch::from_array(array, layout, vocab);
        }
        refuse_layout_of_list(layout)?;
        let hint = queries.len().unwrap_or(0);
        QueryBatch::gather(hint, self.query_converter(py, queries)?)
    }

    /// The converter of an iterable of queries (lists of ids, strings, 1-D
    /// arrays): `convert(i, tokens)` appends query `i`'s checked ids to `tokens`,
    /// false when there are no more queries.
    pub(crate) fn query_converter<'py, 'a>(
        &'a self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
    ) -> PyResult<impl FnMut(usize, &mut Vec<u32>) -> PyResult<bool> + 'a>
    where
        'py: 'a,
    {
        if queries.is_instance_of::<PyString>() {
            return Err(invalid_query(
                "a batch must be a list of queries, not a single string".into(),
            ));
        }
        let mut items = queries.try_iter().map_err(|_| {
            invalid_query(format!(
                "a batch must be a list of queries, not {}",
                type_name(queries)
            ))
        })?;
        let vocab = self.inner.vocab_size();
        Ok(move |i: usize, tokens: &mut Vec<u32>| {
            let Some(query) = items.next() else {
                return Ok(false);
            };
            let query = query?;
            let what = QueryLabel(i);
            if query.is_instance_of::<PyString>() {
                tokens.extend_from_slice(self.ids_labeled(py, &query, &what)?.as_slice());
            } else {
                extend_ids(&query, vocab, &what, tokens)?;
            }
            Ok(true)
        })
    }

    /// A continuation token: an id, or a string that must tokenize to exactly one id.
    fn token_arg(&self, py: Python<'_>, token: &Bound<'_, PyAny>, what: &str) -> PyResult<u32> {
        if token.is_instance_of::<PyString>() {
            let ids = self.ids(py, token, what)?;
            return match ids.as_slice() {
                [id] => Ok(*id),
                other => Err(invalid_query(format!(
                    "{what} {} is {} tokens {:?}; it must be exactly one",
                    token.repr()?,
                    other.len(),
                    other
                ))),
            };
        }
        let vocab = self.inner.vocab_size();
        int_arg(token, what, 0..=vocab as i128 - 1).map_err(|_| {
            let shown = token.repr().map(|r| r.to_string()).unwrap_or_default();
            invalid_query(format!(
                "{what}: token id {shown} is outside the vocabulary [0, {vocab}) (a token is an int or a one-token string)"
            ))
        })
    }

    fn tokens_many(&self, py: Python<'_>, tokens: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        if tokens.cast::<PyUntypedArray>().is_ok() {
            return Ok(token_ids(tokens, self.inner.vocab_size(), &"tokens")?
                .as_slice()
                .to_vec());
        }
        tokens
            .try_iter()?
            .enumerate()
            .map(|(i, t)| self.token_arg(py, &t?, &format!("tokens[{i}]")))
            .collect()
    }

    /// A CNF query: clauses, each a list of n-grams given as token ids.
    fn cnf_ids(&self, cnf: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<Vec<u32>>>> {
        let malformed =
            || invalid_query("a CNF query is a list of clauses, each a list of n-grams".into());
        let mut out = Vec::new();
        for (c, clause) in cnf.try_iter().map_err(|_| malformed())?.enumerate() {
            let mut terms = Vec::new();
            for (t, term) in clause?.try_iter().map_err(|_| malformed())?.enumerate() {
                let ids = token_ids(
                    &term?,
                    self.inner.vocab_size(),
                    &format_args!("clause {c}, n-gram {t}"),
                )?;
                terms.push(ids.as_slice().to_vec());
            }
            out.push(terms);
        }
        Ok(out)
    }

    /// A shard number of this index.
    pub(crate) fn shard_arg(&self, shard: &Bound<'_, PyAny>) -> PyResult<usize> {
        int_arg(shard, "shard", 0..=self.inner.shards().len() as i128 - 1)
    }

    /// The core engine (for bindings in other files).
    pub(crate) fn core(&self) -> &Arc<Engine> {
        &self.inner
    }
}

/// The token slices of converted queries (what the batch helper shares between threads).
pub(crate) fn slices<'a>(queries: &'a QueryBatch<'_>) -> Vec<&'a [u32]> {
    queries.slices()
}

/// "query i" in an error message, formatted only when there is one.
struct QueryLabel(usize);

impl std::fmt::Display for QueryLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "query {}", self.0)
    }
}

/// A list of queries is already cut into queries: no layout may be given with it.
fn refuse_layout_of_list(layout: &BatchLayout) -> PyResult<()> {
    if layout.offsets.is_some() || layout.lengths.is_some() || layout.fill.is_some() {
        return Err(invalid_query(
            "offsets, lengths and fill cut a numpy array of queries; a list of queries needs none"
                .into(),
        ));
    }
    Ok(())
}

/// `offsets`, `lengths` and `fill` of a batch method (see `BatchLayout`).
fn layout_args(
    offsets: Option<&Bound<'_, PyAny>>,
    lengths: Option<&Bound<'_, PyAny>>,
    fill: Option<&Bound<'_, PyAny>>,
) -> PyResult<BatchLayout> {
    let positions = |value: Option<&Bound<'_, PyAny>>, name: &str| -> PyResult<Option<Vec<u64>>> {
        match value {
            Some(v) if !v.is_none() => positions_arg(v, name, MAX_AMOUNT as u64).map(Some),
            _ => Ok(None),
        }
    };
    Ok(BatchLayout {
        offsets: positions(offsets, "offsets")?,
        lengths: positions(lengths, "lengths")?,
        fill: maybe_int_arg(fill, "fill", -U64_MAX..=U64_MAX)?,
    })
}

fn max_support_arg(value: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    opt_int_arg(value, "max_support", POSITIVE, DEFAULT_MAX_SUPPORT)
}

fn n_arg(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    maybe_int_arg(value, "n", POSITIVE)
}

fn disp_len_arg(value: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    opt_int_arg(value, "max_disp_len", POSITIVE, 1000)
}

fn seed_arg(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    maybe_int_arg(value, "seed", 0..=U64_MAX)
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (path, token_width = None, vocab_size = None, eos_token_id = None, encoder = None, resident_mem = None, accelerator = true, sample_keys = true, search_path = "adaptive", cnf_memo_bytes = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        token_width: Option<&Bound<'_, PyAny>>,
        vocab_size: Option<&Bound<'_, PyAny>>,
        eos_token_id: Option<&Bound<'_, PyAny>>,
        encoder: Option<Py<PyAny>>,
        resident_mem: Option<&Bound<'_, PyAny>>,
        accelerator: bool,
        sample_keys: bool,
        search_path: &str,
        cnf_memo_bytes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let search_path = match search_path {
            "adaptive" => SearchPath::Adaptive,
            "tree" => SearchPath::Tree,
            "narrowed" => SearchPath::Narrowed,
            other => {
                return Err(crate::errors::to_py(anygram::Error::InvalidArgument(
                    format!("search_path must be 'adaptive', 'tree' or 'narrowed', got {other:?}"),
                )))
            }
        };
        let options = OpenOptions {
            token_width: maybe_int_arg(token_width, "token_width", 1..=4)?,
            vocab_size: maybe_int_arg(vocab_size, "vocab_size", 1..=u32::MAX as i128)?,
            eos_token_id: maybe_int_arg(eos_token_id, "eos_token_id", 0..=u32::MAX as i128)?,
            resident_mem: maybe_int_arg(resident_mem, "resident_mem", 0..=i64::MAX as i128)?,
            accelerator,
            sample_keys,
            search_path,
            cnf_memo_bytes: maybe_int_arg(cnf_memo_bytes, "cnf_memo_bytes", 0..=i64::MAX as i128)?
                .unwrap_or(anygram::cnf::DEFAULT_CNF_MEMO_BYTES),
        };
        let inner = call(py, || Engine::open(&path, &options))?;
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
            d.set_item("has_metadata", s.has_metadata())?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Occurrences of an n-gram (the empty n-gram counts every token position).
    fn count(&self, py: Python<'_>, query: &Bound<'_, PyAny>) -> PyResult<u64> {
        let ids = self.ids(py, query, "query")?;
        let ids = ids.as_slice();
        quick(py, || self.inner.count(ids))
    }

    /// Where an n-gram occurs: `{"cnt", "segment_by_shard": [(lo, hi), ...]}`.
    fn find<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ids = self.ids(py, query, "query")?;
        let ids = ids.as_slice();
        let r = quick(py, || self.inner.find(ids))?;
        let d = PyDict::new(py);
        d.set_item("cnt", r.count)?;
        d.set_item("segment_by_shard", &r.ranges[..])?;
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
        n: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ids = self.ids(py, context, "context")?;
        let ids = ids.as_slice();
        let token = self.token_arg(py, token, "token")?;
        let n = n_arg(n)?;
        let r = quick(py, || self.inner.ngram_prob(ids, token, n))?;
        prob_dict(py, &r)
    }

    /// Next-token distribution after the last n−1 tokens (`n` given) or the
    /// longest occurring suffix (`n=None`); sampled beyond `max_support`.
    #[pyo3(signature = (context, n = None, max_support = None))]
    fn ntd<'py>(
        &self,
        py: Python<'py>,
        context: &Bound<'py, PyAny>,
        n: Option<&Bound<'py, PyAny>>,
        max_support: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ids = self.ids(py, context, "context")?;
        let ids = ids.as_slice();
        let (n, max_support) = (n_arg(n)?, max_support_arg(max_support)?);
        let r = quick(py, || self.inner.ngram_ntd(ids, n, max_support))?;
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
    #[pyo3(signature = (context, max_support = None))]
    fn infgram_ntd<'py>(
        &self,
        py: Python<'py>,
        context: &Bound<'py, PyAny>,
        max_support: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.ntd(py, context, None, max_support)
    }

    /// Counts of many n-grams at once, on all cores: a uint64 array. `queries`
    /// is a list of queries, a 2-D integer array (rows cut by `lengths` or at the
    /// first `fill`) or a 1-D one cut at `offsets`; `uint32` arrays are not copied.
    #[pyo3(signature = (queries, *, offsets = None, lengths = None, fill = None))]
    fn count_batch<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        offsets: Option<&Bound<'py, PyAny>>,
        lengths: Option<&Bound<'py, PyAny>>,
        fill: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let queries = self.many_with(py, queries, &layout_args(offsets, lengths, fill)?)?;
        // Groups of queries whose binary searches interleave (memory-level parallelism).
        let counts = batch_grouped(
            py,
            &slices(&queries),
            4 * anygram::interleave::GROUP,
            |group| anygram::interleave::count_many(&self.inner, group),
        )?;
        Ok(counts.into_pyarray(py).into_any())
    }

    /// `prob` for many (context, token) pairs on all cores: a dict of arrays
    /// `prob`, `prompt_cnt`, `cont_cnt`, `suffix_len`.
    #[pyo3(signature = (contexts, tokens, n = None, *, offsets = None, lengths = None, fill = None))]
    #[allow(clippy::too_many_arguments)]
    fn prob_batch<'py>(
        &self,
        py: Python<'py>,
        contexts: &Bound<'py, PyAny>,
        tokens: &Bound<'py, PyAny>,
        n: Option<&Bound<'py, PyAny>>,
        offsets: Option<&Bound<'py, PyAny>>,
        lengths: Option<&Bound<'py, PyAny>>,
        fill: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let contexts = self.many_with(py, contexts, &layout_args(offsets, lengths, fill)?)?;
        let tokens = self.tokens_many(py, tokens)?;
        let n = n_arg(n)?;
        if contexts.len() != tokens.len() {
            return Err(invalid_query(format!(
                "{} contexts but {} tokens: give one token per context",
                contexts.len(),
                tokens.len()
            )));
        }
        let pairs: Vec<(&[u32], u32)> = slices(&contexts).into_iter().zip(tokens).collect();
        let results = batch(py, &pairs, |&(c, t)| self.inner.ngram_prob(c, t, n))?;
        prob_arrays(py, results)
    }

    /// ∞-gram `prob_batch`.
    #[pyo3(signature = (contexts, tokens, *, offsets = None, lengths = None, fill = None))]
    fn infgram_prob_batch<'py>(
        &self,
        py: Python<'py>,
        contexts: &Bound<'py, PyAny>,
        tokens: &Bound<'py, PyAny>,
        offsets: Option<&Bound<'py, PyAny>>,
        lengths: Option<&Bound<'py, PyAny>>,
        fill: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.prob_batch(py, contexts, tokens, None, offsets, lengths, fill)
    }

    /// `ntd` for many contexts on all cores: a list of dicts.
    #[pyo3(signature = (contexts, n = None, max_support = None, *, offsets = None, lengths = None, fill = None))]
    #[allow(clippy::too_many_arguments)]
    fn ntd_batch<'py>(
        &self,
        py: Python<'py>,
        contexts: &Bound<'py, PyAny>,
        n: Option<&Bound<'py, PyAny>>,
        max_support: Option<&Bound<'py, PyAny>>,
        offsets: Option<&Bound<'py, PyAny>>,
        lengths: Option<&Bound<'py, PyAny>>,
        fill: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let contexts = self.many_with(py, contexts, &layout_args(offsets, lengths, fill)?)?;
        let (n, max_support) = (n_arg(n)?, max_support_arg(max_support)?);
        batch_to_list(
            py,
            &slices(&contexts),
            |c| self.inner.ngram_ntd(c, n, max_support),
            |py, r| Ok(ntd_dict(py, &r)?.into_any()),
        )
    }

    /// ∞-gram `ntd_batch`.
    #[pyo3(signature = (contexts, max_support = None, *, offsets = None, lengths = None, fill = None))]
    fn infgram_ntd_batch<'py>(
        &self,
        py: Python<'py>,
        contexts: &Bound<'py, PyAny>,
        max_support: Option<&Bound<'py, PyAny>>,
        offsets: Option<&Bound<'py, PyAny>>,
        lengths: Option<&Bound<'py, PyAny>>,
        fill: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.ntd_batch(py, contexts, None, max_support, offsets, lengths, fill)
    }

    /// Documents holding an n-gram: `{"cnt", "approx", "idxs", "documents"}`.
    /// All occurrences when there are at most `maxnum`, else `maxnum` distinct ones
    /// drawn at random (`seed` makes the draw repeatable).
    #[pyo3(signature = (query, maxnum = None, max_disp_len = None, seed = None))]
    fn search_docs<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
        maxnum: Option<&Bound<'py, PyAny>>,
        max_disp_len: Option<&Bound<'py, PyAny>>,
        seed: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ids = self.ids(py, query, "query")?;
        let ids = ids.as_slice();
        let maxnum: u64 = opt_int_arg(maxnum, "maxnum", POSITIVE, 1)?;
        let (max_disp_len, seed) = (disp_len_arg(max_disp_len)?, seed_arg(seed)?);
        let r = quick(py, || {
            self.inner.search_docs(ids, maxnum, max_disp_len, seed)
        })?;
        search_dict(py, &r, false)
    }

    /// Occurrences of a CNF query (clauses of n-grams, as token ids):
    /// `{"count", "approx"}`.
    #[pyo3(signature = (cnf, max_clause_freq = None, max_diff_tokens = None))]
    fn count_cnf<'py>(
        &self,
        py: Python<'py>,
        cnf: &Bound<'py, PyAny>,
        max_clause_freq: Option<&Bound<'py, PyAny>>,
        max_diff_tokens: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (count, approx) =
            self.run_cnf(py, cnf, max_clause_freq, max_diff_tokens, Engine::count_cnf)?;
        let d = PyDict::new(py);
        d.set_item("count", count)?;
        d.set_item("approx", approx)?;
        Ok(d)
    }

    /// Where a CNF query holds: `{"cnt", "approx", "ptrs_by_shard"}`.
    #[pyo3(signature = (cnf, max_clause_freq = None, max_diff_tokens = None))]
    fn find_cnf<'py>(
        &self,
        py: Python<'py>,
        cnf: &Bound<'py, PyAny>,
        max_clause_freq: Option<&Bound<'py, PyAny>>,
        max_diff_tokens: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = self.run_cnf(py, cnf, max_clause_freq, max_diff_tokens, Engine::find_cnf)?;
        let d = PyDict::new(py);
        d.set_item("cnt", r.count)?;
        d.set_item("approx", r.approx)?;
        d.set_item("ptrs_by_shard", r.ptrs_by_shard)?;
        Ok(d)
    }

    /// Documents where a CNF query holds (see `search_docs`).
    #[pyo3(signature = (cnf, maxnum = None, max_disp_len = None, max_clause_freq = None, max_diff_tokens = None, seed = None))]
    #[allow(clippy::too_many_arguments)]
    fn search_docs_cnf<'py>(
        &self,
        py: Python<'py>,
        cnf: &Bound<'py, PyAny>,
        maxnum: Option<&Bound<'py, PyAny>>,
        max_disp_len: Option<&Bound<'py, PyAny>>,
        max_clause_freq: Option<&Bound<'py, PyAny>>,
        max_diff_tokens: Option<&Bound<'py, PyAny>>,
        seed: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let cnf = self.cnf_ids(cnf)?;
        let maxnum: u64 = opt_int_arg(maxnum, "maxnum", POSITIVE, 1)?;
        let (max_disp_len, seed) = (disp_len_arg(max_disp_len)?, seed_arg(seed)?);
        let (freq, diff) = cnf_limits(max_clause_freq, max_diff_tokens)?;
        let (r, approx) = call(py, || {
            self.inner
                .search_docs_cnf(&cnf, maxnum, max_disp_len, freq, diff, seed)
        })?;
        search_dict(py, &r, approx)
    }

    /// Document `doc_ix` (global over shards): its first `max_disp_len` tokens and metadata.
    #[pyo3(signature = (doc_ix, max_disp_len = None))]
    fn get_doc_by_ix<'py>(
        &self,
        py: Python<'py>,
        doc_ix: &Bound<'py, PyAny>,
        max_disp_len: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ix: u64 = int_arg(doc_ix, "doc_ix", self.doc_ix_range())?;
        let max_disp_len = disp_len_arg(max_disp_len)?;
        let doc = quick(py, || self.inner.get_doc_by_ix(ix, max_disp_len))?;
        doc_dict(py, &doc)
    }

    /// Many documents by index, on all cores.
    #[pyo3(signature = (doc_ixs, max_disp_len = None))]
    fn get_docs_by_ixs<'py>(
        &self,
        py: Python<'py>,
        doc_ixs: &Bound<'py, PyAny>,
        max_disp_len: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let doc_ixs: Vec<u64> = int_list(doc_ixs, "doc_ixs", self.doc_ix_range())?;
        let max_disp_len = disp_len_arg(max_disp_len)?;
        let docs = batch(py, &doc_ixs, |&ix| {
            self.inner.get_doc_by_ix(ix, max_disp_len)
        })?;
        doc_list(py, &docs)
    }

    /// The document holding byte `ptr` of shard `shard`, with a window of
    /// `max_disp_len` tokens around it.
    #[pyo3(signature = (shard, ptr, max_disp_len = None))]
    fn get_doc_by_ptr<'py>(
        &self,
        py: Python<'py>,
        shard: &Bound<'py, PyAny>,
        ptr: &Bound<'py, PyAny>,
        max_disp_len: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let shard = self.shard_arg(shard)?;
        let ptr: u64 = int_arg(ptr, "ptr", 0..=U64_MAX)?;
        let max_disp_len = disp_len_arg(max_disp_len)?;
        let doc = quick(py, || self.inner.get_doc_by_ptr(shard, ptr, max_disp_len))?;
        doc_dict(py, &doc)
    }

    /// Many documents by `(shard, ptr)`, on all cores.
    #[pyo3(signature = (shard_ptrs, max_disp_len = None))]
    fn get_docs_by_ptrs<'py>(
        &self,
        py: Python<'py>,
        shard_ptrs: &Bound<'py, PyAny>,
        max_disp_len: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let pairs = shard_ptrs
            .try_iter()
            .map_err(|_| invalid_query("shard_ptrs must be a list of (shard, ptr) pairs".into()))?
            .enumerate()
            .map(|(i, pair)| {
                let pair = pair?;
                let malformed =
                    || invalid_query(format!("shard_ptrs[{i}] must be a (shard, ptr) pair"));
                if pair.len().map_err(|_| malformed())? != 2 {
                    return Err(malformed());
                }
                let shard = self.shard_arg(&pair.get_item(0)?)?;
                let ptr: u64 = int_arg(
                    &pair.get_item(1)?,
                    &format!("shard_ptrs[{i}] ptr"),
                    0..=U64_MAX,
                )?;
                Ok((shard, ptr))
            })
            .collect::<PyResult<Vec<(usize, u64)>>>()?;
        let max_disp_len = disp_len_arg(max_disp_len)?;
        let docs = batch(py, &pairs, |&(shard, ptr)| {
            self.inner.get_doc_by_ptr(shard, ptr, max_disp_len)
        })?;
        doc_list(py, &docs)
    }

    /// The document at suffix-array rank `rank` of shard `shard`.
    #[pyo3(signature = (shard, rank, max_disp_len = None))]
    fn get_doc_by_rank<'py>(
        &self,
        py: Python<'py>,
        shard: &Bound<'py, PyAny>,
        rank: &Bound<'py, PyAny>,
        max_disp_len: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let shard = self.shard_arg(shard)?;
        let rank: u64 = int_arg(rank, "rank", 0..=U64_MAX)?;
        let max_disp_len = disp_len_arg(max_disp_len)?;
        let doc = quick(py, || self.inner.get_doc_by_rank(shard, rank, max_disp_len))?;
        doc_dict(py, &doc)
    }

    /// Full structural check (checksums, every pointer, sampled order, offsets):
    /// `{"ok", "problems", ...}`.
    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let report = call(py, || {
            Ok::<_, anygram::Error>(anygram::verify::verify(&self.inner))
        })?;
        let d = PyDict::new(py);
        d.set_item("ok", report.problems.is_empty())?;
        d.set_item("problems", report.problems)?;
        d.set_item("checksums_checked", report.checksums_checked)?;
        d.set_item("pointers_checked", report.pointers_checked)?;
        d.set_item("pairs_checked", report.pairs_checked)?;
        Ok(d)
    }
}

impl PyEngine {
    fn doc_ix_range(&self) -> std::ops::RangeInclusive<i128> {
        0..=self.inner.num_documents() as i128 - 1
    }

    /// `query` (the core's `find_cnf` or `count_cnf`) of a CNF and its limits from Python.
    fn run_cnf<T: Send>(
        &self,
        py: Python<'_>,
        cnf: &Bound<'_, PyAny>,
        max_clause_freq: Option<&Bound<'_, PyAny>>,
        max_diff_tokens: Option<&Bound<'_, PyAny>>,
        query: impl FnOnce(&Engine, &[Vec<Vec<u32>>], u64, u64) -> anygram::Result<T> + Send,
    ) -> PyResult<T> {
        let cnf = self.cnf_ids(cnf)?;
        let (freq, diff) = cnf_limits(max_clause_freq, max_diff_tokens)?;
        // On the calling thread: the core hands only a query's large steps to the pool.
        quick(py, || query(&self.inner, &cnf, freq, diff))
    }
}

fn cnf_limits(
    max_clause_freq: Option<&Bound<'_, PyAny>>,
    max_diff_tokens: Option<&Bound<'_, PyAny>>,
) -> PyResult<(u64, u64)> {
    Ok((
        opt_int_arg(max_clause_freq, "max_clause_freq", POSITIVE, 50000)?,
        opt_int_arg(max_diff_tokens, "max_diff_tokens", POSITIVE, 100)?,
    ))
}
