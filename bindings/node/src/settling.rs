//! How the promises of calls answered on another thread (the Redis link thread, the waiting
//! threads) are settled on the JavaScript thread that made them: through one thread-safe
//! function per JavaScript thread, not one per call.
//!
//! A napi-rs deferred makes a thread-safe function for each promise: a libuv async handle made
//! and closed per call, and one wake-up of the event loop (an `eventfd` write) per answer. Under
//! load a write request's answers came 2.6 wake-ups per request (measured: BENCHMARKS.md,
//! "one wake-up for the answers that arrive together"). Here answers are queued in an inbox and
//! the thread-safe function is called only when the inbox goes from empty to not empty; the
//! JavaScript thread then settles every answer queued by then in one turn.
//!
//! The inbox keeps the event loop alive while a promise it will settle is pending, as a
//! deferred's own thread-safe function did, and lets it exit when none is.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use napi::bindgen_prelude::{Object, ToNapiValue};
use napi::{Env, JsError, JsValue, sys};

use crate::error::{Result, internal};
use crate::store::NativeFailure;

/// Turns an answer into its JavaScript value; run on the JavaScript thread.
type Answer = Box<dyn FnOnce(sys::napi_env) -> napi::Result<sys::napi_value> + Send>;

/// A promise's napi deferred.
struct Deferred(sys::napi_deferred);

// SAFETY: a `napi_deferred` is an opaque handle that this module only ever passes to napi on
// the JavaScript thread that made it (in `settle_queued`, called by that thread's thread-safe
// function); other threads only move it into the inbox.
unsafe impl Send for Deferred {}

/// The thread-safe function of one JavaScript thread.
struct ThreadsafeFunction(sys::napi_threadsafe_function);

// SAFETY: napi documents `napi_call_threadsafe_function` as callable from any thread; the other
// calls this module makes with it (ref, unref) are made on its JavaScript thread.
unsafe impl Send for ThreadsafeFunction {}

struct Queued {
    /// Answers not settled yet, in the order they came.
    answers: Vec<(Deferred, Answer)>,
    /// Whether the thread-safe function was called for the answers queued: set by the first
    /// answer after a drain, cleared by the drain.
    called: bool,
    /// `None` once the JavaScript thread's environment is torn down: answers are dropped then.
    function: Option<ThreadsafeFunction>,
}

/// What the answering threads share with the JavaScript thread.
struct Inbox(Mutex<Queued>);

impl Inbox {
    fn push(&self, deferred: Deferred, answer: Answer) {
        let mut queued = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(function) = queued.function.as_ref().map(|f| f.0) else {
            return; // the environment is gone, and with it the promise
        };
        queued.answers.push((deferred, answer));
        if !queued.called {
            queued.called = true;
            // Called under the lock so that the environment's teardown, which takes the
            // function out under it, never races a call. A failure means the function is
            // closing: the environment is going away with the promise.
            // SAFETY: `function` is live: it is taken out of the inbox before the
            // environment's teardown destroys it (see `forget_function`).
            let _ = unsafe {
                sys::napi_call_threadsafe_function(
                    function,
                    ptr::null_mut(),
                    sys::ThreadsafeFunctionCallMode::nonblocking,
                )
            };
        }
    }
}

/// One JavaScript thread's end of its inbox.
struct Hub {
    env: sys::napi_env,
    inbox: Arc<Inbox>,
    function: sys::napi_threadsafe_function,
    /// Promises made and not settled yet; while there are any, the loop is kept alive.
    pending: Cell<usize>,
}

thread_local! {
    static HUB: RefCell<Option<Rc<Hub>>> = const { RefCell::new(None) };
}

/// A promise to be settled from any thread; it settles with `internal` if dropped unsettled.
pub(crate) struct Settler {
    inbox: Arc<Inbox>,
    deferred: Option<Deferred>,
}

impl Settler {
    /// Settles the promise with `value`, on the JavaScript thread that made it.
    pub(crate) fn settle<T: ToNapiValue + Send + 'static>(mut self, value: T) {
        if let Some(deferred) = self.deferred.take() {
            // SAFETY: called by `settle_queued` on the JavaScript thread with its live `env`.
            let answer: Answer = Box::new(move |env| unsafe { T::to_napi_value(env, value) });
            self.inbox.push(deferred, answer);
        }
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        if let Some(deferred) = self.deferred.take() {
            // Resolved with a failure, not rejected: the caller may never have received the
            // promise (a call that failed after making it), and a rejection nobody handles
            // ends the process.
            let failure = NativeFailure {
                code: "internal".to_string(),
                message: "coatcheck: a native call ended without an answer".to_string(),
            };
            // SAFETY: called by `settle_queued` on the JavaScript thread with its live `env`.
            let answer: Answer =
                Box::new(move |env| unsafe { NativeFailure::to_napi_value(env, failure) });
            self.inbox.push(deferred, answer);
        }
    }
}

/// A new promise, and its settler for another thread.
pub(crate) fn promise<'env>(env: &'env Env) -> Result<(Settler, Object<'env>)> {
    let hub = hub(env)?;
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: `env` is this call's live environment, on its JavaScript thread.
    let status = unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) };
    if status != sys::Status::napi_ok {
        return Err(internal(napi::Error::from_reason(
            "coatcheck: could not make a promise",
        )));
    }
    if hub.pending.get() == 0 {
        // SAFETY: on the hub's JavaScript thread, with its environment and live function.
        unsafe { sys::napi_ref_threadsafe_function(hub.env, hub.function) };
    }
    hub.pending.set(hub.pending.get() + 1);
    let settler = Settler {
        inbox: Arc::clone(&hub.inbox),
        deferred: Some(Deferred(deferred)),
    };
    Ok((settler, Object::from_raw(env.raw(), promise)))
}

/// This JavaScript thread's hub, made on first use.
fn hub(env: &Env) -> Result<Rc<Hub>> {
    if let Some(hub) = HUB.with(|hub| hub.borrow().clone()) {
        if hub.env == env.raw() {
            return Ok(hub);
        }
    }
    let made = Rc::new(make_hub(env)?);
    HUB.with(|hub| *hub.borrow_mut() = Some(Rc::clone(&made)));
    Ok(made)
}

fn make_hub(env: &Env) -> Result<Hub> {
    let failed = |what: &str| internal(napi::Error::from_reason(format!("coatcheck: {what}")));
    let raw_env = env.raw();
    let name = env
        .create_string("coatcheck settling")
        .map_err(|_| failed("could not name the settling function"))?;
    let inbox = Arc::new(Inbox(Mutex::new(Queued {
        answers: Vec::new(),
        called: false,
        function: None,
    })));
    let mut function = ptr::null_mut();
    // SAFETY: `raw_env` is live on this thread; no JavaScript function, so `call_js` does the
    // work; the context is never read (the hub is found through the thread's `HUB`).
    let status = unsafe {
        sys::napi_create_threadsafe_function(
            raw_env,
            ptr::null_mut(),
            ptr::null_mut(),
            name.raw(),
            0, // no limit: a call never blocks
            1,
            ptr::null_mut(),
            None,
            ptr::null_mut(),
            Some(settle_queued),
            &mut function,
        )
    };
    if status != sys::Status::napi_ok {
        return Err(failed("could not make the settling function"));
    }
    // Referenced only while a promise is pending (see `promise`).
    // SAFETY: made just above on this thread.
    unsafe { sys::napi_unref_threadsafe_function(raw_env, function) };
    inbox
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .function = Some(ThreadsafeFunction(function));
    // Added after the function is made, so it runs before the environment destroys the
    // function (cleanup hooks run in reverse order of adding).
    let for_teardown = Arc::into_raw(Arc::clone(&inbox)) as *mut c_void;
    // SAFETY: `forget_function` takes back the `Arc` leaked here, once.
    let status =
        unsafe { sys::napi_add_env_cleanup_hook(raw_env, Some(forget_function), for_teardown) };
    if status != sys::Status::napi_ok {
        // SAFETY: the hook was not added; the `Arc` is taken back here instead.
        drop(unsafe { Arc::from_raw(for_teardown as *const Inbox) });
        return Err(failed("could not watch the environment's teardown"));
    }
    Ok(Hub {
        env: raw_env,
        inbox,
        function,
        pending: Cell::new(0),
    })
}

/// Environment teardown: no thread may call the function once the environment destroys it.
unsafe extern "C" fn forget_function(arg: *mut c_void) {
    // SAFETY: `arg` is the `Arc<Inbox>` leaked in `make_hub`; this hook runs once.
    let inbox = unsafe { Arc::from_raw(arg as *const Inbox) };
    let mut queued = inbox.0.lock().unwrap_or_else(PoisonError::into_inner);
    queued.function = None;
    queued.answers.clear();
    drop(queued);
    HUB.with(|hub| {
        if let Ok(mut hub) = hub.try_borrow_mut() {
            *hub = None;
        }
    });
}

/// The thread-safe function's callback, on the JavaScript thread: settles every answer queued.
unsafe extern "C" fn settle_queued(
    env: sys::napi_env,
    _callback: sys::napi_value,
    _context: *mut c_void,
    _data: *mut c_void,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let Some(hub) = HUB.with(|hub| hub.borrow().clone()) else {
            return;
        };
        let answers = {
            let mut queued = hub.inbox.0.lock().unwrap_or_else(PoisonError::into_inner);
            queued.called = false;
            std::mem::take(&mut queued.answers)
        };
        // A null `env`: the environment is being torn down; the promises go with it.
        if env.is_null() {
            return;
        }
        let settled = answers.len();
        for (deferred, answer) in answers {
            let value = catch_unwind(AssertUnwindSafe(|| answer(env))).unwrap_or_else(|_| {
                Err(napi::Error::from_reason(
                    "coatcheck: making a native call's answer failed",
                ))
            });
            // SAFETY: `env` is the live environment of the JavaScript thread that made
            // `deferred`, and each deferred is settled once (it was moved out of the inbox).
            unsafe {
                match value {
                    Ok(value) => sys::napi_resolve_deferred(env, deferred.0, value),
                    Err(e) => {
                        sys::napi_reject_deferred(env, deferred.0, JsError::from(e).into_value(env))
                    }
                };
            }
        }
        let pending = hub.pending.get().saturating_sub(settled);
        hub.pending.set(pending);
        if pending == 0 && settled > 0 {
            // SAFETY: on the hub's JavaScript thread, with its live function.
            unsafe { sys::napi_unref_threadsafe_function(env, hub.function) };
        }
    }));
}
