//! `coatcheck._native.Store`: the core [`coatcheck::Store`] at the level of signed tokens.
//!
//! Reads (`get`, `get_with_version`, `touch`, `destroy`, `regenerate`, `unsign`) answer
//! `None`/`False` for a forged, tampered, unknown or expired token; writes (`set`,
//! `set_if_version`, `set_owner`) raise a `SessionError`. Values cross as `bytes`.
//!
//! In a store of this process only, the GIL stays held for single-session calls: they take
//! well under a microsecond, less than releasing and re-taking the GIL costs. With
//! `redis_url` every call may wait on Redis (at most `redis_timeout`), so every call releases
//! the GIL. It is always released around `clear` and `sweep`, which walk the whole table.
//!
//! No Python code runs while a core lock is held. A store that never waits reads with the GIL
//! held, so a read builds its `bytes` straight from the session under the stripe's shared lock:
//! making a `bytes` object runs no Python code (`bytes` are not tracked by the garbage
//! collector, so no collection and no finalizer can start), and it saves copying the value
//! twice. A store that may wait reads without the GIL, so it copies the value out first.

use std::borrow::Cow;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::config::{StoreArgs, require_int, ttl};
use crate::error::{Error, invalid_argument};

type Core = coatcheck::Store;

/// A server-side session store living in this process.
#[pyclass(frozen, weakref, module = "coatcheck._native", name = "Store")]
pub struct PyStore {
    store: Arc<Core>,
    /// Whether sessions are shared through Redis.
    shared: bool,
    /// Whether calls may wait on the network or the disk (Redis, or a restart log synced on
    /// every write), and so must release the GIL.
    waits: bool,
}

/// A token argument as text, or `None` for a `str` that is not valid Unicode (lone
/// surrogates): no signed token looks like that, so it is treated as a token that fails.
fn text<'a>(token: &'a Bound<'_, PyString>) -> Option<Cow<'a, str>> {
    token.to_cow().ok()
}

/// An owner argument as text: an owner that is not valid Unicode (lone surrogates) is refused
/// like any other malformed owner.
fn owner_text<'a>(owner: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    Ok(owner.to_cow().map_err(|_| {
        Error(coatcheck::Error::InvalidArgument(
            "owner must be valid Unicode text",
        ))
    })?)
}

fn forged() -> Error {
    Error(coatcheck::Error::BadSignature)
}

/// A version argument: an `int` the store returned, so 0 to 2**64 - 1. A `bool` or another
/// type is a `TypeError`, any other int an `InvalidArgumentError`, as the other arguments.
fn version(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    require_int(value, "version")?;
    value
        .extract::<u64>()
        .map_err(|_| invalid_argument("version must be one the store returned (0 to 2**64 - 1)"))
}

impl PyStore {
    /// The id inside a token, or `None` for a token that does not verify.
    fn id_of<'t>(&self, token: &'t str) -> Option<&'t str> {
        self.store.unsign(token).ok()
    }

    /// Runs `f` on the core, without the GIL if it may wait on the network.
    fn core<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&Core) -> T + Send) -> T {
        let store = &*self.store;
        if self.waits {
            py.detach(|| f(store))
        } else {
            f(store)
        }
    }

    /// What `build` makes of a live session's value and version, sliding its idle deadline
    /// (see the module doc for where the value is read); `None` for a bad token or a session
    /// that is gone, and an error only for Redis down with `redis_when_down="fail"`, which is
    /// not a logged-out user.
    fn read<T>(
        &self,
        py: Python<'_>,
        token: &Bound<'_, PyString>,
        slide: bool,
        build: impl Fn(&[u8], u64) -> PyResult<T>,
    ) -> PyResult<Option<T>> {
        let Some(token) = text(token) else {
            return Ok(None);
        };
        let Some(id) = self.id_of(&token) else {
            return Ok(None);
        };
        let found = if self.waits {
            self.core(py, |s| {
                let copy = |s: coatcheck::SessionView<'_>| (s.value.to_vec(), s.version);
                if slide {
                    s.get_with(id, copy)
                } else {
                    s.peek_with(id, copy)
                }
            })
            .map(|found| found.map(|(value, version)| build(&value, version)))
        } else if slide {
            self.store.get_with(id, |s| build(s.value, s.version))
        } else {
            self.store.peek_with(id, |s| build(s.value, s.version))
        };
        match found {
            Ok(found) => found.transpose(),
            Err(e @ coatcheck::Error::Unavailable(_)) => Err(Error(e).into()),
            Err(_) => Ok(None),
        }
    }

    /// The id inside a token, or `BadSignatureError`.
    fn require_id<'t>(&self, token: &'t str) -> Result<&'t str, Error> {
        Ok(self.store.unsign(token)?)
    }
}

#[pymethods]
impl PyStore {
    #[new]
    #[pyo3(
        signature = (secret, *, idle_timeout, absolute_timeout=None, max_sessions=None, max_bytes=None, max_session_bytes=None, shards=None, sweep_interval=None, redis_url=None, redis_key_prefix=None, redis_timeout=None, redis_when_down=None, redis_strict=None, persist_path=None, persist_fsync=None),
        text_signature = "(secret, *, idle_timeout, absolute_timeout=None, max_sessions=None, max_bytes=None, max_session_bytes=1048576, shards=None, sweep_interval=1.0, redis_url=None, redis_key_prefix='coatcheck:', redis_timeout=0.05, redis_when_down='serve_local', redis_strict=False, persist_path=None, persist_fsync='interval')"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        secret: &Bound<'_, PyAny>,
        idle_timeout: &Bound<'_, PyAny>,
        absolute_timeout: Option<&Bound<'_, PyAny>>,
        max_sessions: Option<&Bound<'_, PyAny>>,
        max_bytes: Option<&Bound<'_, PyAny>>,
        max_session_bytes: Option<&Bound<'_, PyAny>>,
        shards: Option<&Bound<'_, PyAny>>,
        sweep_interval: Option<&Bound<'_, PyAny>>,
        redis_url: Option<&Bound<'_, PyAny>>,
        redis_key_prefix: Option<&Bound<'_, PyAny>>,
        redis_timeout: Option<&Bound<'_, PyAny>>,
        redis_when_down: Option<&Bound<'_, PyAny>>,
        redis_strict: Option<&Bound<'_, PyAny>>,
        persist_path: Option<&Bound<'_, PyAny>>,
        persist_fsync: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let config = StoreArgs {
            secret,
            idle_timeout,
            absolute_timeout,
            max_sessions,
            max_bytes,
            max_session_bytes,
            shards,
            sweep_interval,
            redis_url,
            redis_key_prefix,
            redis_timeout,
            redis_when_down,
            redis_strict,
            persist_path,
            persist_fsync,
        }
        .to_config()?;
        let shared = config.redis_url.is_some();
        let waits = shared
            || (config.persist_path.is_some() && config.persist_fsync == coatcheck::Fsync::Always);
        // Building a store on Redis waits (at most a second) for the first connection; one
        // with a restart log reads its files.
        let store = Arc::new(py.detach(|| Core::new(config)).map_err(Error)?);
        Ok(Self {
            store,
            shared,
            waits,
        })
    }

    /// Seconds a session lives without being read or written, unless a TTL of its own says
    /// otherwise.
    #[getter]
    fn idle_timeout(&self) -> f64 {
        self.store.idle_timeout().as_secs_f64()
    }

    /// Seconds a session lives at most from its creation, or `None`.
    #[getter]
    fn absolute_timeout(&self) -> Option<f64> {
        self.store.absolute_timeout().map(|d| d.as_secs_f64())
    }

    /// Whether sessions are shared through Redis (`redis_url`): calls may then wait on the
    /// network, at most `redis_timeout`, with the GIL released.
    #[getter]
    fn shared(&self) -> bool {
        self.shared
    }

    /// Whether calls may wait on the network or the disk: a store on Redis, or one whose
    /// restart log syncs every change (`persist_fsync="always"`). They do so with the GIL
    /// released; the async adapters then run them in a worker thread.
    #[getter]
    fn waits_on_io(&self) -> bool {
        self.waits
    }

    /// Stores `data` as a new session and returns its signed token.
    #[pyo3(signature = (data, ttl=None))]
    fn create(
        &self,
        py: Python<'_>,
        data: &[u8],
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let ttl = self::ttl(ttl)?;
        let id = self.core(py, |s| s.create(data, ttl)).map_err(Error)?;
        Ok(self.store.sign(&id).map_err(Error)?)
    }

    /// The session's data, sliding its idle deadline; `None` if the token is bad or the
    /// session is gone.
    fn get<'py>(
        &self,
        py: Python<'py>,
        token: &Bound<'_, PyString>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.read(py, token, true, |value, _| bytes(py, value))
    }

    /// The session's data without sliding its idle deadline or marking it used (as a
    /// backend's `exists` checks a key); `None` if the token is bad or the session is gone.
    fn peek<'py>(
        &self,
        py: Python<'py>,
        token: &Bound<'_, PyString>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.read(py, token, false, |value, _| bytes(py, value))
    }

    /// `(data, version)` of a live session, sliding its idle deadline; `None` otherwise.
    fn get_with_version<'py>(
        &self,
        py: Python<'py>,
        token: &Bound<'_, PyString>,
    ) -> PyResult<Option<(Bound<'py, PyBytes>, u64)>> {
        self.read(py, token, true, |value, version| {
            Ok((bytes(py, value)?, version))
        })
    }

    /// Replaces a live session's data; returns its new version.
    #[pyo3(signature = (token, data, ttl=None))]
    fn set(
        &self,
        py: Python<'_>,
        token: &Bound<'_, PyString>,
        data: &[u8],
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let ttl = self::ttl(ttl)?;
        let token = text(token).ok_or_else(forged)?;
        let id = self.require_id(&token)?;
        // Through a token only a live session may be written: never create one.
        Ok(self.core(py, |s| s.update(id, data, ttl)).map_err(Error)?)
    }

    /// Replaces a live session's data only if it still has `version`; returns the new version.
    #[pyo3(signature = (token, data, version, ttl=None))]
    fn set_if_version(
        &self,
        py: Python<'_>,
        token: &Bound<'_, PyString>,
        data: &[u8],
        version: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let version = self::version(version)?;
        let ttl = self::ttl(ttl)?;
        let token = text(token).ok_or_else(forged)?;
        let id = self.require_id(&token)?;
        Ok(self
            .core(py, |s| s.set_if_version(id, data, version, ttl))
            .map_err(Error)?)
    }

    /// Slides a live session's idle deadline; whether it was live.
    #[pyo3(signature = (token, ttl=None))]
    fn touch(
        &self,
        py: Python<'_>,
        token: &Bound<'_, PyString>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let ttl = self::ttl(ttl)?;
        let Some(token) = text(token) else {
            return Ok(false);
        };
        let Some(id) = self.id_of(&token) else {
            return Ok(false);
        };
        Ok(self.core(py, |s| s.touch(id, ttl)).map_err(Error)?)
    }

    /// Removes a session; whether a live one was removed.
    fn destroy(&self, py: Python<'_>, token: &Bound<'_, PyString>) -> PyResult<bool> {
        let Some(token) = text(token) else {
            return Ok(false);
        };
        let Some(id) = self.id_of(&token) else {
            return Ok(false);
        };
        Ok(self.core(py, |s| s.destroy(id)).map_err(Error)?)
    }

    /// Moves a live session to a new id (use it at login); the new token, or `None`.
    fn regenerate(&self, py: Python<'_>, token: &Bound<'_, PyString>) -> PyResult<Option<String>> {
        let Some(token) = text(token) else {
            return Ok(None);
        };
        let Some(id) = self.id_of(&token) else {
            return Ok(None);
        };
        match self.core(py, |s| s.regenerate(id)).map_err(Error)? {
            Some(new_id) => Ok(Some(self.store.sign(&new_id).map_err(Error)?)),
            None => Ok(None),
        }
    }

    /// A token for `id`, signed with the first secret.
    fn sign(&self, id: &Bound<'_, PyString>) -> PyResult<String> {
        // A str that is not valid Unicode (lone surrogates) is no id, like any other non-ASCII.
        let id = text(id).ok_or(Error(coatcheck::Error::InvalidId(
            "contains bytes outside printable ASCII",
        )))?;
        Ok(self.store.sign(&id).map_err(Error)?)
    }

    /// The id inside a token if it verifies under any secret, else `None`.
    fn unsign(&self, token: &Bound<'_, PyString>) -> Option<String> {
        self.id_of(&text(token)?).map(str::to_owned)
    }

    /// Files a live session under `owner` (a user id, say), or removes it from its owner
    /// with `None`.
    #[pyo3(signature = (token, owner))]
    fn set_owner(
        &self,
        py: Python<'_>,
        token: &Bound<'_, PyString>,
        owner: Option<&Bound<'_, PyString>>,
    ) -> PyResult<()> {
        let token = text(token).ok_or_else(forged)?;
        let id = self.require_id(&token)?;
        let owner = owner.map(owner_text).transpose()?;
        Ok(self
            .core(py, |s| s.set_owner(id, owner.as_deref()))
            .map_err(Error)?)
    }

    /// Ids of the live sessions of `owner`: names to list and compare (the current one is
    /// `unsign(token)`), never tokens that would open those sessions.
    fn sessions_of(&self, py: Python<'_>, owner: &Bound<'_, PyString>) -> PyResult<Vec<String>> {
        let owner = owner_text(owner)?;
        Ok(self.core(py, |s| s.sessions_of(&owner)).map_err(Error)?)
    }

    /// Destroys every session of `owner` except the one of `except_token`; how many.
    #[pyo3(signature = (owner, except_token=None))]
    fn destroy_owner(
        &self,
        py: Python<'_>,
        owner: &Bound<'_, PyString>,
        except_token: Option<&Bound<'_, PyString>>,
    ) -> PyResult<usize> {
        let owner = owner_text(owner)?;
        let keep = except_token
            .map(|t| text(t).ok_or_else(forged))
            .transpose()?;
        let keep = keep.as_deref().map(|t| self.require_id(t)).transpose()?;
        Ok(self
            .core(py, |s| s.destroy_owner(&owner, keep))
            .map_err(Error)?)
    }

    /// Size and counters since the store was built.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        // In a child forked with the store on Redis (gunicorn --preload), the first call
        // reconnects, waiting up to a second (less when refused): without the GIL, as every
        // call that may wait.
        let s = if self.waits {
            py.detach(|| self.store.stats())
        } else {
            self.store.stats()
        };
        let dict = PyDict::new(py);
        dict.set_item("sessions", s.sessions)?;
        dict.set_item("bytes", s.bytes)?;
        dict.set_item("hits", s.hits)?;
        dict.set_item("misses", s.misses)?;
        dict.set_item("inserts", s.inserts)?;
        dict.set_item("updates", s.updates)?;
        dict.set_item("destroys", s.destroys)?;
        dict.set_item("expirations", s.expirations)?;
        dict.set_item("evicted_unread", s.evicted_unread)?;
        dict.set_item("evicted_lru", s.evicted_lru)?;
        dict.set_item("signature_failures", s.signature_failures)?;
        dict.set_item("conflicts", s.conflicts)?;
        if let Some(t) = s.tier {
            dict.set_item("tier_connected", u64::from(t.connected))?;
            dict.set_item("tier_near_hits", t.near_hits)?;
            dict.set_item("tier_near_misses", t.near_misses)?;
            dict.set_item("tier_served_unverified", t.served_unverified)?;
            dict.set_item("tier_invalidations", t.invalidations)?;
            dict.set_item("tier_round_trips", t.round_trips)?;
            dict.set_item("tier_failures", t.failures)?;
            dict.set_item("tier_disconnects", t.disconnects)?;
            dict.set_item("tier_down_ms", t.down_ms)?;
            dict.set_item("tier_restored", t.restored)?;
            dict.set_item("tier_replay_conflicts", t.replay_conflicts)?;
            dict.set_item("tier_touches_sent", t.touches_sent)?;
            dict.set_item("tier_fills_refused", t.fills_refused)?;
            dict.set_item("tier_to_replay", t.to_replay)?;
        }
        if let Some(l) = s.log {
            dict.set_item("log_records", l.records)?;
            dict.set_item("log_bytes", l.log_bytes)?;
            dict.set_item("log_snapshot_bytes", l.snapshot_bytes)?;
            dict.set_item("log_compactions", l.compactions)?;
            dict.set_item("log_restored", l.restored)?;
            dict.set_item("log_failures", l.failures)?;
        }
        Ok(dict)
    }

    /// Removes every session. With `redis_url`: every process's, from Redis first;
    /// `UnavailableError` if Redis cannot answer (whatever `redis_when_down` says).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let store = &*self.store;
        Ok(py.detach(|| store.clear()).map_err(Error)?)
    }

    /// How many live sessions there are. With `redis_url`: every process's, counted in Redis
    /// (`len()` is this process's table); `UnavailableError` if Redis cannot answer.
    fn count(&self, py: Python<'_>) -> PyResult<usize> {
        let store = &*self.store;
        Ok(py.detach(|| store.count()).map_err(Error)?)
    }

    /// Ids of all live sessions: names to list and compare, never tokens. With `redis_url`:
    /// every process's, listed from Redis (`InvalidConfigError` without a secret to seal them
    /// there, `UnavailableError` if Redis cannot answer).
    fn ids(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let store = &*self.store;
        Ok(py.detach(|| store.ids()).map_err(Error)?)
    }

    /// Stops the store's background threads and gives back what it holds besides memory: the
    /// Redis connection, and the restart log, which is compacted into one snapshot and unlocks
    /// its directory, so that a new store may open it in this process. Without `redis_url` the
    /// sessions stay readable; writes to a store with `persist_path`, and every call on a
    /// store with `redis_url` that needs Redis, then raise `UnavailableError`. Idempotent; the
    /// store's garbage collection does the same.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let store = &*self.store;
        Ok(py.detach(|| store.close()).map_err(Error)?)
    }

    /// Reclaims expired sessions now (the sweeper does it every `sweep_interval`); how many.
    fn sweep(&self, py: Python<'_>) -> PyResult<usize> {
        let store = &*self.store;
        Ok(py.detach(|| store.sweep()))
    }

    /// Sessions in this process's table; expired ones count until the sweeper reclaims them.
    /// With `redis_url`, the local copies: `count()` counts every process's.
    fn __len__(&self) -> usize {
        self.store.len()
    }

    fn __repr__(&self) -> String {
        format!("<coatcheck.Store sessions={}>", self.store.len())
    }
}

impl Drop for PyStore {
    /// The store's garbage collection closes it (this object holds the binding's only handle):
    /// joins its threads, compacts its restart log and sends the touches batched for Redis.
    /// With the GIL released, which every other Python thread would otherwise wait for, as
    /// long as a compaction. Releasing it keeps an exception being raised as it was (it lives
    /// in the thread's state); no Python code runs here.
    fn drop(&mut self) {
        let store = &*self.store;
        let _ = Python::try_attach(|py| py.detach(|| store.close()));
    }
}

/// `value` as Python `bytes`; `MemoryError` if Python cannot allocate them (`PyBytes::new`
/// panics instead).
fn bytes<'py>(py: Python<'py>, value: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, value.len(), |buffer| {
        buffer.copy_from_slice(value);
        Ok(())
    })
}
