//! `Text`: a JavaScript string argument as UTF-8 bytes, copied out of V8 in one pass.
//!
//! napi-rs's own `String` argument asks V8 for the string's UTF-8 length (one pass over the
//! characters), allocates and zero-fills a buffer of that size, asks V8 to encode into it (a
//! second pass), then frees the buffer when the call ends. Every store call takes an id and
//! most take a value; in a profile of a loop of `destroy` calls from JavaScript this was about
//! a third of the native call. `Text` asks for the length in UTF-16 units instead, which V8 knows
//! without a pass; no unit takes more than three UTF-8 bytes, so a buffer of three bytes per
//! unit always holds the encoding, written in one pass. (Reusing buffers from a per-thread
//! pool saved under 3% of a `set` call, as a thread-local costs a call in a shared library;
//! keeping ids inline in a `SmallVec` cost more than it saved. Copying the string as UTF-16
//! and narrowing it here counted more instructions, up to half as many again. None was kept.)

use std::ptr;

use napi::bindgen_prelude::{FromNapiValue, TypeName, ValidateNapiValue};
use napi::{Error, Status, ValueType, sys};

use crate::error::{Code, Result, invalid_argument};

/// A string argument of a native call, declared as `string` in the typings. Its bytes are the
/// string's UTF-8 encoding, a lone surrogate encoded as U+FFFD (as V8 encodes it).
pub struct Text(Vec<u8>);

impl Text {
    /// The bytes, as a session value is stored.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text, for an id or an owner.
    pub fn as_str(&self) -> Result<&str> {
        std::str::from_utf8(&self.0).map_err(|_| not_utf8())
    }

    /// The bytes, owned, for a session value that outlives the call (a Redis round trip).
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The text as an owned `String`, for an id that outlives the call.
    pub fn into_string(self) -> Result<String> {
        String::from_utf8(self.0).map_err(|_| not_utf8())
    }
}

impl FromNapiValue for Text {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        let mut units = 0usize;
        // SAFETY: `env` and `value` are the live handles napi-rs passes to an argument's
        // conversion. A null buffer asks only for the length, written to `units`; a value that
        // is not a string is refused with a status and nothing written.
        let status =
            unsafe { sys::napi_get_value_string_utf16(env, value, ptr::null_mut(), 0, &mut units) };
        if status != sys::Status::napi_ok {
            return Err(not_a_string());
        }
        // One UTF-16 unit encodes to at most three UTF-8 bytes (a surrogate pair, two units,
        // to four), plus the terminating NUL that N-API writes after the text.
        let capacity = units
            .checked_mul(3)
            .and_then(|bytes| bytes.checked_add(1))
            .ok_or_else(not_a_string)?;
        let mut bytes = Vec::<u8>::with_capacity(capacity);
        let mut written = 0usize;
        // SAFETY: the buffer is empty with room for at least `capacity` bytes; N-API writes at
        // most `capacity - 1` bytes of text and a NUL after them, and reports the text's
        // length in `written`.
        let status = unsafe {
            sys::napi_get_value_string_utf8(
                env,
                value,
                bytes.as_mut_ptr().cast(),
                capacity,
                &mut written,
            )
        };
        if status != sys::Status::napi_ok || written >= capacity {
            return Err(not_a_string());
        }
        // SAFETY: N-API initialised the first `written` bytes, which lie within the buffer's
        // capacity (checked above).
        unsafe { bytes.set_len(written) };
        Ok(Text(bytes))
    }
}
fn not_a_string() -> Error {
    Error::new(Status::StringExpected, "expected a string".to_string())
}

// V8 encodes lone surrogates as U+FFFD, so this does not happen; it is checked so that no
// assumption about another library's output makes a `str`.
fn not_utf8() -> napi::Error<Code> {
    invalid_argument("a string argument did not encode as UTF-8")
}

impl TypeName for Text {
    fn type_name() -> &'static str {
        "String"
    }

    fn value_type() -> ValueType {
        ValueType::String
    }
}

impl ValidateNapiValue for Text {}
