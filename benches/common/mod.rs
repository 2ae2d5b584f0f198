//! The four session tables compared in every benchmark, behind one trait, so each workload
//! runs the same code against each of them in the same process.
//!
//! The baselines are written the way a session store on top of them would be: the value plus
//! an expiry deadline, a read copies the value out and slides the deadline.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use coatcheck::{Config, Store};
use parking_lot::RwLock;

pub const IDLE: Duration = Duration::from_secs(3600);

pub trait Backend: Send + Sync + 'static {
    const NAME: &'static str;
    fn build() -> Self;
    /// Read with idle refresh; returns an owned copy of the value.
    fn get(&self, id: &str) -> Option<Vec<u8>>;
    /// Read with idle refresh without copying the value out, where the store can lend it;
    /// returns its length. Lets a benchmark read without allocating.
    fn get_len(&self, id: &str) -> Option<usize> {
        self.get(id).map(|v| v.len())
    }
    /// Write a session, creating it if it does not exist.
    fn set(&self, id: &str, value: &[u8]);
    /// Slide the deadline without touching data.
    fn touch(&self, id: &str) -> bool;
    /// New session under a fresh CSPRNG id.
    fn create(&self, value: &[u8], ttl: Duration) -> String;
    fn len(&self) -> usize;
    fn remove(&self, id: &str);
    /// Background reclamation, for backends that need a thread to do it (run by the caller).
    fn sweep(&self) {}
    /// Called every 100 ms by a benchmark's helper thread: sweeps once a second.
    fn sweep_if_due(&self) {
        static LAST: AtomicU64 = AtomicU64::new(0);
        let now = now_ms();
        if now.saturating_sub(LAST.load(Relaxed)) >= 1000 {
            LAST.store(now, Relaxed);
            self.sweep();
        }
    }
}

/// Milliseconds on a process-wide monotonic clock, for the baselines' deadlines.
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

pub struct Coatcheck(pub Store);

impl Backend for Coatcheck {
    const NAME: &'static str = "coatcheck";
    fn build() -> Self {
        let mut config = Config::default();
        config.idle_timeout = IDLE;
        // COATCHECK_BENCH_TRIM=0 turns off returning memory to the OS, to show what it costs.
        if std::env::var("COATCHECK_BENCH_TRIM").is_ok_and(|v| v == "0") {
            config.trim_after_freeing = None;
        }
        Self(Store::new(config).expect("config"))
    }
    fn get(&self, id: &str) -> Option<Vec<u8>> {
        self.0.get(id).ok().flatten()
    }
    fn get_len(&self, id: &str) -> Option<usize> {
        self.0.get_with(id, |s| s.value.len()).ok().flatten()
    }
    fn set(&self, id: &str, value: &[u8]) {
        self.0.set(id, value, None).expect("set");
    }
    fn touch(&self, id: &str) -> bool {
        self.0.touch(id, None).unwrap_or(false)
    }
    fn create(&self, value: &[u8], ttl: Duration) -> String {
        self.0.create(value, Some(ttl)).expect("create")
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn remove(&self, id: &str) {
        let _ = self.0.destroy(id);
    }
}

pub struct Slot {
    value: Box<[u8]>,
    deadline: AtomicU64,
    ttl: u64,
}

impl Slot {
    fn new(value: &[u8], ttl: Duration) -> Self {
        let ttl = ttl.as_millis() as u64;
        Self {
            value: value.into(),
            deadline: AtomicU64::new(now_ms() + ttl),
            ttl,
        }
    }
    fn read(&self) -> Option<Vec<u8>> {
        let now = now_ms();
        if now >= self.deadline.load(Relaxed) {
            return None;
        }
        self.deadline.store(now + self.ttl, Relaxed);
        Some(self.value.to_vec())
    }
}

/// One `RwLock` over a std `HashMap`: the simplest thread-safe store.
pub struct RwLockMap(RwLock<HashMap<String, Slot>>);

impl Backend for RwLockMap {
    const NAME: &'static str = "rwlock-hashmap";
    fn build() -> Self {
        Self(RwLock::new(HashMap::new()))
    }
    fn get(&self, id: &str) -> Option<Vec<u8>> {
        self.0.read().get(id)?.read()
    }
    fn set(&self, id: &str, value: &[u8]) {
        self.0
            .write()
            .insert(id.to_string(), Slot::new(value, IDLE));
    }
    fn touch(&self, id: &str) -> bool {
        self.0.read().get(id).is_some_and(|s| s.read().is_some())
    }
    fn create(&self, value: &[u8], ttl: Duration) -> String {
        let id = coatcheck::generate_id();
        self.0.write().insert(id.clone(), Slot::new(value, ttl));
        id
    }
    fn len(&self) -> usize {
        self.0.read().len()
    }
    fn remove(&self, id: &str) {
        self.0.write().remove(id);
    }
    fn sweep(&self) {
        let now = now_ms();
        self.0.write().retain(|_, s| s.deadline.load(Relaxed) > now);
    }
}

pub struct Dash(dashmap::DashMap<String, Slot>);

impl Backend for Dash {
    const NAME: &'static str = "dashmap";
    fn build() -> Self {
        Self(dashmap::DashMap::new())
    }
    fn get(&self, id: &str) -> Option<Vec<u8>> {
        self.0.get(id)?.read()
    }
    fn set(&self, id: &str, value: &[u8]) {
        self.0.insert(id.to_string(), Slot::new(value, IDLE));
    }
    fn touch(&self, id: &str) -> bool {
        self.0.get(id).is_some_and(|s| s.read().is_some())
    }
    fn create(&self, value: &[u8], ttl: Duration) -> String {
        let id = coatcheck::generate_id();
        self.0.insert(id.clone(), Slot::new(value, ttl));
        id
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn remove(&self, id: &str) {
        self.0.remove(id);
    }
    fn sweep(&self) {
        let now = now_ms();
        self.0.retain(|_, s| s.deadline.load(Relaxed) > now);
    }
}

/// moka with a per-entry idle TTL read from the value, so `get` slides it as a session needs.
pub struct Moka(moka::sync::Cache<String, Arc<MokaValue>>);

pub struct MokaValue {
    value: Box<[u8]>,
    ttl: Duration,
}

struct IdlePerEntry;

impl moka::Expiry<String, Arc<MokaValue>> for IdlePerEntry {
    fn expire_after_create(&self, _: &String, v: &Arc<MokaValue>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_read(
        &self,
        _: &String,
        v: &Arc<MokaValue>,
        _: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _: &String,
        v: &Arc<MokaValue>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

impl Backend for Moka {
    const NAME: &'static str = "moka";
    fn build() -> Self {
        Self(
            moka::sync::Cache::builder()
                .expire_after(IdlePerEntry)
                .build(),
        )
    }
    fn get(&self, id: &str) -> Option<Vec<u8>> {
        self.0.get(id).map(|v| v.value.to_vec())
    }
    fn set(&self, id: &str, value: &[u8]) {
        self.0.insert(
            id.to_string(),
            Arc::new(MokaValue {
                value: value.into(),
                ttl: IDLE,
            }),
        );
    }
    fn touch(&self, id: &str) -> bool {
        self.0.get(id).is_some()
    }
    fn create(&self, value: &[u8], ttl: Duration) -> String {
        let id = coatcheck::generate_id();
        self.0.insert(
            id.clone(),
            Arc::new(MokaValue {
                value: value.into(),
                ttl,
            }),
        );
        id
    }
    fn len(&self) -> usize {
        self.0.run_pending_tasks();
        self.0.entry_count() as usize
    }
    fn remove(&self, id: &str) {
        self.0.invalidate(id);
    }
    fn sweep(&self) {
        self.0.run_pending_tasks();
    }
}

/// Fills a backend with `n` sessions of `value_len` bytes; returns their ids.
pub fn prefill<B: Backend>(backend: &B, n: usize, value_len: usize) -> Vec<String> {
    let value = vec![b'x'; value_len];
    (0..n).map(|_| backend.create(&value, IDLE)).collect()
}

/// A tiny xorshift for picking ids: cheap enough not to show up in the measurements.
pub struct Pick(u64);

impl Pick {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn index(&mut self, len: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % len as u64) as usize
    }
}

/// Resident set size of this process, from /proc (Linux).
pub fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Sets the calling thread's nice value (Linux: per thread); ignored where not permitted.
pub fn set_this_threads_nice(nice: i32) {
    // SAFETY: setpriority has no memory-safety preconditions; `who` = 0 is the calling thread
    // on Linux. A refusal (not root) leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
    }
}

/// Gives glibc's free pages back so an RSS reading reflects live memory only.
pub fn trim() {
    // SAFETY: malloc_trim has no preconditions; it only releases pages without live allocations.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Each backend's measurement, by name, for benchmarks that run one backend per child process
/// (so no backend inherits another's heap).
pub type Measurements = [(&'static str, fn()); 4];

pub fn measurements(coatcheck: fn(), rwlock: fn(), dash: fn(), moka: fn()) -> Measurements {
    [
        (Coatcheck::NAME, coatcheck),
        (RwLockMap::NAME, rwlock),
        (Dash::NAME, dash),
        (Moka::NAME, moka),
    ]
}

/// In a child (`--child NAME`): runs that backend's measurement and returns true. In the
/// parent: returns false, so the caller prints its header and calls [`run_children`].
/// `--list` (cargo bench probing the binary) also returns true, doing nothing.
pub fn run_as_child(all: &Measurements) -> bool {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let name = args.get(pos + 1).map(String::as_str);
        let (_, run) = all
            .iter()
            .find(|(n, _)| Some(*n) == name)
            .expect("known backend name after --child");
        run();
        return true;
    }
    args.iter().any(|a| a == "--list")
}

/// Runs every measurement in its own child process, one after the other.
/// `COATCHECK_BENCH_STORES=coatcheck,dashmap` runs only those.
pub fn run_children(all: &Measurements) {
    let exe = std::env::current_exe().expect("current exe");
    let only = std::env::var("COATCHECK_BENCH_STORES").unwrap_or_default();
    for (name, _) in all {
        if !only.is_empty() && !only.split(',').any(|o| o == *name) {
            continue;
        }
        let status = std::process::Command::new(&exe)
            .args(["--child", name])
            .status()
            .expect("spawn child");
        assert!(status.success(), "{name} failed");
    }
}
