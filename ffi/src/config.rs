//! `coatcheck_config`: the C view of `coatcheck::Config`.

use std::ffi::{CStr, c_char};
use std::time::Duration;

use coatcheck::{Config, Eviction, Fsync, WhenRedisDown};

use crate::boundary::ffi_boundary;
use crate::cast::try_out;
use crate::error::{coatcheck_status, map_error};
use crate::slice;

/// What a store does when a write would take it over `max_sessions` or `max_bytes`; the values
/// of `coatcheck_config.eviction`.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum coatcheck_eviction {
    /// Evict expired sessions, then sessions never read since they were created, then the least
    /// recently used. Active users survive a flood of abandoned sessions. The default.
    LeastValuable = 0,
    /// Evict only expired sessions; otherwise refuse the write with
    /// `COATCHECK_STATUS_STORE_FULL`.
    Refuse = 1,
}

/// What a store on the shared tier does while Redis cannot be reached; the values of
/// `coatcheck_config.redis_when_down`.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum coatcheck_when_redis_down {
    /// Keep serving from the local table: reads get the local copies (unverified: another
    /// process may have changed them), writes are applied locally and written back when Redis
    /// returns, unless a newer write got there first. Sessions created meanwhile live in this
    /// process only until then. The default.
    ServeLocal = 0,
    /// Fail every call that needs Redis with `COATCHECK_STATUS_UNAVAILABLE`.
    Fail = 1,
}

/// When the restart log (`coatcheck_config.persist_path`) is synced to disk; the values of
/// `coatcheck_config.persist_fsync`. Every change is written to the log file before its call
/// returns whatever the policy, which survives the process being killed; the policy is about
/// power loss.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum coatcheck_fsync {
    /// Once a second, on a background thread. The default.
    Interval = 0,
    /// Never: the OS writes the file back on its own schedule.
    Never = 1,
    /// After every change, before its call returns.
    Always = 2,
}

/// A borrowed byte string: a pointer followed by its length. `data` may be NULL only when `len`
/// is 0.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct coatcheck_bytes {
    /// The first byte.
    pub data: *const u8,
    /// How many bytes.
    pub len: usize,
}

/// Store configuration. Fill it with `coatcheck_config_default`, then change what you need.
/// Durations are in milliseconds. `coatcheck_store_new` copies everything it needs, so the
/// struct and the secrets and strings it points at may be freed once the store exists.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct coatcheck_config {
    /// Sliding lifetime: a session not read or touched for this long expires. Default: 1 day;
    /// 0 is refused (`COATCHECK_STATUS_INVALID_CONFIG`).
    /// Every lifetime, here and per call, is cut to 1,000 years (`LONGEST_TTL` in Rust).
    pub idle_timeout_ms: u64,
    /// Hard lifetime from creation, never extended by activity. 0: none (the default).
    pub absolute_timeout_ms: u64,
    /// Most live sessions. 0: unlimited (the default).
    pub max_sessions: usize,
    /// Most bytes (values, ids and a fixed overhead per session). 0: unlimited (the default).
    pub max_bytes: usize,
    /// Largest single value. Default: 1 MiB; 0 or more than 1 GiB is refused.
    pub max_session_bytes: usize,
    /// Number of lock stripes, a power of two up to 65536. 0: 16 per core (the default).
    pub shards: usize,
    /// How often the background sweeper reclaims expired sessions. Default: 1000; 0 is refused,
    /// even with `background_sweeper` false.
    pub sweep_interval_ms: u64,
    /// Run the background sweeper thread. Default: true. Without it, expired sessions are still
    /// never returned; `coatcheck_store_sweep` reclaims them.
    pub background_sweeper: bool,
    /// After a sweep frees at least this many bytes, hand free memory back to the OS
    /// (`malloc_trim`). 0: never. Default: 8 MiB.
    pub trim_after_freeing: usize,
    /// A `coatcheck_eviction` value. Default: `COATCHECK_EVICTION_LEAST_VALUABLE`.
    pub eviction: u32,
    /// Secrets for signed tokens: the first signs, all verify (prepend a new secret to rotate).
    /// NULL with `secrets_len` 0 (the default): the store cannot sign.
    pub secrets: *const coatcheck_bytes,
    /// Number of entries in `secrets`.
    pub secrets_len: usize,
    /// Whether a read slides the idle deadline. Default: true. With false a session expires
    /// `idle_timeout_ms` after its last write or touch, whatever the reads; reads still count as
    /// use when a budget makes the store evict.
    pub slide_on_read: bool,
    /// Share sessions with every process and host on one Redis (or Valkey) server: a
    /// NUL-terminated UTF-8 URL, `redis://[user:password@]host[:port][/db]`, `rediss://…` for
    /// TLS (checked against the system's CA store, which `SSL_CERT_FILE` replaces; `#insecure`
    /// at the end skips the check) or `redis+unix:///path/to/socket`. Writes go to Redis
    /// before they return; the local table becomes a near cache that Redis invalidates, so
    /// reads stay in-process. NULL (the default): sessions live in this process only.
    pub redis_url: *const c_char,
    /// Prefix of every Redis key the store uses, NUL-terminated: 1 to 128 bytes of printable
    /// ASCII without spaces. Stores that share sessions use the same one. NULL: `"coatcheck:"`
    /// (the default).
    pub redis_key_prefix: *const c_char,
    /// Longest a call waits for Redis, 1 to 60000. Default: 50; 0 also means the default.
    pub redis_timeout_ms: u64,
    /// A `coatcheck_when_redis_down` value: what calls do while Redis cannot be reached.
    /// Default: `COATCHECK_WHEN_REDIS_DOWN_SERVE_LOCAL`.
    pub redis_when_down: u32,
    /// Check every read against Redis (one round trip per read) instead of trusting a local
    /// copy until an invalidation arrives: closes the window of about a tenth of a millisecond
    /// on loopback in which another process may still serve a session just destroyed.
    /// Default: false.
    pub redis_strict: bool,
    /// Keep sessions across restarts of this process: a NUL-terminated directory path (created
    /// if missing, mode 0700; its parent must exist). Every change is appended to a log there
    /// before its call returns, compacted into a snapshot in the background, and read back by
    /// the next `coatcheck_store_new` on the same path. One process owns the directory: a
    /// second gets `COATCHECK_STATUS_INVALID_CONFIG`, as does setting both this and
    /// `redis_url`. NULL (the default): sessions live in memory only.
    pub persist_path: *const c_char,
    /// A `coatcheck_fsync` value. Default: `COATCHECK_FSYNC_INTERVAL`.
    pub persist_fsync: u32,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl coatcheck_config {
    fn from_core(config: &Config) -> Self {
        Self {
            idle_timeout_ms: millis(config.idle_timeout),
            absolute_timeout_ms: config.absolute_timeout.map_or(0, millis),
            max_sessions: config.max_sessions.unwrap_or(0),
            max_bytes: config.max_bytes.unwrap_or(0),
            max_session_bytes: config.max_session_bytes,
            shards: config.shards.unwrap_or(0),
            sweep_interval_ms: millis(config.sweep_interval),
            background_sweeper: config.background_sweeper,
            trim_after_freeing: config.trim_after_freeing.unwrap_or(0),
            eviction: match config.eviction {
                Eviction::Refuse => coatcheck_eviction::Refuse as u32,
                _ => coatcheck_eviction::LeastValuable as u32,
            },
            secrets: std::ptr::null(),
            secrets_len: 0,
            slide_on_read: config.slide_on_read,
            // The C view of a string default is NULL: the core's own default applies.
            redis_url: std::ptr::null(),
            redis_key_prefix: std::ptr::null(),
            redis_timeout_ms: millis(config.redis_timeout),
            redis_when_down: match config.redis_when_down {
                WhenRedisDown::Fail => coatcheck_when_redis_down::Fail as u32,
                _ => coatcheck_when_redis_down::ServeLocal as u32,
            },
            redis_strict: config.redis_strict,
            persist_path: std::ptr::null(),
            persist_fsync: match config.persist_fsync {
                Fsync::Never => coatcheck_fsync::Never as u32,
                Fsync::Always => coatcheck_fsync::Always as u32,
                _ => coatcheck_fsync::Interval as u32,
            },
        }
    }

    /// The core configuration, with the secrets and strings copied.
    ///
    /// # Safety
    /// `secrets` is NULL with `secrets_len` 0, or points at `secrets_len` valid
    /// `coatcheck_bytes`, each NULL with length 0 or readable for its length. `redis_url`,
    /// `redis_key_prefix` and `persist_path` are each NULL or a readable NUL-terminated string.
    pub(crate) unsafe fn to_core(self) -> Result<Config, coatcheck_status> {
        let nonzero = |n: usize| (n != 0).then_some(n);
        let mut config = Config::default();
        config.idle_timeout = Duration::from_millis(self.idle_timeout_ms);
        config.absolute_timeout = (self.absolute_timeout_ms != 0)
            .then(|| Duration::from_millis(self.absolute_timeout_ms));
        config.max_sessions = nonzero(self.max_sessions);
        config.max_bytes = nonzero(self.max_bytes);
        config.max_session_bytes = self.max_session_bytes;
        config.shards = nonzero(self.shards);
        config.sweep_interval = Duration::from_millis(self.sweep_interval_ms);
        config.background_sweeper = self.background_sweeper;
        config.trim_after_freeing = nonzero(self.trim_after_freeing);
        config.eviction = match self.eviction {
            0 => Eviction::LeastValuable,
            1 => Eviction::Refuse,
            n => {
                return Err(refused(format_args!(
                    "eviction: {n} is no coatcheck_eviction"
                )));
            }
        };
        if self.secrets_len > isize::MAX as usize / size_of::<coatcheck_bytes>() {
            return Err(map_error(&coatcheck::Error::InvalidArgument(
                "secrets_len: too large to be an array",
            )));
        }
        let secrets: &[coatcheck_bytes] = if self.secrets.is_null() {
            if self.secrets_len != 0 {
                return Err(coatcheck_status::NullArgument);
            }
            &[]
        } else {
            // SAFETY: non-NULL, the size fits in isize (checked above), and this function's
            // contract says it points at `secrets_len` valid entries.
            unsafe { std::slice::from_raw_parts(self.secrets, self.secrets_len) }
        };
        config.secrets = secrets
            .iter()
            // SAFETY: this function's contract: each entry is NULL with length 0 or readable.
            .map(|s| unsafe { slice::bytes(s.data, s.len) }.map(<[u8]>::to_vec))
            .collect::<Result<_, _>>()?;
        config.slide_on_read = self.slide_on_read;
        // SAFETY: this function's contract: NULL or a readable NUL-terminated string.
        config.redis_url = unsafe { text(self.redis_url, "redis_url") }?.map(str::to_owned);
        // SAFETY: as above.
        if let Some(prefix) = unsafe { text(self.redis_key_prefix, "redis_key_prefix") }? {
            prefix.clone_into(&mut config.redis_key_prefix);
        }
        if self.redis_timeout_ms != 0 {
            config.redis_timeout = Duration::from_millis(self.redis_timeout_ms);
        }
        config.redis_when_down = match self.redis_when_down {
            0 => WhenRedisDown::ServeLocal,
            1 => WhenRedisDown::Fail,
            n => {
                return Err(refused(format_args!(
                    "redis_when_down: {n} is no coatcheck_when_redis_down"
                )));
            }
        };
        config.redis_strict = self.redis_strict;
        if !self.persist_path.is_null() {
            use std::os::unix::ffi::OsStrExt;
            // SAFETY: non-NULL, and per this function's contract NUL-terminated and readable.
            let path = unsafe { CStr::from_ptr(self.persist_path) };
            // A path is bytes on Unix: any that the OS accepts.
            config.persist_path = Some(std::ffi::OsStr::from_bytes(path.to_bytes()).into());
        }
        config.persist_fsync = match self.persist_fsync {
            0 => Fsync::Interval,
            1 => Fsync::Never,
            2 => Fsync::Always,
            n => {
                return Err(refused(format_args!(
                    "persist_fsync: {n} is no coatcheck_fsync"
                )));
            }
        };
        Ok(config)
    }
}

/// `INVALID_CONFIG`, with `why` in the thread's last error message, as the core reports its own.
fn refused(why: std::fmt::Arguments<'_>) -> coatcheck_status {
    map_error(&coatcheck::Error::InvalidConfig(why.to_string()))
}

/// The NUL-terminated UTF-8 setting `name`; `None` for NULL. Text that is not UTF-8 is an
/// invalid configuration, like any other setting out of range.
///
/// # Safety
/// `ptr` is NULL or points at a NUL-terminated string that stays readable and unchanged for
/// `'a`.
unsafe fn text<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>, coatcheck_status> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, and per this function's contract NUL-terminated and readable for 'a.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes
        .to_str()
        .map(Some)
        .map_err(|_| refused(format_args!("{name} is not UTF-8")))
}

/// Writes the default configuration to `*out_config`: 1 day idle timeout that reads slide, no
/// absolute timeout, no session or byte budget, 1 MiB per value, automatic stripes, a
/// background sweeper every second, no secrets, no Redis (and, for when `redis_url` is set, the
/// default key prefix, a 50 ms Redis timeout, serve-local while Redis is down, not strict).
///
/// Ownership: the caller owns `*out_config`; it holds no pointers that need freeing.
/// NULL: `out_config` NULL returns `COATCHECK_STATUS_NULL_ARGUMENT`.
/// Threads: safe to call from any thread at any time.
#[unsafe(no_mangle)]
pub extern "C" fn coatcheck_config_default(out_config: *mut coatcheck_config) -> coatcheck_status {
    ffi_boundary! {
        let out = try_out!(out_config);
        out.write(coatcheck_config::from_core(&Config::default()));
        coatcheck_status::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> coatcheck_config {
        let mut config = std::mem::MaybeUninit::uninit();
        assert_eq!(
            coatcheck_config_default(config.as_mut_ptr()),
            coatcheck_status::Ok
        );
        // SAFETY: coatcheck_config_default returned Ok, so it wrote the whole struct.
        unsafe { config.assume_init() }
    }

    fn to_core(config: coatcheck_config) -> Result<Config, coatcheck_status> {
        // SAFETY: the tests only point at NUL-terminated literals and no secrets.
        unsafe { config.to_core() }
    }

    #[test]
    fn the_defaults_are_the_core_defaults() {
        let c = defaults();
        let core = Config::default();
        assert!(c.slide_on_read);
        assert!(c.redis_url.is_null() && c.redis_key_prefix.is_null());
        assert_eq!(c.redis_timeout_ms, 50);
        assert_eq!(
            c.redis_when_down,
            coatcheck_when_redis_down::ServeLocal as u32
        );
        assert!(!c.redis_strict);
        let back = to_core(c).unwrap();
        assert_eq!(back.slide_on_read, core.slide_on_read);
        assert_eq!(back.redis_url, core.redis_url);
        assert_eq!(back.redis_key_prefix, core.redis_key_prefix);
        assert_eq!(back.redis_timeout, core.redis_timeout);
        assert_eq!(back.redis_when_down, core.redis_when_down);
        assert_eq!(back.redis_strict, core.redis_strict);
    }

    #[test]
    fn the_shared_tier_settings_reach_the_core() {
        let mut c = defaults();
        c.slide_on_read = false;
        c.redis_url = c"redis://127.0.0.1:6390/2".as_ptr();
        c.redis_key_prefix = c"app:".as_ptr();
        c.redis_timeout_ms = 250;
        c.redis_when_down = coatcheck_when_redis_down::Fail as u32;
        c.redis_strict = true;
        let core = to_core(c).unwrap();
        assert!(!core.slide_on_read);
        assert_eq!(core.redis_url.as_deref(), Some("redis://127.0.0.1:6390/2"));
        assert_eq!(core.redis_key_prefix, "app:");
        assert_eq!(core.redis_timeout, Duration::from_millis(250));
        assert_eq!(core.redis_when_down, WhenRedisDown::Fail);
        assert!(core.redis_strict);

        // 0 is the default timeout.
        c.redis_timeout_ms = 0;
        assert_eq!(to_core(c).unwrap().redis_timeout, Duration::from_millis(50));
    }

    #[test]
    fn the_restart_log_settings_reach_the_core() {
        let c = defaults();
        assert!(c.persist_path.is_null());
        assert_eq!(c.persist_fsync, coatcheck_fsync::Interval as u32);
        assert_eq!(to_core(c).unwrap().persist_path, None);
        let mut c = defaults();
        c.persist_path = c"/var/lib/app/sessions".as_ptr();
        c.persist_fsync = coatcheck_fsync::Always as u32;
        let core = to_core(c).unwrap();
        assert_eq!(
            core.persist_path.as_deref(),
            Some(std::path::Path::new("/var/lib/app/sessions"))
        );
        assert_eq!(core.persist_fsync, Fsync::Always);
        c.persist_fsync = 3;
        assert_eq!(to_core(c).err(), Some(coatcheck_status::InvalidConfig));
    }

    #[test]
    fn bad_shared_tier_settings_are_an_invalid_config() {
        let mut c = defaults();
        c.redis_url = c"redis://caf\xe9".as_ptr();
        assert_eq!(to_core(c).err(), Some(coatcheck_status::InvalidConfig));
        let mut c = defaults();
        c.redis_key_prefix = c"\xff:".as_ptr();
        assert_eq!(to_core(c).err(), Some(coatcheck_status::InvalidConfig));
        let mut c = defaults();
        c.redis_when_down = 2;
        assert_eq!(to_core(c).err(), Some(coatcheck_status::InvalidConfig));
    }
}
