//! `coatcheck_store`: the C handle over `coatcheck::Store`, one function per core method.

use std::time::Duration;

use coatcheck::{GENERATED_ID_LEN, MAX_ID_LEN, MAX_OWNER_LEN, Stats, Store, TierStats};

use crate::boundary::ffi_boundary;
use crate::cast::{
    Castable, Out, OwnershipBox, free_box, optional_out, to_boxed_mut_ptr, try_out, try_ref,
};
use crate::config::coatcheck_config;
use crate::error::{coatcheck_status, map_error};
use crate::slice::{OutBuf, emit, try_bytes, try_id, try_out_buf, try_text};

/// Length of an id made by `coatcheck_store_create` or `coatcheck_store_regenerate`.
pub const COATCHECK_GENERATED_ID_LEN: usize = 32;
/// Longest session id the store accepts.
pub const COATCHECK_MAX_ID_LEN: usize = 255;
/// Longest owner key the store accepts.
pub const COATCHECK_MAX_OWNER_LEN: usize = 1024;
/// Length of the token `coatcheck_store_sign` makes for a generated id: the id, a dot and a
/// 43-character signature.
pub const COATCHECK_GENERATED_TOKEN_LEN: usize = 76;
/// Longest token `coatcheck_store_sign` can make (for an id of `COATCHECK_MAX_ID_LEN`).
pub const COATCHECK_MAX_TOKEN_LEN: usize = 299;

// The header's copies of the core's limits are checked here, at compile time.
const _: () = assert!(COATCHECK_GENERATED_ID_LEN == GENERATED_ID_LEN);
const _: () = assert!(COATCHECK_MAX_ID_LEN == MAX_ID_LEN);
const _: () = assert!(COATCHECK_MAX_OWNER_LEN == MAX_OWNER_LEN);
const SIGNATURE_SUFFIX_LEN: usize = 44;
const _: () = assert!(COATCHECK_GENERATED_TOKEN_LEN == GENERATED_ID_LEN + SIGNATURE_SUFFIX_LEN);
const _: () = assert!(COATCHECK_MAX_TOKEN_LEN == MAX_ID_LEN + SIGNATURE_SUFFIX_LEN);

/// A session store: an opaque handle from `coatcheck_store_new`, freed with
/// `coatcheck_store_free`. One handle may be used from any number of threads at once.
///
/// Output buffers: no output buffer may overlap another argument of the same call (signing a
/// token into the buffer that holds its id, say); copy the input first.
///
/// On a store with a `redis_url` or a `persist_path`, every call that reads or changes
/// sessions may also return `COATCHECK_STATUS_UNAVAILABLE` (see that status).
///
/// Fork: a store keeps working in a child made by `fork()`. The fork waits until no thread is
/// inside a call on any store (a call waiting on Redis steps aside for it, and so does the
/// restart log's background work as it writes; a write that syncs under
/// `COATCHECK_FSYNC_ALWAYS` does not). In
/// the child, the first call starts the child's own background threads, and with a `redis_url`
/// its own link to Redis, waiting up to a second for it (no longer than the first attempt when
/// the connection is refused). With a `persist_path` the child reads
/// the parent's sessions but never writes the parent's log: its writes return
/// `COATCHECK_STATUS_UNAVAILABLE`, its reads do not log the deadlines they move, and freeing the
/// store in the child writes no snapshot.
#[allow(non_camel_case_types)]
pub struct coatcheck_store {
    _private: [u8; 0],
}

impl Castable for coatcheck_store {
    type Ownership = OwnershipBox;
    type RustType = Store;
}

/// Counters since the store was built, and its current size (`coatcheck_store_stats`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct coatcheck_stats {
    /// Sessions in the table, including expired ones not yet reclaimed.
    pub sessions: u64,
    /// Bytes charged against `max_bytes`.
    pub bytes: u64,
    /// Reads that found a live session.
    pub hits: u64,
    /// Reads that found nothing, or only an expired session.
    pub misses: u64,
    /// Sessions added (create, or set of a new id).
    pub inserts: u64,
    /// Writes to an existing session.
    pub updates: u64,
    /// Sessions removed by destroy and destroy-owner.
    pub destroys: u64,
    /// Sessions reclaimed because they expired.
    pub expirations: u64,
    /// Sessions evicted for room that had never been read since they were created.
    pub evicted_unread: u64,
    /// Sessions evicted for room as least recently used.
    pub evicted_lru: u64,
    /// Tokens that failed verification in `coatcheck_store_unsign`.
    pub signature_failures: u64,
    /// Version-checked writes that lost to another writer.
    pub conflicts: u64,
    /// Whether the store is on the shared tier (built with a `redis_url`). When false, every
    /// `tier_` field below is 0 / false.
    pub tier_enabled: bool,
    /// Whether the link to Redis is up.
    pub tier_connected: bool,
    /// Reads answered from a verified local copy.
    pub tier_near_hits: u64,
    /// Reads that went to Redis (no local copy, or an unverified one, or strict mode).
    pub tier_near_misses: u64,
    /// Reads answered from an unverified local copy while Redis was down.
    pub tier_served_unverified: u64,
    /// Invalidations received from Redis.
    pub tier_invalidations: u64,
    /// Requests sent to Redis.
    pub tier_round_trips: u64,
    /// Requests that failed or timed out.
    pub tier_failures: u64,
    /// Times the link to Redis was lost.
    pub tier_disconnects: u64,
    /// Total time the link has been down, in milliseconds.
    pub tier_down_ms: u64,
    /// Local copies written back after a reconnect because Redis had lost them.
    pub tier_restored: u64,
    /// Writes made while Redis was down that lost to a newer write on reconnect.
    pub tier_replay_conflicts: u64,
    /// Session TTL extensions sent to Redis in batches.
    pub tier_touches_sent: u64,
    /// Read replies an invalidation or a lost link overtook: cached as unconfirmed, checked
    /// with Redis again before a read trusts them. (A process's own writes, which Redis
    /// reports back to it, are confirmed in the background and not counted.)
    pub tier_fills_refused: u64,
    /// Changes made here while Redis was down that Redis does not hold yet (sessions to write
    /// back, destroys, regenerates, log-outs everywhere): 0 once the resync after a reconnect
    /// has ended.
    pub tier_to_replay: u64,
    /// Whether the store keeps a restart log (built with a `persist_path`). When false, every
    /// `log_` field below is 0 / false.
    pub log_enabled: bool,
    /// Records appended to the log since the store was built.
    pub log_records: u64,
    /// Bytes in the current log files.
    pub log_bytes: u64,
    /// Bytes in the last snapshot.
    pub log_snapshot_bytes: u64,
    /// Snapshots written (one when the store was built from files, then one per compaction).
    pub log_compactions: u64,
    /// Sessions restored from the directory when the store was built.
    pub log_restored: u64,
    /// Appends, syncs or compactions that failed. While the last failure has not been cleared
    /// by a compaction, writes return `COATCHECK_STATUS_UNAVAILABLE`.
    pub log_failures: u64,
}

impl From<Stats> for coatcheck_stats {
    fn from(s: Stats) -> Self {
        let tier = s.tier.as_ref();
        let counter = |f: fn(&TierStats) -> u64| tier.map_or(0, f);
        Self {
            sessions: s.sessions as u64,
            bytes: s.bytes as u64,
            hits: s.hits,
            misses: s.misses,
            inserts: s.inserts,
            updates: s.updates,
            destroys: s.destroys,
            expirations: s.expirations,
            evicted_unread: s.evicted_unread,
            evicted_lru: s.evicted_lru,
            signature_failures: s.signature_failures,
            conflicts: s.conflicts,
            tier_enabled: tier.is_some(),
            tier_connected: tier.is_some_and(|t| t.connected),
            tier_near_hits: counter(|t| t.near_hits),
            tier_near_misses: counter(|t| t.near_misses),
            tier_served_unverified: counter(|t| t.served_unverified),
            tier_invalidations: counter(|t| t.invalidations),
            tier_round_trips: counter(|t| t.round_trips),
            tier_failures: counter(|t| t.failures),
            tier_disconnects: counter(|t| t.disconnects),
            tier_down_ms: counter(|t| t.down_ms),
            tier_restored: counter(|t| t.restored),
            tier_replay_conflicts: counter(|t| t.replay_conflicts),
            tier_touches_sent: counter(|t| t.touches_sent),
            tier_fills_refused: counter(|t| t.fills_refused),
            tier_to_replay: counter(|t| t.to_replay),
            log_enabled: s.log.is_some(),
            log_records: s.log.as_ref().map_or(0, |l| l.records),
            log_bytes: s.log.as_ref().map_or(0, |l| l.log_bytes),
            log_snapshot_bytes: s.log.as_ref().map_or(0, |l| l.snapshot_bytes),
            log_compactions: s.log.as_ref().map_or(0, |l| l.compactions),
            log_restored: s.log.as_ref().map_or(0, |l| l.restored),
            log_failures: s.log.as_ref().map_or(0, |l| l.failures),
        }
    }
}

/// A TTL argument: 0 means the store's idle timeout.
fn ttl(ttl_ms: u64) -> Option<Duration> {
    (ttl_ms != 0).then(|| Duration::from_millis(ttl_ms))
}

/// The status of a core result; on success its value goes to `out`, if the caller wants it.
fn deliver<T>(result: coatcheck::Result<T>, out: Option<Out<'_, T>>) -> coatcheck_status {
    match result {
        Ok(value) => {
            if let Some(out) = out {
                out.write(value);
            }
            coatcheck_status::Ok
        }
        Err(e) => map_error(&e),
    }
}

/// `Ok` when the core acted on a live session, `NotFound` when there was none.
fn found(result: coatcheck::Result<bool>) -> coatcheck_status {
    match result {
        Ok(true) => coatcheck_status::Ok,
        Ok(false) => map_error(&coatcheck::Error::NotFound),
        Err(e) => map_error(&e),
    }
}

/// Builds a store from `*config` and writes its handle to `*out_store`.
///
/// Returns `COATCHECK_STATUS_INVALID_CONFIG` for an out-of-range setting (zero idle timeout,
/// a `max_session_bytes` of 0 or over 1 GiB, shards not a power of two, sweep interval under
/// 1 ms, an empty secret, an unknown eviction, `redis_when_down` or `persist_fsync` value, a
/// `redis_url` or `redis_key_prefix` that is not UTF-8, a `redis_url` that is not a Redis URL,
/// a bad key prefix, a Redis timeout over 60 s, a `rediss://` URL with no CA certificates to
/// check it against, both `redis_url` and `persist_path`, a `persist_path` whose parent does
/// not exist or that another store holds), and `COATCHECK_STATUS_INVALID_ARGUMENT` for a
/// `secrets_len` too large to be an array. `COATCHECK_STATUS_INVALID_CONFIG` is also what a
/// store that cannot start for want of resources gets: a `persist_path` the process may not
/// write, a full or read-only disk, a background thread the system refuses.
///
/// With a `redis_url` this starts the store's Redis link thread and waits up to a second for
/// the first connection (no longer than the first attempt when it is refused). A store whose
/// Redis is down still starts, and follows
/// `redis_when_down` until Redis is reachable; `tier_connected` in `coatcheck_store_stats`
/// tells which.
///
/// Ownership: the caller owns the new store and must pass it to `coatcheck_store_free`. The
/// config, its secrets and its strings are copied; the caller keeps ownership of them.
/// NULL: `config` or `out_store` NULL returns `COATCHECK_STATUS_NULL_ARGUMENT`; so does a NULL
/// `secrets` or secret `data` with a non-zero length. `redis_url`, `redis_key_prefix` and
/// `persist_path` may be NULL (no Redis; the default prefix; no restart log).
/// Threads: safe to call from any thread at any time.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_new(
    config: *const coatcheck_config,
    out_store: *mut *mut coatcheck_store,
) -> coatcheck_status {
    ffi_boundary! {
        // SAFETY: the caller passes NULL or a pointer to a valid, initialized config.
        let Some(config) = (unsafe { config.as_ref() }) else {
            return coatcheck_status::NullArgument;
        };
        let out = try_out!(out_store);
        // SAFETY: documented: `secrets` is NULL with length 0 or points at `secrets_len` valid
        // entries, and `redis_url`, `redis_key_prefix` and `persist_path` are each NULL or a
        // NUL-terminated string, for the duration of the call.
        let config = match unsafe { (*config).to_core() } {
            Ok(config) => config,
            Err(status) => return status,
        };
        match Store::new(config) {
            Ok(store) => {
                out.write(to_boxed_mut_ptr(store));
                coatcheck_status::Ok
            }
            Err(e) => map_error(&e),
        }
    }
}

/// Stops the store's background work and gives back what it holds besides memory, and says
/// whether that went well: what `coatcheck_store_free` does first, for a caller that must know
/// whether the final snapshot of the restart log was written (`coatcheck_store_free` cannot
/// report it). The background threads (the sweeper, the restart log's, the Redis link's) are
/// stopped and joined, the Redis link first sending the touches it batched (within
/// `redis_timeout_ms`), and the restart log is compacted into one snapshot and its directory
/// unlocked, so that a new store may open it.
///
/// The store stays valid until `coatcheck_store_free`, and readable. With a restart log, calls
/// that change sessions then return `COATCHECK_STATUS_UNAVAILABLE`; on Redis, every call that
/// needs Redis does, reads included. Calling it again does nothing more and returns
/// `COATCHECK_STATUS_OK`.
///
/// Returns `COATCHECK_STATUS_UNAVAILABLE` if the final snapshot could not be written (the
/// reason: `coatcheck_last_error_message`): the log files it would have replaced are kept, and
/// a new store on the directory loads them all the same.
///
/// Ownership: nothing is allocated or taken.
/// NULL: `store` NULL returns `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`; a call that changes a session as it runs may fail with
/// `COATCHECK_STATUS_UNAVAILABLE`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_close(store: *const coatcheck_store) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        deliver(store.close(), None)
    }
}

/// Frees a store and every session in it (sessions in Redis stay there). Its background
/// threads (the sweeper, the restart log's, the Redis link's) are stopped and joined before
/// this returns, and a restart log is compacted into one snapshot and its directory unlocked.
/// The Redis link, if it is up, first sends the touches it batched, waiting at most
/// `redis_timeout_ms` for that; a Redis request already in flight (a heartbeat, a batch of
/// checks: up to a few seconds against a Redis that does not answer) finishes first.
///
/// Ownership: takes back ownership of `store`; the handle must not be used afterwards.
/// NULL: `store` NULL does nothing.
/// Threads: no other call may be using `store` during or after this call.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_free(store: *mut coatcheck_store) {
    ffi_boundary! {
        // SAFETY: documented: NULL or a live handle from `coatcheck_store_new`, freed once, not in
        // use by any other call.
        unsafe { free_box(store) }
    }
}

/// Stores `value` under a new random id and writes the id (`COATCHECK_GENERATED_ID_LEN` bytes,
/// printable ASCII, not NUL-terminated) to `id_buf`, its length to `*out_id_len`.
///
/// `ttl_ms` replaces the store's idle timeout for this session; 0 keeps the store's.
/// Returns `COATCHECK_STATUS_BUFFER_TOO_SMALL` (and writes the size needed to `*out_id_len`)
/// without creating anything if `id_buf_len` is under `COATCHECK_GENERATED_ID_LEN`;
/// `COATCHECK_STATUS_TOO_LARGE`, `COATCHECK_STATUS_STORE_FULL`.
///
/// Ownership: `value` is copied; the caller keeps ownership of every buffer.
/// NULL: `store`, `out_id_len` or `id_buf` (with a non-zero length) NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`; `value` may be NULL only when `value_len` is 0.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_create(
    store: *const coatcheck_store,
    value: *const u8,
    value_len: usize,
    ttl_ms: u64,
    id_buf: *mut std::ffi::c_char,
    id_buf_len: usize,
    out_id_len: *mut usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let value = try_bytes!(value, value_len);
        let buf = try_out_buf!(id_buf, id_buf_len);
        let out_len = try_out!(out_id_len);
        if !buf.fits(GENERATED_ID_LEN) {
            out_len.write(GENERATED_ID_LEN);
            return coatcheck_status::BufferTooSmall;
        }
        match store.create(value, ttl(ttl_ms)) {
            Ok(id) => emit(buf, id.as_bytes(), out_len),
            Err(e) => map_error(&e),
        }
    }
}

/// How `get` and `peek` differ.
#[derive(Clone, Copy)]
enum Read {
    Refresh,
    Peek,
}

fn read(
    store: &Store,
    id: &str,
    mut buf: OutBuf,
    out_len: Out<'_, usize>,
    out_version: Option<Out<'_, u64>>,
    how: Read,
) -> coatcheck_status {
    // The value is copied straight from the table into the caller's buffer, under the stripe's
    // shared lock, with no allocation in between.
    let copy = |view: coatcheck::SessionView<'_>| {
        if buf.write(view.value) {
            Ok((view.value.len(), view.version))
        } else {
            Err(view.value.len())
        }
    };
    let found = match how {
        Read::Refresh => store.get_with(id, copy),
        Read::Peek => store.peek_with(id, copy),
    };
    match found {
        Ok(Some(Ok((len, version)))) => {
            out_len.write(len);
            if let Some(out_version) = out_version {
                out_version.write(version);
            }
            coatcheck_status::Ok
        }
        Ok(Some(Err(needed))) => {
            out_len.write(needed);
            coatcheck_status::BufferTooSmall
        }
        Ok(None) => map_error(&coatcheck::Error::NotFound),
        Err(e) => map_error(&e),
    }
}

/// Copies the value of a live session into `buf`, writes its length to `*out_len` and its
/// version to `*out_version`, and slides the session's idle deadline.
///
/// Returns `COATCHECK_STATUS_NOT_FOUND` if there is no live session with this id,
/// `COATCHECK_STATUS_INVALID_ID` for a malformed id, and `COATCHECK_STATUS_BUFFER_TOO_SMALL`
/// if the value does not fit, with its length in `*out_len` (call again with a buffer that
/// size; pass NULL and 0 to ask for the size). A call that returns BUFFER_TOO_SMALL still
/// counts as a read: it slides the deadline, as the retry would.
///
/// Ownership: the caller owns `buf`; nothing is allocated.
/// NULL: `store`, `out_len`, or `id` / `buf` with a non-zero length NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`. `out_version` may be NULL if the version is not wanted.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_get(
    store: *const coatcheck_store,
    id: *const std::ffi::c_char,
    id_len: usize,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
    out_version: *mut u64,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let id = try_id!(id, id_len);
        let buf = try_out_buf!(buf, buf_len);
        let out_len = try_out!(out_len);
        let out_version = optional_out!(out_version);
        read(store, id, buf, out_len, out_version, Read::Refresh)
    }
}

/// Like `coatcheck_store_get`, but does not slide the idle deadline or mark the session used.
///
/// Ownership: the caller owns `buf`; nothing is allocated.
/// NULL: `store`, `out_len`, or `id` / `buf` with a non-zero length NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`. `out_version` may be NULL if the version is not wanted.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_peek(
    store: *const coatcheck_store,
    id: *const std::ffi::c_char,
    id_len: usize,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
    out_version: *mut u64,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let id = try_id!(id, id_len);
        let buf = try_out_buf!(buf, buf_len);
        let out_len = try_out!(out_len);
        let out_version = optional_out!(out_version);
        read(store, id, buf, out_len, out_version, Read::Peek)
    }
}

/// Writes `value` under `id`, creating the session if it does not exist, and writes the new
/// version (1 for a new session) to `*out_version`. Resets the idle deadline; `ttl_ms`
/// replaces the store's idle timeout for this session, 0 keeps it.
///
/// For the write at the end of a request that read the session, use
/// `coatcheck_store_set_if_version` or `coatcheck_store_update`: this call would bring back a
/// session destroyed since the read (a logout, `coatcheck_store_destroy_owner`).
///
/// Returns `COATCHECK_STATUS_INVALID_ID`, `COATCHECK_STATUS_TOO_LARGE`,
/// `COATCHECK_STATUS_STORE_FULL`; on any error the store is unchanged, but for a
/// `COATCHECK_STATUS_UNAVAILABLE` that says the restart log could not record the change (made
/// in memory only).
///
/// Ownership: `value` is copied; the caller keeps ownership of every buffer.
/// NULL: `store`, or `id` / `value` with a non-zero length NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`. `out_version` may be NULL if the version is not wanted.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_set(
    store: *const coatcheck_store,
    id: *const std::ffi::c_char,
    id_len: usize,
    value: *const u8,
    value_len: usize,
    ttl_ms: u64,
    out_version: *mut u64,
) -> coatcheck_status {
    write_value(
        store,
        id,
        id_len,
        value,
        value_len,
        out_version,
        |store, id, value| store.set(id, value, ttl(ttl_ms)),
    )
}

/// The body of the calls that write a value (`set`, `update`, `set_if_version`): their
/// arguments checked as each documents, then `write` given the store, the id and the value,
/// its new version delivered to `*out_version`. The panic boundary is here.
fn write_value(
    store: *const coatcheck_store,
    id: *const std::ffi::c_char,
    id_len: usize,
    value: *const u8,
    value_len: usize,
    out_version: *mut u64,
    write: impl FnOnce(&Store, &str, &[u8]) -> coatcheck::Result<u64>,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let id = try_id!(id, id_len);
        let value = try_bytes!(value, value_len);
        let out_version = optional_out!(out_version);
        deliver(write(store, id, value), out_version)
    }
}

/// Like `coatcheck_store_set`, but only if the session exists and is live: never creates one,
/// so a session destroyed or expired since the caller read it stays gone.
///
/// Returns `COATCHECK_STATUS_NOT_FOUND` if the session is gone, and the errors of
/// `coatcheck_store_set`; on any error the store is unchanged, as there.
///
/// Ownership: `value` is copied; the caller keeps ownership of every buffer.
/// NULL: `store`, or `id` / `value` with a non-zero length NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`. `out_version` may be NULL if the version is not wanted.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_update(
    store: *const coatcheck_store,
    id: *const std::ffi::c_char,
    id_len: usize,
    value: *const u8,
    value_len: usize,
    ttl_ms: u64,
    out_version: *mut u64,
) -> coatcheck_status {
    write_value(
        store,
        id,
        id_len,
        value,
        value_len,
        out_version,
        |store, id, value| store.update(id, value, ttl(ttl_ms)),
    )
}

/// Like `coatcheck_store_set`, but only if the session still has version `expected_version`
/// (as returned by `coatcheck_store_get`), so two requests that read the same version cannot
/// silently overwrite each other.
///
/// Returns `COATCHECK_STATUS_CONFLICT` if another write got there first,
/// `COATCHECK_STATUS_NOT_FOUND` if the session is gone, and the errors of
/// `coatcheck_store_set`; on any error the store is unchanged, as there.
///
/// Ownership: `value` is copied; the caller keeps ownership of every buffer.
/// NULL: `store`, or `id` / `value` with a non-zero length NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`. `out_version` may be NULL if the version is not wanted.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`; concurrent version-checked writes to one session let exactly one
/// win per version.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_set_if_version(
    store: *const coatcheck_store,
    id: *const std::ffi::c_char,
    id_len: usize,
    value: *const u8,
    value_len: usize,
    expected_version: u64,
    ttl_ms: u64,
    out_version: *mut u64,
) -> coatcheck_status {
    write_value(
        store,
        id,
        id_len,
        value,
        value_len,
        out_version,
        |store, id, value| store.set_if_version(id, value, expected_version, ttl(ttl_ms)),
    )
}

/// Slides a live session's idle deadline without touching its data; `ttl_ms` replaces its
/// idle timeout, 0 keeps it.
///
/// Returns `COATCHECK_STATUS_NOT_FOUND` if there is no live session with this id,
/// `COATCHECK_STATUS_INVALID_ID`.
///
/// Ownership: nothing is allocated or taken.
/// NULL: `store`, or `id` with a non-zero length NULL returns `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_touch(
    store: *const coatcheck_store,
    id: *const std::ffi::c_char,
    id_len: usize,
    ttl_ms: u64,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let id = try_id!(id, id_len);
        found(store.touch(id, ttl(ttl_ms)))
    }
}

/// Removes a session (logout).
///
/// Returns `COATCHECK_STATUS_NOT_FOUND` if there was no live session with this id,
/// `COATCHECK_STATUS_INVALID_ID`.
///
/// Ownership: nothing is allocated or taken.
/// NULL: `store`, or `id` with a non-zero length NULL returns `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_destroy(
    store: *const coatcheck_store,
    id: *const std::ffi::c_char,
    id_len: usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let id = try_id!(id, id_len);
        found(store.destroy(id))
    }
}

/// Moves a live session to a new random id in one step (use it at login, against session
/// fixation) and writes the new id to `new_id_buf`, its length to `*out_new_id_len`. The old id
/// no longer exists afterwards; data, owner and absolute deadline move with the session.
///
/// Returns `COATCHECK_STATUS_BUFFER_TOO_SMALL` (and writes the size needed) without moving
/// anything if `new_id_buf_len` is under `COATCHECK_GENERATED_ID_LEN`;
/// `COATCHECK_STATUS_NOT_FOUND`, `COATCHECK_STATUS_INVALID_ID`.
///
/// Ownership: the caller owns `new_id_buf`; nothing is allocated.
/// NULL: `store`, `out_new_id_len`, or `id` / `new_id_buf` with a non-zero length NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_regenerate(
    store: *const coatcheck_store,
    id: *const std::ffi::c_char,
    id_len: usize,
    new_id_buf: *mut std::ffi::c_char,
    new_id_buf_len: usize,
    out_new_id_len: *mut usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let id = try_id!(id, id_len);
        let buf = try_out_buf!(new_id_buf, new_id_buf_len);
        let out_len = try_out!(out_new_id_len);
        if !buf.fits(GENERATED_ID_LEN) {
            out_len.write(GENERATED_ID_LEN);
            return coatcheck_status::BufferTooSmall;
        }
        match store.regenerate(id) {
            Ok(Some(new_id)) => emit(buf, new_id.as_bytes(), out_len),
            Ok(None) => map_error(&coatcheck::Error::NotFound),
            Err(e) => map_error(&e),
        }
    }
}

/// Writes the number of sessions in this process's table to `*out_len` (O(1); expired sessions
/// count until the sweeper reclaims them; with `redis_url`, the local copies: see
/// `coatcheck_store_count`).
///
/// Ownership: nothing is allocated or taken.
/// NULL: `store` or `out_len` NULL returns `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_len(
    store: *const coatcheck_store,
    out_len: *mut usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let out = try_out!(out_len);
        deliver(Ok(store.len()), Some(out))
    }
}

/// Writes the number of live sessions to `*out_count`. With `redis_url`: every process's,
/// counted in Redis a SCAN step per round trip (each within `redis_timeout_ms`).
///
/// Returns `COATCHECK_STATUS_UNAVAILABLE` if Redis cannot answer.
///
/// Ownership: nothing is allocated or taken.
/// NULL: `store` or `out_count` NULL returns `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`; sessions written meanwhile may or may not be counted.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_count(
    store: *const coatcheck_store,
    out_count: *mut usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let out = try_out!(out_count);
        deliver(store.count(), Some(out))
    }
}

/// Removes every session, one stripe at a time. With `redis_url`: every process's, from Redis
/// first, then this process's copies.
///
/// Returns `COATCHECK_STATUS_UNAVAILABLE` if Redis cannot answer, whatever `redis_when_down`
/// says (a clear cannot be replayed later without removing sessions made after it); sessions
/// already removed from Redis stay removed. With `persist_path`, also while the restart log
/// cannot be written, as every write does.
///
/// Ownership: nothing is allocated or taken.
/// NULL: `store` NULL returns `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`; sessions written meanwhile may survive.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_clear(store: *const coatcheck_store) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        deliver(store.clear(), None)
    }
}

/// Writes the store's size and counters to `*out_stats`, the state and counters of its shared
/// tier (`tier_enabled` false and the `tier_` fields 0 for a store without `redis_url`), and
/// those of its restart log (`log_enabled` false and the `log_` fields 0 without
/// `persist_path`).
///
/// Ownership: the caller owns `*out_stats`.
/// NULL: `store` or `out_stats` NULL returns `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`; counters are read one stripe at a time, not as one snapshot.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_stats(
    store: *const coatcheck_store,
    out_stats: *mut coatcheck_stats,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let out = try_out!(out_stats);
        deliver(Ok(store.stats().into()), Some(out))
    }
}

/// Reclaims expired sessions now, as the background sweeper does every `sweep_interval_ms`,
/// and writes how many were reclaimed to `*out_reclaimed`. Stores built with
/// `background_sweeper = false` call this themselves.
///
/// Ownership: nothing is allocated or taken.
/// NULL: `store` NULL returns `COATCHECK_STATUS_NULL_ARGUMENT`; `out_reclaimed` may be NULL.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_sweep(
    store: *const coatcheck_store,
    out_reclaimed: *mut usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let out = optional_out!(out_reclaimed);
        deliver(Ok(store.sweep()), out)
    }
}

/// Files a live session under an owner key (a user id, say), replacing any previous owner, so
/// that `coatcheck_store_sessions_of`, `coatcheck_store_count_of` and
/// `coatcheck_store_destroy_owner` find it.
///
/// Returns `COATCHECK_STATUS_NOT_FOUND`, `COATCHECK_STATUS_INVALID_ID`,
/// `COATCHECK_STATUS_INVALID_UTF8` for an owner that is not UTF-8, and
/// `COATCHECK_STATUS_INVALID_ARGUMENT` for an empty owner or one longer than
/// `COATCHECK_MAX_OWNER_LEN`.
///
/// Ownership: `owner` is copied; the caller keeps ownership of every buffer.
/// NULL: `store`, or `id` / `owner` with a non-zero length NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_set_owner(
    store: *const coatcheck_store,
    id: *const std::ffi::c_char,
    id_len: usize,
    owner: *const std::ffi::c_char,
    owner_len: usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let id = try_id!(id, id_len);
        let owner = try_text!(owner, owner_len);
        deliver(store.set_owner(id, Some(owner)), None)
    }
}

/// Removes a live session from its owner, if it has one.
///
/// Returns `COATCHECK_STATUS_NOT_FOUND`, `COATCHECK_STATUS_INVALID_ID`.
///
/// Ownership: nothing is allocated or taken.
/// NULL: `store`, or `id` with a non-zero length NULL returns `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_clear_owner(
    store: *const coatcheck_store,
    id: *const std::ffi::c_char,
    id_len: usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let id = try_id!(id, id_len);
        deliver(store.set_owner(id, None), None)
    }
}

/// Lists the ids of `owner`'s live sessions, in byte order, into `buf` as NUL-terminated
/// strings back to back (`"id1\0id2\0"`); writes the bytes used to `*out_len` and the number of
/// ids to `*out_count`. An owner with no sessions gives 0 and 0.
///
/// Returns `COATCHECK_STATUS_BUFFER_TOO_SMALL` with the size needed in `*out_len` (the list can
/// grow between two calls, so call in a loop), `COATCHECK_STATUS_INVALID_UTF8`,
/// `COATCHECK_STATUS_INVALID_ARGUMENT` for an empty or too long owner.
///
/// Ownership: the caller owns `buf`; nothing is allocated.
/// NULL: `store`, `out_len`, or `owner` / `buf` with a non-zero length NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`; `out_count` may be NULL.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_sessions_of(
    store: *const coatcheck_store,
    owner: *const std::ffi::c_char,
    owner_len: usize,
    buf: *mut std::ffi::c_char,
    buf_len: usize,
    out_len: *mut usize,
    out_count: *mut usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let owner = try_text!(owner, owner_len);
        let buf = try_out_buf!(buf, buf_len);
        let out_len = try_out!(out_len);
        let out_count = optional_out!(out_count);
        let ids = match store.sessions_of(owner) {
            Ok(ids) => ids,
            Err(e) => return map_error(&e),
        };
        let mut list = Vec::with_capacity(ids.iter().map(|id| id.len() + 1).sum());
        for id in &ids {
            list.extend_from_slice(id.as_bytes());
            list.push(0);
        }
        match emit(buf, &list, out_len) {
            coatcheck_status::Ok => deliver(Ok(ids.len()), out_count),
            status => status,
        }
    }
}

/// Writes how many live sessions `owner` has to `*out_count`.
///
/// Returns `COATCHECK_STATUS_INVALID_UTF8`, `COATCHECK_STATUS_INVALID_ARGUMENT` for an empty or
/// too long owner.
///
/// Ownership: nothing is allocated or taken.
/// NULL: `store`, `out_count`, or `owner` with a non-zero length NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_count_of(
    store: *const coatcheck_store,
    owner: *const std::ffi::c_char,
    owner_len: usize,
    out_count: *mut usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let owner = try_text!(owner, owner_len);
        let out = try_out!(out_count);
        deliver(store.count_of(owner), Some(out))
    }
}

/// Destroys every session of `owner` except `keep_id` ("log out everywhere else") and writes how
/// many were destroyed to `*out_destroyed`. An empty `keep_id` (NULL, 0) keeps none. Sessions
/// filed under the owner while this runs may survive.
///
/// Returns `COATCHECK_STATUS_INVALID_UTF8`, `COATCHECK_STATUS_INVALID_ARGUMENT` for an empty or
/// too long owner, `COATCHECK_STATUS_INVALID_ID` for a malformed non-empty `keep_id`.
///
/// Ownership: nothing is allocated or taken.
/// NULL: `store`, or `owner` / `keep_id` with a non-zero length NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`; `out_destroyed` may be NULL.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_destroy_owner(
    store: *const coatcheck_store,
    owner: *const std::ffi::c_char,
    owner_len: usize,
    keep_id: *const std::ffi::c_char,
    keep_id_len: usize,
    out_destroyed: *mut usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let owner = try_text!(owner, owner_len);
        let keep = try_bytes!(keep_id, keep_id_len);
        let keep = if keep.is_empty() {
            None
        } else {
            Some(try_id!(keep_id, keep_id_len))
        };
        let out = optional_out!(out_destroyed);
        deliver(store.destroy_owner(owner, keep), out)
    }
}

/// Signs a session id for a cookie: writes `<id>.<signature>` (HMAC-SHA256 with the store's
/// first secret, the `cookie-signature` format of express-session; not NUL-terminated) to
/// `token_buf` and its length to `*out_token_len`. A generated id gives
/// `COATCHECK_GENERATED_TOKEN_LEN` bytes, any id at most `COATCHECK_MAX_TOKEN_LEN`.
///
/// Returns `COATCHECK_STATUS_BUFFER_TOO_SMALL` with the size needed,
/// `COATCHECK_STATUS_INVALID_ID`, `COATCHECK_STATUS_INVALID_CONFIG` if the store has no
/// secrets.
///
/// Ownership: the caller owns `token_buf`; nothing is allocated.
/// NULL: `store`, `out_token_len`, or `id` / `token_buf` with a non-zero length NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_sign(
    store: *const coatcheck_store,
    id: *const std::ffi::c_char,
    id_len: usize,
    token_buf: *mut std::ffi::c_char,
    token_buf_len: usize,
    out_token_len: *mut usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let id = try_id!(id, id_len);
        let buf = try_out_buf!(token_buf, token_buf_len);
        let out_len = try_out!(out_token_len);
        match store.sign(id) {
            Ok(token) => emit(buf, token.as_bytes(), out_len),
            Err(e) => map_error(&e),
        }
    }
}

/// Verifies a token from a cookie against every secret of the store. On success the session id
/// is the first `*out_id_len` bytes of `token` itself (nothing is copied).
///
/// Returns `COATCHECK_STATUS_BAD_SIGNATURE` for a token that is forged, tampered with, not
/// canonical, or does not hold a valid id (counted in `signature_failures`);
/// `COATCHECK_STATUS_INVALID_CONFIG` if the store has no secrets.
///
/// Ownership: nothing is allocated; the id borrows from the caller's `token`.
/// NULL: `store`, `out_id_len`, or `token` with a non-zero length NULL returns
/// `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call concurrently with any call on the same store except
/// `coatcheck_store_free`.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_store_unsign(
    store: *const coatcheck_store,
    token: *const std::ffi::c_char,
    token_len: usize,
    out_id_len: *mut usize,
) -> coatcheck_status {
    ffi_boundary! {
        let store = try_ref!(store);
        let token = try_bytes!(token, token_len);
        let out = try_out!(out_id_len);
        // A token that is not UTF-8 cannot verify: the replacement characters land either in
        // the signature (which then does not decode) or in the id (which then is not printable
        // ASCII). Passing it through lets the core count the failure like any other.
        let token = String::from_utf8_lossy(token);
        match store.unsign(&token) {
            // Only a borrowed (valid UTF-8) token can verify, so the id is a prefix of the
            // caller's bytes; the guard keeps that true even if the core changed.
            Ok(id) if matches!(token, std::borrow::Cow::Borrowed(_)) => {
                out.write(id.len());
                coatcheck_status::Ok
            }
            Ok(_) => map_error(&coatcheck::Error::BadSignature),
            Err(e) => map_error(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coatcheck::Config;

    #[test]
    fn token_length_constants_match_the_signer() {
        let mut config = Config::default();
        config.background_sweeper = false;
        config.secrets = vec![b"secret".to_vec()];
        let store = Store::new(config).unwrap();
        let id = coatcheck::generate_id();
        assert_eq!(
            store.sign(&id).unwrap().len(),
            COATCHECK_GENERATED_TOKEN_LEN
        );
        let longest = "x".repeat(MAX_ID_LEN);
        assert_eq!(store.sign(&longest).unwrap().len(), COATCHECK_MAX_TOKEN_LEN);
    }
}
