//! Bindings of the build steps: suffix arrays within a memory budget, checksums.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use anygram::build::{Phase, SuffixArrayOptions};
use anygram::TokenWidth;

use crate::args::{int_arg, maybe_int_arg, opt_int_arg, U64_MAX};
use crate::batch::on_pool;
use crate::engine::{MAX_AMOUNT, POSITIVE};
use crate::errors;

/// Builds the suffix array of one shard's `tokenized` file into `table` (in
/// memory when it fits `mem_bytes`, else in parts merged on disk). `progress`,
/// if given, is called as `progress(phase, part, num_parts, done, total)`; an
/// exception it raises stops the build and propagates. Returns what was done.
#[pyfunction]
#[pyo3(signature = (tokenized, table, token_width, threads = None, *, mem_bytes = None, work_dir = None,
                    part_tokens = None, overlap_tokens = None, progress = None))]
#[allow(clippy::too_many_arguments)]
pub fn build_suffix_array<'py>(
    py: Python<'py>,
    tokenized: PathBuf,
    table: PathBuf,
    token_width: &Bound<'py, PyAny>,
    threads: Option<&Bound<'py, PyAny>>,
    mem_bytes: Option<&Bound<'py, PyAny>>,
    work_dir: Option<PathBuf>,
    part_tokens: Option<&Bound<'py, PyAny>>,
    overlap_tokens: Option<&Bound<'py, PyAny>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let width = width_arg(token_width)?;
    let options = SuffixArrayOptions {
        threads: opt_int_arg(threads, "threads", 0..=4096, 0)?,
        mem_bytes: maybe_int_arg(mem_bytes, "mem_bytes", 1..=U64_MAX)?,
        work_dir,
        part_tokens: maybe_int_arg(part_tokens, "part_tokens", POSITIVE)?,
        overlap_tokens: maybe_int_arg(overlap_tokens, "overlap_tokens", POSITIVE)?,
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
            *raised
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(e);
            anygram::Error::InvalidArgument("interrupted by the progress callback".into())
        })
    };
    // On the fork-safe pool, a panic becoming InternalError (see batch.rs).
    let result = py.detach(|| {
        on_pool(|| {
            anygram::build::build_suffix_array_with(
                &tokenized,
                &table,
                width,
                &options,
                &mut report_progress,
            )
        })
    });
    if let Some(e) = raised
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
    {
        return Err(e);
    }
    let report = result
        .map_err(|panic| errors::internal_error(&panic))?
        .map_err(errors::to_py)?;
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
pub fn in_memory_sort_bytes(
    num_tokens: &Bound<'_, PyAny>,
    token_width: &Bound<'_, PyAny>,
) -> PyResult<u64> {
    let num_tokens: u64 = int_arg(num_tokens, "num_tokens", 0..=MAX_AMOUNT)?;
    Ok(anygram::build::memory::in_memory_sort_bytes(
        num_tokens,
        width_arg(token_width)?,
    ))
}

/// The largest number of tokens whose in-memory sort fits in `bytes`.
#[pyfunction]
pub fn max_in_memory_tokens(
    bytes: &Bound<'_, PyAny>,
    token_width: &Bound<'_, PyAny>,
) -> PyResult<u64> {
    let bytes: u64 = int_arg(bytes, "bytes", 0..=U64_MAX)?;
    Ok(anygram::build::memory::max_in_memory_tokens(
        bytes,
        width_arg(token_width)?,
    ))
}

fn width_arg(token_width: &Bound<'_, PyAny>) -> PyResult<TokenWidth> {
    let bytes: usize = int_arg(token_width, "token_width", 1..=4)?;
    TokenWidth::from_bytes(bytes).map_err(errors::to_py)
}
