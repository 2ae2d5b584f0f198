//! The one error type of coatcheck. Every binding maps it exactly once.

use std::fmt;

/// What went wrong. Each variant has a stable [`code`](Error::code) string that the C, Python and
/// Node bindings expose unchanged; those strings are part of the public contract.
///
/// Every operation that fails with one of these leaves every stored session as it was.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A signed token was forged, tampered with, or not in canonical form.
    BadSignature,
    /// The session does not exist (never did, was destroyed, or has expired).
    NotFound,
    /// A value is larger than `max_session_bytes`.
    TooLarge {
        /// Bytes offered.
        size: usize,
        /// `max_session_bytes`.
        limit: usize,
    },
    /// The store is at its `max_sessions` / `max_bytes` budget and could not make room.
    StoreFull,
    /// `set_if_version` lost a race: the session's version is no longer the expected one.
    Conflict {
        /// The version the caller read.
        expected: u64,
        /// The version the session has now.
        actual: u64,
    },
    /// A session id is empty, too long, or contains bytes outside printable ASCII.
    InvalidId(&'static str),
    /// A configuration value is out of range.
    InvalidConfig(String),
    /// Some other argument is out of range (an owner key, a TTL).
    InvalidArgument(&'static str),
    /// The shared tier's Redis could not be reached or did not answer within `redis_timeout`,
    /// and the store is configured to fail rather than serve from its local table. Or the
    /// restart log cannot be written (a full or failing disk, or a child forked from the log's
    /// owner): a write is refused, or, when its own append failed, reported after it was made
    /// in memory only.
    Unavailable(String),
}

impl Error {
    /// The stable, machine-readable name of this error, identical in every language binding.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadSignature => "bad_signature",
            Error::NotFound => "not_found",
            Error::TooLarge { .. } => "too_large",
            Error::StoreFull => "store_full",
            Error::Conflict { .. } => "conflict",
            Error::InvalidId(_) => "invalid_id",
            Error::InvalidConfig(_) => "invalid_config",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Unavailable(_) => "unavailable",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadSignature => f.write_str("session token signature is invalid"),
            Error::NotFound => f.write_str("session not found"),
            Error::TooLarge { size, limit } => {
                write!(
                    f,
                    "session value of {size} bytes exceeds the limit of {limit} bytes"
                )
            }
            Error::StoreFull => f.write_str("session store is full and nothing could be evicted"),
            Error::Conflict { expected, actual } => write!(
                f,
                "session was modified concurrently (expected version {expected}, found {actual})"
            ),
            Error::InvalidId(why) => write!(f, "invalid session id: {why}"),
            Error::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::Unavailable(why) => write!(f, "session store unavailable: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
