//! PyO3 bindings of the anygram core: argument conversion, GIL release, numpy
//! and errors only. Every query runs in the core with the GIL released.

use pyo3::prelude::*;

mod engine;
mod errors;
mod lm;
mod scan;
mod tokenize;

use std::path::PathBuf;

use anygram::TokenWidth;

/// Builds the suffix array of one shard's `tokenized` file into `table`.
#[pyfunction]
#[pyo3(signature = (tokenized, table, token_width, threads = 0))]
fn build_suffix_array(
    py: Python<'_>,
    tokenized: PathBuf,
    table: PathBuf,
    token_width: usize,
    threads: usize,
) -> PyResult<()> {
    let width = TokenWidth::from_bytes(token_width).map_err(errors::to_py)?;
    py.detach(|| anygram::build::build_suffix_array(&tokenized, &table, width, threads))
        .map_err(errors::to_py)
}

/// XXH3-64 checksums (16 hex digits) of files, computed in parallel.
#[pyfunction]
fn checksum_files(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<Vec<String>> {
    use rayon::prelude::*;
    py.detach(|| {
        paths
            .par_iter()
            .map(|p| anygram::build::checksum_file(p))
            .collect::<anygram::Result<Vec<_>>>()
    })
    .map_err(errors::to_py)
}

#[pymodule]
fn _anygram(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::PyEngine>()?;
    m.add_class::<tokenize::PyCorpusTokenizer>()?;
    m.add_function(wrap_pyfunction!(build_suffix_array, m)?)?;
    m.add_function(wrap_pyfunction!(checksum_files, m)?)?;
    m.add_function(wrap_pyfunction!(lm::score, m)?)?;
    m.add_function(wrap_pyfunction!(lm::score_batch, m)?)?;
    m.add_function(wrap_pyfunction!(lm::ntd_dense, m)?)?;
    scan::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
