//! Bindings of the build steps: suffix arrays within a memory budget, checksums.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use anygram::build::{Phase, SuffixArrayOptions};
use anygram::TokenWidth;

use crate::errors;

/// Builds the suffix array of one shard's `tokenized` file into `table` (in
/// memory when it fits `mem_bytes`, else in parts merged on disk). `progress`,
/// if given, is called as `progress(phase, part, num_parts, done, total)`; an
/// exception it raises stops the build and propagates. Returns what was done.
#[pyfunction]
#[pyo3(signature = (tokenized, table, token_width, threads = 0, *, mem_bytes = None, work_dir = None,
                    part_tokens = None, overlap_tokens = None, progress = None))]
#[allow(clippy::too_many_arguments)]
pub fn build_suffix_array<'py>(
    py: Python<'py>,
    tokenized: PathBuf,
    table: PathBuf,
    token_width: usize,
    threads: usize,
    mem_bytes: Option<u64>,
    work_dir: Option<PathBuf>,
    part_tokens: Option<u64>,
    overlap_tokens: Option<u64>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let width = TokenWidth::from_bytes(token_width).map_err(errors::to_py)?;
    let options = SuffixArrayOptions {
        threads,
        mem_bytes,
        work_dir,
        part_tokens,
        overlap_tokens,
        no_sync: false,
    };
    // A Python exception raised by the callback, kept to re-raise as it was.
    let raised: Mutex<Option<PyErr>> = Mutex::new(None);
    let mut report_progress = |p: &anygram::build::Progress| -> anygram::Result<()> {
        let Some(callback) = &progress else {
            return Ok(());
        };
        let phase = match p.phase {
            Phase::SortAll => "sort",
            Phase::SortPart => "sort part",
            Phase::Merge => "merge",
        };
        Python::attach(|py| {
            callback
                .call1(py, (phase, p.part, p.num_parts, p.done, p.total))
                .map(|_| ())
        })
        .map_err(|e| {
            *raised.lock().expect("not poisoned") = Some(e);
            anygram::Error::InvalidArgument("interrupted by the progress callback".into())
        })
    };
    let result = py.detach(|| {
        anygram::build::build_suffix_array_with(
            &tokenized,
            &table,
            width,
            &options,
            &mut report_progress,
        )
    });
    if let Some(e) = raised.into_inner().expect("not poisoned") {
        return Err(e);
    }
    let report = result.map_err(errors::to_py)?;
    let out = PyDict::new(py);
    out.set_item("num_tokens", report.num_tokens)?;
    out.set_item("external", report.plan.is_some())?;
    out.set_item("planned_bytes", report.planned_bytes)?;
    if let Some(plan) = report.plan {
        out.set_item("num_parts", plan.num_parts())?;
        out.set_item("part_tokens", plan.part_tokens)?;
        out.set_item("overlap_tokens", plan.overlap_tokens)?;
    } else {
        out.set_item("num_parts", 1)?;
    }
    out.set_item("parts_reused", report.external.parts_reused)?;
    out.set_item("runs_resorted", report.external.runs_resorted)?;
    out.set_item("suffixes_in_runs", report.external.suffixes_in_runs)?;
    Ok(out)
}

/// The resident set size of this process in bytes (Linux), or None.
#[pyfunction]
pub fn resident_bytes() -> Option<u64> {
    anygram::build::memory::resident_bytes()
}

/// Peak bytes of an in-memory suffix sort of `num_tokens` tokens of `token_width` bytes.
#[pyfunction]
pub fn in_memory_sort_bytes(num_tokens: u64, token_width: usize) -> PyResult<u64> {
    let width = TokenWidth::from_bytes(token_width).map_err(errors::to_py)?;
    Ok(anygram::build::memory::in_memory_sort_bytes(
        num_tokens, width,
    ))
}

/// The largest number of tokens whose in-memory sort fits in `bytes`.
#[pyfunction]
pub fn max_in_memory_tokens(bytes: u64, token_width: usize) -> PyResult<u64> {
    let width = TokenWidth::from_bytes(token_width).map_err(errors::to_py)?;
    Ok(anygram::build::memory::max_in_memory_tokens(bytes, width))
}
