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
//! sessions through a timing wheel linked through the sessions' records, so it never scans the
//! table, and it holds a stripe lock for a bounded number of sessions at a time, so requests are
//! not stalled behind it. [`Store::peek`] reads without sliding, for callers that manage expiry
//! themselves.
//!
//! ## Budgets
//! `max_sessions` and `max_bytes` bound the store. When a write would exceed them the store
//! evicts, in order: expired sessions, sessions never read since they were created (abandoned
//! by bots and one-off visitors), then the least recently used. An active user is not pushed
//! out by a flood of new sessions, and a flood leaves nothing behind once it is evicted.
//!
//! ## Versions
//! Every write gives the session a higher version, and a version never repeats for an id within
//! the store's lifetime, even across a destroy and a new session under the same id. So
//! [`Store::set_if_version`] can never overwrite a session its caller did not read, and
//! [`Store::insert`] never overwrites a live session at all.
//!
//! ## Change stream
//! Every change to the table goes through one path and can be observed with
//! [`StoreBuilder::listener`]: each [`Change`] names the session, what happened
//! ([`ChangeKind`]), why a session left ([`Cause`]: expired, evicted, destroyed, replaced by
//! `regenerate`, cleared), its version and deadlines. Changes are delivered after the stripe lock
//! is released, in order per session; reads that slide a deadline are reported only when it
//! crosses a multiple of a slack of the listener's choosing; a new idle timeout when it moves
//! into another band at most that slack wide, or the deadline crosses a multiple of the slack
//! or comes earlier.
//!
//! ## Concurrency
//! The table is split into lock stripes (`parking_lot::RwLock` over a slab of records and a
//! `hashbrown` index). Reads, including the idle-deadline refresh, take a shared lock; there is
//! no global lock. No guard ever escapes: values are returned as copies or lent to a closure.
//! A store keeps working in a child made by `fork()`: the fork waits until no thread is inside a
//! store, and the child starts its own sweeper.
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
mod persist;
mod signing;
mod store;
mod tier;
mod trim;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use config::{Config, Eviction, Fsync, LONGEST_TTL, WhenRedisDown};
pub use error::{Error, Result};
pub use id::{GENERATED_ID_LEN, MAX_ID_LEN, generate_id, validate_id};
pub use persist::LogStats;
pub use signing::Signer;
pub use store::{
    Cause, Change, ChangeKind, ENTRY_OVERHEAD_BYTES, MAX_OWNER_LEN, Session, SessionView, Stats,
    Store, StoreBuilder,
};
pub use tier::TierStats;
