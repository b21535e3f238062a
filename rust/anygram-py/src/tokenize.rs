//! `anygram._anygram.Tokenizer`: the one tokenizer of anygram, for builds and
//! queries alike: the core's `CorpusTokenizer` (the `tokenizers` crate, with the
//! exact fast road for GPT-2-style byte-level BPE) encodes, and the same crate
//! decodes. Queries and builds thus share one implementation and one version.
//! (`CorpusTokenizer` is the same class under the build's older name.)

use std::path::PathBuf;

use anygram::tokenize::CorpusTokenizer;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;

use crate::args::{int_arg, int_list, text_arg, type_name};
use crate::batch::call;
use crate::errors::invalid_query;

const TOKEN_ID: std::ops::RangeInclusive<i128> = 0..=u32::MAX as i128;

#[pyclass(frozen, module = "anygram._anygram", name = "Tokenizer")]
pub struct PyTokenizer {
    /// Encoding, as the build does it.
    corpus: CorpusTokenizer,
    /// Decoding and the vocabulary (the same crate and file).
    library: tokenizers::Tokenizer,
}

fn library_error(what: &str, e: impl std::fmt::Display) -> anygram::Error {
    anygram::Error::InvalidArgument(format!("{what}: {e}"))
}

fn texts_arg(texts: &Bound<'_, PyAny>) -> PyResult<Vec<PyBackedStr>> {
    if texts.is_instance_of::<pyo3::types::PyString>() {
        return Err(invalid_query(
            "texts must be a list of str, not one str".into(),
        ));
    }
    texts
        .try_iter()
        .map_err(|_| {
            invalid_query(format!(
                "texts must be a list of str, not {}",
                type_name(texts)
            ))
        })?
        .enumerate()
        .map(|(i, t)| text_arg(&t?, &format!("text {i}")))
        .collect()
}

#[pymethods]
impl PyTokenizer {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        // Built on the pool, so that its per-thread caches match the pool's threads.
        call(py, || {
            let corpus = CorpusTokenizer::from_file(&path)?;
            let library = tokenizers::Tokenizer::from_file(&path).map_err(|e| {
                library_error(
                    &format!("{}: not a HuggingFace tokenizer.json", path.display()),
                    e,
                )
            })?;
            Ok::<_, anygram::Error>(PyTokenizer { corpus, library })
        })
    }

    /// Whether the fast byte-level road is taken (else the library's own encoder).
    #[getter]
    fn is_fast(&self) -> bool {
        self.corpus.is_fast()
    }

    /// Tokens in the vocabulary, added tokens included.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.library.get_vocab_size(true)
    }

    /// Token ids of one text, no special tokens added (as the build encodes).
    fn encode(&self, py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        let text = text_arg(text, "text")?;
        call(py, || self.corpus.encode(&text))
    }

    /// Token ids of one text through the library alone (no fast road).
    fn encode_exact(&self, py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        let text = text_arg(text, "text")?;
        call(py, || self.corpus.exact(&text))
    }

    /// Token ids of many texts on all cores: `(ids, lengths)`, the ids of all texts
    /// one after another (uint32) and each text's number of ids (uint64).
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let texts = texts_arg(texts)?;
        let encoded = call(py, || {
            let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
            self.corpus.encode_batch(&refs)
        })?;
        let lengths: Vec<u64> = encoded.iter().map(|ids| ids.len() as u64).collect();
        let flat: Vec<u32> = encoded.into_iter().flatten().collect();
        Ok((
            flat.into_pyarray(py).into_any(),
            lengths.into_pyarray(py).into_any(),
        ))
    }

    /// The text of token ids (special tokens kept unless `skip_special_tokens`).
    #[pyo3(signature = (ids, skip_special_tokens = false))]
    fn decode(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        skip_special_tokens: bool,
    ) -> PyResult<String> {
        let ids: Vec<u32> = int_list(ids, "ids", TOKEN_ID)?;
        call(py, || {
            self.library
                .decode(&ids, skip_special_tokens)
                .map_err(|e| library_error("decode failed", e))
        })
    }

    /// The texts of many id lists, on all cores.
    #[pyo3(signature = (batch, skip_special_tokens = false))]
    fn decode_batch(
        &self,
        py: Python<'_>,
        batch: &Bound<'_, PyAny>,
        skip_special_tokens: bool,
    ) -> PyResult<Vec<String>> {
        let lists = batch
            .try_iter()
            .map_err(|_| invalid_query("batch must be a list of token id lists".into()))?
            .enumerate()
            .map(|(i, ids)| int_list(&ids?, &format!("batch[{i}]"), TOKEN_ID))
            .collect::<PyResult<Vec<Vec<u32>>>>()?;
        crate::batch::batch(py, &lists, |ids| {
            self.library
                .decode(ids, skip_special_tokens)
                .map_err(|e| library_error("decode failed", e))
        })
    }

    /// The vocabulary entry of a token id, or None.
    fn id_to_token(&self, id: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        Ok(self.library.id_to_token(int_arg(id, "id", TOKEN_ID)?))
    }

    /// The vocabulary entry of each id ("" for ids not in the vocabulary).
    fn tokens(&self, ids: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        let ids: Vec<u32> = int_list(ids, "ids", TOKEN_ID)?;
        Ok(ids
            .into_iter()
            .map(|id| self.library.id_to_token(id).unwrap_or_default())
            .collect())
    }

    /// The id of a vocabulary entry, or None.
    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.library.token_to_id(token)
    }
}
