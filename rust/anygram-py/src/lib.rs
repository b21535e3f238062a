use pyo3::prelude::*;
#[pymodule]
fn _anygram(_m: &Bound<'_, PyModule>) -> PyResult<()> { Ok(()) }
