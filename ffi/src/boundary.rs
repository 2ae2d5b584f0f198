//! The panic boundary: no unwind ever crosses into C.

use std::ffi::c_char;

use crate::error::coatcheck_status;

/// What an entry point returns when its body panicked.
pub(crate) trait OnPanic {
    fn on_panic() -> Self;
}

impl OnPanic for coatcheck_status {
    fn on_panic() -> Self {
        coatcheck_status::Panic
    }
}

impl OnPanic for () {
    fn on_panic() -> Self {}
}

impl OnPanic for *const c_char {
    fn on_panic() -> Self {
        c"panic".as_ptr()
    }
}

/// Runs the body of a C entry point, turning a panic into the return type's panic value
/// ([`OnPanic`]): `COATCHECK_STATUS_PANIC` for a status. `return` inside the body returns from
/// the entry point.
macro_rules! ffi_boundary {
    ($($body:tt)*) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| { $($body)* })) {
            ::std::result::Result::Ok(value) => value,
            ::std::result::Result::Err(_) => $crate::boundary::OnPanic::on_panic(),
        }
    };
}
pub(crate) use ffi_boundary;

#[cfg(test)]
mod tests {
    use super::*;

    fn panics_inside(fail: bool) -> coatcheck_status {
        ffi_boundary! {
            if fail {
                panic!("deliberate panic in a test");
            }
            coatcheck_status::Ok
        }
    }

    fn returns_early() -> coatcheck_status {
        ffi_boundary! {
            if "a".len() == 1 {
                return coatcheck_status::NotFound;
            }
            coatcheck_status::Ok
        }
    }

    #[test]
    fn a_panic_becomes_the_panic_status() {
        assert_eq!(panics_inside(false), coatcheck_status::Ok);
        assert_eq!(panics_inside(true), coatcheck_status::Panic);
    }

    #[test]
    fn return_leaves_the_entry_point_with_that_value() {
        assert_eq!(returns_early(), coatcheck_status::NotFound);
    }

    #[test]
    fn a_panic_in_a_string_function_gives_static_text() {
        let text: *const c_char = ffi_boundary! { panic!("deliberate") };
        // SAFETY: OnPanic for *const c_char returns a static NUL-terminated string.
        assert_eq!(unsafe { std::ffi::CStr::from_ptr(text) }, c"panic");
    }
}
