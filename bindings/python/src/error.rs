//! The one place a core error becomes a Python exception.
//!
//! Every error is a subclass of `coatcheck.SessionError` whose class attribute `code` is the
//! core's stable code string (`bad_signature`, `not_found`, ...), so callers can catch the base
//! class and branch on `.code`, or catch one subclass.

use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;

pyo3::create_exception!(
    coatcheck,
    SessionError,
    PyException,
    "Base class of every coatcheck error; `.code` is the core's stable error code."
);
pyo3::create_exception!(
    coatcheck,
    BadSignatureError,
    SessionError,
    "A token was forged, tampered with, or signed with an unknown secret."
);
pyo3::create_exception!(
    coatcheck,
    NotFoundError,
    SessionError,
    "The session does not exist, was destroyed, or has expired."
);
pyo3::create_exception!(
    coatcheck,
    TooLargeError,
    SessionError,
    "A value is larger than `max_session_bytes`."
);
pyo3::create_exception!(
    coatcheck,
    StoreFullError,
    SessionError,
    "The store is at its budget and could not make room."
);
pyo3::create_exception!(
    coatcheck,
    ConflictError,
    SessionError,
    "`set_if_version` lost a race: the session has another version now."
);
pyo3::create_exception!(
    coatcheck,
    InvalidIdError,
    SessionError,
    "A session id is empty, too long, or not printable ASCII."
);
pyo3::create_exception!(
    coatcheck,
    InvalidConfigError,
    SessionError,
    "A `Store` setting is out of range."
);
pyo3::create_exception!(
    coatcheck,
    InvalidArgumentError,
    SessionError,
    "Another argument is out of range (a TTL, an owner key)."
);

pyo3::create_exception!(
    coatcheck,
    UnavailableError,
    SessionError,
    "The store's Redis could not be reached within `redis_timeout`, and the store is set to fail \
     rather than serve from its local table (`redis_when_down=\"fail\"`)."
);

/// The exception classes with their codes, registered on the module in this order.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SessionError", py.get_type::<SessionError>())?;
    py.get_type::<SessionError>().setattr("code", py.None())?;
    let kinds = [
        (py.get_type::<BadSignatureError>(), "bad_signature"),
        (py.get_type::<NotFoundError>(), "not_found"),
        (py.get_type::<TooLargeError>(), "too_large"),
        (py.get_type::<StoreFullError>(), "store_full"),
        (py.get_type::<ConflictError>(), "conflict"),
        (py.get_type::<InvalidIdError>(), "invalid_id"),
        (py.get_type::<InvalidConfigError>(), "invalid_config"),
        (py.get_type::<InvalidArgumentError>(), "invalid_argument"),
        (py.get_type::<UnavailableError>(), "unavailable"),
    ];
    for (ty, code) in kinds {
        ty.setattr("code", code)?;
        m.add(ty.name()?, ty)?;
    }
    Ok(())
}

/// The core's error as the Python exception of its kind, with the core's message.
pub struct Error(pub coatcheck::Error);

impl From<coatcheck::Error> for Error {
    fn from(e: coatcheck::Error) -> Self {
        Self(e)
    }
}

impl From<Error> for PyErr {
    fn from(Error(e): Error) -> Self {
        let message = e.to_string();
        match e {
            coatcheck::Error::BadSignature => BadSignatureError::new_err(message),
            coatcheck::Error::NotFound => NotFoundError::new_err(message),
            coatcheck::Error::TooLarge { .. } => TooLargeError::new_err(message),
            coatcheck::Error::StoreFull => StoreFullError::new_err(message),
            coatcheck::Error::Conflict { .. } => ConflictError::new_err(message),
            coatcheck::Error::InvalidId(_) => InvalidIdError::new_err(message),
            coatcheck::Error::InvalidConfig(_) => InvalidConfigError::new_err(message),
            coatcheck::Error::InvalidArgument(_) => InvalidArgumentError::new_err(message),
            coatcheck::Error::Unavailable(_) => UnavailableError::new_err(message),
            // The core's enum is non-exhaustive: a kind added later still reaches Python with
            // its code, as the base class.
            other => SessionError::new_err(format!("{other} [{}]", other.code())),
        }
    }
}

pub fn invalid_config(why: impl Into<String>) -> PyErr {
    Error(coatcheck::Error::InvalidConfig(why.into())).into()
}

pub fn invalid_argument(why: &'static str) -> PyErr {
    Error(coatcheck::Error::InvalidArgument(why)).into()
}

pub fn type_error(why: impl Into<String>) -> PyErr {
    PyTypeError::new_err(why.into())
}
