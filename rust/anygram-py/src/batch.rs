//! The one way the bindings run core work: with the GIL released, on anygram's
//! fork-safe pool (`anygram::pool`, never rayon's global pool, whose threads a
//! forked child does not have), with a Rust panic turned into
//! `anygram.errors.InternalError` instead of a `PanicException`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;
use pyo3::types::PyList;
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
/// groups run on all cores of the pool, each writing its results straight into
/// its part of the output; an error names its query (the first one that failed).
pub fn batch_grouped<I: Sync, T: Send + Default + Clone>(
    py: Python<'_>,
    items: &[I],
    group: usize,
    work: impl Fn(&[I]) -> Vec<anygram::Result<T>> + Sync + Send,
) -> PyResult<Vec<T>> {
    let group = group.max(1);
    call(py, || {
        let mut out = vec![T::default(); items.len()];
        out.par_chunks_mut(group)
            .zip(items.par_chunks(group))
            .enumerate()
            .map(|(g, (slots, chunk))| {
                for (j, (slot, result)) in slots.iter_mut().zip(work(chunk)).enumerate() {
                    *slot = result.map_err(|e| (g * group + j, e))?;
                }
                Ok(())
            })
            .collect::<Vec<Result<(), (usize, anygram::Error)>>>()
            .into_iter()
            .collect::<Result<(), (usize, anygram::Error)>>()?;
        Ok::<_, (usize, anygram::Error)>(out)
    })
}

/// The batch form for answers that become Python objects (infini-gram's dicts):
/// the queries run on the pool in small chunks while the calling thread, holding
/// the GIL, turns each finished chunk into objects (`to_python`), so that building
/// the objects overlaps the searches instead of following them (building an ntd's
/// dicts costs about as much as its search). The GIL is released while no chunk
/// is ready. A list in query order; an error names the first query that failed,
/// and once one has failed the chunks after it not yet started are skipped.
pub fn batch_to_list<'py, I: Sync, T: Send>(
    py: Python<'py>,
    items: &[I],
    work: impl Fn(&I) -> anygram::Result<T> + Sync + Send,
    mut to_python: impl FnMut(Python<'py>, T) -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    type Chunk<T> = (usize, Result<Vec<T>, (usize, anygram::Error)>);
    let pool = anygram::pool::current();
    // Chunks small enough that the first objects are built early and both
    // threads stay busy to the end; large enough that a chunk is not mostly hops.
    let chunk = (items.len() / (pool.current_num_threads().max(1) * 16)).clamp(1, 32);
    // The lowest query known to have failed (usize::MAX: none): chunks after it
    // are skipped, chunks before it still run, so the error names the first.
    let failed_at = AtomicUsize::new(usize::MAX);
    let mut objects: Vec<Option<Bound<'py, PyAny>>> = Vec::with_capacity(items.len());
    objects.resize_with(items.len(), || None);
    let mut first_error: Option<(usize, anygram::Error)> = None;
    let mut python_error: Option<PyErr> = None;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        pool.in_place_scope(|scope| {
            let (sender, mut receiver) = mpsc::channel::<Chunk<T>>();
            for (c, part) in items.chunks(chunk).enumerate() {
                let (sender, failed_at, work) = (sender.clone(), &failed_at, &work);
                scope.spawn(move |_| {
                    let start = c * chunk;
                    if start > failed_at.load(Ordering::Relaxed) {
                        return;
                    }
                    let answers = part
                        .iter()
                        .enumerate()
                        .map(|(j, item)| work(item).map_err(|e| (start + j, e)))
                        .collect::<Result<Vec<T>, _>>();
                    if let Err((i, _)) = &answers {
                        failed_at.fetch_min(*i, Ordering::Relaxed);
                    }
                    // The receiver is gone only when the caller stopped early.
                    let _ = sender.send((start, answers));
                });
            }
            drop(sender);
            loop {
                let next = match receiver.try_recv() {
                    Ok(next) => Some(next),
                    Err(mpsc::TryRecvError::Disconnected) => None,
                    Err(mpsc::TryRecvError::Empty) => {
                        let (next, back) = py.detach(move || (receiver.recv().ok(), receiver));
                        receiver = back;
                        next
                    }
                };
                let Some((start, answers)) = next else { break };
                match answers {
                    Ok(answers) if python_error.is_none() && first_error.is_none() => {
                        for (slot, answer) in objects[start..].iter_mut().zip(answers) {
                            match to_python(py, answer) {
                                Ok(object) => *slot = Some(object),
                                Err(e) => {
                                    python_error = Some(e);
                                    failed_at.store(0, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if first_error.as_ref().is_none_or(|(i, _)| e.0 < *i) {
                            first_error = Some(e);
                        }
                    }
                }
            }
        })
    }));
    if let Err(payload) = outcome {
        return Err(internal_error(&panic_message(payload.as_ref())));
    }
    if let Some(e) = first_error {
        return Err(e.into_py_err());
    }
    if let Some(e) = python_error {
        return Err(e);
    }
    let list = PyList::empty(py);
    for object in objects {
        // Every slot was filled: no chunk failed and none was skipped.
        let object = object.ok_or_else(|| internal_error("a batch answer went missing"))?;
        list.append(object)?;
    }
    Ok(list)
}

/// A deliberate panic through [`call`] (`"call"`), on a pool thread of
/// [`batch`] (`"batch"`) or of [`batch_to_list`] (`"list"`): lets the tests check
/// that no panic reaches Python as a `PanicException`, independently of whether
/// the core has panics left. `"list_error"`: [`batch_to_list`] over 0..1000 where
/// items 999, 377 and 500 fail (the error must name query 377, the first).
#[pyfunction]
pub fn _panic_for_test<'py>(py: Python<'py>, place: &str) -> PyResult<()> {
    let place = place.to_string();
    let items: Vec<u32> = (0..1000).collect();
    fn as_int(py: Python<'_>, i: u32) -> PyResult<Bound<'_, PyAny>> {
        Ok(i.into_pyobject(py)?.into_any())
    }
    match place.as_str() {
        "call" => call(py, || -> anygram::Result<()> {
            panic!("deliberate panic in a call")
        }),
        "list" => batch_to_list(
            py,
            &items,
            |&i| {
                if i == 637 {
                    panic!("deliberate panic in batch item {i}");
                }
                Ok(i)
            },
            as_int,
        )
        .map(|_| ()),
        "list_error" => batch_to_list(
            py,
            &items,
            |&i| match i {
                377 | 500 | 999 => Err(anygram::Error::InvalidQuery(format!("item {i} fails"))),
                _ => Ok(i),
            },
            as_int,
        )
        .map(|_| ()),
        "list_ok" => {
            let list = batch_to_list(py, &items, |&i| Ok(i), as_int)?;
            let back: Vec<u32> = list.extract()?;
            if back != items {
                return Err(internal_error("batch_to_list lost the order of its items"));
            }
            Ok(())
        }
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
