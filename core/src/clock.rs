//! Time as the store sees it: milliseconds since the store was built, from an injectable source.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
#[cfg(not(target_os = "linux"))]
use std::time::Instant;

/// A monotonic source of time. The store reads it on every operation, so it must be cheap.
///
/// Implement it to drive expiry from a simulated clock; [`ManualClock`] does exactly that.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds elapsed since an arbitrary fixed origin. Must never go backwards.
    fn now_ms(&self) -> u64;
}

/// The real, monotonic clock (`CLOCK_MONOTONIC`, as `Instant`), immune to wall-clock jumps.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    #[cfg(not(target_os = "linux"))]
    origin: Instant,
    #[cfg(target_os = "linux")]
    origin_ms: u64,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            #[cfg(not(target_os = "linux"))]
            origin: Instant::now(),
            #[cfg(target_os = "linux")]
            origin_ms: monotonic_ms(),
        }
    }
}

/// `CLOCK_MONOTONIC` in whole milliseconds, read directly: `Instant::elapsed` costs about twice
/// as much (a subtraction of two timespecs with carries), and this runs on every operation.
#[cfg(target_os = "linux")]
fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux, so
    // the call cannot fail (and on failure `ts` would keep its zeros, a time in the past).
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64)
        .saturating_mul(1000)
        .saturating_add(ts.tv_nsec as u64 / 1_000_000)
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    #[cfg(target_os = "linux")]
    fn now_ms(&self) -> u64 {
        monotonic_ms().saturating_sub(self.origin_ms)
    }

    #[cfg(not(target_os = "linux"))]
    fn now_ms(&self) -> u64 {
        let elapsed = self.origin.elapsed();
        elapsed
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(elapsed.subsec_millis()))
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use coatcheck::{ManualClock, Clock};
/// use std::time::Duration;
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_ms(), 2000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at 0 ms.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

pub(crate) fn duration_to_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A session lifetime in ms, capped at [`crate::config::LONGEST_TTL`].
pub(crate) fn lifetime_ms(d: Duration) -> u64 {
    duration_to_ms(d.min(crate::config::LONGEST_TTL))
}
