//! The calls that express-session's Store methods make on every request (read, write, touch,
//! destroy), as module functions of a [`StoreHandle`] rather than methods of `NativeStore`.
//!
//! A method call starts with `napi_unwrap` of `this`, a private-property lookup that V8 does
//! not cache: about 850 of the 3,070 instructions of a whole `destroy` call from JavaScript
//! (callgrind, a loop of 40,000). An external value passed as an argument is opened with one
//! type check. The store's other calls stay methods; they are not made per request, or they
//! wait for Redis anyway.

use napi::Env;
use napi::JsString;
use napi::bindgen_prelude::External;
use napi_derive::napi;

use coatcheck::Store;

use crate::error::{Result, invalid_argument, to_napi};
use crate::store::{prefixed_text, touch_after, ttl};
use crate::text::Text;

/// `NativeStore.handle`: the same store, for the functions of this module. Typed
/// `ExternalObject<NativeStore>` in the typings.
pub type StoreHandle = External<Store>;

/// Reads a live session and slides its idle deadline. Returns one string: the moment the
/// session expires as `toISOString` writes it (24 characters), the version in 16 decimal
/// digits, then the value (one string crosses the boundary in less than half the time of an
/// object with three fields). The JS string is built while the value is lent by the store, so
/// the value is copied once.
#[napi(catch_unwind, ts_return_type = "string | null")]
pub fn get_text<'env>(
    env: &'env Env,
    #[napi(ts_arg_type = "ExternalObject<NativeStore>")] store: &StoreHandle,
    #[napi(ts_arg_type = "string")] sid: Text,
) -> Result<Option<JsString<'env>>> {
    store
        .get_with(sid.as_str()?, |view| prefixed_text(env, view))
        .map_err(to_napi)?
        .transpose()
}

/// `getText` when it needs neither the network nor a wait (a verified local copy the Redis link
/// has nothing pending for); `null`: ask `getTextAsync`, which waits off this thread.
#[napi(catch_unwind, ts_return_type = "string | null")]
pub fn get_text_local<'env>(
    env: &'env Env,
    #[napi(ts_arg_type = "ExternalObject<NativeStore>")] store: &StoreHandle,
    #[napi(ts_arg_type = "string")] sid: Text,
) -> Result<Option<JsString<'env>>> {
    match store
        .get_local_with(sid.as_str()?, |view| prefixed_text(env, view))
        .map_err(to_napi)?
    {
        Some(Some(text)) => text.map(Some),
        _ => Ok(None),
    }
}

/// Upsert; returns the new version.
#[napi(catch_unwind)]
pub fn set(
    #[napi(ts_arg_type = "ExternalObject<NativeStore>")] store: &StoreHandle,
    #[napi(ts_arg_type = "string")] sid: Text,
    #[napi(ts_arg_type = "string")] value: Text,
    ttl_ms: Option<f64>,
) -> Result<i64> {
    let version = store
        .set(sid.as_str()?, value.as_bytes(), ttl(ttl_ms)?)
        .map_err(to_napi)?;
    Ok(version as i64)
}

/// Writes only over `expected`, the version the caller read; returns the new version.
#[napi(catch_unwind)]
pub fn set_if_version(
    #[napi(ts_arg_type = "ExternalObject<NativeStore>")] store: &StoreHandle,
    #[napi(ts_arg_type = "string")] sid: Text,
    #[napi(ts_arg_type = "string")] value: Text,
    expected: i64,
    ttl_ms: Option<f64>,
) -> Result<i64> {
    let expected =
        u64::try_from(expected).map_err(|_| invalid_argument("version must not be negative"))?;
    let version = store
        .set_if_version(sid.as_str()?, value.as_bytes(), expected, ttl(ttl_ms)?)
        .map_err(to_napi)?;
    Ok(version as i64)
}

/// Slides the deadline; with `minIdleMs`, only if the session was idle at least that long.
#[napi(catch_unwind)]
pub fn touch(
    #[napi(ts_arg_type = "ExternalObject<NativeStore>")] store: &StoreHandle,
    #[napi(ts_arg_type = "string")] sid: Text,
    ttl_ms: Option<f64>,
    min_idle_ms: Option<f64>,
) -> Result<bool> {
    let ttl = ttl(ttl_ms)?;
    match touch_after(min_idle_ms)? {
        Some(min_idle) => store.touch_if_idle(sid.as_str()?, ttl, min_idle),
        None => store.touch(sid.as_str()?, ttl),
    }
    .map_err(to_napi)
}

/// `touch` if it needs no network (a store on Redis with a trusted copy here): whether the
/// session is live, or null when only Redis can tell (then `touchAsync`).
#[napi(catch_unwind)]
pub fn touch_local(
    #[napi(ts_arg_type = "ExternalObject<NativeStore>")] store: &StoreHandle,
    #[napi(ts_arg_type = "string")] sid: Text,
    ttl_ms: Option<f64>,
    min_idle_ms: Option<f64>,
) -> Result<Option<bool>> {
    let ttl = ttl(ttl_ms)?;
    let min_idle = touch_after(min_idle_ms)?;
    store
        .touch_local(sid.as_str()?, ttl, min_idle)
        .map_err(to_napi)
}

/// Whether a live session was destroyed.
#[napi(catch_unwind)]
pub fn destroy(
    #[napi(ts_arg_type = "ExternalObject<NativeStore>")] store: &StoreHandle,
    #[napi(ts_arg_type = "string")] sid: Text,
) -> Result<bool> {
    store.destroy(sid.as_str()?).map_err(to_napi)
}
