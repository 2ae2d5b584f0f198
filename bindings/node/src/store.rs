//! `NativeStore`: the core store as a napi class, plus the process-wide registry of named
//! stores that lets `worker_threads` share one table.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coatcheck::{Config, Store};
use std::panic::{AssertUnwindSafe, catch_unwind};

use napi::bindgen_prelude::{Either, External, Object, ToNapiValue};
use napi::{Env, JsString};
use napi_derive::napi;

use crate::direct::StoreHandle;
use crate::error::{Result, internal, invalid_argument, invalid_config, to_napi};
use crate::text::Text;
use crate::{settling, waiting};

/// Options of the native store. Times are milliseconds.
#[napi(object)]
#[derive(Default, Clone)]
pub struct NativeOptions {
    /// Stores built with the same name in one process (any worker thread) share one table.
    pub name: Option<String>,
    /// Default idle timeout in ms (a per-call TTL overrides it). Default: one day.
    pub ttl_ms: Option<f64>,
    /// Hard lifetime from creation, in ms. Default: none.
    pub absolute_timeout_ms: Option<f64>,
    pub max_sessions: Option<f64>,
    pub max_bytes: Option<f64>,
    /// Largest serialized session in bytes. Default: 1 MiB.
    pub max_session_bytes: Option<f64>,
    /// Lock stripes, a power of two. Default: from the number of cores.
    pub shards: Option<f64>,
    /// Sweeper period in ms. Default: 1000.
    pub sweep_interval_ms: Option<f64>,
    /// Whether reads slide the idle deadline. Default: true.
    pub slide_on_read: Option<bool>,
    /// Share sessions through Redis: `redis://[user:password@]host:port[/db]`.
    pub redis_url: Option<String>,
    /// Prefix of the store's Redis keys. Default: `coatcheck:`.
    pub redis_key_prefix: Option<String>,
    /// Longest a call waits for Redis, in ms. Default: 50.
    pub redis_timeout_ms: Option<f64>,
    /// `serveLocal` (default) or `fail`: what calls do while Redis cannot be reached.
    pub redis_when_down: Option<String>,
    /// Check every read against Redis. Default: false.
    pub redis_strict: Option<bool>,
    /// Secrets that seal the session ids kept in Redis (the first seals, all open).
    pub secrets: Option<Vec<String>>,
    /// Keep sessions across restarts: a directory for the restart log (its parent must exist).
    pub persist_path: Option<String>,
    /// `never`, `interval` (default) or `always`: when the restart log is synced to disk.
    pub persist_fsync: Option<String>,
}

#[napi(object)]
pub struct NativeEntry {
    pub id: String,
    pub value: String,
}

#[napi(object)]
pub struct NativeStats {
    pub sessions: f64,
    pub bytes: f64,
    pub hits: f64,
    pub misses: f64,
    pub inserts: f64,
    pub updates: f64,
    pub destroys: f64,
    pub expirations: f64,
    pub evicted_unread: f64,
    pub evicted_lru: f64,
    pub signature_failures: f64,
    pub conflicts: f64,
    /// The Redis tier's state and counters, if the store has `redisUrl`.
    pub tier: Option<NativeTierStats>,
    /// The restart log's counters, if the store has `persistPath`.
    pub log: Option<NativeLogStats>,
}

#[napi(object)]
pub struct NativeLogStats {
    pub records: f64,
    pub log_bytes: f64,
    pub snapshot_bytes: f64,
    pub compactions: f64,
    pub restored: f64,
    pub failures: f64,
}

#[napi(object)]
pub struct NativeTierStats {
    pub connected: bool,
    pub near_hits: f64,
    pub near_misses: f64,
    pub served_unverified: f64,
    pub invalidations: f64,
    pub round_trips: f64,
    pub failures: f64,
    pub disconnects: f64,
    pub down_ms: f64,
    pub restored: f64,
    pub replay_conflicts: f64,
    pub touches_sent: f64,
    pub fills_refused: f64,
    pub to_replay: f64,
}

/// Named stores of this process. The addon is loaded once per process, so every worker
/// thread sees the same registry. A named store lives until the process exits.
static NAMED: LazyLock<Mutex<HashMap<String, (String, Store)>>> = LazyLock::new(Default::default);

#[napi]
pub struct NativeStore {
    store: Store,
    /// The name the store is registered under, if any: closing it unregisters it.
    name: Option<String>,
}

fn millis(ms: f64, what: &str) -> Result<Duration> {
    if !ms.is_finite() || ms <= 0.0 {
        return Err(invalid_argument(&format!(
            "{what} must be a positive number of milliseconds"
        )));
    }
    Duration::try_from_secs_f64(ms / 1000.0)
        .map_err(|_| invalid_argument(&format!("{what} is out of range")))
}

fn count(n: f64, what: &str) -> Result<usize> {
    if !n.is_finite() || n < 1.0 || n.fract() != 0.0 || n > 9.0e15 {
        return Err(invalid_config(&format!(
            "{what} must be a positive integer"
        )));
    }
    Ok(n as usize)
}

pub(crate) fn ttl(ttl_ms: Option<f64>) -> Result<Option<Duration>> {
    ttl_ms.map(|ms| millis(ms, "ttl")).transpose()
}

fn config_from(options: &NativeOptions) -> Result<Config> {
    let mut config = Config::default();
    let as_config_error = |e: napi::Error<crate::error::Code>| invalid_config(&e.reason);
    if let Some(ms) = options.ttl_ms {
        config.idle_timeout = millis(ms, "ttl").map_err(as_config_error)?;
    }
    if let Some(ms) = options.absolute_timeout_ms {
        config.absolute_timeout = Some(millis(ms, "absoluteTimeout").map_err(as_config_error)?);
    }
    if let Some(ms) = options.sweep_interval_ms {
        config.sweep_interval = millis(ms, "sweepInterval").map_err(as_config_error)?;
    }
    config.max_sessions = options
        .max_sessions
        .map(|n| count(n, "maxSessions"))
        .transpose()?;
    config.max_bytes = options
        .max_bytes
        .map(|n| count(n, "maxBytes"))
        .transpose()?;
    if let Some(n) = options.max_session_bytes {
        config.max_session_bytes = count(n, "maxSessionBytes")?;
    }
    config.shards = options.shards.map(|n| count(n, "shards")).transpose()?;
    config.slide_on_read = options.slide_on_read.unwrap_or(true);
    config.redis_url = options.redis_url.clone();
    config.secrets = options
        .secrets
        .iter()
        .flatten()
        .map(|secret| secret.as_bytes().to_vec())
        .collect();
    if let Some(prefix) = &options.redis_key_prefix {
        config.redis_key_prefix = prefix.clone();
    }
    if let Some(ms) = options.redis_timeout_ms {
        config.redis_timeout = millis(ms, "redisTimeout").map_err(as_config_error)?;
    }
    config.redis_when_down = match options.redis_when_down.as_deref() {
        None | Some("serveLocal") => coatcheck::WhenRedisDown::ServeLocal,
        Some("fail") => coatcheck::WhenRedisDown::Fail,
        Some(other) => {
            return Err(invalid_config(&format!(
                "redisWhenDown must be 'serveLocal' or 'fail', not {other:?}"
            )));
        }
    };
    config.redis_strict = options.redis_strict.unwrap_or(false);
    config.persist_path = options.persist_path.as_ref().map(std::path::PathBuf::from);
    config.persist_fsync = match options.persist_fsync.as_deref() {
        None | Some("interval") => coatcheck::Fsync::Interval,
        Some("never") => coatcheck::Fsync::Never,
        Some("always") => coatcheck::Fsync::Always,
        Some(other) => {
            return Err(invalid_config(&format!(
                "persistFsync must be 'never', 'interval' or 'always', not {other:?}"
            )));
        }
    };
    config.validate().map_err(to_napi)?;
    Ok(config)
}

/// What must match for two stores of the same name to share a table: the settings they take
/// effect with, so that an option left out and one given at its default match. The secrets
/// count too (a store given another secret would sign with the first store's), as a hash, so
/// that the registry keeps no second copy of them.
fn fingerprint(config: &Config) -> String {
    let secrets = {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut hasher = DefaultHasher::new();
        config.secrets.hash(&mut hasher);
        hasher.finish()
    };
    format!(
        "{:?}/{:?}/{:?}/{:?}/{:?}/{:?}/{:?}/{:?}/{:?}/{:?}/{:?}/{:?}/{:?}/{:?}/{:?}/{secrets:x}",
        config.idle_timeout,
        config.absolute_timeout,
        config.max_sessions,
        config.max_bytes,
        config.max_session_bytes,
        config.shards,
        config.sweep_interval,
        config.slide_on_read,
        config.redis_url,
        config.redis_key_prefix,
        config.redis_timeout,
        config.redis_when_down,
        config.redis_strict,
        config.persist_path,
        config.persist_fsync
    )
}

#[napi]
impl NativeStore {
    #[napi(catch_unwind, constructor)]
    pub fn new(options: Option<NativeOptions>) -> Result<Self> {
        let options = options.unwrap_or_default();
        let config = config_from(&options)?;
        let Some(name) = options.name.clone() else {
            return Ok(Self {
                store: Store::new(config).map_err(to_napi)?,
                name: None,
            });
        };
        let mut named = NAMED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let wanted = fingerprint(&config);
        if let Some((existing, store)) = named.get(&name) {
            if *existing != wanted {
                return Err(invalid_config(&format!(
                    "a store named {name:?} already exists in this process with other options"
                )));
            }
            return Ok(Self {
                store: store.clone(),
                name: Some(name),
            });
        }
        let store = Store::new(config).map_err(to_napi)?;
        named.insert(name.clone(), (wanted, store.clone()));
        Ok(Self {
            store,
            name: Some(name),
        })
    }

    /// Whether sessions are shared through Redis: then use the `…Async` methods, which never
    /// wait on the main thread (reads, writes and destroys are settled from the Redis link
    /// thread, the rest on the addon's waiting threads).
    #[napi(getter)]
    pub fn shared(&self) -> bool {
        self.store.stats().tier.is_some()
    }

    /// The store for the per-request functions (`getText`, `set`, `destroy`, ...), which take
    /// it as their first argument. Read it once: each read makes a new handle.
    #[napi(getter, ts_return_type = "ExternalObject<NativeStore>")]
    pub fn handle(&self) -> StoreHandle {
        External::new(self.store.clone())
    }

    #[napi(
        catch_unwind,
        ts_return_type = "Promise<string | null | NativeFailure>"
    )]
    pub fn get_text_async<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] sid: Text,
    ) -> Result<Object<'env>> {
        // Sent from this thread and settled from the Redis link thread, like writes: a read
        // miss holds no waiting thread.
        // The argument first: a promise made for a call that then fails here would settle
        // only with `internal`.
        let sid = sid.into_string()?;
        let (settler, promise) = settling::promise(env)?;
        let text = |view: coatcheck::SessionView<'_>| String::from_utf8(prefixed(view)).ok();
        self.store.get_then(sid, text, move |outcome| {
            let outcome = outcome.map(Option::flatten);
            settler.settle(settled(outcome));
        });
        Ok(promise)
    }

    #[napi(catch_unwind, ts_return_type = "Promise<number | NativeFailure>")]
    pub fn set_async<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] sid: Text,
        #[napi(ts_arg_type = "string")] value: Text,
        ttl_ms: Option<f64>,
    ) -> Result<Object<'env>> {
        let ttl = ttl(ttl_ms)?;
        self.write_then(env, sid.into_string()?, value.into_bytes(), ttl, None)
    }

    #[napi(catch_unwind, ts_return_type = "Promise<number | NativeFailure>")]
    pub fn set_if_version_async<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] sid: Text,
        #[napi(ts_arg_type = "string")] value: Text,
        expected: i64,
        ttl_ms: Option<f64>,
    ) -> Result<Object<'env>> {
        let expected = u64::try_from(expected)
            .map_err(|_| invalid_argument("version must not be negative"))?;
        let ttl = ttl(ttl_ms)?;
        self.write_then(
            env,
            sid.into_string()?,
            value.into_bytes(),
            ttl,
            Some(expected),
        )
    }

    #[napi(catch_unwind, ts_return_type = "Promise<boolean | NativeFailure>")]
    pub fn touch_async<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] sid: Text,
        ttl_ms: Option<f64>,
        min_idle_ms: Option<f64>,
    ) -> Result<Object<'env>> {
        let ttl = ttl(ttl_ms)?;
        let min_idle = touch_after(min_idle_ms)?;
        let sid = sid.into_string()?;
        self.call(env, move |s| match min_idle {
            Some(min_idle) => s.touch_if_idle(&sid, ttl, min_idle),
            None => s.touch(&sid, ttl),
        })
    }

    #[napi(catch_unwind, ts_return_type = "Promise<boolean | NativeFailure>")]
    pub fn destroy_async<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] sid: Text,
    ) -> Result<Object<'env>> {
        let sid = sid.into_string()?; // before the promise, as in `get_text_async`
        let (settler, promise) = settling::promise(env)?;
        self.store.destroy_then(sid, move |outcome| {
            settler.settle(settled(outcome));
        });
        Ok(promise)
    }

    #[napi(
        catch_unwind,
        ts_return_type = "Promise<string | null | NativeFailure>"
    )]
    pub fn regenerate_async<'env>(&self, env: &'env Env, sid: String) -> Result<Object<'env>> {
        self.call(env, move |s| s.regenerate(&sid))
    }

    #[napi(catch_unwind, ts_return_type = "Promise<undefined | NativeFailure>")]
    pub fn set_owner_async<'env>(
        &self,
        env: &'env Env,
        sid: String,
        owner: Option<String>,
    ) -> Result<Object<'env>> {
        self.call(env, move |s| s.set_owner(&sid, owner.as_deref()))
    }

    #[napi(catch_unwind, ts_return_type = "Promise<string[] | NativeFailure>")]
    pub fn sessions_of_async<'env>(&self, env: &'env Env, owner: String) -> Result<Object<'env>> {
        self.call(env, move |s| s.sessions_of(&owner))
    }

    #[napi(catch_unwind, ts_return_type = "Promise<number | NativeFailure>")]
    pub fn destroy_owner_async<'env>(
        &self,
        env: &'env Env,
        owner: String,
        keep: Option<String>,
    ) -> Result<Object<'env>> {
        self.call(env, move |s| {
            s.destroy_owner(&owner, keep.as_deref())
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        })
    }

    #[napi(catch_unwind)]
    pub fn create(&self, value: String, ttl_ms: Option<f64>) -> Result<String> {
        self.store
            .create(value.as_bytes(), ttl(ttl_ms)?)
            .map_err(to_napi)
    }

    #[napi(catch_unwind)]
    pub fn regenerate(&self, sid: String) -> Result<Option<String>> {
        self.store.regenerate(&sid).map_err(to_napi)
    }

    #[napi(catch_unwind)]
    pub fn set_owner(&self, sid: String, owner: Option<String>) -> Result<()> {
        self.store
            .set_owner(&sid, owner.as_deref())
            .map_err(to_napi)
    }

    #[napi(catch_unwind)]
    pub fn sessions_of(&self, owner: String) -> Result<Vec<String>> {
        self.store.sessions_of(&owner).map_err(to_napi)
    }

    #[napi(catch_unwind)]
    pub fn destroy_owner(&self, owner: String, keep: Option<String>) -> Result<u32> {
        let n = self
            .store
            .destroy_owner(&owner, keep.as_deref())
            .map_err(to_napi)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Sessions in the table (expired ones count until the next sweep).
    #[napi(catch_unwind)]
    pub fn len(&self) -> u32 {
        u32::try_from(self.store.len()).unwrap_or(u32::MAX)
    }

    #[napi(catch_unwind)]
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Ids of all live sessions (on Redis: use `idsAsync`).
    #[napi(catch_unwind)]
    pub fn ids(&self) -> Result<Vec<String>> {
        self.store.ids().map_err(to_napi)
    }

    /// Every live session with its id, read without sliding deadlines (on Redis: `allAsync`).
    #[napi(catch_unwind)]
    pub fn all(&self) -> Result<Vec<NativeEntry>> {
        all_entries(&self.store).map_err(to_napi)
    }

    /// Live sessions: on Redis every process's (use `countAsync`); `len` is the local table.
    #[napi(catch_unwind)]
    pub fn count(&self) -> Result<u32> {
        count_of_all(&self.store).map_err(to_napi)
    }

    /// Removes every session (on Redis: `clearAsync`).
    #[napi(catch_unwind)]
    pub fn clear(&self) -> Result<()> {
        self.store.clear().map_err(to_napi)
    }

    #[napi(catch_unwind, ts_return_type = "Promise<string[] | NativeFailure>")]
    pub fn ids_async<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        self.call(env, |s| s.ids())
    }

    #[napi(
        catch_unwind,
        ts_return_type = "Promise<NativeEntry[] | NativeFailure>"
    )]
    pub fn all_async<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        self.call(env, all_entries)
    }

    #[napi(catch_unwind, ts_return_type = "Promise<number | NativeFailure>")]
    pub fn count_async<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        self.call(env, count_of_all)
    }

    #[napi(catch_unwind, ts_return_type = "Promise<undefined | NativeFailure>")]
    pub fn clear_async<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        self.call(env, |s| s.clear())
    }

    /// Closes the store (see `Store::close`) on a waiting thread: the final snapshot of a
    /// restart log takes as long as the table is large. A named store is unregistered first,
    /// so that a new store of that name is a new store.
    #[napi(catch_unwind, ts_return_type = "Promise<undefined | NativeFailure>")]
    pub fn close_async<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        if let Some(name) = &self.name {
            let mut named = NAMED
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Only this store: a new one may hold the name since an earlier close.
            if named
                .get(name)
                .is_some_and(|(_, store)| store.same_store(&self.store))
            {
                named.remove(name);
            }
        }
        self.call(env, |s| s.close())
    }

    #[napi(catch_unwind)]
    pub fn stats(&self) -> NativeStats {
        let s = self.store.stats();
        NativeStats {
            sessions: s.sessions as f64,
            bytes: s.bytes as f64,
            hits: s.hits as f64,
            misses: s.misses as f64,
            inserts: s.inserts as f64,
            updates: s.updates as f64,
            destroys: s.destroys as f64,
            expirations: s.expirations as f64,
            evicted_unread: s.evicted_unread as f64,
            evicted_lru: s.evicted_lru as f64,
            signature_failures: s.signature_failures as f64,
            conflicts: s.conflicts as f64,
            tier: s.tier.map(|t| NativeTierStats {
                connected: t.connected,
                near_hits: t.near_hits as f64,
                near_misses: t.near_misses as f64,
                served_unverified: t.served_unverified as f64,
                invalidations: t.invalidations as f64,
                round_trips: t.round_trips as f64,
                failures: t.failures as f64,
                disconnects: t.disconnects as f64,
                down_ms: t.down_ms as f64,
                restored: t.restored as f64,
                replay_conflicts: t.replay_conflicts as f64,
                touches_sent: t.touches_sent as f64,
                fills_refused: t.fills_refused as f64,
                to_replay: t.to_replay as f64,
            }),
            log: s.log.map(|l| NativeLogStats {
                records: l.records as f64,
                log_bytes: l.log_bytes as f64,
                snapshot_bytes: l.snapshot_bytes as f64,
                compactions: l.compactions as f64,
                restored: l.restored as f64,
                failures: l.failures as f64,
            }),
        }
    }
}

impl NativeStore {
    /// A write whose promise the core settles when Redis answers: sent from this thread,
    /// settled from the Redis link thread, with no waiting thread in between.
    fn write_then<'env>(
        &self,
        env: &'env Env,
        sid: String,
        value: Vec<u8>,
        ttl: Option<std::time::Duration>,
        expected: Option<u64>,
    ) -> Result<Object<'env>> {
        let (settler, promise) = settling::promise(env)?;
        self.store
            .set_then(sid, value, ttl, expected, move |outcome| {
                let outcome = outcome.map(|v| v as i64);
                settler.settle(settled(outcome));
            });
        Ok(promise)
    }

    /// Runs `op` on a waiting thread; the promise resolves to its value or a `NativeFailure`.
    fn call<'env, T: ToNapiValue + Send + 'static>(
        &self,
        env: &'env Env,
        op: impl FnOnce(&Store) -> coatcheck::Result<T> + Send + 'static,
    ) -> Result<Object<'env>> {
        let (settler, promise) = settling::promise(env)?;
        let store = self.store.clone();
        waiting::run(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| op(&store)));
            settler.settle(match outcome {
                Ok(outcome) => settled(outcome),
                Err(_) => Either::B(NativeFailure {
                    code: "internal".to_string(),
                    message: "coatcheck: a native call panicked".to_string(),
                }),
            });
        })?;
        Ok(promise)
    }
}

/// A core error as an async call's result: `index.js` turns it into an `Error` with `code`
/// (a rejection from native code could carry only napi's status, not the core's code).
#[napi(object)]
pub struct NativeFailure {
    pub code: String,
    pub message: String,
}

/// `touchAfter` (ms): a touch is skipped when the session was used more recently.
pub(crate) fn touch_after(min_idle_ms: Option<f64>) -> Result<Option<Duration>> {
    match min_idle_ms {
        Some(ms) if ms > 0.0 => millis(ms, "touchAfter").map(Some),
        _ => Ok(None),
    }
}

/// Width of the expiry prefix of `get_text`: the moment the session expires, written as
/// JavaScript's `Date.prototype.toISOString` writes it (`2026-12-05T06:50:33.457Z`), the form a
/// session's `cookie.expires` takes in JSON. In Node 20 `toISOString` itself costs about
/// 1.3 µs a call, more than the rest of a read; written here it costs a clock read.
const EXPIRY_WIDTH: usize = 24;
/// Width of the version after it: every version a JS number holds exactly (below 2^53).
const VERSION_DIGITS: usize = 16;
/// The last millisecond of year 9999: `toISOString` writes later moments with a six-digit
/// year, and a session's deadline is clamped to this one (its TTL would be over 7,000 years).
const LAST_FOUR_DIGIT_YEAR_MS: u64 = 253_402_300_799_999;

pub(crate) fn prefixed_text<'env>(
    env: &'env Env,
    view: coatcheck::SessionView<'_>,
) -> Result<JsString<'env>> {
    let text = prefixed(view);
    // JSON is usually ASCII, and V8 takes ASCII as Latin-1 with a plain copy, no UTF-8 decoding.
    let created = if text.is_ascii() {
        env.create_string_latin1(&text)
    } else {
        let text = std::str::from_utf8(&text)
            .map_err(|_| invalid_argument("stored value is not UTF-8 text"))?;
        env.create_string(text)
    };
    created.map_err(internal)
}

/// The `getText` answer as bytes: expiry, version, value.
fn prefixed(view: coatcheck::SessionView<'_>) -> Vec<u8> {
    let mut text = Vec::with_capacity(EXPIRY_WIDTH + VERSION_DIGITS + view.value.len());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let expires_at = now.saturating_add(view.expires_in).as_millis();
    push_iso_time(
        &mut text,
        expires_at.min(u128::from(LAST_FOUR_DIGIT_YEAR_MS)) as u64,
    );
    let version = view.version.min(10u64.pow(VERSION_DIGITS as u32) - 1);
    push_digits(&mut text, version, VERSION_DIGITS);
    text.extend_from_slice(view.value);
    text
}

/// Appends the UTC time `ms` after the Unix epoch (at most year 9999) as `toISOString` writes
/// it: `YYYY-MM-DDTHH:MM:SS.mmmZ`. The date comes from Howard Hinnant's `civil_from_days`.
fn push_iso_time(text: &mut Vec<u8>, ms: u64) {
    let days = ms / 86_400_000;
    let in_day = ms % 86_400_000;
    let shifted = days + 719_468; // days since 0000-03-01, in a year that starts in March
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    push_digits(text, year, 4);
    text.push(b'-');
    push_digits(text, month, 2);
    text.push(b'-');
    push_digits(text, day, 2);
    text.push(b'T');
    push_digits(text, in_day / 3_600_000, 2);
    text.push(b':');
    push_digits(text, in_day / 60_000 % 60, 2);
    text.push(b':');
    push_digits(text, in_day / 1000 % 60, 2);
    text.push(b'.');
    push_digits(text, in_day % 1000, 3);
    text.push(b'Z');
}

/// Appends `n` (below 10^`digits`) as `digits` decimal digits, zero-padded. Every read's
/// answer starts with two of these, and `format!` with padding cost about a tenth of a local
/// read.
fn push_digits(text: &mut Vec<u8>, mut n: u64, digits: usize) {
    let start = text.len();
    text.resize(start + digits, b'0');
    for digit in text[start..].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// A new session id from the core's CSPRNG: 24 random bytes as 32 base64url characters.
#[napi(catch_unwind)]
pub fn generate_id() -> String {
    coatcheck::generate_id()
}

/// Every live session whose value is text, with its id.
fn all_entries(store: &Store) -> coatcheck::Result<Vec<NativeEntry>> {
    Ok(store
        .entries()?
        .into_iter()
        .filter_map(|(id, value)| {
            let value = String::from_utf8(value).ok()?;
            Some(NativeEntry { id, value })
        })
        .collect())
}

fn count_of_all(store: &Store) -> coatcheck::Result<u32> {
    Ok(u32::try_from(store.count()?).unwrap_or(u32::MAX))
}

/// A core result as a promise's value: the value, or the error as `{ code, message }`.
fn settled<T>(outcome: coatcheck::Result<T>) -> Either<T, NativeFailure> {
    match outcome {
        Ok(value) => Either::A(value),
        Err(e) => Either::B(NativeFailure {
            code: e.code().to_string(),
            message: e.to_string(),
        }),
    }
}
