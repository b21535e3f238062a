//! The one way the bindings run core work: with the GIL released, on anygram's
//! fork-safe pool (`anygram::pool`, never rayon's global pool, whose threads a
//! forked child does not have), with a Rust panic turned into
//! `anygram.errors.InternalError` instead of a `PanicException`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;
use rayon::prelude::*;

use crate::errors::{internal_error, to_py, to_py_at};

/// A core failure that maps onto an `anygram.errors` exception.
pub trait CoreFailure: Send {
    fn into_py_err(self) -> PyErr;
}

impl CoreFailure for anygram::Error {
    fn into_py_err(self) -> PyErr {
        to_py(self)
    }
}

/// A failure of query `index` of a batch (its message names the query).
impl CoreFailure for (usize, anygram::Error) {
    fn into_py_err(self) -> PyErr {
        to_py_at(self)
    }
}

/// What a caught panic said, for the error message.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `work` on the pool (already detached from Python), catching a panic.
pub fn on_pool<T: Send, E: Send>(
    work: impl FnOnce() -> Result<T, E> + Send,
) -> Result<Result<T, E>, String> {
    catch_unwind(AssertUnwindSafe(|| anygram::pool::install(work)))
        .map_err(|payload| panic_message(payload.as_ref()))
}

/// One core call: GIL released, on the pool (the core may go parallel inside),
/// errors and panics mapped onto `anygram.errors`.
pub fn call<T: Send, E: CoreFailure>(
    py: Python<'_>,
    work: impl FnOnce() -> Result<T, E> + Send,
) -> PyResult<T> {
    match py.detach(|| on_pool(work)) {
        Ok(result) => result.map_err(CoreFailure::into_py_err),
        Err(panic) => Err(internal_error(&panic)),
    }
}

/// One quick query (a count, a probability, a document): GIL released, run on
/// the calling thread, panics mapped. Handing it to the pool would cost a
/// thread switch, several times the query itself; the core runs any parallel
/// part of such a query on the fork-safe pool itself (`anygram::pool`).
pub fn quick<T: Send, E: CoreFailure>(
    py: Python<'_>,
    work: impl FnOnce() -> Result<T, E> + Send,
) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(result) => result.map_err(CoreFailure::into_py_err),
        Err(payload) => Err(internal_error(&panic_message(payload.as_ref()))),
    }
}

/// The batch form: `work(item)` for every item on all cores of the pool, in
/// order; an error names the index of the query that failed.
pub fn batch<I: Sync, T: Send>(
    py: Python<'_>,
    items: &[I],
    work: impl Fn(&I) -> anygram::Result<T> + Sync + Send,
) -> PyResult<Vec<T>> {
    call(py, || {
        items
            .par_iter()
            .enumerate()
            .map(|(i, item)| work(item).map_err(|e| (i, e)))
            .collect::<Result<Vec<T>, (usize, anygram::Error)>>()
    })
}

/// The batch form for work that handles many items at once (interleaved searches):
/// `work(group)` gives one result per item of a group of up to `group` items; the
/// groups run on all cores of the pool, in order; an error names its query.
pub fn batch_grouped<I: Sync, T: Send>(
    py: Python<'_>,
    items: &[I],
    group: usize,
    work: impl Fn(&[I]) -> Vec<anygram::Result<T>> + Sync + Send,
) -> PyResult<Vec<T>> {
    call(py, || {
        let per_group = items
            .par_chunks(group.max(1))
            .enumerate()
            .map(|(g, chunk)| {
                work(chunk)
                    .into_iter()
                    .enumerate()
                    .map(|(j, result)| result.map_err(|e| (g * group.max(1) + j, e)))
                    .collect::<Result<Vec<T>, (usize, anygram::Error)>>()
            })
            .collect::<Result<Vec<Vec<T>>, (usize, anygram::Error)>>()?;
        Ok::<_, (usize, anygram::Error)>(per_group.into_iter().flatten().collect())
    })
}

/// A deliberate panic through [`call`] (`"call"`) or on a pool thread of
/// [`batch`] (`"batch"`): lets the tests check that no panic reaches Python as
/// a `PanicException`, independently of whether the core has panics left.
#[pyfunction]
pub fn _panic_for_test(py: Python<'_>, place: &str) -> PyResult<()> {
    let place = place.to_string();
    match place.as_str() {
        "call" => call(py, || -> anygram::Result<()> {
            panic!("deliberate panic in a call")
        }),
        _ => batch(py, &(0..64).collect::<Vec<u32>>(), |&i| {
            if i == 37 {
                panic!("deliberate panic in batch item {i}");
            }
            Ok(())
        })
        .map(|_| ()),
    }
}

/// Tests only: `"text"` or `"sorted"` makes every CNF clause take that probe,
/// `"auto"` restores the cost model's choice (see `anygram::cnf`).
#[pyfunction]
pub fn _cnf_probe_for_test(probe: &str) -> PyResult<()> {
    let forced = match probe {
        "text" => Some(true),
        "sorted" => Some(false),
        "auto" => None,
        other => {
            return Err(crate::errors::invalid_query(format!(
                "probe must be text, sorted or auto, not {other}"
            )))
        }
    };
    anygram::cnf::force_probe_for_tests(forced);
    Ok(())
}
