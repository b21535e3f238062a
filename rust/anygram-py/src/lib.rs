//! PyO3 bindings of the anygram core: argument conversion, GIL release, numpy
//! and errors only. Every query runs in the core with the GIL released.

use pyo3::prelude::*;

mod accel;
mod args;
mod attribution;
mod batch;
mod build;
mod compat;
mod engine;
mod errors;
mod lm;
mod results;
mod scan;
mod smoothing;
mod storage;
mod tokenize;
mod writer;

use std::path::PathBuf;

/// XXH3-64 checksums (16 hex digits) of files, computed in parallel.
#[pyfunction]
fn checksum_files(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<Vec<String>> {
    use rayon::prelude::*;
    batch::call(py, || {
        paths
            .par_iter()
            .map(|p| anygram::manifest::checksum_file(p))
            .collect::<anygram::Result<Vec<_>>>()
    })
}

#[pymodule]
fn _anygram(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::PyEngine>()?;
    m.add_class::<tokenize::PyTokenizer>()?;
    // The build's older name for the same class.
    m.add("CorpusTokenizer", m.getattr("Tokenizer")?)?;
    m.add_function(wrap_pyfunction!(build::build_suffix_array, m)?)?;
    m.add_function(wrap_pyfunction!(build::resident_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(build::in_memory_sort_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(build::max_in_memory_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(checksum_files, m)?)?;
    m.add_function(wrap_pyfunction!(batch::_panic_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(batch::_cnf_probe_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(accel::write_accelerators, m)?)?;
    m.add("ACCEL_DEFAULT_RATE", anygram::accel::DEFAULT_RATE)?;
    m.add("ACCEL_DEFAULT_KEY_BYTES", anygram::accel::DEFAULT_KEY_BYTES)?;
    m.add_function(wrap_pyfunction!(accel::count_reads, m)?)?;
    m.add_function(wrap_pyfunction!(lm::score, m)?)?;
    m.add_function(wrap_pyfunction!(storage::read_index_file, m)?)?;
    m.add_function(wrap_pyfunction!(storage::index_file_exists, m)?)?;
    m.add_function(wrap_pyfunction!(storage::storage_get_count, m)?)?;
    m.add_function(wrap_pyfunction!(storage::storage_batch_count, m)?)?;
    m.add_function(wrap_pyfunction!(storage::storage_round_trips, m)?)?;
    m.add_function(wrap_pyfunction!(storage::configure_storage, m)?)?;
    m.add_function(wrap_pyfunction!(lm::score_batch, m)?)?;
    m.add_function(wrap_pyfunction!(lm::ntd_dense, m)?)?;
    scan::register(m)?;
    smoothing::register(m)?;
    attribution::register(m)?;
    compat::register(m)?;
    writer::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
