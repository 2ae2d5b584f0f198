//! # coatcheck
//!
//! An embedded, in-process server-side session store: the engine behind coatcheck's C, Python
//! and Node bindings.
//!
//! A **session** is an opaque byte value filed under a random **id**. The id travels to the
//! client inside a **signed token** (`<id>.<HMAC-SHA256>`, the `cookie-signature` format used by
//! express-session); a token that does not verify never reaches the table.
//!
//! ## Expiry
//! Every session has a sliding idle deadline (extended by [`Store::get`] and [`Store::touch`])
//! and, optionally, an absolute deadline from creation that nothing extends. An expired session
//! is never returned, whatever the background sweeper has done so far. The sweeper finds expired
//! sessions through per-stripe time buckets, so it never scans the table, and it holds a stripe
//! lock for a bounded number of sessions at a time, so requests are not stalled behind it.
//!
//! ## Budgets
//! `max_sessions` and `max_bytes` bound the store. When a write would exceed them the store
//! evicts, in order: expired sessions, sessions never read since they were created (abandoned
//! by bots and one-off visitors), then the least recently used. An active user is not pushed
//! out by a flood of new sessions.
//!
//! ## Concurrency
//! The table is split into lock stripes (`parking_lot::RwLock` over a `hashbrown` table). Reads,
//! including the idle-deadline refresh, take a shared lock; there is no global lock. No guard
//! ever escapes: values are returned as copies or lent to a closure.
//!
//! ```
//! use coatcheck::{Config, Store};
//! let mut config = Config::default();
//! config.secrets = vec![b"keyboard cat".to_vec()];
//! let store = Store::new(config)?;
//! let id = store.create(br#"{"user":42}"#, None)?;
//! let token = store.sign(&id)?;                      // goes into the cookie
//! let id = store.unsign(&token)?;                    // back from the cookie
//! assert_eq!(store.get(id)?.as_deref(), Some(&br#"{"user":42}"#[..]));
//! # Ok::<(), coatcheck::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

mod clock;
mod config;
mod error;
mod fork;
mod id;
mod signing;
mod store;
mod trim;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use config::{Config, Eviction};
pub use error::{Error, Result};
pub use id::{GENERATED_ID_LEN, MAX_ID_LEN, generate_id, validate_id};
pub use signing::Signer;
pub use store::{
    Cause, Change, ChangeKind, ENTRY_OVERHEAD_BYTES, MAX_OWNER_LEN, Session, SessionView, Stats,
    Store, StoreBuilder,
};
