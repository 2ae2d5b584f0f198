//! Status codes: the one place where `coatcheck::Error` becomes a number ([`map_error`]).

use std::cell::RefCell;
use std::ffi::c_char;

use coatcheck::Error;

use crate::boundary::ffi_boundary;
use crate::cast::try_out;
use crate::slice::{emit, try_out_buf};

/// The result of every coatcheck call that can fail.
///
/// The numbers are stable and never reused. They are grouped: 0 is success, 1xx are mistakes in
/// how a function was called, 2xx are the session engine's own errors (one per stable error
/// code of the core, shared with the Python and Node bindings), 9xx are failures inside the
/// library. New codes are only ever added inside a group's free range.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum coatcheck_status {
    /// Success.
    Ok = 0,

    /// A pointer argument that must not be NULL was NULL, or a buffer pointer was NULL with a
    /// non-zero length.
    NullArgument = 100,
    /// The caller's output buffer is too small; the size needed was written to the length
    /// out-parameter.
    BufferTooSmall = 101,
    /// A text argument (an owner key) is not valid UTF-8.
    InvalidUtf8 = 102,

    /// A signed token was forged, tampered with, or is not in canonical form ("bad_signature").
    BadSignature = 200,
    /// The session does not exist, was destroyed, or has expired ("not_found").
    NotFound = 201,
    /// A value is larger than the store's `max_session_bytes` ("too_large").
    TooLarge = 202,
    /// The store is at its session or byte budget and could not make room ("store_full").
    StoreFull = 203,
    /// A version-checked write lost to another writer ("conflict").
    Conflict = 204,
    /// A session id is empty, longer than 255 bytes, or has bytes outside printable ASCII, such
    /// as a space, a NUL or any non-ASCII byte ("invalid_id").
    InvalidId = 205,
    /// A configuration value is out of range, or the store has no secrets to sign with
    /// ("invalid_config").
    InvalidConfig = 206,
    /// Another argument is out of range: an empty or too long owner key, a length too large to
    /// be a buffer ("invalid_argument").
    InvalidArgument = 207,
    /// The store is on the shared tier and the call needed Redis, which could not be reached,
    /// did not answer within `redis_timeout_ms`, or refused the request, and the call could not
    /// be served from the local table: always so while Redis is down with `redis_when_down` set
    /// to `COATCHECK_WHEN_REDIS_DOWN_FAIL` ("unavailable"). A write that timed out may still have
    /// reached Redis; read the session again before retrying it. With `persist_path`: the
    /// restart log cannot be written (a full or failing disk, or a child forked from the log's
    /// owner), so the write was refused, or, if its own append failed, made in memory only.
    /// Either way a create or regenerate that returns it reports no id, though the session may
    /// have been made, or moved to a new id, which the caller then never learns.
    Unavailable = 208,

    /// The library panicked. The call had no effect that can be relied on; the store handle is
    /// still valid.
    Panic = 900,
    /// The session engine reported an error this version of the C library does not know.
    UnknownError = 901,
}

thread_local! {
    /// The last engine error returned on this thread, for `coatcheck_last_error_message`. The
    /// error is kept and only formatted when asked for: a missing session (`NOT_FOUND`, common
    /// on a server's read path) costs a store of a small value, no formatting.
    static LAST_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
}

/// The one mapping from the core's errors to C status codes; the error becomes this thread's
/// last error.
pub(crate) fn map_error(error: &Error) -> coatcheck_status {
    // `try_with`: during thread exit, after this thread's locals were destroyed (a C
    // destructor or `atexit` handler calling in), the status is still returned.
    let _ = LAST_ERROR.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = Some(error.clone());
        }
    });
    status_of(error)
}

fn status_of(error: &Error) -> coatcheck_status {
    use coatcheck_status as S;
    match error {
        Error::BadSignature => S::BadSignature,
        Error::NotFound => S::NotFound,
        Error::TooLarge { .. } => S::TooLarge,
        Error::StoreFull => S::StoreFull,
        Error::Conflict { .. } => S::Conflict,
        Error::InvalidId(_) => S::InvalidId,
        Error::InvalidConfig(_) => S::InvalidConfig,
        Error::InvalidArgument(_) => S::InvalidArgument,
        Error::Unavailable(_) => S::Unavailable,
        // `Error` is non-exhaustive: a variant added to the core later gets its own number here.
        _ => S::UnknownError,
    }
}

impl From<Error> for coatcheck_status {
    fn from(error: Error) -> Self {
        map_error(&error)
    }
}

/// Every status, for tests that walk the whole table.
#[cfg(test)]
pub(crate) const ALL: [coatcheck_status; 15] = {
    use coatcheck_status as S;
    [
        S::Ok,
        S::NullArgument,
        S::BufferTooSmall,
        S::InvalidUtf8,
        S::BadSignature,
        S::NotFound,
        S::TooLarge,
        S::StoreFull,
        S::Conflict,
        S::InvalidId,
        S::InvalidConfig,
        S::InvalidArgument,
        S::Unavailable,
        S::Panic,
        S::UnknownError,
    ]
};

impl coatcheck_status {
    fn from_u32(code: u32) -> Option<Self> {
        use coatcheck_status as S;
        Some(match code {
            0 => S::Ok,
            100 => S::NullArgument,
            101 => S::BufferTooSmall,
            102 => S::InvalidUtf8,
            200 => S::BadSignature,
            201 => S::NotFound,
            202 => S::TooLarge,
            203 => S::StoreFull,
            204 => S::Conflict,
            205 => S::InvalidId,
            206 => S::InvalidConfig,
            207 => S::InvalidArgument,
            208 => S::Unavailable,
            900 => S::Panic,
            901 => S::UnknownError,
            _ => return None,
        })
    }

    /// The stable name: the core's error code for 2xx statuses, the same name in every binding.
    fn name(self) -> &'static std::ffi::CStr {
        use coatcheck_status as S;
        match self {
            S::Ok => c"ok",
            S::NullArgument => c"null_argument",
            S::BufferTooSmall => c"buffer_too_small",
            S::InvalidUtf8 => c"invalid_utf8",
            S::BadSignature => c"bad_signature",
            S::NotFound => c"not_found",
            S::TooLarge => c"too_large",
            S::StoreFull => c"store_full",
            S::Conflict => c"conflict",
            S::InvalidId => c"invalid_id",
            S::InvalidConfig => c"invalid_config",
            S::InvalidArgument => c"invalid_argument",
            S::Unavailable => c"unavailable",
            S::Panic => c"panic",
            S::UnknownError => c"unknown_error",
        }
    }

    fn message(self) -> &'static std::ffi::CStr {
        use coatcheck_status as S;
        match self {
            S::Ok => c"success",
            S::NullArgument => c"a required pointer argument was NULL",
            S::BufferTooSmall => c"the output buffer is too small; the size needed was reported",
            S::InvalidUtf8 => c"a text argument is not valid UTF-8",
            S::BadSignature => c"session token signature is invalid",
            S::NotFound => c"session not found",
            S::TooLarge => c"session value exceeds the store's size limit",
            S::StoreFull => c"session store is full and nothing could be evicted",
            S::Conflict => c"session was modified concurrently",
            S::InvalidId => c"invalid session id",
            S::InvalidConfig => c"invalid configuration",
            S::InvalidArgument => c"invalid argument",
            S::Unavailable => {
                c"session store unavailable: Redis did not answer, or the restart log cannot be written"
            }
            S::Panic => c"internal error: the library panicked",
            S::UnknownError => c"unknown error",
        }
    }
}

/// A short English description of a status code, for logs.
///
/// Returns a pointer to a static, NUL-terminated string; unknown codes give "unknown status".
/// This function cannot fail, so it returns the text instead of a status.
///
/// Ownership: the returned string is static; do not free or modify it.
/// NULL: never returns NULL.
/// Threads: safe to call from any thread at any time.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_status_message(status: u32) -> *const c_char {
    ffi_boundary! {
        coatcheck_status::from_u32(status).map_or(c"unknown status", coatcheck_status::message).as_ptr()
    }
}

/// Copies the message of the last engine error that a coatcheck call returned on the calling
/// thread: what was wrong and where, e.g. which setting `coatcheck_store_new` refused and why,
/// or what the restart log's directory could not do. Every call that returns an engine status
/// (2xx, or `COATCHECK_STATUS_UNKNOWN_ERROR`) sets it; calls that succeed, calling mistakes
/// (1xx statuses, which `coatcheck_status_message` explains) and `COATCHECK_STATUS_PANIC`
/// leave it as it was, so read it right after the call that failed. The text is UTF-8 and not
/// NUL-terminated; it is empty if no call on this thread has returned such an error.
///
/// Returns `COATCHECK_STATUS_BUFFER_TOO_SMALL`, with the length needed in `*out_len`, if the
/// message does not fit in `buf_len` bytes (pass `NULL, 0` to ask).
///
/// Ownership: the caller owns `buf`; nothing is allocated.
/// NULL: `out_len`, or `buf` with a non-zero length, NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call from any thread at any time; each thread has its own message.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_last_error_message(
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> coatcheck_status {
    ffi_boundary! {
        let buf = try_out_buf!(buf, buf_len);
        let out_len = try_out!(out_len);
        let message = LAST_ERROR
            .try_with(|last| last.try_borrow().ok()?.as_ref().map(Error::to_string))
            .ok()
            .flatten()
            .unwrap_or_default();
        emit(buf, message.as_bytes(), out_len)
    }
}

/// The stable, machine-readable name of a status code: "ok", "not_found", "bad_signature", ...
/// For the 2xx codes this is the core's error code, the same string the Python and Node
/// bindings expose.
///
/// Returns a pointer to a static, NUL-terminated string; unknown codes give "unknown".
///
/// Ownership: the returned string is static; do not free or modify it.
/// NULL: never returns NULL.
/// Threads: safe to call from any thread at any time.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_status_name(status: u32) -> *const c_char {
    ffi_boundary! {
        coatcheck_status::from_u32(status).map_or(c"unknown", coatcheck_status::name).as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn every_status_round_trips_through_its_number() {
        for status in ALL {
            assert_eq!(coatcheck_status::from_u32(status as u32), Some(status));
        }
        assert_eq!(coatcheck_status::from_u32(1), None);
    }

    fn last_error_message() -> String {
        let mut buf = [0u8; 256];
        let mut len = 0;
        let status = coatcheck_last_error_message(buf.as_mut_ptr().cast(), buf.len(), &mut len);
        assert_eq!(status, coatcheck_status::Ok);
        String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    #[test]
    fn each_thread_reads_the_message_of_its_own_last_engine_error() {
        map_error(&Error::InvalidConfig(
            "idle_timeout must be at least 1 ms".into(),
        ));
        assert_eq!(
            last_error_message(),
            "invalid configuration: idle_timeout must be at least 1 ms"
        );
        // Another thread has its own, empty until one of its calls fails.
        std::thread::spawn(|| {
            assert_eq!(last_error_message(), "");
            map_error(&Error::NotFound);
            assert_eq!(last_error_message(), Error::NotFound.to_string());
        })
        .join()
        .unwrap();
        assert!(last_error_message().contains("idle_timeout"));
        // Too small a buffer: the length needed, nothing written past the buffer.
        let mut byte = [b'#'; 1];
        let mut needed = 0;
        let status = coatcheck_last_error_message(byte.as_mut_ptr().cast(), 1, &mut needed);
        assert_eq!(status, coatcheck_status::BufferTooSmall);
        assert_eq!(needed, last_error_message().len());
        let status = coatcheck_last_error_message(std::ptr::null_mut(), 0, std::ptr::null_mut());
        assert_eq!(status, coatcheck_status::NullArgument);
    }

    #[test]
    fn engine_statuses_are_named_after_the_core_error_codes() {
        let errors = [
            Error::BadSignature,
            Error::NotFound,
            Error::TooLarge { size: 2, limit: 1 },
            Error::StoreFull,
            Error::Conflict {
                expected: 1,
                actual: 2,
            },
            Error::InvalidId("empty"),
            Error::InvalidConfig("x".into()),
            Error::InvalidArgument("x"),
            Error::Unavailable("x".into()),
        ];
        for error in errors {
            let status = map_error(&error);
            assert_eq!((status as u32) / 100, 2, "{error:?}");
            assert_eq!(status.name().to_str().unwrap(), error.code());
        }
    }

    #[test]
    fn unknown_codes_get_fixed_text() {
        // SAFETY: both functions return pointers to static NUL-terminated strings.
        let (message, name) = unsafe {
            (
                CStr::from_ptr(coatcheck_status_message(12345)),
                CStr::from_ptr(coatcheck_status_name(12345)),
            )
        };
        assert_eq!(message, c"unknown status");
        assert_eq!(name, c"unknown");
    }
}
