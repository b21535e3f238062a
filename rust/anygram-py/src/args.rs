//! Argument conversion: every value a caller passes is checked here before it
//! reaches the core. Integers of any width are range-checked, never cast;
//! token ids come from strings (through the tokenizer), sequences of ints or
//! 1-D numpy arrays of an integer dtype (bool and float refused). A bad value
//! is an `InvalidQueryError` naming the argument and what it may be.

use std::ops::RangeInclusive;

use numpy::{
    Element, PyArrayDescrMethods, PyReadonlyArray1, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyUnicodeEncodeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBool, PyString};

use crate::errors::invalid_query;

/// Largest value of an unsigned 64-bit argument, as the i128 the checks use.
pub const U64_MAX: i128 = u64::MAX as i128;

/// An integer argument `name` in `range`. Accepts any Python int (and numpy
/// integer scalars); refuses bool, float, strings and out-of-range values with
/// an `InvalidQueryError` that names the argument and its allowed range.
pub fn int_arg<T: TryFrom<i128>>(
    value: &Bound<'_, PyAny>,
    name: &str,
    range: RangeInclusive<i128>,
) -> PyResult<T> {
    let refuse = || {
        let shown = value.repr().map(|r| r.to_string()).unwrap_or_default();
        invalid_query(format!(
            "{name} must be an integer in [{}, {}], not {shown}",
            range.start(),
            range.end()
        ))
    };
    if value.is_instance_of::<PyBool>() {
        return Err(refuse());
    }
    let out_of_range = || {
        let shown = value.repr().map(|r| r.to_string()).unwrap_or_default();
        invalid_query(format!(
            "{name} {shown} is out of range: it must be an integer in [{}, {}]",
            range.start(),
            range.end()
        ))
    };
    let number: i128 = match value.extract() {
        Ok(number) => number,
        // An int too large even for i128 (OverflowError).
        Err(_) if value.cast::<pyo3::types::PyInt>().is_ok() => return Err(out_of_range()),
        Err(_) => return Err(refuse()),
    };
    if !range.contains(&number) {
        return Err(out_of_range());
    }
    T::try_from(number).map_err(|_| out_of_range())
}

/// [`int_arg`] for an optional argument: `None` (or Python `None`) gives `default`.
pub fn opt_int_arg<T: TryFrom<i128>>(
    value: Option<&Bound<'_, PyAny>>,
    name: &str,
    range: RangeInclusive<i128>,
    default: T,
) -> PyResult<T> {
    match value {
        Some(v) if !v.is_none() => int_arg(v, name, range),
        _ => Ok(default),
    }
}

/// [`int_arg`] where Python `None` means "not given".
pub fn maybe_int_arg<T: TryFrom<i128>>(
    value: Option<&Bound<'_, PyAny>>,
    name: &str,
    range: RangeInclusive<i128>,
) -> PyResult<Option<T>> {
    match value {
        Some(v) if !v.is_none() => int_arg(v, name, range).map(Some),
        _ => Ok(None),
    }
}

/// A list of integer arguments, each checked as [`int_arg`] (`name[i]` in errors).
pub fn int_list<T: TryFrom<i128>>(
    values: &Bound<'_, PyAny>,
    name: &str,
    range: RangeInclusive<i128>,
) -> PyResult<Vec<T>> {
    if values.is_instance_of::<PyString>() {
        return Err(invalid_query(format!(
            "{name} must be a sequence of integers, not a string"
        )));
    }
    let items = values
        .try_iter()
        .map_err(|_| invalid_query(format!("{name} must be a sequence of integers")))?;
    items
        .enumerate()
        .map(|(i, item)| int_arg(&item?, &format!("{name}[{i}]"), range.clone()))
        .collect()
}

/// Text as UTF-8. A `str` holding a lone surrogate (valid in JSON and in Python,
/// not in UTF-8) is an `InvalidQueryError` naming its position.
pub fn text_arg(value: &Bound<'_, PyAny>, what: &str) -> PyResult<PyBackedStr> {
    let Ok(string) = value.cast::<PyString>() else {
        return Err(invalid_query(format!(
            "{what} must be a str, not {}",
            type_name(value)
        )));
    };
    string.extract::<PyBackedStr>().map_err(|e| {
        let py = value.py();
        if !e.is_instance_of::<PyUnicodeEncodeError>(py) {
            return e;
        }
        let position: i64 = e.value(py).getattr("start").and_then(|s| s.extract()).unwrap_or(-1);
        let code: u32 = string
            .get_item(position)
            .and_then(|c| py.import("builtins")?.call_method1("ord", (c,))?.extract())
            .unwrap_or(0);
        invalid_query(format!(
            "{what} has a lone surrogate U+{code:04X} at character {position}: it is not valid Unicode text"
        ))
    })
}

pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// Token ids, borrowed from a native-order, contiguous `uint32` array (no copy)
/// or converted and checked.
pub enum Ids<'py> {
    Owned(Vec<u32>),
    Borrowed(PyReadonlyArray1<'py, u32>),
}

impl Ids<'_> {
    pub fn as_slice(&self) -> &[u32] {
        match self {
            Ids::Owned(ids) => ids,
            // Contiguity was checked when it was borrowed.
            Ids::Borrowed(array) => array.as_slice().unwrap_or(&[]),
        }
    }
}

/// Token ids in `[0, vocab_size)` from a sequence of ints or a 1-D numpy array of
/// an integer dtype (any width, signed or unsigned). `what` names the argument.
pub fn token_ids<'py>(
    value: &Bound<'py, PyAny>,
    vocab_size: u64,
    what: &str,
) -> PyResult<Ids<'py>> {
    let out_of_range = |position: usize, token: &dyn std::fmt::Display| {
        invalid_query(format!(
            "{what}: token id {token} at position {position} is outside the vocabulary [0, {vocab_size})"
        ))
    };
    if let Ok(array) = value.cast::<PyUntypedArray>() {
        return array_ids(array, vocab_size, what, &out_of_range);
    }
    if value.is_instance_of::<PyString>() {
        return Err(invalid_query(format!(
            "{what} must be token ids here, not a string"
        )));
    }
    let not_ids = || {
        invalid_query(format!(
            "{what} must be a string, a list of token ids or a 1-D integer array, not {}",
            type_name(value)
        ))
    };
    let items: Vec<Bound<'py, PyAny>> = value.extract().map_err(|_| not_ids())?;
    items
        .iter()
        .enumerate()
        .map(|(position, item)| {
            if item.is_instance_of::<PyBool>() {
                return Err(invalid_query(format!(
                    "{what}: position {position} is a bool, not a token id"
                )));
            }
            let Ok(token) = item.extract::<i128>() else {
                if item.cast::<pyo3::types::PyInt>().is_ok() {
                    // An int too large even for i128.
                    return Err(out_of_range(
                        position,
                        &item.repr().map(|r| r.to_string()).unwrap_or_default(),
                    ));
                }
                return Err(invalid_query(format!(
                    "{what}: position {position} is {}, not a token id (an int)",
                    type_name(item)
                )));
            };
            checked_token(token, vocab_size).ok_or_else(|| out_of_range(position, &token))
        })
        .collect::<PyResult<Vec<u32>>>()
        .map(Ids::Owned)
}

fn checked_token(token: i128, vocab_size: u64) -> Option<u32> {
    if token < 0 || token >= vocab_size as i128 {
        return None;
    }
    u32::try_from(token).ok()
}

fn array_ids<'py>(
    array: &Bound<'py, PyUntypedArray>,
    vocab_size: u64,
    what: &str,
    out_of_range: &dyn Fn(usize, &dyn std::fmt::Display) -> PyErr,
) -> PyResult<Ids<'py>> {
    let dtype = array.dtype();
    let kind = dtype.kind();
    if kind != b'i' && kind != b'u' {
        return Err(invalid_query(format!(
            "{what}: a numpy array of token ids must have an integer dtype, not {}",
            dtype.str().map(|s| s.to_string()).unwrap_or_default()
        )));
    }
    if array.ndim() != 1 {
        return Err(invalid_query(format!(
            "{what} must be a 1-D array, not {}-D",
            array.ndim()
        )));
    }
    if dtype.is_native_byteorder() == Some(false) {
        // A byte-swapped array: the same values in native order, then as usual.
        let native = dtype.call_method1("newbyteorder", ("=",))?;
        let converted = array.call_method1("astype", (native,))?;
        return array_ids(
            converted.cast::<PyUntypedArray>()?,
            vocab_size,
            what,
            out_of_range,
        );
    }
    let value = array.as_any();
    if kind == b'u' && dtype.itemsize() == 4 && array.is_contiguous() {
        let borrowed: PyReadonlyArray1<'py, u32> = value.extract()?;
        let ids = borrowed.as_slice()?;
        if let Some(position) = ids.iter().position(|&t| t as u64 >= vocab_size) {
            return Err(out_of_range(position, &ids[position]));
        }
        return Ok(Ids::Borrowed(borrowed));
    }
    fn convert<'py, T: Element + Copy + Into<i128> + std::fmt::Display>(
        value: &Bound<'py, PyAny>,
        vocab_size: u64,
        out_of_range: &dyn Fn(usize, &dyn std::fmt::Display) -> PyErr,
    ) -> PyResult<Vec<u32>> {
        let array: PyReadonlyArray1<'py, T> = value.extract()?;
        array
            .as_array()
            .iter()
            .enumerate()
            .map(|(position, &t)| {
                checked_token(t.into(), vocab_size).ok_or_else(|| out_of_range(position, &t))
            })
            .collect()
    }
    let ids = match (kind, dtype.itemsize()) {
        (b'u', 1) => convert::<u8>(value, vocab_size, out_of_range),
        (b'u', 2) => convert::<u16>(value, vocab_size, out_of_range),
        (b'u', 4) => convert::<u32>(value, vocab_size, out_of_range),
        (b'u', 8) => convert::<u64>(value, vocab_size, out_of_range),
        (b'i', 1) => convert::<i8>(value, vocab_size, out_of_range),
        (b'i', 2) => convert::<i16>(value, vocab_size, out_of_range),
        (b'i', 4) => convert::<i32>(value, vocab_size, out_of_range),
        (b'i', 8) => convert::<i64>(value, vocab_size, out_of_range),
        (_, size) => Err(invalid_query(format!(
            "{what}: integer arrays of {size} bytes per element are not supported"
        ))),
    }?;
    Ok(Ids::Owned(ids))
}
