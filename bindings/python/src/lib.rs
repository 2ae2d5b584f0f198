//! `coatcheck._native`: a thin PyO3 translation of the core [`coatcheck::Store`] to signed
//! tokens and `bytes`. All session behaviour lives in the core; the framework backends are
//! pure Python in `python/coatcheck/`. The public names are re-exported by
//! `coatcheck/__init__.py`.

#![deny(clippy::unwrap_used)]

mod config;
mod error;
mod store;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<store::PyStore>()?;
    error::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
