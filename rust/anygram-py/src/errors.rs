//! Core errors → Python exceptions. The exception classes live in
//! `anygram/errors.py` (so they can subclass two builtins, e.g. `ValueError`
//! and `AnygramError`); this is the one exhaustive mapping onto them.

use anygram::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

fn exception(py: Python<'_>, name: &str, message: String) -> PyErr {
    match py
        .import("anygram.errors")
        .and_then(|module| module.getattr(name))
    {
        Ok(class) => match class.call1((message.clone(),)) {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        },
        // The package is always installed with the module; this is a fallback, not a path.
        Err(_) => PyRuntimeError::new_err(message),
    }
}

/// Converts a core error into the matching `anygram.errors` exception.
pub fn to_py(err: Error) -> PyErr {
    to_py_prefixed(err, "")
}

/// Like [`to_py`], for query `index` of a batch.
pub fn to_py_at((index, err): (usize, Error)) -> PyErr {
    to_py_prefixed(err, &format!("query {index}: "))
}

fn to_py_prefixed(err: Error, prefix: &str) -> PyErr {
    Python::attach(|py| {
        let message = format!("{prefix}{err}");
        let class = match &err {
            Error::Io { .. } => "IndexIOError",
            Error::MissingFile { .. } => "IndexNotFoundError",
            Error::Corrupt { .. } | Error::UnsupportedVersion { .. } => "CorruptIndexError",
            Error::TokenOutOfRange { .. } | Error::InvalidQuery(_) => "InvalidQueryError",
            Error::InvalidArgument(_) => "InvalidArgumentError",
            Error::IndexExists { .. } => "IndexExistsError",
            Error::Build { .. } => "BuildError",
            Error::Cancelled => return pyo3::exceptions::PyKeyboardInterrupt::new_err(message),
        };
        exception(py, class, message)
    })
}

/// An `InvalidQueryError` raised by the binding itself (argument conversion).
pub fn invalid_query(message: String) -> PyErr {
    Python::attach(|py| exception(py, "InvalidQueryError", message))
}

/// An `InternalError` for a Rust panic caught in the bindings: a bug, reported
/// as one (never a `PanicException`, which escapes `except Exception`).
pub fn internal_error(panic: &str) -> PyErr {
    Python::attach(|py| {
        exception(
            py,
            "InternalError",
            format!(
                "internal error in anygram ({panic}); please report this bug with the call that caused it"
            ),
        )
    })
}

/// An `OutOfMemoryError` (a `MemoryError`): an allocation the bindings asked for failed.
pub fn out_of_memory(message: String) -> PyErr {
    Python::attach(|py| exception(py, "OutOfMemoryError", message))
}
