//! The one place a core error becomes a JavaScript `Error`: its `code` is the core's stable
//! code string (`too_large`, `store_full`, ...).

/// The error code carried to JavaScript.
pub struct Code(&'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

pub type Result<T> = napi::Result<T, Code>;

pub fn to_napi(error: coatcheck::Error) -> napi::Error<Code> {
    napi::Error::new(Code(error.code()), error.to_string())
}

/// An argument the JavaScript side got wrong, reported like the core's own invalid arguments.
pub fn invalid_argument(why: &str) -> napi::Error<Code> {
    napi::Error::new(Code("invalid_argument"), format!("invalid argument: {why}"))
}

pub fn invalid_config(why: &str) -> napi::Error<Code> {
    napi::Error::new(
        Code("invalid_config"),
        format!("invalid configuration: {why}"),
    )
}

/// N-API itself failed (it does not, short of running out of memory).
pub fn internal(error: napi::Error) -> napi::Error<Code> {
    napi::Error::new(Code("internal"), error.reason.clone())
}
