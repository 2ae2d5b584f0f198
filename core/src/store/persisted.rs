//! The store's side of the restart log (`crate::persist`): filling the table from what the log
//! held, writing the table into a snapshot one stripe at a time, and the background thread that
//! syncs and compacts the log.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::Inner;
use super::block::Block;
use super::stripe::NewSession;
use crate::fork;
use crate::persist::{Image, Log, Record, Restored};

/// Most sessions a snapshot encodes under one lock hold...
const SNAPSHOT_CHUNK: usize = 1024;
/// ...and most bytes of their values (past this, the chunk ends after the session that crossed
/// it): large sessions shorten the hold rather than lengthen it.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// A session of the image that is still live, located in the table.
struct Live<'a> {
    id: &'a str,
    hash: u32,
    shard_index: usize,
    deadline: u64,
    absolute: Option<u64>,
    session: Restored<'a>,
}

impl Inner {
    /// Files every session of `image` that is still live, with its remaining idle and absolute
    /// lifetimes, version and owner; every stripe then issues versions above all the log saw.
    /// Nothing is delivered to the listener: these changes are already in the files. (Filing
    /// from two threads measured no faster on two cores: the work is allocation and memory.)
    pub(super) fn restore(&self, log: &Log, image: Image<'_>) {
        log.report_unrebuilt(image.unrebuilt);
        for shard in self.shards.iter() {
            shard.state.write().raise_versions(image.issued);
        }
        let now = self.now();
        let mut restored = 0;
        for (id, s) in image.sessions {
            // No later than a full absolute timeout from now, even if the wall clock went back
            // (or was ahead when the deadline was written), and one from now for a session
            // written before the store had an absolute timeout...
            let from_now = self.absolute_ttl_ms.map(|ttl| now.saturating_add(ttl));
            let absolute = match (s.absolute.map(|a| log.to_clock(a)), from_now) {
                (Some(a), Some(cap)) => Some(a.min(cap)),
                (a, cap) => a.or(cap),
            };
            // ...and likewise for a full idle timeout, nor than the absolute deadline.
            let deadline = log
                .to_clock(s.deadline)
                .min(now.saturating_add(s.ttl_ms))
                .min(absolute.unwrap_or(u64::MAX));
            let expired = deadline <= now;
            if expired || s.version == 0 || s.ttl_ms == 0 || s.value.len() > self.max_session_bytes
            {
                continue;
            }
            let (hash, shard_index) = self.locate(id);
            let live = Live {
                id,
                hash,
                shard_index,
                deadline,
                absolute,
                session: s,
            };
            if self.restore_one(live) {
                restored += 1;
            }
        }
        log.count_restored(restored);
    }

    fn restore_one(&self, live: Live<'_>) -> bool {
        let Live {
            id,
            hash,
            shard_index,
            deadline,
            absolute,
            session: s,
        } = live;
        let shard = &self.shards[shard_index];
        let block = Block::new(id.as_bytes(), &s.value, absolute);
        let mut stripe = shard.state.write();
        if stripe.find(hash, id).is_some() {
            return false;
        }
        let (_, _, cost) = stripe.insert(NewSession {
            block,
            hash,
            ttl_ms: s.ttl_ms,
            deadline,
            flags: 0,
            owner: s.owner.map(Box::from),
            fresh_id_above: Some(s.version - 1),
        });
        shard.note_deadline(deadline);
        drop(stripe);
        self.admit(cost, id, s.owner);
        // A budget lowered since the log was written: the least valuable sessions go.
        self.settle_budget(shard_index, hash);
        true
    }

    /// Writes the table into a new snapshot and drops the files it replaces. The stripes are
    /// read in chunks under their shared locks (readers go on; writers wait for one chunk's
    /// encoding at most), each written out after the lock is released.
    pub(super) fn compact_log(&self) -> std::io::Result<()> {
        let Some(log) = &self.log else { return Ok(()) };
        // The snapshot rewrites every deadline: with the wall clock as it is now.
        log.follow_wall_clock(self.now());
        let Some(mut snapshot) = log.begin_snapshot()? else {
            return Ok(());
        };
        let mut issued = 0;
        for shard in self.shards.iter() {
            // A stripe is read in chunks, each under its own shared lock hold, so that its
            // writers wait for one chunk's encoding at most. Sessions written after the log
            // was switched are in the new log whatever this reads; only a rebuild of the slab
            // (which moves sessions without a change) makes the walk start over.
            let mut cursor = 0;
            let mut layout = None;
            loop {
                let stripe = shard.state.read();
                if layout.is_some_and(|l| l != stripe.layout()) {
                    cursor = 0;
                }
                layout = Some(stripe.layout());
                issued = issued.max(stripe.versions());
                let mut next = None;
                let mut value_bytes = 0;
                for (taken, index) in stripe.live_from(cursor).enumerate() {
                    if taken == SNAPSHOT_CHUNK || value_bytes >= SNAPSHOT_CHUNK_BYTES {
                        next = Some(index);
                        break;
                    }
                    // Sessions that look expired now are written too (loading drops them): a
                    // write that read its clock before this may still find one live and log a
                    // patch against the version written here.
                    let record = stripe.record(index);
                    let block = stripe.block(index);
                    value_bytes += block.value().len();
                    snapshot.put(&Record::Put {
                        id: block.id_str(),
                        version: block.version(),
                        deadline: log.to_wall(record.deadline()),
                        ttl_ms: record.ttl_ms(),
                        absolute: block.absolute().map(|a| log.to_wall(a)),
                        owner: stripe.owner(index),
                        value: block.value(),
                    });
                }
                drop(stripe);
                snapshot.flush()?;
                match next {
                    Some(index) => cursor = index,
                    None => break,
                }
            }
        }
        snapshot.finish(issued)
    }

    /// One tick of the log thread: sync under `Fsync::Interval`, compact when the log has grown.
    fn log_tick(&self) {
        let Some(log) = &self.log else { return };
        log.follow_wall_clock(self.now());
        log.sync_if_dirty();
        if log.wants_compaction() {
            let result = self.compact_log();
            log.note_compaction(&result);
        }
    }
}

/// Name of the log thread.
pub(crate) const THREAD_NAME: &str = "coatcheck-log";

/// The log thread, owned by the store handles; the last one stops and joins it. In a forked
/// child it does not exist and is not restarted: the child never writes the parent's log.
pub(crate) struct LogThread {
    running: Mutex<Running>,
    generation: u64,
}

#[derive(Default)]
struct Running {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl LogThread {
    /// Starts the thread; with `compact_first`, it compacts the files a new store was built
    /// from before its first tick.
    pub(super) fn spawn(inner: &Arc<Inner>, compact_first: bool) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let store = Arc::downgrade(inner);
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                if compact_first {
                    if let Some(inner) = store.upgrade() {
                        let pass = fork::enter();
                        if let Some(log) = &inner.log {
                            log.note_compaction(&inner.compact_log());
                        }
                        drop(pass);
                    }
                }
                run(&store, &stopped);
            })?;
        Ok(Self {
            running: Mutex::new(Running {
                stop: Some(stop),
                thread: Some(thread),
            }),
            generation: fork::generation(),
        })
    }
}

fn run(store: &Weak<Inner>, stopped: &Receiver<()>) {
    loop {
        match stopped.recv_timeout(crate::persist::TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(inner) = store.upgrade() else { return };
        let pass = fork::enter();
        inner.log_tick();
        drop(pass);
    }
}

impl Drop for LogThread {
    fn drop(&mut self) {
        self.stop();
    }
}

impl LogThread {
    /// Stops the thread and waits for it (a tick or compaction in progress finishes first).
    /// Idempotent.
    pub(crate) fn stop(&self) {
        let mut running = self.running.lock();
        if self.generation != fork::generation() {
            // The parent's thread: absent here, and its channel's lock may have been held at
            // the fork (see the sweeper).
            std::mem::forget(std::mem::take(&mut *running));
            return;
        }
        drop(running.stop.take());
        if let Some(thread) = running.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}
