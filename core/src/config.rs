//! How a store is configured. Bindings fill a [`Config`] and never build shards or sweepers.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// What the store does when a write would take it over `max_sessions` or `max_bytes`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Eviction {
    /// Evict expired sessions, then sessions never read since they were created, then the
    /// least recently used. Active users survive a flood of abandoned sessions.
    #[default]
    LeastValuable,
    /// Evict only expired sessions; otherwise refuse the write with [`Error::StoreFull`].
    Refuse,
}

/// What a store on the shared tier does while Redis cannot be reached.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenRedisDown {
    /// Keep serving from the local table: reads get the local copies (unverified: another
    /// process may have changed them), writes are applied locally and written back when Redis
    /// returns, unless a newer write got there first. Sessions created meanwhile live in this
    /// process only until then.
    #[default]
    ServeLocal,
    /// Fail every call that needs Redis with [`Error::Unavailable`](crate::Error::Unavailable).
    Fail,
}

/// When the restart log ([`Config::persist_path`]) asks the disk to make appended changes
/// durable with `fdatasync`. Every change is in the file (copied into its shared mapping, the
/// kernel's page cache) before its call returns, whatever the policy: that survives the process
/// being killed. The policy is about losing power or the machine crashing.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// Never: the OS writes the file back on its own schedule (usually within 30 s).
    Never,
    /// Once a second, on a background thread, off the request path: at most about a second of
    /// changes is lost with the power (Redis's `appendfsync everysec`).
    #[default]
    Interval,
    /// After every change, before its call returns: nothing acknowledged is lost, at the cost of
    /// a disk flush per write.
    Always,
}

/// The longest lifetime a session can be given (1,000 years): a longer timeout or TTL means
/// "for ever" and is taken as this. (Redis's scripts read numbers as doubles and write them
/// with 14 digits: a TTL of 10^14 ms or more would reach Redis as `1e+14`, which it refuses.)
pub const LONGEST_TTL: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

/// Store configuration. Start from [`Config::default`] and change what you need.
///
/// ```
/// use coatcheck::Config;
/// use std::time::Duration;
/// let mut config = Config::default();
/// config.idle_timeout = Duration::from_secs(30 * 60);
/// config.max_sessions = Some(100_000);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct Config {
    /// Sliding lifetime: a session not read or touched for this long expires. Default: 1 day
    /// (connect-redis's default TTL). A per-call TTL replaces it for that session. This, the
    /// absolute timeout and per-call TTLs are capped at [`LONGEST_TTL`].
    pub idle_timeout: Duration,
    /// Hard lifetime from creation, never extended by activity. Default: none.
    pub absolute_timeout: Option<Duration>,
    /// Whether a read slides the idle deadline. Default: true. With false a session expires
    /// its idle timeout after the last write or touch, whatever the reads (connect-redis's
    /// `disableTouch`, connect-mongo's `touchAfter`); reads still count as use when a budget
    /// makes the store evict.
    pub slide_on_read: bool,
    /// Most live sessions. Default: unlimited.
    pub max_sessions: Option<usize>,
    /// Most bytes: values and ids plus [`ENTRY_OVERHEAD_BYTES`](crate::ENTRY_OVERHEAD_BYTES) per
    /// session. Default: unlimited.
    pub max_bytes: Option<usize>,
    /// Largest single value. Default: 1 MiB.
    pub max_session_bytes: usize,
    /// Number of lock stripes, a power of two. Default: 16 per available core, at least 16.
    pub shards: Option<usize>,
    /// How often the background sweeper reclaims expired sessions. Expiry itself is exact to
    /// the millisecond: an expired session is never returned, and making room under a budget
    /// takes expired sessions first whenever the sweeper last ran. Default: 1 s.
    pub sweep_interval: Duration,
    /// Run the background sweeper thread. Default: true. Without it, expired sessions are
    /// still never returned; they are reclaimed by [`Store::sweep`](crate::Store::sweep).
    pub background_sweeper: bool,
    /// Hand free memory back to the OS (`malloc_trim` on glibc; a no-op elsewhere) once sweeps
    /// have freed at least this many bytes since the last time and the store has shrunk to half
    /// its peak: after a mass expiry or when churn stops, not during steady churn. `None`
    /// disables it. Default: 8 MiB.
    pub trim_after_freeing: Option<usize>,
    /// Policy when a budget is reached.
    pub eviction: Eviction,
    /// Secrets for signed tokens; the first signs, all verify. Empty: the store does not sign.
    pub secrets: Vec<Vec<u8>>,
    /// Share sessions with every process and host on one Redis (or Valkey) server:
    /// `redis://[user:password@]host[:port][/db]`, `rediss://…` for TLS (the server's
    /// certificate checked against the system's CA store, which `SSL_CERT_FILE` replaces;
    /// `rediss://…#insecure` skips the check), or `redis+unix:///path/to/socket[?db=N]`.
    /// Writes go to Redis before they return; the local table becomes a near cache that Redis
    /// client tracking invalidates, so reads stay in-process. Default: none, sessions live in
    /// this process only.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key the store uses. Stores that share sessions use the same one;
    /// it must not be a prefix of another client's tracked prefix. Default: `"coatcheck:"`.
    pub redis_key_prefix: String,
    /// Longest a call waits for Redis. Default: 50 ms.
    pub redis_timeout: Duration,
    /// What calls do while Redis cannot be reached. Default: serve from the local table.
    pub redis_when_down: WhenRedisDown,
    /// Check every read against Redis (one round trip per read) instead of trusting a local
    /// copy until an invalidation arrives: closes the window of about a tenth of a millisecond
    /// on loopback in which another process may still serve a session just destroyed.
    /// Default: false.
    pub redis_strict: bool,
    /// Keep sessions across restarts of this process: a directory (created if missing, 0700;
    /// its parent must exist) where every change is appended to a log before its call returns,
    /// compacted into a snapshot in the background, and read back when a store is built on it.
    /// One process owns the directory (a second gets [`Error::InvalidConfig`]); to share
    /// sessions between processes use `redis_url`, which cannot be combined with this.
    /// Default: none, sessions live in memory only.
    pub persist_path: Option<PathBuf>,
    /// When the restart log is synced to disk. Default: [`Fsync::Interval`] (every second).
    pub persist_fsync: Fsync,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(24 * 60 * 60),
            absolute_timeout: None,
            slide_on_read: true,
            max_sessions: None,
            max_bytes: None,
            max_session_bytes: 1 << 20,
            shards: None,
            sweep_interval: Duration::from_secs(1),
            background_sweeper: true,
            trim_after_freeing: Some(8 << 20),
            eviction: Eviction::LeastValuable,
            secrets: Vec::new(),
            redis_url: None,
            redis_key_prefix: "coatcheck:".to_string(),
            redis_timeout: Duration::from_millis(50),
            redis_when_down: WhenRedisDown::ServeLocal,
            redis_strict: false,
            persist_path: None,
            persist_fsync: Fsync::Interval,
        }
    }
}

/// Largest `max_session_bytes` accepted.
const MAX_SESSION_BYTES: usize = 1 << 30;

/// Most stripes a store may have.
const MAX_SHARDS: usize = 1 << 16;

impl Config {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: &str| Err(Error::InvalidConfig(why.to_string()));
        // The store clock counts whole milliseconds: a shorter timeout would make every
        // session expire the moment it is created.
        if self.idle_timeout < Duration::from_millis(1) {
            return bad("idle_timeout must be at least 1 ms");
        }
        if self
            .absolute_timeout
            .is_some_and(|d| d < Duration::from_millis(1))
        {
            return bad("absolute_timeout must be at least 1 ms");
        }
        if self.max_sessions == Some(0) {
            return bad("max_sessions must be at least 1");
        }
        if self.max_bytes == Some(0) {
            return bad("max_bytes must be at least 1");
        }
        if self.max_session_bytes == 0 {
            return bad("max_session_bytes must be at least 1");
        }
        if self.max_session_bytes > MAX_SESSION_BYTES {
            return bad("max_session_bytes must be at most 1 GiB");
        }
        if let Some(n) = self.shards {
            if n == 0 || !n.is_power_of_two() || n > MAX_SHARDS {
                return bad("shards must be a power of two between 1 and 65536");
            }
        }
        if self.sweep_interval < Duration::from_millis(1) {
            return bad("sweep_interval must be at least 1 ms");
        }
        if self.secrets.iter().any(|s| s.is_empty()) {
            return bad("a secret must not be empty");
        }
        if self.redis_key_prefix.is_empty() || self.redis_key_prefix.len() > 128 {
            return bad("redis_key_prefix must be 1 to 128 bytes");
        }
        if self.redis_key_prefix.bytes().any(|b| !b.is_ascii_graphic()) {
            return bad("redis_key_prefix must be printable ASCII without spaces");
        }
        if self.redis_timeout < Duration::from_millis(1)
            || self.redis_timeout > Duration::from_secs(60)
        {
            return bad("redis_timeout must be between 1 ms and 60 s");
        }
        if let Some(path) = &self.persist_path {
            if self.redis_url.is_some() {
                return bad(
                    "persist_path and redis_url cannot both be set: with redis_url, Redis keeps \
                     the sessions across restarts",
                );
            }
            if path.as_os_str().is_empty() {
                return bad("persist_path must not be empty");
            }
        }
        crate::tier::Settings::from_config(self)?;
        Ok(())
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores * 16).next_power_of_two().clamp(16, 1024)
        })
    }
}
