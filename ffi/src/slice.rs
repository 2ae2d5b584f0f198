//! Borrowed views of caller buffers: every buffer arrives as a pointer followed by its length.
//!
//! Rules, the same for every function (and stated once in the README):
//! - an input buffer pointer may be NULL only if its length is 0, and then means "empty";
//! - an output buffer pointer may be NULL only if its capacity is 0 (asking for the size);
//! - output buffers must not overlap any other argument.

use crate::cast::Out;
use crate::error::{coatcheck_status, map_error};

/// An input buffer as a byte slice.
///
/// # Safety
/// A non-NULL `ptr` is valid for reads of `len` bytes for `'a`, and nothing writes to those bytes
/// meanwhile.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], coatcheck_status> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(coatcheck_status::NullArgument)
        };
    }
    if len > isize::MAX as usize {
        return Err(map_error(&coatcheck::Error::InvalidArgument(
            "a length larger than any buffer",
        )));
    }
    // SAFETY: non-NULL, `len` fits in isize, and the caller promises `len` readable bytes that
    // do not change during the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// An input session id. An id is printable ASCII, so any non-ASCII byte makes it invalid; the
/// core checks the rest (empty, too long, NUL, spaces). `is_ascii` is a word-at-a-time check,
/// several times cheaper than general UTF-8 validation on every call.
pub(crate) fn id(bytes: &[u8]) -> Result<&str, coatcheck_status> {
    if !bytes.is_ascii() {
        return Err(map_error(&coatcheck::Error::InvalidId(
            "a byte outside printable ASCII",
        )));
    }
    // SAFETY: every ASCII byte sequence is valid UTF-8.
    Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// An input text argument (an owner key), which must be UTF-8.
pub(crate) fn text(bytes: &[u8]) -> Result<&str, coatcheck_status> {
    std::str::from_utf8(bytes).map_err(|_| coatcheck_status::InvalidUtf8)
}

/// An input buffer (`const uint8_t *` or `const char *`) as bytes; returns the failure status
/// from the entry point.
macro_rules! try_bytes {
    ($ptr:expr, $len:expr) => {
        // SAFETY: every entry point documents that an input buffer is NULL with length 0, or
        // valid for reads of `len` bytes that do not change during the call.
        match unsafe { $crate::slice::bytes(($ptr).cast::<u8>(), $len) } {
            ::std::result::Result::Ok(bytes) => bytes,
            ::std::result::Result::Err(status) => return status,
        }
    };
}
pub(crate) use try_bytes;

/// An input session id (`const char *id, size_t id_len`) as `&str`.
macro_rules! try_id {
    ($ptr:expr, $len:expr) => {
        match $crate::slice::id($crate::slice::try_bytes!($ptr, $len)) {
            ::std::result::Result::Ok(id) => id,
            ::std::result::Result::Err(status) => return status,
        }
    };
}
pub(crate) use try_id;

/// An input UTF-8 text argument as `&str`.
macro_rules! try_text {
    ($ptr:expr, $len:expr) => {
        match $crate::slice::text($crate::slice::try_bytes!($ptr, $len)) {
            ::std::result::Result::Ok(text) => text,
            ::std::result::Result::Err(status) => return status,
        }
    };
}
pub(crate) use try_text;

/// A caller-provided output buffer. It is only ever written, never read, so it may be
/// uninitialized.
pub(crate) struct OutBuf {
    ptr: *mut u8,
    capacity: usize,
}

impl OutBuf {
    /// # Safety
    /// A non-NULL `ptr` is valid for writes of `capacity` bytes for the duration of the call
    /// and does not overlap any other argument.
    pub(crate) unsafe fn new(ptr: *mut u8, capacity: usize) -> Result<Self, coatcheck_status> {
        if ptr.is_null() && capacity != 0 {
            return Err(coatcheck_status::NullArgument);
        }
        Ok(Self { ptr, capacity })
    }

    pub(crate) fn fits(&self, len: usize) -> bool {
        len <= self.capacity
    }

    /// Copies `bytes` to the start of the buffer if it fits; returns whether it did.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> bool {
        if !self.fits(bytes.len()) {
            return false;
        }
        if !bytes.is_empty() {
            // SAFETY: `bytes.len() <= capacity`, and a non-zero capacity means a non-NULL
            // pointer valid for `capacity` writes (`new`'s contract), which does not overlap
            // `bytes` (output buffers never overlap other arguments, and `bytes` is ours or
            // the store's).
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr, bytes.len()) };
        }
        true
    }
}

/// Writes a value or a generated string to an output buffer and its length, or reports the
/// length needed.
pub(crate) fn emit(mut buf: OutBuf, bytes: &[u8], out_len: Out<'_, usize>) -> coatcheck_status {
    let fits = buf.write(bytes);
    out_len.write(bytes.len());
    if fits {
        coatcheck_status::Ok
    } else {
        coatcheck_status::BufferTooSmall
    }
}

/// An output buffer (`uint8_t *` or `char *`, then its capacity).
macro_rules! try_out_buf {
    ($ptr:expr, $capacity:expr) => {
        // SAFETY: every entry point documents that an output buffer is NULL with capacity 0, or
        // valid for `capacity` writes during the call and not overlapping other arguments.
        match unsafe { $crate::slice::OutBuf::new(($ptr).cast::<u8>(), $capacity) } {
            ::std::result::Result::Ok(buf) => buf,
            ::std::result::Result::Err(status) => return status,
        }
    };
}
pub(crate) use try_out_buf;
