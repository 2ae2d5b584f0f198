//! `coatcheck_config`: the C view of `coatcheck::Config`.

use std::time::Duration;

use coatcheck::{Config, Eviction};

use crate::boundary::ffi_boundary;
use crate::cast::try_out;
use crate::error::coatcheck_status;
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
/// struct and the secrets it points at may be freed once the store exists.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct coatcheck_config {
    /// Sliding lifetime: a session not read or touched for this long expires. Default: 1 day.
    pub idle_timeout_ms: u64,
    /// Hard lifetime from creation, never extended by activity. 0: none (the default).
    pub absolute_timeout_ms: u64,
    /// Most live sessions. 0: unlimited (the default).
    pub max_sessions: usize,
    /// Most bytes (values, ids and a fixed overhead per session). 0: unlimited (the default).
    pub max_bytes: usize,
    /// Largest single value. Default: 1 MiB.
    pub max_session_bytes: usize,
    /// Number of lock stripes, a power of two up to 65536. 0: 16 per core (the default).
    pub shards: usize,
    /// How often the background sweeper reclaims expired sessions. Default: 1000.
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
        }
    }

    /// The core configuration, with the secrets copied.
    ///
    /// # Safety
    /// `secrets` is NULL with `secrets_len` 0, or points at `secrets_len` valid
    /// `coatcheck_bytes`, each NULL with length 0 or readable for its length.
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
            _ => return Err(coatcheck_status::InvalidConfig),
        };
        if self.secrets_len > isize::MAX as usize / size_of::<coatcheck_bytes>() {
            return Err(coatcheck_status::InvalidArgument);
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
        Ok(config)
    }
}

/// Writes the default configuration to `*out_config`: 1 day idle timeout, no absolute timeout,
/// no session or byte budget, 1 MiB per value, automatic stripes, a background sweeper every
/// second, no secrets.
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
