//! `anygram._anygram.CorpusTokenizer`: the build's tokenizer (see `anygram::tokenize`).

use std::path::PathBuf;

use anygram::tokenize::CorpusTokenizer;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;

use crate::errors::to_py;

#[pyclass(frozen, module = "anygram._anygram", name = "CorpusTokenizer")]
pub struct PyCorpusTokenizer {
    inner: CorpusTokenizer,
}

#[pymethods]
impl PyCorpusTokenizer {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py
            .detach(|| CorpusTokenizer::from_file(&path))
            .map_err(to_py)?;
        Ok(PyCorpusTokenizer { inner })
    }

    /// Whether the fast byte-level road is taken (else the library's own encoder).
    #[getter]
    fn is_fast(&self) -> bool {
        self.inner.is_fast()
    }

    /// Token ids of many texts on all cores: `(ids, lengths)`, the ids of all texts
    /// one after another (uint32) and each text's number of ids (uint64).
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let encoded = py
            .detach(|| {
                let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
                self.inner.encode_batch(&refs)
            })
            .map_err(to_py)?;
        let lengths: Vec<u64> = encoded.iter().map(|ids| ids.len() as u64).collect();
        let flat: Vec<u32> = encoded.into_iter().flatten().collect();
        Ok((
            flat.into_pyarray(py).into_any(),
            lengths.into_pyarray(py).into_any(),
        ))
    }

    /// Token ids of one text through the library alone (no fast road).
    fn encode_exact(&self, py: Python<'_>, text: PyBackedStr) -> PyResult<Vec<u32>> {
        py.detach(|| self.inner.exact(&text)).map_err(to_py)
    }
}
