//! How the promises of calls answered on another thread (the Redis link thread, the waiting
//! threads) are settled on the JavaScript thread that made them: through one thread-safe
//! function per JavaScript environment, not one per call.
//!
//! A napi-rs deferred makes a thread-safe function for each promise: a libuv async handle made
//! and closed per call, and one wake-up of the event loop (an `eventfd` write) per answer. Here
//! answers are queued in the environment's inbox, and its thread-safe function is called only
//! when the inbox goes from empty to not empty; the JavaScript thread then settles every answer
//! queued by then in one turn. Under the Express write benchmark the link threads' wake-ups of
//! the event loop fell from about 2.6 to 1.4 per request (BENCHMARKS.md).
//!
//! The inbox keeps the event loop alive while a promise it will settle is pending, as a
//! deferred's own thread-safe function did, and lets it exit when none is.

use std::cell::RefCell;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use napi::bindgen_prelude::{Object, ToNapiValue};
use napi::{Env, JsError, JsValue, sys};

use crate::error::{Result, internal};
use crate::store::NativeFailure;

/// Turns an answer into its JavaScript value; run on the JavaScript thread.
type Answer = Box<dyn FnOnce(sys::napi_env) -> napi::Result<sys::napi_value> + Send>;

/// A promise's napi deferred.
struct Deferred(sys::napi_deferred);

// SAFETY: a `napi_deferred` is an opaque handle that this module only ever passes to napi on
// the JavaScript thread that made it (in `settle_queued`, called by its environment's
// thread-safe function); other threads only move it into the inbox.
unsafe impl Send for Deferred {}

/// An environment's thread-safe function.
#[derive(Clone, Copy)]
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
    /// `None` until made, and again once the environment is torn down: answers are dropped
    /// then, with the environment.
    function: Option<ThreadsafeFunction>,
}

/// One environment's inbox: shared by the answering threads, its thread-safe function (as
/// its context) and its JavaScript thread.
struct Inbox {
    queued: Mutex<Queued>,
    /// Promises made and not settled yet; while there are any, the loop is kept alive. Only
    /// the JavaScript thread changes it.
    pending: AtomicUsize,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, deferred: Deferred, answer: Answer) {
        let mut queued = self.lock();
        let Some(function) = queued.function else {
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
                    function.0,
                    ptr::null_mut(),
                    sys::ThreadsafeFunctionCallMode::nonblocking,
                )
            };
        }
    }
}

/// One environment's inbox, as its JavaScript thread finds it.
struct Hub {
    env: sys::napi_env,
    inbox: Arc<Inbox>,
}

thread_local! {
    /// The hubs of the environments on this thread (one, unless an embedder runs several).
    static HUBS: RefCell<Vec<Hub>> = const { RefCell::new(Vec::new()) };
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
    let raw_env = env.raw();
    let inbox = inbox(env)?;
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: `raw_env` is this call's live environment, on its JavaScript thread.
    let status = unsafe { sys::napi_create_promise(raw_env, &mut deferred, &mut promise) };
    if status != sys::Status::napi_ok {
        return Err(internal(napi::Error::from_reason(
            "coatcheck: could not make a promise",
        )));
    }
    if inbox.pending.fetch_add(1, SeqCst) == 0 {
        if let Some(function) = inbox.lock().function {
            // SAFETY: on the function's JavaScript thread, with its environment; it is live
            // while the inbox holds it.
            unsafe { sys::napi_ref_threadsafe_function(raw_env, function.0) };
        }
    }
    let settler = Settler {
        inbox,
        deferred: Some(Deferred(deferred)),
    };
    Ok((settler, Object::from_raw(raw_env, promise)))
}

/// The inbox of `env`, made on first use.
fn inbox(env: &Env) -> Result<Arc<Inbox>> {
    let raw_env = env.raw();
    let found = HUBS.with(|hubs| {
        let hubs = hubs.borrow();
        let hub = hubs.iter().find(|hub| hub.env == raw_env);
        hub.map(|hub| Arc::clone(&hub.inbox))
    });
    if let Some(inbox) = found {
        return Ok(inbox);
    }
    let inbox = make_inbox(env)?;
    HUBS.with(|hubs| {
        hubs.borrow_mut().push(Hub {
            env: raw_env,
            inbox: Arc::clone(&inbox),
        })
    });
    Ok(inbox)
}

fn make_inbox(env: &Env) -> Result<Arc<Inbox>> {
    let failed = |what: &str| internal(napi::Error::from_reason(format!("coatcheck: {what}")));
    let raw_env = env.raw();
    let name = env
        .create_string("coatcheck settling")
        .map_err(|_| failed("could not name the settling function"))?;
    let inbox = Arc::new(Inbox {
        queued: Mutex::new(Queued {
            answers: Vec::new(),
            called: false,
            function: None,
        }),
        pending: AtomicUsize::new(0),
    });
    // The function's context: a reference it holds until it is destroyed (`drop_context`).
    let context = Arc::into_raw(Arc::clone(&inbox)) as *mut c_void;
    let mut function = ptr::null_mut();
    // SAFETY: `raw_env` is live on this thread; no JavaScript function, so `settle_queued`
    // does the work, with `context`; `drop_context` takes the context back once, when the
    // function is destroyed.
    let status = unsafe {
        sys::napi_create_threadsafe_function(
            raw_env,
            ptr::null_mut(),
            ptr::null_mut(),
            name.raw(),
            0, // no limit: a call never blocks
            1,
            context,
            Some(drop_context),
            context,
            Some(settle_queued),
            &mut function,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: no function was made to take the context back.
        drop(unsafe { Arc::from_raw(context as *const Inbox) });
        return Err(failed("could not make the settling function"));
    }
    // Referenced only while a promise is pending (see `promise`).
    // SAFETY: made just above on this thread.
    unsafe { sys::napi_unref_threadsafe_function(raw_env, function) };
    inbox.lock().function = Some(ThreadsafeFunction(function));
    // Added after the function is made, so it runs before the environment destroys the
    // function (cleanup hooks run in reverse order of adding).
    let for_teardown = Arc::into_raw(Arc::clone(&inbox)) as *mut c_void;
    // SAFETY: `forget_function` takes back the `Arc` leaked here, once.
    let status =
        unsafe { sys::napi_add_env_cleanup_hook(raw_env, Some(forget_function), for_teardown) };
    if status != sys::Status::napi_ok {
        // SAFETY: the hook was not added; the `Arc` is taken back here instead.
        drop(unsafe { Arc::from_raw(for_teardown as *const Inbox) });
        // Never used: the function goes with the environment.
        inbox.lock().function = None;
        return Err(failed("could not watch the environment's teardown"));
    }
    Ok(inbox)
}

/// The thread-safe function's finalizer: gives back its reference to the inbox.
unsafe extern "C" fn drop_context(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the `Arc<Inbox>` leaked as the function's context in `make_inbox`;
    // napi finalizes a function once.
    drop(unsafe { Arc::from_raw(data as *const Inbox) });
}

/// Environment teardown: no thread may call the function once the environment destroys it.
unsafe extern "C" fn forget_function(arg: *mut c_void) {
    // SAFETY: `arg` is the `Arc<Inbox>` leaked in `make_inbox`; this hook runs once.
    let inbox = unsafe { Arc::from_raw(arg as *const Inbox) };
    let mut queued = inbox.lock();
    queued.function = None;
    queued.answers.clear();
    drop(queued);
    HUBS.with(|hubs| {
        if let Ok(mut hubs) = hubs.try_borrow_mut() {
            hubs.retain(|hub| !Arc::ptr_eq(&hub.inbox, &inbox));
        }
    });
}

/// The thread-safe function's callback, on the JavaScript thread: settles every answer its
/// inbox (`context`) holds.
unsafe extern "C" fn settle_queued(
    env: sys::napi_env,
    _callback: sys::napi_value,
    context: *mut c_void,
    _data: *mut c_void,
) {
    // A null `env`: the function is being destroyed with its environment, and napi calls
    // this for the calls still queued after the finalizer (`drop_context`) has run: the
    // context may be gone. The promises go with the environment.
    if env.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `context` is the inbox the function holds a reference to until it is
        // finalized, which napi does only after its last call with a live `env`.
        let inbox = unsafe { &*(context as *const Inbox) };
        let (answers, function) = {
            let mut queued = inbox.lock();
            queued.called = false;
            (std::mem::take(&mut queued.answers), queued.function)
        };
        let settled = answers.len();
        for (deferred, answer) in answers {
            // SAFETY: `env` is the live environment of the JavaScript thread that made
            // `deferred`, and each deferred is settled once (it was moved out of the inbox).
            unsafe { settle_one(env, deferred, answer) };
        }
        let before = inbox.pending.load(SeqCst);
        inbox.pending.store(before.saturating_sub(settled), SeqCst);
        if before > 0 && before <= settled {
            if let Some(function) = function {
                // SAFETY: on the function's JavaScript thread; it is live: this is its call.
                unsafe { sys::napi_unref_threadsafe_function(env, function.0) };
            }
        }
    }));
}

/// Resolves `deferred` with its answer, or rejects it with what went wrong making it.
///
/// # Safety
/// `env` is the live environment of the JavaScript thread that made `deferred`, which has
/// not been settled yet.
unsafe fn settle_one(env: sys::napi_env, deferred: Deferred, answer: Answer) {
    let value = catch_unwind(AssertUnwindSafe(|| answer(env))).unwrap_or_else(|_| {
        Err(napi::Error::from_reason(
            "coatcheck: making a native call's answer failed",
        ))
    });
    // SAFETY: as the caller promises.
    unsafe {
        match value {
            Ok(value) => {
                sys::napi_resolve_deferred(env, deferred.0, value);
            }
            Err(e) => {
                // A JavaScript exception left pending by the failure is taken, so that it
                // rejects this promise and the next answers can still be settled.
                let mut pending = false;
                sys::napi_is_exception_pending(env, &mut pending);
                let mut reason = ptr::null_mut();
                if pending {
                    sys::napi_get_and_clear_last_exception(env, &mut reason);
                }
                if reason.is_null() {
                    reason = JsError::from(e).into_value(env);
                }
                sys::napi_reject_deferred(env, deferred.0, reason);
            }
        }
    }
}
