//! The restart log (`Config::persist_path`): what a store built on the same directory finds
//! after a kill, a clean close or damaged files.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use coatcheck::{Config, Error, Fsync, Session, Store};

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "coatcheck-persist-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).unwrap();
        TempDir(path)
    }

    /// The log directory inside (created by the store).
    fn sessions(&self) -> PathBuf {
        self.0.join("sessions")
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.sessions())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn file_starting(&self, prefix: &str) -> PathBuf {
        let name = self
            .files()
            .into_iter()
            .find(|n| n.starts_with(prefix) && !n.contains(".damaged"))
            .unwrap_or_else(|| panic!("no {prefix} file in {:?}", self.files()));
        self.sessions().join(name)
    }

    /// The log file a test's one thread wrote to. A generation is written to one file per
    /// writing thread (up to one per core): the one that holds records.
    fn written_log(&self) -> PathBuf {
        let logs: Vec<PathBuf> = self
            .files()
            .into_iter()
            .filter(|n| n.starts_with("log.") && !n.contains(".damaged"))
            .map(|n| self.sessions().join(n))
            .collect();
        let written: Vec<&PathBuf> = logs
            .iter()
            .filter(|path| records_end(&fs::read(path).unwrap()) > 16)
            .collect();
        assert_eq!(written.len(), 1, "log files with records: {written:?}");
        written[0].clone()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.persist_path = Some(dir.to_path_buf());
    config.persist_fsync = Fsync::Never;
    config
}

/// What a crash leaves: the files as they are on disk while the store still runs (every
/// acknowledged change has been written to them), copied into a fresh directory.
fn crash_copy(from: &TempDir, name: &str) -> TempDir {
    crash_copy_of(&from.sessions(), name)
}

/// [`crash_copy`] of the log directory `from`.
fn crash_copy_of(from: &Path, name: &str) -> TempDir {
    let to = TempDir::new(name);
    fs::create_dir(to.sessions()).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name != "lock" && entry.file_type().unwrap().is_file() {
            fs::copy(from.join(&name), to.sessions().join(&name)).unwrap();
        }
    }
    to
}

/// Every live session: id → (value, version, owner).
type Contents = BTreeMap<String, (Vec<u8>, u64, Option<String>)>;

fn contents(store: &Store) -> Contents {
    store
        .ids()
        .unwrap()
        .into_iter()
        .map(|id| {
            let Session {
                value,
                version,
                owner,
                ..
            } = store.peek(&id).unwrap().unwrap();
            (id, (value, version, owner))
        })
        .collect()
}

/// A session's data as frameworks write it: the same from write to write but for a counter in
/// the middle and a tail whose length varies, so that the log records most rewrites as patches
/// (the bytes between the unchanged ends) and some as whole values.
fn session_data(n: u64) -> Vec<u8> {
    format!(
        "{{\"cookie\":{{\"originalMaxAge\":86400000,\"httpOnly\":true,\"path\":\"/\"}},\
         \"views\":{n},\"user\":\"{}\"}}",
        "someone".repeat((n % 3) as usize + 1)
    )
    .into_bytes()
}

/// A mix of every kind of change: creates, sets, destroys, regenerates, owner changes.
fn churn(store: &Store, rounds: usize) {
    let mut ids = Vec::new();
    for i in 0..rounds {
        let id = store
            .create(format!("{{\"n\":{i}}}").as_bytes(), None)
            .unwrap();
        ids.push(id);
        fn pick(ids: &[String], i: usize, k: usize) -> String {
            ids[(i * 7 + k) % ids.len()].clone()
        }
        store
            .set(&pick(&ids, i, 1), &session_data(i as u64), None)
            .unwrap();
        if i % 3 == 0 {
            // Gone if a destroy_owner took it: that is not an error here.
            let owned = store.set_owner(&pick(&ids, i, 2), Some(&format!("user-{}", i % 5)));
            assert!(matches!(owned, Ok(()) | Err(Error::NotFound)), "{owned:?}");
        }
        if i % 5 == 0 {
            let old = pick(&ids, i, 3);
            if let Some(new) = store.regenerate(&old).unwrap() {
                ids.retain(|x| *x != old);
                ids.push(new);
            }
        }
        if i % 4 == 0 && ids.len() > 1 {
            let gone = pick(&ids, i, 4);
            store.destroy(&gone).unwrap();
            ids.retain(|x| *x != gone);
        }
        if i % 50 == 49 {
            store.destroy_owner("user-1", None).unwrap();
        }
        store
            .set(&format!("chosen-{}", i % 13), b"caller chose this id", None)
            .unwrap();
        store
            .touch(&pick(&ids, i, 5), Some(Duration::from_secs(600)))
            .unwrap();
    }
}

/// What `a_killed_process_leaves_exactly_what_it_acknowledged` runs in a child process: a mix
/// of writes, a dump of the state they acknowledged, then SIGKILL.
#[test]
fn child_that_writes_then_kills_itself() {
    let Ok(dir) = std::env::var("COATCHECK_PERSIST_CHILD_DIR") else {
        return;
    };
    let store = Store::new(config(Path::new(&dir))).unwrap();
    churn(&store, 400);
    for (id, (value, version, owner)) in contents(&store) {
        println!(
            "{id}\t{}\t{version}\t{}",
            String::from_utf8(value).unwrap(),
            owner.unwrap_or_default()
        );
    }
    println!("ACKNOWLEDGED");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    // SAFETY: kill(2) with this process's own pid; touches no memory.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL returned");
}

#[test]
fn a_killed_process_leaves_exactly_what_it_acknowledged() {
    let dir = TempDir::new("kill");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_that_writes_then_kills_itself",
            "--nocapture",
        ])
        .env("COATCHECK_PERSIST_CHILD_DIR", dir.sessions())
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let acknowledged: Contents = stdout
        .lines()
        .take_while(|l| *l != "ACKNOWLEDGED")
        .filter(|l| l.contains('\t'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let owner = (!f[3].is_empty()).then(|| f[3].to_string());
            (
                f[0].to_string(),
                (f[1].as_bytes().to_vec(), f[2].parse().unwrap(), owner),
            )
        })
        .collect();
    assert!(stdout.contains("ACKNOWLEDGED"), "{stdout}");
    assert!(
        acknowledged.len() > 100,
        "too few sessions: {}",
        acknowledged.len()
    );
    let store = Store::new(config(&dir.sessions())).unwrap();
    assert_eq!(contents(&store), acknowledged);
    assert_eq!(
        store.stats().log.unwrap().restored,
        acknowledged.len() as u64
    );
    assert_eq!(store.sessions_of("user-2").unwrap().len(), {
        acknowledged
            .values()
            .filter(|(_, _, o)| o.as_deref() == Some("user-2"))
            .count()
    });
    store.check_invariants().unwrap();
}

#[test]
fn a_clean_close_leaves_one_snapshot_that_holds_everything() {
    let dir = TempDir::new("close");
    let before = {
        let store = Store::new(config(&dir.sessions())).unwrap();
        churn(&store, 200);
        contents(&store)
    };
    let files = dir.files();
    let (logs, others): (Vec<_>, Vec<_>) = files.iter().partition(|n| n.starts_with("log."));
    assert!(
        others.len() == 2 && others[0] == "lock" && others[1].starts_with("snapshot."),
        "{files:?}"
    );
    // The log after a clean close holds headers only: one file per segment, all of the
    // snapshot's generation.
    let generation = &others[1]["snapshot.".len()..];
    assert!(!logs.is_empty());
    for log in logs {
        assert!(log.starts_with(&format!("log.{generation}.")), "{files:?}");
        assert_eq!(fs::metadata(dir.sessions().join(log)).unwrap().len(), 16);
    }
    let store = Store::new(config(&dir.sessions())).unwrap();
    assert_eq!(contents(&store), before);
    store.check_invariants().unwrap();
}

/// A crash at each step of a compaction (here the clean close's): while the snapshot is still
/// a temporary file, and after it was renamed into place but before the files it replaces
/// were removed. Either directory loads as the store was; a torn temporary file is removed.
#[test]
fn a_crash_at_any_step_of_a_compaction_restores_the_same_sessions() {
    let dir = TempDir::new("compaction-crash");
    let store = Store::new(config(&dir.sessions())).unwrap();
    churn(&store, 300);
    let expected = contents(&store);
    let before = crash_copy(&dir, "compaction-crash-before");
    store.close().unwrap();
    let snapshot = dir.file_starting("snapshot.");
    let snapshot_name = snapshot.file_name().unwrap().to_owned();
    let snapshot_bytes = fs::read(&snapshot).unwrap();
    let steps = [
        "the snapshot half written, under its temporary name",
        "the snapshot renamed, the files it replaces still there",
    ];
    for (n, step) in steps.iter().enumerate() {
        let crashed = crash_copy(&before, &format!("compaction-crash-{n}"));
        if n == 0 {
            let mut tmp = snapshot_name.clone();
            tmp.push(".tmp");
            let half = &snapshot_bytes[..snapshot_bytes.len() / 2];
            fs::write(crashed.sessions().join(tmp), half).unwrap();
        } else {
            fs::write(crashed.sessions().join(&snapshot_name), &snapshot_bytes).unwrap();
        }
        let restored = Store::new(config(&crashed.sessions())).unwrap();
        assert_eq!(contents(&restored), expected, "a crash with {step}");
        restored.check_invariants().unwrap();
        drop(restored);
        assert!(
            !crashed.files().iter().any(|f| f.ends_with(".tmp")),
            "a crash with {step}: {:?}",
            crashed.files()
        );
    }
}

/// The log is compacted in the background once it passes 64 MiB (and the last snapshot's
/// size), without a close: a store that is never restarted does not fill its disk.
#[test]
fn a_log_past_64_mib_is_compacted_in_the_background() {
    let dir = TempDir::new("auto-compaction");
    let store = Store::new(config(&dir.sessions())).unwrap();
    let log_stats = || store.stats().log.unwrap();
    let compactions = log_stats().compactions;
    // Whole new 4 KiB values (no patch applies), over 100 sessions: about 80 MiB of log.
    let mut written = 0u64;
    for n in 0..20_000u32 {
        let value = vec![(n % 251) as u8; 4096];
        store.set(&format!("s{}", n % 100), &value, None).unwrap();
        written += 4096;
    }
    assert!(written > 64 << 20);
    let start = std::time::Instant::now();
    while log_stats().compactions == compactions {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no compaction of a log of {} bytes",
            log_stats().log_bytes
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = log_stats();
    assert!(after.log_bytes < 64 << 20, "{after:?}");
    // The snapshot holds the 100 sessions, not the 20,000 writes.
    assert!(after.snapshot_bytes < 2 << 20, "{after:?}");
    drop(store);
    let restored = Store::new(config(&dir.sessions())).unwrap();
    assert_eq!(restored.len(), 100);
    assert_eq!(
        restored.peek("s99").unwrap().unwrap().value,
        vec![(19_999 % 251) as u8; 4096]
    );
}

#[test]
fn compactions_while_other_threads_write_lose_nothing() {
    let dir = TempDir::new("compact");
    let store = Store::new(config(&dir.sessions())).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("w{w}-{}", n % 500);
                    store.set(&id, &session_data(n), None).unwrap();
                    if n % 7 == 0 {
                        store.destroy(&format!("w{w}-{}", (n * 3) % 500)).unwrap();
                    }
                    n += 1;
                }
            })
        })
        .collect();
    for _ in 0..20 {
        store.compact_log().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let crashed = crash_copy(&dir, "compact-copy");
    let restored = Store::new(config(&crashed.sessions())).unwrap();
    assert_eq!(contents(&restored), contents(&store));
    assert!(store.stats().log.unwrap().compactions >= 20);
}

#[test]
fn lifetimes_continue_from_where_they_were() {
    let dir = TempDir::new("lifetimes");
    let mut cfg = config(&dir.sessions());
    cfg.idle_timeout = Duration::from_secs(4);
    cfg.absolute_timeout = Some(Duration::from_secs(6));
    let store = Store::new(cfg.clone()).unwrap();
    let before_creates = std::time::Instant::now();
    let idle = store.create(b"idle", None).unwrap();
    let capped = store
        .create(b"capped", Some(Duration::from_secs(60)))
        .unwrap();
    let short = store
        .create(b"short", Some(Duration::from_millis(900)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let crashed = crash_copy(&dir, "lifetimes-copy");
    let restored = Store::new({
        let mut c = cfg.clone();
        c.persist_path = Some(crashed.sessions());
        c
    })
    .unwrap();
    let left = |id: &str| restored.peek(id).unwrap().map(|s| s.expires_in);
    let idle_left = left(&idle).expect("idle session restored");
    let capped_left = left(&capped).expect("capped session restored");
    // At least what had passed since the creates when the lifetimes were read (ms rounding).
    let since = before_creates.elapsed();
    let slack = Duration::from_millis(5);
    // Idle: 4 s from its creation, at least 1.2 s ago.
    assert!(idle_left <= Duration::from_millis(2800), "{idle_left:?}");
    assert!(
        idle_left + since + slack >= Duration::from_secs(4),
        "{idle_left:?} after {since:?}"
    );
    // Absolute: 6 s from creation, whatever its 60 s idle timeout.
    assert!(
        capped_left <= Duration::from_millis(4800),
        "{capped_left:?}"
    );
    assert!(
        capped_left + since + slack >= Duration::from_secs(6),
        "{capped_left:?} after {since:?}"
    );
    // Expired while the process was down: not loaded.
    assert_eq!(left(&short), None);
    assert_eq!(restored.len(), 2);
    // A read after the restart slides the idle deadline, but never past the absolute one.
    assert!(restored.get(&capped).unwrap().is_some());
    assert!(left(&capped).unwrap() <= capped_left);
}

/// A session that is only read keeps living after a restart from its last read, not from its
/// creation; and reads are logged only when they move the deadline across the slack (1/64 of
/// the idle timeout), not one record per read.
#[test]
fn reads_move_the_restored_deadline_and_are_logged_only_across_the_slack() {
    const HOUR_MS: u64 = 3_600_000;
    let (dir, mut cfg, clock, store) = on_a_set_clock("read-slides", 3600, None, 1_000_000);
    let id = store.create(b"read only", None).unwrap();
    let records = |store: &Store| store.stats().log.unwrap().records;
    let before = records(&store);
    // 50 minutes of reads, one every 3 s.
    for n in 1..=1000u64 {
        clock.set(1_000_000 + n * 3000);
        assert!(store.get(&id).unwrap().is_some());
    }
    // The deadline moved 50 minutes: about 53 crossings of a 56 s slack, not 1000 records.
    let logged = records(&store) - before;
    assert!(logged <= 60, "{logged} records for 1000 reads");
    let crashed = crash_copy(&dir, "read-slides-copy");
    cfg.persist_path = Some(crashed.sessions());
    let restored = Store::with_clock(cfg, clock.clone()).unwrap();
    let left = restored.peek(&id).unwrap().expect("a session read 0 s ago");
    // An hour from the last read, give or take one slack; from its creation it would be 10 min.
    assert!(
        left.expires_in >= Duration::from_millis(HOUR_MS - 57_000),
        "{:?}",
        left.expires_in
    );
}

/// express-session restates the idle timeout on every request as `cookie.expires - now`, a
/// millisecond more or less from one request to the next. Each such touch is a slide to the
/// log, recorded only across the slack; a real new timeout ("remember me", or a shorter one)
/// is recorded at once and survives a crash.
#[test]
fn timeouts_restated_a_few_ms_apart_are_logged_as_slides_and_new_ones_at_once() {
    const HOUR_MS: u64 = 3_600_000;
    let (dir, mut cfg, clock, store) = on_a_set_clock("restated", 3600, None, 1_000_000);
    let id = store.create(b"user", None).unwrap();
    let records = |store: &Store| store.stats().log.unwrap().records;
    let before = records(&store);
    for n in 0..1000u64 {
        clock.set(1_000_000 + (n + 1) * 1000); // a request a second for 1000 s
        let restated = Duration::from_millis(HOUR_MS - n % 2);
        assert!(store.touch(&id, Some(restated)).unwrap());
    }
    // The slack is 1/64 of an hour (56 s): the deadline crossed it about 18 times in 1000 s.
    let logged = records(&store) - before;
    assert!(logged <= 25, "{logged} records for 1000 restated timeouts");

    // A timeout that drifts down a second at a time (a caller passing `expiry - now` with a
    // fixed expiry): every step is small, but they add up to 50 minutes, and the log follows.
    let drifting = store.create(b"drifting", None).unwrap();
    let start_ms = 1_000_000 + 1000 * 1000;
    let expiry_ms = start_ms + HOUR_MS;
    for n in 1..=3000u64 {
        clock.set(start_ms + n * 1000);
        let left = Duration::from_millis(expiry_ms - (start_ms + n * 1000));
        assert!(store.touch(&drifting, Some(left)).unwrap());
    }
    let remember_me = store.create(b"remember", None).unwrap();
    assert!(
        store
            .touch(&remember_me, Some(30 * 24 * Duration::from_secs(3600)))
            .unwrap()
    );
    let shortened = store.create(b"short", None).unwrap();
    assert!(
        store
            .touch(&shortened, Some(Duration::from_secs(60)))
            .unwrap()
    );
    let crashed = crash_copy(&dir, "restated-copy");
    cfg.persist_path = Some(crashed.sessions());
    let restored = Store::with_clock(cfg, clock.clone()).unwrap();
    let left = |id: &str| restored.peek(id).unwrap().unwrap().expires_in;
    // Within one slack of the truth (an hour from the last touch), never past it.
    let restated_left = left(&id);
    assert!(
        restated_left <= Duration::from_millis(HOUR_MS),
        "{restated_left:?}"
    );
    assert!(
        restated_left >= Duration::from_millis(HOUR_MS - 57_000),
        "{restated_left:?}"
    );
    assert_eq!(left(&remember_me), 30 * 24 * Duration::from_secs(3600));
    assert_eq!(left(&shortened), Duration::from_secs(60));
    // The drifting session's timeout is 10 minutes now; restored, a read slides it by that
    // much, give or take a slack (56 s), not by the hour it started with.
    assert!(restored.get(&drifting).unwrap().is_some());
    let drifted = left(&drifting);
    assert!(
        drifted.abs_diff(Duration::from_secs(600)) < Duration::from_secs(57),
        "{drifted:?}"
    );
}

#[test]
fn a_version_is_never_reissued_after_a_restart() {
    let dir = TempDir::new("versions");
    let (old_version, copy) = {
        let store = Store::new(config(&dir.sessions())).unwrap();
        for _ in 0..5 {
            store.set("user-chosen", b"x", None).unwrap();
        }
        let v = store.set("user-chosen", b"last", None).unwrap();
        assert!(store.destroy("user-chosen").unwrap());
        (v, crash_copy(&dir, "versions-copy"))
    };
    let store = Store::new(config(&copy.sessions())).unwrap();
    assert_eq!(
        store.get("user-chosen").unwrap(),
        None,
        "revoked session came back"
    );
    let fresh = store.set("user-chosen", b"new", None).unwrap();
    assert!(fresh > old_version, "{fresh} <= {old_version}");
    // A request that read the old session cannot overwrite the new one.
    assert!(matches!(
        store.set_if_version("user-chosen", b"stale", old_version, None),
        Err(Error::Conflict { .. })
    ));
}

/// What a crash leaves after `n` sessions were written: the first half in a snapshot (a
/// compaction ran), the second half in the log after it.
fn crashed_with_sessions(name: &str, n: usize) -> (TempDir, Contents) {
    let dir = TempDir::new(name);
    let store = Store::new(config(&dir.sessions())).unwrap();
    for i in 0..n {
        if i == n / 2 {
            store.compact_log().unwrap();
        }
        store
            .set(&format!("s{i:03}"), format!("value {i}").as_bytes(), None)
            .unwrap();
    }
    let copy = crash_copy(&dir, &format!("{name}-copy"));
    (copy, contents(&store))
}

/// Where a log's records end: after them the file holds the zeros it reserved ahead.
fn records_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

fn damaged_files(dir: &TempDir) -> Vec<String> {
    dir.files()
        .into_iter()
        .filter(|n| n.contains(".damaged-"))
        .collect()
}

#[test]
fn a_torn_tail_keeps_every_record_before_it_and_sets_the_rest_aside() {
    let (dir, before) = crashed_with_sessions("torn", 50);
    let log = dir.written_log();
    let end = records_end(&fs::read(&log).unwrap());
    // Cut the last record in half: a crash in the middle of copying it.
    let file = fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(end as u64 - 10).unwrap();
    drop(file);
    let store = Store::new(config(&dir.sessions())).unwrap();
    let mut expected = before.clone();
    expected.remove("s049");
    assert_eq!(contents(&store), expected);
    assert_eq!(damaged_files(&dir).len(), 1, "{:?}", dir.files());
    // What was set aside is kept out of the next load, and the store writes on.
    store.set("after", b"x", None).unwrap();
    drop(store);
    let store = Store::new(config(&dir.sessions())).unwrap();
    assert_eq!(store.len(), 50);
}

/// A snapshot cut short (a disk that lost its end, a copy that stopped): the sessions before
/// the cut load, and the log written after the snapshot still applies on top of them.
#[test]
fn a_truncated_snapshot_keeps_the_sessions_before_the_cut() {
    let (dir, before) = crashed_with_sessions("truncated-snapshot", 50);
    let snapshot = dir.file_starting("snapshot.");
    let bytes = fs::read(&snapshot).unwrap();
    // s000..s024 are in the snapshot, s025..s049 in the log after it. Cut the snapshot in the
    // middle of its records.
    fs::write(&snapshot, &bytes[..bytes.len() / 2]).unwrap();
    let store = Store::new(config(&dir.sessions())).unwrap();
    let now = contents(&store);
    for (id, session) in &now {
        assert_eq!(
            before.get(id),
            Some(session),
            "{id} differs from what was written"
        );
    }
    let from_log = now.keys().filter(|id| id.as_str() >= "s025").count();
    let from_snapshot = now.len() - from_log;
    assert_eq!(from_log, 25, "{:?}", now.keys());
    assert!(
        (5..25).contains(&from_snapshot),
        "{from_snapshot} of 25 from the snapshot"
    );
    // Loaded from, then compacted into a whole snapshot: the next start loads the same.
    drop(store);
    let store = Store::new(config(&dir.sessions())).unwrap();
    assert_eq!(contents(&store), now);
}

#[test]
fn a_flipped_byte_keeps_the_records_before_it() {
    let (dir, before) = crashed_with_sessions("flip", 50);
    let log = dir.written_log();
    let mut bytes = fs::read(&log).unwrap();
    // In the middle of the log's records: the snapshot's 25 sessions and about half of the
    // log's survive.
    let at = records_end(&bytes) / 2;
    bytes[at] ^= 0x20;
    fs::write(&log, &bytes).unwrap();
    let store = Store::new(config(&dir.sessions())).unwrap();
    let now = contents(&store);
    assert!(now.len() >= 30 && now.len() < 50, "{} sessions", now.len());
    for (id, session) in &now {
        assert_eq!(
            before.get(id),
            Some(session),
            "{id} differs from what was written"
        );
    }
    assert_eq!(damaged_files(&dir).len(), 1);
}

#[test]
fn a_zero_length_log_is_an_empty_one() {
    let (dir, before) = crashed_with_sessions("empty", 10);
    fs::write(dir.sessions().join("log.00000000000000ff"), b"").unwrap();
    let store = Store::new(config(&dir.sessions())).unwrap();
    assert_eq!(contents(&store), before);
}

/// A crash between reserving a new log file's space and writing its header leaves a file of
/// zeros: it never held a record, so it is removed, not set aside as damage.
#[test]
fn a_log_of_zeros_only_or_empty_is_removed_not_set_aside() {
    let (dir, before) = crashed_with_sessions("zeros", 10);
    let written = dir.written_log();
    let name = written.file_name().unwrap().to_str().unwrap();
    // The next generation's first two segments, as this version names them.
    let generation = u64::from_str_radix(&name["log.".len()..name.len() - 3], 16).unwrap();
    let zeros = format!("log.{:016x}.00", generation + 1);
    let empty = format!("log.{:016x}.01", generation + 1);
    fs::write(dir.sessions().join(&zeros), vec![0u8; 4 << 20]).unwrap();
    fs::write(dir.sessions().join(&empty), b"").unwrap();
    let store = Store::new(config(&dir.sessions())).unwrap();
    assert_eq!(contents(&store), before);
    assert_eq!(damaged_files(&dir), Vec::<String>::new());
    let files = dir.files();
    assert!(
        !files.contains(&zeros) && !files.contains(&empty),
        "{files:?}"
    );
}

#[test]
fn a_file_of_another_format_is_set_aside_whole_and_the_rest_still_loads() {
    let (dir, before) = crashed_with_sessions("format", 10);
    // A snapshot of a format this version does not read: its sessions (the first five) are
    // lost, the log's still load.
    let snapshot = dir.file_starting("snapshot.");
    let mut bytes = fs::read(&snapshot).unwrap();
    bytes[8] = 9;
    fs::write(&snapshot, &bytes).unwrap();
    // And a stray log with wrong magic bytes.
    fs::write(
        dir.sessions().join("log.00000000000000fe"),
        b"not a coatcheck log at all",
    )
    .unwrap();
    let store = Store::new(config(&dir.sessions())).unwrap();
    let mut expected = before.clone();
    expected.retain(|id, _| id.as_str() >= "s005");
    assert_eq!(contents(&store), expected);
    assert_eq!(damaged_files(&dir).len(), 2, "{:?}", dir.files());
}

#[test]
fn a_closed_store_unlocks_its_directory_for_a_new_store_in_the_same_process() {
    let dir = TempDir::new("closed");
    let store = Store::new(config(&dir.sessions())).unwrap();
    store.set("kept", b"before the close", None).unwrap();
    let clone = store.clone(); // a binding's handle that the garbage collector has not freed
    clone.close().unwrap();
    clone.close().unwrap(); // again: nothing more to do
    assert!(matches!(
        store.set("after", b"refused", None),
        Err(Error::Unavailable(_))
    ));
    // A touch that sets a timeout is a change the log would have to record: refused too.
    assert!(matches!(
        store.touch("kept", Some(std::time::Duration::from_secs(5))),
        Err(Error::Unavailable(_))
    ));
    assert_eq!(store.touch("kept", None), Ok(true));
    assert_eq!(
        store.get("kept").unwrap().as_deref(),
        Some(&b"before the close"[..])
    );
    let reopened = Store::new(config(&dir.sessions())).expect("the directory is free");
    assert_eq!(
        reopened.get("kept").unwrap().as_deref(),
        Some(&b"before the close"[..])
    );
    assert_eq!(reopened.get("after").unwrap(), None);
    // The closed store's last reads and its drop leave the new store's files alone.
    store.get("kept").unwrap();
    drop((store, clone));
    reopened.set("new", b"by the second store", None).unwrap();
    drop(reopened);
    let third = Store::new(config(&dir.sessions())).unwrap();
    assert_eq!(
        third.get("kept").unwrap().as_deref(),
        Some(&b"before the close"[..])
    );
    assert_eq!(
        third.get("new").unwrap().as_deref(),
        Some(&b"by the second store"[..])
    );
}

#[test]
fn every_write_acknowledged_before_a_close_is_in_the_store_opened_after_it() {
    let dir = TempDir::new("close-under-writes");
    let store = Store::new(config(&dir.sessions())).unwrap();
    let writers: Vec<_> = (0..2)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for n in 0.. {
                    let id = format!("t{thread}-{n}");
                    match store.set(&id, id.as_bytes(), None) {
                        Ok(_) => acknowledged.push(id),
                        Err(Error::Unavailable(_)) => return acknowledged,
                        Err(e) => panic!("{e}"),
                    }
                }
                unreachable!()
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(100));
    store.close().unwrap();
    let acknowledged: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(acknowledged.len() > 100, "{}", acknowledged.len());
    let reopened = Store::new(config(&dir.sessions())).unwrap();
    for id in &acknowledged {
        assert_eq!(
            reopened.get(id).unwrap().as_deref(),
            Some(id.as_bytes()),
            "{id}"
        );
    }
    assert_eq!(reopened.len(), acknowledged.len());
}

/// A close must wait for a call that is still making its changes: here a `destroy_owner`
/// held inside its first removal (by a listener) while another thread closes the store. The
/// final snapshot must not be taken, and the directory released, before its last removal is
/// logged.
#[test]
fn close_waits_for_a_call_still_making_its_changes() {
    use std::sync::{Mutex, mpsc};
    let dir = TempDir::new("close-waits");
    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let hold_first_removal = Arc::new(AtomicBool::new(false));
    let hold = hold_first_removal.clone();
    let (entered_tx, go_rx) = (Mutex::new(entered_tx), Mutex::new(go_rx));
    let store = Store::builder(config(&dir.sessions()))
        .listener(Duration::from_secs(1), move |change| {
            if matches!(change.kind, coatcheck::ChangeKind::Removed { .. })
                && hold.swap(false, Ordering::SeqCst)
            {
                entered_tx.lock().unwrap().send(()).unwrap();
                go_rx.lock().unwrap().recv().unwrap();
            }
        })
        .build()
        .unwrap();
    for n in 0..8 {
        let id = format!("device-{n}");
        store.set(&id, b"x", None).unwrap();
        store.set_owner(&id, Some("alice")).unwrap();
    }
    hold_first_removal.store(true, Ordering::SeqCst);
    let logging_out = {
        let store = store.clone();
        std::thread::spawn(move || store.destroy_owner("alice", None))
    };
    entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the listener saw the first removal");
    // Not joined: a close that never returned fails the test instead of hanging it.
    let (closed_tx, closed) = mpsc::channel();
    {
        let store = store.clone();
        std::thread::spawn(move || closed_tx.send(store.close()));
    }
    assert!(
        closed.recv_timeout(Duration::from_millis(300)).is_err(),
        "close returned while a call was still changing sessions"
    );
    go.send(()).unwrap();
    assert_eq!(logging_out.join().unwrap().unwrap(), 8);
    closed
        .recv_timeout(Duration::from_secs(10))
        .expect("close returned once the call ended")
        .unwrap();
    let reopened = Store::new(config(&dir.sessions())).unwrap();
    assert_eq!(reopened.len(), 0, "{:?}", reopened.ids().unwrap());
}

#[test]
fn a_second_store_on_a_locked_directory_gets_a_clear_error() {
    let dir = TempDir::new("locked");
    let first = Store::new(config(&dir.sessions())).unwrap();
    first.set("a", b"1", None).unwrap();
    match Store::new(config(&dir.sessions())) {
        Err(Error::InvalidConfig(why)) => assert!(why.contains("in use"), "{why}"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    // The first store is untouched.
    assert_eq!(first.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    drop(first);
    assert!(Store::new(config(&dir.sessions())).is_ok());
}

#[test]
fn files_are_private_to_their_owner() {
    let dir = TempDir::new("modes");
    let store = Store::new(config(&dir.sessions())).unwrap();
    for n in 0..20 {
        store.set(&format!("s{n}"), b"secret", None).unwrap();
    }
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.sessions()), 0o700);
    for name in dir.files() {
        assert_eq!(mode(&dir.sessions().join(&name)), 0o600, "{name}");
    }
    // Every kind of file: a snapshot (a clean close), a new log, and the damaged rest of a
    // snapshot with a flipped byte, set aside.
    drop(store);
    let snapshot = dir.file_starting("snapshot.");
    let mut bytes = fs::read(&snapshot).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    fs::write(&snapshot, &bytes).unwrap();
    let store = Store::new(config(&dir.sessions())).unwrap();
    store.set("after", b"secret", None).unwrap();
    let files = dir.files();
    assert!(files.iter().any(|f| f.contains(".damaged-")), "{files:?}");
    for name in files {
        assert_eq!(mode(&dir.sessions().join(&name)), 0o600, "{name}");
    }
}

#[test]
fn setup_errors_are_clear() {
    let dir = TempDir::new("setup");
    let mut both = config(&dir.sessions());
    both.redis_url = Some("redis://127.0.0.1:6379".into());
    match Store::new(both) {
        Err(Error::InvalidConfig(why)) => assert!(why.contains("redis_url"), "{why}"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    let orphan = config(&dir.0.join("missing-parent").join("sessions"));
    match Store::new(orphan) {
        Err(Error::InvalidConfig(why)) => assert!(why.contains("parent"), "{why}"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn every_fsync_policy_keeps_what_it_acknowledged() {
    for fsync in [Fsync::Never, Fsync::Interval, Fsync::Always] {
        let dir = TempDir::new("fsync");
        let mut cfg = config(&dir.sessions());
        cfg.persist_fsync = fsync;
        let store = Store::new(cfg.clone()).unwrap();
        churn(&store, 60);
        let crashed = crash_copy(&dir, "fsync-copy");
        cfg.persist_path = Some(crashed.sessions());
        assert_eq!(
            contents(&Store::new(cfg).unwrap()),
            contents(&store),
            "{fsync:?}"
        );
    }
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, u8),
        Create(u8),
        Destroy(u8),
        Regenerate(u8),
        Owner(u8, Option<u8>),
        Touch(u8, u16),
        SetIfVersion(u8, u8, u64),
        DestroyOwner(u8),
        Compact,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..8u8, any::<u8>()).prop_map(|(k, v)| Op::Set(k, v)),
            any::<u8>().prop_map(Op::Create),
            (0..8u8).prop_map(Op::Destroy),
            (0..8u8).prop_map(Op::Regenerate),
            (0..8u8, proptest::option::of(0..3u8)).prop_map(|(k, o)| Op::Owner(k, o)),
            (0..8u8, 1..3600u16).prop_map(|(k, s)| Op::Touch(k, s)),
            (0..8u8, any::<u8>(), 0..6u64).prop_map(|(k, v, e)| Op::SetIfVersion(k, v, e)),
            (0..3u8).prop_map(Op::DestroyOwner),
            Just(Op::Compact),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Any sequence of changes, then a crash or a clean close: the store restored from the
        /// files holds exactly what the running one held, and its invariants hold after every
        /// step of both.
        #[test]
        fn a_restored_store_equals_the_one_that_crashed_or_closed(
            ops in proptest::collection::vec(op(), 1..40),
            closed_cleanly in any::<bool>(),
        ) {
            let dir = TempDir::new("model");
            let store = Store::new(config(&dir.sessions())).unwrap();
            let mut ids: Vec<String> = (0..8).map(|k| format!("k{k}")).collect();
            for op in ops {
                let id = |k: u8| ids[k as usize % ids.len()].clone();
                match op {
                    Op::Set(k, v) => { store.set(&id(k), &session_data(v.into()), None).unwrap(); }
                    Op::Create(v) => { let new = store.create(&session_data(v.into()), None).unwrap(); ids.push(new); }
                    Op::Destroy(k) => { store.destroy(&id(k)).unwrap(); }
                    Op::Regenerate(k) => {
                        if let Some(new) = store.regenerate(&id(k)).unwrap() { ids.push(new); }
                    }
                    Op::Owner(k, o) => {
                        let owner = o.map(|o| format!("u{o}"));
                        let r = store.set_owner(&id(k), owner.as_deref());
                        prop_assert!(matches!(r, Ok(()) | Err(Error::NotFound)));
                    }
                    Op::Touch(k, s) => { store.touch(&id(k), Some(Duration::from_secs(u64::from(s)))).unwrap(); }
                    Op::SetIfVersion(k, v, e) => {
                        let _ = store.set_if_version(&id(k), &session_data(v.into()), e, None);
                    }
                    Op::DestroyOwner(o) => { store.destroy_owner(&format!("u{o}"), None).unwrap(); }
                    Op::Compact => store.compact_log().unwrap(),
                }
                store.check_invariants().map_err(TestCaseError::fail)?;
            }
            let before = store.set("k0", b"next", None).unwrap();
            let held = contents(&store);
            let owned: Vec<Vec<String>> =
                (0..3).map(|o| store.sessions_of(&format!("u{o}")).unwrap()).collect();
            let crashed;
            let restored = if closed_cleanly {
                store.close().unwrap();
                store.check_invariants().map_err(TestCaseError::fail)?;
                prop_assert!(matches!(store.set("k0", b"late", None), Err(Error::Unavailable(_))));
                prop_assert_eq!(contents(&store), held.clone(), "a closed store stays readable");
                // The same directory, in the same process: the close unlocked it.
                Store::new(config(&dir.sessions())).unwrap()
            } else {
                crashed = crash_copy(&dir, "model-copy");
                Store::new(config(&crashed.sessions())).unwrap()
            };
            restored.check_invariants().map_err(TestCaseError::fail)?;
            prop_assert_eq!(contents(&restored), held);
            for (o, owned) in owned.iter().enumerate() {
                prop_assert_eq!(&restored.sessions_of(&format!("u{o}")).unwrap(), owned);
            }
            // Versions go on above everything issued before the crash or close.
            let after = restored.set("k0", b"after", None).unwrap();
            prop_assert!(after > before, "{} <= {}", after, before);
        }
    }
}

#[test]
fn records_across_the_log_files_chunks_and_larger_than_one_restore_whole() {
    let dir = TempDir::new("chunks");
    let mut cfg = config(&dir.sessions());
    cfg.max_session_bytes = 16 << 20;
    let store = Store::new(cfg.clone()).unwrap();
    // About 20 MB of records: many of them straddle a chunk boundary of the file.
    for i in 0..20_000u32 {
        let value: Vec<u8> = (0..1000 + i % 97).map(|j| (i + j) as u8).collect();
        store.set(&format!("s{i}"), &value, None).unwrap();
    }
    // Larger than a chunk: written across several at once.
    let big: Vec<u8> = (0..9 << 20).map(|j: u32| (j % 251) as u8).collect();
    store.set("big", &big, None).unwrap();
    store.set("after-big", b"small again", None).unwrap();
    let crashed = crash_copy(&dir, "chunks-copy");
    cfg.persist_path = Some(crashed.sessions());
    let restored = Store::new(cfg).unwrap();
    assert_eq!(restored.len(), 20_002);
    assert_eq!(contents(&restored), contents(&store));
}

/// An append that fails (here: a thread's log file cannot be made, where a directory took its
/// name) is reported to the call that made the change: `unavailable`, with the change made in
/// memory only. Later writes are refused until a snapshot can be written; that snapshot
/// holds the change.
#[test]
fn a_change_the_log_could_not_record_is_reported_to_its_caller() {
    let dir = TempDir::new("unrecorded");
    let cfg = config(&dir.sessions());
    let store = Store::new(cfg.clone()).unwrap();
    store.set("before", b"logged", None).unwrap();
    // The building thread's file of the first generation exists; every other thread's file of
    // that generation is made at its first append, and is blocked here. So are the next
    // generation's, so that the log thread's own retry (a snapshot, once a second) fails too
    // until the test lets it succeed.
    let made = dir
        .files()
        .into_iter()
        .find(|n| n.starts_with("log."))
        .unwrap();
    let generation = u64::from_str_radix(made.split('.').nth(1).unwrap(), 16).unwrap();
    let blocked: Vec<PathBuf> = [generation, generation + 1]
        .into_iter()
        .flat_map(|g| (0..16).map(move |segment| format!("log.{g:016x}.{segment:02x}")))
        .map(|name| dir.sessions().join(name))
        .filter(|path| !path.exists())
        .collect();
    for path in &blocked {
        fs::create_dir(path).unwrap();
    }
    // A new thread appends to a file of its own, unless there is one file per generation
    // only (one core) or it shares the building thread's: try a few.
    let refused = (0..16).find_map(|n| {
        let store = store.clone();
        let id = format!("s{n}");
        std::thread::spawn(move || store.set(&id, b"in memory", None).err().map(|e| (id, e)))
            .join()
            .unwrap()
    });
    let Some((id, error)) = refused else {
        assert_eq!(std::thread::available_parallelism().unwrap().get(), 1);
        return;
    };
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    assert!(error.to_string().contains("made in memory only"), "{error}");
    assert_eq!(store.get(&id).unwrap().as_deref(), Some(&b"in memory"[..]));
    assert!(matches!(
        store.set("after", b"x", None),
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(
        store.destroy("before"),
        Err(Error::Unavailable(_))
    ));
    // The disk is writable again: a snapshot holds what is in memory, and writes go on.
    for path in &blocked {
        fs::remove_dir(path).unwrap();
    }
    store.compact_log().unwrap();
    store.set("after", b"x", None).unwrap();
    let crashed = crash_copy(&dir, "unrecorded-copy");
    let mut cfg = cfg;
    cfg.persist_path = Some(crashed.sessions());
    let restored = Store::new(cfg).unwrap();
    assert_eq!(
        restored.get(&id).unwrap().as_deref(),
        Some(&b"in memory"[..])
    );
    assert_eq!(contents(&restored), contents(&store));
}

/// A snapshot reads a stripe a chunk at a time (so many sessions, or so many bytes of them,
/// per lock hold), going on from where the chunk ended: large sessions in one stripe take
/// several chunks, and every one of them is in the snapshot once.
#[test]
fn a_snapshot_of_large_sessions_in_one_stripe_holds_each_once() {
    let dir = TempDir::new("large-chunks");
    let mut cfg = config(&dir.sessions());
    cfg.shards = Some(1);
    let store = Store::new(cfg.clone()).unwrap();
    for i in 0..200u32 {
        let value: Vec<u8> = (0..16 << 10).map(|j: u32| (i ^ j) as u8).collect();
        store.set(&format!("s{i}"), &value, None).unwrap();
    }
    store.compact_log().unwrap();
    let crashed = crash_copy(&dir, "large-chunks-copy");
    // The snapshot alone: the log files the compaction began are empty.
    for name in crashed.files().iter().filter(|n| n.starts_with("log.")) {
        assert!(log_bytes(&crashed.sessions().join(name)) <= 16, "{name}");
    }
    cfg.persist_path = Some(crashed.sessions());
    let restored = Store::new(cfg).unwrap();
    assert_eq!(restored.len(), 200);
    assert_eq!(contents(&restored), contents(&store));
}

#[test]
fn a_write_that_changes_a_few_bytes_logs_those_bytes_and_restores_whole() {
    let dir = TempDir::new("patches");
    let mut cfg = config(&dir.sessions());
    cfg.max_session_bytes = 1 << 20;
    let store = Store::new(cfg.clone()).unwrap();
    let mut value: Vec<u8> = (0..2048u32).map(|j| b'a' + (j % 26) as u8).collect();
    store.set("s", &value, None).unwrap();
    let log = dir.written_log();
    let written_before = log_bytes(&log);
    for n in 0..1000u32 {
        // A counter in the middle, and now and then the value grows or shrinks at its end.
        value[1000..1004].copy_from_slice(&n.to_le_bytes());
        match n % 10 {
            3 => value.extend_from_slice(b"grown"),
            7 => value.truncate(value.len() - 3),
            _ => {}
        }
        store.set("s", &value, None).unwrap();
    }
    let logged = log_bytes(&log) - written_before;
    // A whole record per write would be over 2 MB. A write that also changes the end logs the
    // bytes from the counter on (about 1 KB): one in five here.
    assert!(logged < 500 * 1000, "{logged} bytes logged for 1000 writes");
    let crashed = crash_copy(&dir, "patches-copy");
    cfg.persist_path = Some(crashed.sessions());
    let restored = Store::new(cfg).unwrap();
    assert_eq!(restored.peek("s").unwrap().unwrap().value, value);
    assert_eq!(contents(&restored), contents(&store));
}

/// Bytes of a log file up to the zeros it reserves ahead of its records.
fn log_bytes(path: &Path) -> usize {
    let bytes = fs::read(path).unwrap();
    records_end(&bytes)
}

/// A clock the test sets, forwards or back: to replay the order in which two threads read
/// theirs.
#[derive(Clone, Default)]
struct SetClock(Arc<std::sync::atomic::AtomicU64>);

impl SetClock {
    fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl coatcheck::Clock for SetClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A store on `clock` set to `start_ms`, with idle (and absolute) timeouts in seconds and no
/// background sweeper: the test moves time.
fn on_a_set_clock(
    name: &str,
    idle_s: u64,
    absolute_s: Option<u64>,
    start_ms: u64,
) -> (TempDir, Config, SetClock, Store) {
    let dir = TempDir::new(name);
    let mut cfg = config(&dir.sessions());
    cfg.idle_timeout = Duration::from_secs(idle_s);
    cfg.absolute_timeout = absolute_s.map(Duration::from_secs);
    cfg.background_sweeper = false;
    let clock = SetClock::default();
    clock.set(start_ms);
    let store = Store::with_clock(cfg.clone(), clock.clone()).unwrap();
    (dir, cfg, clock, store)
}

/// A write reads its clock before it locks the session's stripe, and a compaction may read a
/// later one meanwhile: the session then looks expired to the snapshot and live to the write,
/// which logs only the bytes it changed. The snapshot must still hold the version that write
/// built on.
#[test]
fn a_write_that_found_a_session_live_survives_a_snapshot_that_found_it_expired() {
    let (dir, mut cfg, clock, store) = on_a_set_clock("expiring", 10, None, 0);
    store.set("s", &session_data(1), None).unwrap();
    // The compaction's clock: past the session's deadline.
    clock.set(10_500);
    store.compact_log().unwrap();
    // The write's clock, read before the compaction's: the session is live.
    clock.set(9_500);
    store.set("s", &session_data(4), None).unwrap();
    let crashed = crash_copy(&dir, "expiring-copy");
    cfg.persist_path = Some(crashed.sessions());
    let restored = Store::new(cfg).unwrap();
    assert_eq!(
        restored.peek("s").unwrap().map(|s| s.value),
        Some(session_data(4))
    );
}

/// The wall clock set right while the store runs (a VM's clock stepped by NTP after boot): the
/// deadlines the log writes follow it, so a session written after the step is not taken for
/// one that expired hours ago at the next start. Here the store's clock moves instead of the
/// wall clock, which is the same step seen from the other side.
#[test]
fn deadlines_follow_the_wall_clock_when_it_is_set_while_the_store_runs() {
    let (dir, mut cfg, clock, store) = on_a_set_clock("clock-step", 60, None, 2 * 3600 * 1000);
    // Two hours of the store's clock vanish against the wall clock...
    clock.set(0);
    // ...and are measured again by the next snapshot (or the log thread's next tick).
    store.compact_log().unwrap();
    store.set("after-the-step", b"kept", None).unwrap();
    let crashed = crash_copy(&dir, "clock-step-copy");
    cfg.persist_path = Some(crashed.sessions());
    let restored = Store::new(cfg).unwrap();
    let kept = restored.peek("after-the-step").unwrap().expect("restored");
    assert!(kept.expires_in > Duration::from_secs(50), "{kept:?}");
}

/// A deadline written while the wall clock was hours ahead (then set right) is no licence to
/// live longer: a restored session's absolute deadline is at most a full absolute timeout
/// away, as its idle deadline is at most a full idle timeout away.
#[test]
fn a_restored_session_never_outlives_a_full_absolute_timeout_from_the_restart() {
    let (dir, mut cfg, clock, store) = on_a_set_clock("clock-ahead", 600, Some(6), 0);
    // Two hours pass on the store's clock and not on the wall clock, and nothing measures
    // them again before the write: its deadlines are written two hours late.
    clock.set(2 * 3600 * 1000);
    store.set("capped", b"x", None).unwrap();
    let crashed = crash_copy(&dir, "clock-ahead-copy");
    cfg.persist_path = Some(crashed.sessions());
    let restored = Store::new(cfg).unwrap();
    let capped = restored.peek("capped").unwrap().expect("restored");
    assert!(capped.expires_in <= Duration::from_secs(6), "{capped:?}");
}

/// A store restarted with a lower `max_sessions` evicts while it loads. Until its first
/// snapshot is written, the old files still hold those sessions: the evictions must be in the
/// log, or a crash brings them back (here, sessions logged out everywhere since).
#[test]
fn sessions_evicted_while_loading_stay_gone_after_a_crash() {
    let dir = TempDir::new("evicted-on-load");
    let mut cfg = config(&dir.sessions());
    let first = Store::new(cfg.clone()).unwrap();
    for _ in 0..10 {
        let id = first.create(b"x", None).unwrap();
        first.set_owner(&id, Some("u")).unwrap();
    }
    drop(first);
    // The next store's first snapshot cannot be written (a directory where its temporary file
    // would go), as when the process is killed before it is: the files stay as loaded.
    for generation in 1..64u64 {
        fs::create_dir(
            dir.sessions()
                .join(format!("snapshot.{generation:016x}.tmp")),
        )
        .unwrap();
    }
    cfg.max_sessions = Some(5);
    let second = Store::new(cfg.clone()).unwrap();
    assert_eq!(second.count_of("u").unwrap(), 5);
    assert_eq!(second.destroy_owner("u", None).unwrap(), 5);
    let crashed = crash_copy_of(&dir.sessions(), "evicted-on-load-copy");
    cfg.persist_path = Some(crashed.sessions());
    let third = Store::new(cfg).unwrap();
    assert_eq!(
        third.count_of("u").unwrap(),
        0,
        "evicted sessions came back"
    );
    assert_eq!(third.len(), 0);
    drop(second);
}

/// A store that had no absolute timeout restarts with one: its sessions get one too, from the
/// restart, or reads would keep them alive for ever.
#[test]
fn an_absolute_timeout_turned_on_bounds_the_sessions_written_without_one() {
    let (dir, mut cfg, _clock, store) = on_a_set_clock("absolute-on", 600, None, 0);
    store.set("older", b"x", None).unwrap();
    drop(store);
    cfg.absolute_timeout = Some(Duration::from_secs(6));
    let restored = Store::new(cfg).unwrap();
    let older = restored.peek("older").unwrap().expect("restored");
    assert!(older.expires_in <= Duration::from_secs(6), "{older:?}");
    drop(dir);
}

/// A regenerate is two changes in the log (the new id, the old one removed). A crash between
/// the two must leave the session under the old id, as if the call had not been made: the
/// client was never told the new one.
#[test]
fn a_crash_in_the_middle_of_a_regenerate_leaves_the_session_under_its_old_id() {
    let dir = TempDir::new("regenerate-crash");
    let armed = Arc::new(AtomicBool::new(false));
    let copy: Arc<std::sync::Mutex<Option<TempDir>>> = Arc::default();
    let store = {
        let (armed, copy, log_dir) = (armed.clone(), copy.clone(), dir.sessions());
        Store::builder(config(&dir.sessions()))
            .listener(Duration::ZERO, move |_| {
                // The first change of the regenerate is in the log, the second is not yet.
                if armed.swap(false, Ordering::SeqCst) {
                    *copy.lock().unwrap() = Some(crash_copy_of(&log_dir, "regenerate-crash-copy"));
                }
            })
            .build()
            .unwrap()
    };
    let old = store.create(b"logged in", None).unwrap();
    armed.store(true, Ordering::SeqCst);
    let new = store.regenerate(&old).unwrap().unwrap();
    let crashed = copy
        .lock()
        .unwrap()
        .take()
        .expect("copied at the first change");
    let restored = Store::new(config(&crashed.sessions())).unwrap();
    assert_eq!(
        restored.get(&old).unwrap().as_deref(),
        Some(&b"logged in"[..])
    );
    drop(store);
    assert_eq!(
        Store::new(config(&dir.sessions()))
            .unwrap()
            .get(&new)
            .unwrap()
            .as_deref(),
        Some(&b"logged in"[..])
    );
}

/// The frames of a log file: (offset, length with its 8-byte head), up to the zeros after them.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut pos = 16;
    let mut found = Vec::new();
    while let Some(head) = bytes.get(pos..pos + 4) {
        let len = u32::from_le_bytes(head.try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        found.push((pos, 8 + len));
        pos += 8 + len;
    }
    found
}

/// A write missing from the log (an append that failed, a file cut short by hand): the writes
/// after it were logged as changes to a value the log does not hold. The session is left out
/// rather than restored as it was before the missing write.
#[test]
fn a_session_whose_log_misses_a_write_is_not_restored_stale() {
    let dir = TempDir::new("missing");
    let store = Store::new(config(&dir.sessions())).unwrap();
    for n in 1..=3 {
        store.set("s", &session_data(n * 3), None).unwrap();
    }
    store.set("other", &session_data(7), None).unwrap();
    let crashed = crash_copy(&dir, "missing-copy");
    let log = crashed.written_log();
    let mut bytes = fs::read(&log).unwrap();
    let found = frames(&bytes);
    // The creation of "s", its two patches, the creation of "other".
    assert_eq!(found.len(), 4, "{found:?}");
    let (start, len) = found[1];
    bytes.drain(start..start + len);
    fs::write(&log, &bytes).unwrap();
    let restored = Store::new(config(&crashed.sessions())).unwrap();
    assert_eq!(restored.peek("s").unwrap(), None);
    assert_eq!(
        restored.peek("other").unwrap().map(|s| s.value),
        Some(session_data(7))
    );
}

/// A log generation is written to one file per writing thread. Threads that write the same
/// sessions in turn (and compact meanwhile) spread each session's chain of patches over
/// several files; after a crash every session is back as last written.
#[test]
fn sessions_written_by_several_threads_in_turn_restore_as_last_written() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 60;
    const SESSIONS: usize = 16;
    let dir = TempDir::new("threads");
    let store = Arc::new(Store::new(config(&dir.sessions())).unwrap());
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let writers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    barrier.wait();
                    // Each round a session is written by the next thread.
                    for s in (0..SESSIONS).filter(|s| (s + round) % THREADS == thread) {
                        let id = format!("s{s:02}");
                        store
                            .set(&id, &session_data((round * 7 + s) as u64), None)
                            .unwrap();
                        if round % 7 == 3 {
                            store.set_owner(&id, Some(&format!("user{round}"))).unwrap();
                        }
                    }
                    if thread == 0 && round == ROUNDS / 2 {
                        store.compact_log().unwrap();
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert!(store.destroy("s00").unwrap());
    store.regenerate("s01").unwrap().unwrap();
    let crashed = crash_copy(&dir, "threads-copy");
    let logs_with_records = crashed
        .files()
        .into_iter()
        .filter(|n| n.starts_with("log."))
        .filter(|n| records_end(&fs::read(crashed.sessions().join(n)).unwrap()) > 16)
        .count();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 {
        assert!(logs_with_records > 1, "{:?}", crashed.files());
    }
    let restored = Store::new(config(&crashed.sessions())).unwrap();
    assert_eq!(contents(&restored), contents(&store));
    assert_eq!(restored.len(), SESSIONS - 1);
    restored.check_invariants().unwrap();
}
