//! Argument conversion: every value a caller passes is checked here before it
//! reaches the core. Integers of any width are range-checked, never cast;
//! token ids come from strings (through the tokenizer), sequences of ints or
//! 1-D numpy arrays of an integer dtype (bool and float refused). A bad value
//! is an `InvalidQueryError` naming the argument and what it may be.

use std::ops::RangeInclusive;

use numpy::{
    Element, PyArrayDescrMethods, PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyUnicodeEncodeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBool, PyList, PyString};

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

/// Non-negative integers `name` up to `max` (a batch's `offsets` or `lengths`): a
/// 1-D integer numpy array read as it is, with no Python object per element
/// (its dtype and values checked), or a sequence of ints (as [`int_list`]).
pub fn positions_arg(values: &Bound<'_, PyAny>, name: &str, max: u64) -> PyResult<Vec<u64>> {
    let Ok(array) = values.cast::<PyUntypedArray>() else {
        return int_list(values, name, 0..=max as i128);
    };
    let dtype = array.dtype();
    let kind = dtype.kind();
    if kind != b'i' && kind != b'u' {
        return Err(invalid_query(format!(
            "{name} must be integers, not an array of dtype {}",
            dtype.str().map(|s| s.to_string()).unwrap_or_default()
        )));
    }
    if array.ndim() != 1 {
        return Err(invalid_query(format!(
            "{name} must be a 1-D array, not {}-D",
            array.ndim()
        )));
    }
    if dtype.is_native_byteorder() == Some(false) {
        let native = dtype.call_method1("newbyteorder", ("=",))?;
        return positions_arg(&array.call_method1("astype", (native,))?, name, max);
    }
    fn read<'py, T: Element + Copy + Into<i128> + std::fmt::Display>(
        values: &Bound<'py, PyAny>,
        name: &str,
        max: u64,
    ) -> PyResult<Vec<u64>> {
        let array: PyReadonlyArray1<'py, T> = values.extract()?;
        array
            .as_array()
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let wide: i128 = v.into();
                if wide < 0 || wide > max as i128 {
                    return Err(invalid_query(format!(
                        "{name}[{i}] {v} is out of range: it must be an integer in [0, {max}]"
                    )));
                }
                Ok(wide as u64)
            })
            .collect()
    }
    match (kind, dtype.itemsize()) {
        (b'u', 1) => read::<u8>(values, name, max),
        (b'u', 2) => read::<u16>(values, name, max),
        (b'u', 4) => read::<u32>(values, name, max),
        (b'u', 8) => read::<u64>(values, name, max),
        (b'i', 1) => read::<i8>(values, name, max),
        (b'i', 2) => read::<i16>(values, name, max),
        (b'i', 4) => read::<i32>(values, name, max),
        (b'i', 8) => read::<i64>(values, name, max),
        (_, size) => Err(invalid_query(format!(
            "{name}: integer arrays of {size} bytes per element are not supported"
        ))),
    }
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
    /// A whole C-contiguous `uint32` array of any shape (a batch's tokens).
    BorrowedFlat(PyReadonlyArrayDyn<'py, u32>),
}

impl Ids<'_> {
    pub fn as_slice(&self) -> &[u32] {
        match self {
            Ids::Owned(ids) => ids,
            // Contiguity was checked when it was borrowed.
            Ids::Borrowed(array) => array.as_slice().unwrap_or(&[]),
            Ids::BorrowedFlat(array) => array.as_slice().unwrap_or(&[]),
        }
    }
}

/// Token ids in `[0, vocab_size)` from a sequence of ints or a 1-D numpy array of
/// an integer dtype (any width, signed or unsigned). `what` names the argument.
pub fn token_ids<'py>(
    value: &Bound<'py, PyAny>,
    vocab_size: u64,
    what: &(impl std::fmt::Display + ?Sized),
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
    if let Ok(list) = value.cast::<PyList>() {
        // The common case, without collecting the items first.
        let mut ids = Vec::with_capacity(list.len());
        for (position, item) in list.iter().enumerate() {
            ids.push(list_token(&item, position, vocab_size, what)?);
        }
        return Ok(Ids::Owned(ids));
    }
    let items: Vec<Bound<'py, PyAny>> = value.extract().map_err(|_| not_ids())?;
    items
        .iter()
        .enumerate()
        .map(|(position, item)| list_token(item, position, vocab_size, what))
        .collect::<PyResult<Vec<u32>>>()
        .map(Ids::Owned)
}

/// Appends the token ids of `value` (as [`token_ids`]) to `out`: a list's ints
/// go straight in, with no buffer of their own.
pub fn extend_ids(
    value: &Bound<'_, PyAny>,
    vocab_size: u64,
    what: &(impl std::fmt::Display + ?Sized),
    out: &mut Vec<u32>,
) -> PyResult<()> {
    if let Ok(list) = value.cast::<PyList>() {
        out.reserve(list.len());
        prefetch_items(list);
        for (position, item) in list.iter().enumerate() {
            out.push(list_token(&item, position, vocab_size, what)?);
        }
        return Ok(());
    }
    out.extend_from_slice(token_ids(value, vocab_size, what)?.as_slice());
    Ok(())
}

/// Hints the CPU to fetch a list's items before they are read: a batch's token
/// ids are int objects of their own, which the searches of the batch before have
/// evicted from the cache, so that converting them one by one waits on one miss
/// after another; hinted all at once first, their misses overlap.
#[inline]
fn prefetch_items(list: &Bound<'_, PyList>) {
    for i in 0..list.len() {
        // SAFETY: the GIL is held, `list` is a list and `i` within it; the borrowed
        // pointer is only used as an address to hint, never read through.
        let item = unsafe { pyo3::ffi::PyList_GetItem(list.as_ptr(), i as isize) };
        anygram::interleave::prefetch_ptr(item as *const u8);
    }
}

/// One token id of a sequence: an int in `[0, vocab_size)` (bool refused).
#[inline]
fn list_token(
    item: &Bound<'_, PyAny>,
    position: usize,
    vocab_size: u64,
    what: &(impl std::fmt::Display + ?Sized),
) -> PyResult<u32> {
    // The fast road: an int that fits an i64 (a bool is an int too: refused below).
    if item.is_exact_instance_of::<pyo3::types::PyInt>() {
        if let Ok(token) = item.extract::<i64>() {
            if let Some(token) = checked_token(token as i128, vocab_size) {
                return Ok(token);
            }
        }
    }
    let out_of_range = |position: usize, token: &dyn std::fmt::Display| {
        invalid_query(format!(
            "{what}: token id {token} at position {position} is outside the vocabulary [0, {vocab_size})"
        ))
    };
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
    what: &(impl std::fmt::Display + ?Sized),
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

/// How the rows of a batch given as one array are cut into queries: a 1-D array
/// by `offsets` (n + 1 non-decreasing positions), a 2-D array by row, each row
/// cut at its `lengths[i]` or at its first `fill` value, or whole.
#[derive(Default)]
pub struct BatchLayout {
    pub offsets: Option<Vec<u64>>,
    pub lengths: Option<Vec<u64>>,
    pub fill: Option<i128>,
}

/// The queries of a batch: their tokens in one buffer (borrowed from a `uint32`
/// numpy array, else converted once) and each query's span of it.
pub struct QueryBatch<'py> {
    tokens: Ids<'py>,
    spans: Vec<(usize, usize)>,
}

impl<'py> QueryBatch<'py> {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// The token ids of every query, in order.
    pub fn slices(&self) -> Vec<&[u32]> {
        let tokens = self.tokens.as_slice();
        self.spans.iter().map(|&(a, b)| &tokens[a..b]).collect()
    }

    /// Collects queries one by one (lists, strings, 1-D arrays: `next_query`
    /// converts query `i`).
    pub fn gather(
        count_hint: usize,
        mut next_query: impl FnMut(usize, &mut Vec<u32>) -> PyResult<bool>,
    ) -> PyResult<QueryBatch<'py>> {
        let mut tokens = Vec::new();
        let mut spans = Vec::with_capacity(count_hint);
        loop {
            let start = tokens.len();
            if !next_query(spans.len(), &mut tokens)? {
                break;
            }
            spans.push((start, tokens.len()));
        }
        Ok(QueryBatch {
            tokens: Ids::Owned(tokens),
            spans,
        })
    }

    /// The queries of one integer numpy array (see [`BatchLayout`]): a native,
    /// C-contiguous `uint32` array is borrowed as is, any other integer array is
    /// converted once. Every token of a query is checked against the vocabulary
    /// (padding is not); an error names the query.
    pub fn from_array(
        array: &Bound<'py, PyUntypedArray>,
        layout: &BatchLayout,
        vocab_size: u64,
    ) -> PyResult<QueryBatch<'py>> {
        let dtype = array.dtype();
        let kind = dtype.kind();
        if kind != b'i' && kind != b'u' {
            return Err(invalid_query(format!(
                "a batch array must have an integer dtype, not {}",
                dtype.str().map(|s| s.to_string()).unwrap_or_default()
            )));
        }
        if dtype.is_native_byteorder() == Some(false) || !array.is_c_contiguous() {
            // Byte-swapped or strided: one copy into native, contiguous form.
            let numpy = array.py().import("numpy")?;
            let native = dtype.call_method1("newbyteorder", ("=",))?;
            let converted = numpy.call_method1("ascontiguousarray", (array, native))?;
            return Self::from_array(converted.cast::<PyUntypedArray>()?, layout, vocab_size);
        }
        let shape = array.shape().to_vec();
        macro_rules! with_elements {
            ($t:ty) => {{
                let readonly: PyReadonlyArrayDyn<'py, $t> = array.as_any().extract()?;
                let spans = {
                    let flat = readonly.as_slice()?;
                    let fill = layout.fill;
                    row_spans(&shape, layout, |k| fill == Some(flat[k] as i128))?
                };
                (readonly, spans)
            }};
        }
        macro_rules! converted {
            ($t:ty) => {{
                let (readonly, spans) = with_elements!($t);
                let flat = readonly.as_slice()?;
                let mut tokens = Vec::with_capacity(spans.iter().map(|(a, b)| b - a).sum());
                let mut compact = Vec::with_capacity(spans.len());
                for (i, &(a, b)) in spans.iter().enumerate() {
                    let start = tokens.len();
                    for (position, &t) in flat[a..b].iter().enumerate() {
                        tokens.push(batch_token(t as i128, i, position, vocab_size)?);
                    }
                    compact.push((start, tokens.len()));
                }
                Ok(QueryBatch {
                    tokens: Ids::Owned(tokens),
                    spans: compact,
                })
            }};
        }
        match (kind, dtype.itemsize()) {
            (b'u', 4) => {
                let (readonly, spans) = with_elements!(u32);
                let flat = readonly.as_slice()?;
                for (i, &(a, b)) in spans.iter().enumerate() {
                    if let Some(position) = flat[a..b].iter().position(|&t| t as u64 >= vocab_size)
                    {
                        batch_token(flat[a + position] as i128, i, position, vocab_size)?;
                    }
                }
                Ok(QueryBatch {
                    tokens: Ids::BorrowedFlat(readonly),
                    spans,
                })
            }
            (b'u', 1) => converted!(u8),
            (b'u', 2) => converted!(u16),
            (b'u', 8) => converted!(u64),
            (b'i', 1) => converted!(i8),
            (b'i', 2) => converted!(i16),
            (b'i', 4) => converted!(i32),
            (b'i', 8) => converted!(i64),
            (_, size) => Err(invalid_query(format!(
                "integer arrays of {size} bytes per element are not supported"
            ))),
        }
    }
}

/// Token `t` at `position` of query `query` of a batch, checked.
fn batch_token(t: i128, query: usize, position: usize, vocab_size: u64) -> PyResult<u32> {
    checked_token(t, vocab_size).ok_or_else(|| {
        invalid_query(format!(
            "query {query}: token id {t} at position {position} is outside the vocabulary [0, {vocab_size})"
        ))
    })
}

/// The span `[start, end)` of the flat array each query takes (see [`BatchLayout`]);
/// `is_fill(k)` tells whether flat element `k` is the fill value.
fn row_spans(
    shape: &[usize],
    layout: &BatchLayout,
    is_fill: impl Fn(usize) -> bool,
) -> PyResult<Vec<(usize, usize)>> {
    match (shape, &layout.offsets) {
        ([len], Some(offsets)) => {
            if layout.lengths.is_some() || layout.fill.is_some() {
                return Err(invalid_query(
                    "offsets cut a 1-D array; lengths and fill are for 2-D arrays".into(),
                ));
            }
            if offsets.is_empty() {
                return Err(invalid_query(
                    "offsets must hold n + 1 positions for n queries (at least one)".into(),
                ));
            }
            offsets
                .windows(2)
                .enumerate()
                .map(|(i, pair)| {
                    let (a, b) = (pair[0], pair[1]);
                    if a > b || b > *len as u64 {
                        return Err(invalid_query(format!(
                            "query {i}: offsets {a}..{b} are not a non-decreasing range within the array's {len} tokens"
                        )));
                    }
                    Ok((a as usize, b as usize))
                })
                .collect()
        }
        ([_], None) => Err(invalid_query(
            "a 1-D array is one query: give offsets=[0, ..., len] to cut it into queries, or pass a 2-D array".into(),
        )),
        ([rows, cols], None) => {
            if layout.lengths.is_some() && layout.fill.is_some() {
                return Err(invalid_query("give lengths or fill, not both".into()));
            }
            if let Some(lengths) = &layout.lengths {
                if lengths.len() != *rows {
                    return Err(invalid_query(format!(
                        "{} lengths for {rows} rows: give one length per row",
                        lengths.len()
                    )));
                }
            }
            (0..*rows)
                .map(|i| {
                    let start = i * cols;
                    let len = match &layout.lengths {
                        Some(lengths) => {
                            let len = lengths[i];
                            if len > *cols as u64 {
                                return Err(invalid_query(format!(
                                    "query {i}: length {len} is longer than the rows' {cols} columns"
                                )));
                            }
                            len as usize
                        }
                        None if layout.fill.is_some() => {
                            (0..*cols).find(|&c| is_fill(start + c)).unwrap_or(*cols)
                        }
                        None => *cols,
                    };
                    Ok((start, start + len))
                })
                .collect()
        }
        ([_, _], Some(_)) => Err(invalid_query(
            "offsets cut a 1-D array; a 2-D array's rows are cut by lengths or fill".into(),
        )),
        (dims, _) => Err(invalid_query(format!(
            "a batch array must be 1-D (with offsets) or 2-D, not {}-D",
            dims.len()
        ))),
    }
}
