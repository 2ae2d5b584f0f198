//! A store used in a child made by `fork()` keeps working, as it must for gunicorn `--preload`,
//! Node's child processes and C servers that fork workers. Guards against: a stripe lock held
//! by a parent thread at the moment of the fork (the child would hang on it forever), a child
//! with no sweeper (expired sessions never reclaimed), and parent and child issuing the same
//! ids. The child reports through its exit code; a hang fails the watchdog.

#![cfg(unix)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coatcheck::{Config, Store};
use common::with_watchdog;

/// Forks; the child runs `body` and exits with its code. Returns the child's exit code.
fn in_child(body: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `body` (store calls and allocation, which the store's and
    // glibc's fork handlers make safe) and leaves with `_exit`, never returning into the
    // test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
        // SAFETY: ends the child without running the parent's atexit handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status),
        "child did not exit normally: {status}"
    );
    libc::WEXITSTATUS(status)
}

#[test]
fn a_store_keeps_working_in_a_forked_child_while_the_parent_is_busy() {
    with_watchdog(Duration::from_secs(60), || {
        let mut config = Config::default();
        config.sweep_interval = Duration::from_millis(5);
        let store = Store::new(config).unwrap();
        let parent_id = store.create(b"from the parent", None).unwrap();
        // Other threads hammer the store so that a fork lands while locks are held.
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (store, stop) = (store.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let id = store
                            .create(b"busy", Some(Duration::from_millis(2)))
                            .unwrap();
                        store.get(&id).unwrap();
                        store.regenerate(&id).unwrap();
                    }
                })
            })
            .collect();
        for _ in 0..20 {
            let code = in_child(|| {
                let Ok(Some(value)) = store.get(&parent_id) else {
                    return 2;
                };
                if value != b"from the parent" {
                    return 3;
                }
                let mine = store
                    .create(b"child", Some(Duration::from_millis(100)))
                    .unwrap();
                if mine == parent_id || store.get(&mine).unwrap().is_none() {
                    return 4;
                }
                // The child's own sweeper reclaims what expires here.
                let deadline = Instant::now() + Duration::from_secs(10);
                while store.peek(&mine).unwrap().is_some() || store.len() > 1000 {
                    if Instant::now() > deadline {
                        return 5;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                let before = store.stats().expirations;
                store
                    .create(b"short", Some(Duration::from_millis(1)))
                    .unwrap();
                while store.stats().expirations == before {
                    if Instant::now() > deadline {
                        return 6;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                0
            });
            assert_eq!(code, 0, "child failed with code {code}");
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(store.get(&parent_id).unwrap().unwrap(), b"from the parent");
    });
}

#[test]
fn parent_and_child_never_issue_the_same_id() {
    with_watchdog(Duration::from_secs(60), || {
        let mut config = Config::default();
        config.background_sweeper = false;
        let store = Store::new(config).unwrap();
        store.create(b"seed this thread's generator", None).unwrap();
        let mut fds = [0i32; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let code = in_child(|| {
            let id = store.create(b"child", None).unwrap();
            // SAFETY: writes the id's bytes to the pipe's write end, which the child owns.
            let n = unsafe { libc::write(fds[1], id.as_ptr().cast(), id.len()) };
            if n == id.len() as isize { 0 } else { 7 }
        });
        assert_eq!(code, 0);
        let mut buf = [0u8; 64];
        // SAFETY: reads at most 64 bytes into `buf` from the pipe's read end.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        // SAFETY: closes the two descriptors pipe(2) opened, once each.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        let child_id = std::str::from_utf8(&buf[..n as usize]).unwrap().to_string();
        // Same thread, same inherited generator state: only a reseed in the child makes these
        // differ.
        let parent_id = store.create(b"parent", None).unwrap();
        assert_eq!(child_id.len(), parent_id.len());
        assert_ne!(child_id, parent_id);
    });
}

#[test]
fn a_child_never_waits_on_the_parents_sweeper() {
    // The parent's sweeper wakes every millisecond, so forks often land while it holds its
    // channel's lock; a child that dropped the parent's channel would wait on that lock forever.
    with_watchdog(Duration::from_secs(60), || {
        let mut config = Config::default();
        config.sweep_interval = Duration::from_millis(1);
        let store = Store::new(config).unwrap();
        let id = store.create(b"v", None).unwrap();
        for _ in 0..1000 {
            let code = in_child(|| match store.get(&id) {
                Ok(Some(_)) => 0,
                _ => 8,
            });
            assert_eq!(code, 0, "child failed with code {code}");
        }
    });
}

/// gunicorn `--preload` with `persist_path`: the restart log belongs to the process that opened
/// it. A forked child reads the sessions it inherited, its writes fail with `Unavailable`
/// (never a second writer on the parent's file), and the parent's log is intact afterwards.
#[test]
fn a_forked_child_reads_but_never_writes_the_parents_restart_log() {
    let dir = std::env::temp_dir().join(format!("coatcheck-fork-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::default();
    config.persist_path = Some(dir.clone());
    let store = Store::new(config.clone()).unwrap();
    store.set("before-fork", b"kept", None).unwrap();
    let child = store.clone();
    let code = in_child(move || {
        let read = child.get("before-fork") == Ok(Some(b"kept".to_vec()));
        let refused = matches!(
            child.set("in-child", b"x", None),
            Err(coatcheck::Error::Unavailable(_))
        ) && matches!(
            child.destroy("before-fork"),
            Err(coatcheck::Error::Unavailable(_))
        ) && matches!(child.clear(), Err(coatcheck::Error::Unavailable(_)))
            && child.get("before-fork") == Ok(Some(b"kept".to_vec()));
        i32::from(!(read && refused))
    });
    assert_eq!(code, 0, "the child could not read, or could write");
    store.set("after-fork", b"parent", None).unwrap();
    // The log as it is on disk now, read by a new store in another directory: `store` still
    // holds `dir`'s lock.
    let copy = dir.with_extension("copy");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "lock" {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    config.persist_path = Some(copy.clone());
    let reopened = Store::new(config).unwrap();
    assert_eq!(
        reopened.get("before-fork").unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(
        reopened.get("after-fork").unwrap().as_deref(),
        Some(&b"parent"[..])
    );
    assert_eq!(reopened.get("in-child").unwrap(), None);
    drop((reopened, store));
    let _ = std::fs::remove_dir_all(&copy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A worker forked from a server with a restart log never keeps the log's directory locked: once
/// the parent's store is gone (the master restarted, the workers still running), a new store
/// opens the directory while the child still runs, and has the parent's sessions.
#[test]
fn a_forked_child_does_not_keep_the_restart_log_locked() {
    let dir = std::env::temp_dir().join(format!("coatcheck-fork-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::default();
    config.persist_path = Some(dir.clone());
    let store = Store::new(config.clone()).unwrap();
    store.set("kept", b"by the parent", None).unwrap();
    let mut pipe = [0; 2];
    let mut started = [0; 2];
    // SAFETY: `pipe` and `started` are valid arrays of two descriptors for pipe(2) to fill.
    unsafe {
        assert_eq!(libc::pipe(pipe.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(started.as_mut_ptr()), 0);
    }
    // SAFETY: the child only closes descriptors, writes one byte, blocks in read(2) until the
    // parent closes the pipe, and leaves with `_exit`, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut byte = 0u8;
        // SAFETY: closes the ends the child does not use, says it runs (its fork handler, which
        // gives up its share of the lock, ran before `fork` returned here), then reads one byte
        // into `byte`.
        unsafe {
            libc::close(pipe[1]);
            libc::close(started[0]);
            libc::write(started[1], (&raw const byte).cast(), 1);
            libc::read(pipe[0], (&raw mut byte).cast(), 1);
            libc::_exit(0);
        }
    }
    // SAFETY: closes the parent's ends it does not use, and waits for the child to run: until
    // its fork handler has run, a child shares the lock as any copied descriptor does (a busy
    // machine may not schedule it for milliseconds).
    unsafe {
        libc::close(pipe[0]);
        libc::close(started[1]);
        let mut byte = 0u8;
        assert_eq!(libc::read(started[0], (&raw mut byte).cast(), 1), 1);
        libc::close(started[0]);
    }
    drop(store);
    let reopened = Store::new(config);
    let mut status = 0;
    // SAFETY: asks about the child just forked without waiting; `status` is a valid out-pointer.
    let still_running = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0;
    // SAFETY: closing the write end lets the child's read return; then wait for it to exit.
    unsafe {
        libc::close(pipe[1]);
        libc::waitpid(pid, &mut status, 0);
    }
    assert!(
        still_running,
        "the child exited before the store was reopened"
    );
    let reopened = reopened.expect("the directory stayed locked by the forked child");
    assert_eq!(
        reopened.get("kept").unwrap().as_deref(),
        Some(&b"by the parent"[..])
    );
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether the restart log in `dir` is writing a snapshot (under a temporary name until done).
fn compacting(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")
    })
}

/// A store on a restart log in a fresh directory named after `name`, opened on 128 MiB of
/// sessions, once the compaction that opening starts in the background is under way.
fn store_compacting(name: &str) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("coatcheck-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::default();
    config.persist_path = Some(dir.clone());
    {
        let store = Store::new(config.clone()).unwrap();
        let value = vec![b'x'; 4096];
        for _ in 0..32_768 {
            store.create(&value, None).unwrap();
        }
    }
    let store = Store::new(config).unwrap();
    let wait = Instant::now();
    while !compacting(&dir) {
        assert!(
            wait.elapsed() < Duration::from_secs(10),
            "no compaction began"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    (store, dir)
}

/// Node's `child_process` and Python's `subprocess` fork: a fork must not wait for the restart
/// log's background work (a compaction takes seconds on a large table, a sync as long as the
/// disk), only for the moments that work holds a lock a child could need.
#[test]
fn a_fork_does_not_wait_for_the_restart_logs_compaction() {
    let (store, dir) = store_compacting("fork-compaction");
    let started = Instant::now();
    let (mut forks, mut slowest) = (0, Duration::ZERO);
    while compacting(&dir) {
        let fork = Instant::now();
        assert_eq!(in_child(|| 0), 0);
        slowest = slowest.max(fork.elapsed());
        forks += 1;
    }
    let compaction = started.elapsed();
    assert!(
        forks >= 3 && slowest < compaction / 2,
        "{forks} fork(s) during a {compaction:?} compaction, the slowest {slowest:?}"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A worker forked while its parent compacts (gunicorn `--preload`) closes its copy of the
/// store: the compaction's lock, held by a parent thread the child does not have, must not
/// keep it waiting.
#[test]
fn a_child_forked_during_a_compaction_can_close_its_store() {
    let (store, dir) = store_compacting("fork-close");
    let in_the_child = store.clone();
    let code = in_child(move || {
        // SAFETY: alarm(2) only schedules SIGALRM, which ends a child that hangs.
        unsafe { libc::alarm(10) };
        i32::from(in_the_child.close().is_err())
    });
    assert_eq!(code, 0, "the child's close failed");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
