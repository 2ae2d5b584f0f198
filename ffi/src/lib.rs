//! # coatcheck-ffi
//!
//! The C ABI of coatcheck: `libcoatcheck.so` / `libcoatcheck.a` and `include/coatcheck.h`
//! (generated from this crate by cbindgen in `build.rs`).
//!
//! Conventions, the same for every function (after rustls-ffi):
//! - every function that can fail returns a [`coatcheck_status`] with stable numbers; outputs
//!   are out-parameters written only on success (and, for `BUFFER_TOO_SMALL`, the size needed);
//! - every buffer is a pointer followed by its length; see [`slice`] for the NULL rules;
//! - handles are opaque; pointer arguments are NULL-checked through the macros in [`cast`] and
//!   [`slice`]; every body runs inside [`boundary::ffi_boundary!`], so a panic becomes
//!   `COATCHECK_STATUS_PANIC` and never unwinds into C;
//! - [`error::map_error`] is the only place where a core error becomes a status.
//!
//! Each module mirrors a core module: `config.rs` ↔ `core/src/config.rs`, `store.rs` ↔
//! `core/src/store.rs` (including signing, which the C API reaches through the store's
//! secrets), `error.rs` ↔ `core/src/error.rs`.
#![deny(unsafe_op_in_unsafe_fn)]
// Every entry point takes raw pointers from C and is `extern "C"`: "unsafe" means nothing to a C
// caller, and the header's "NULL:" lines are the contract. The pointers are only dereferenced
// through the NULL-checking macros in `cast` and `slice`, each with its SAFETY argument.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod boundary;
mod cast;
mod config;
mod error;
mod slice;
mod store;

use std::ffi::c_char;

pub use config::{
    coatcheck_bytes, coatcheck_config, coatcheck_config_default, coatcheck_eviction,
    coatcheck_when_redis_down,
};
pub use error::{coatcheck_status, coatcheck_status_message, coatcheck_status_name};
pub use store::*;

use boundary::ffi_boundary;

/// The library's version, "MAJOR.MINOR.PATCH", the same as the Cargo workspace version. The
/// header's `COATCHECK_VERSION` is the version it was generated for; compare the two to catch a
/// header used with a different library.
///
/// Ownership: the returned string is static; do not free or modify it.
/// NULL: never returns NULL.
/// Threads: safe to call from any thread at any time.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_version() -> *const c_char {
    ffi_boundary! {
        const VERSION: &std::ffi::CStr =
            match std::ffi::CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
                Ok(version) => version,
                Err(_) => panic!("the package version contains a NUL byte"),
            };
        VERSION.as_ptr()
    }
}
