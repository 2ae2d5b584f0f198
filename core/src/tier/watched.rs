//! Knowing whether the link has input not yet handled, so a local read does not answer from a
//! copy whose invalidation is already on its way in.
//!
//! Redis queues an invalidation for the other processes in the same pass in which it answers
//! the write (BCAST invalidations are flushed with the replies), then writes its clients'
//! output one client after another. By the time a client acts on that answer and its next
//! request reaches another process, the invalidation is in that process's socket, or in its
//! link thread's hands, or already applied, unless it was queued behind a reply to one of
//! that process's own commands, which is then still unanswered. This module sees all three:
//! the socket's unread bytes (`FIONREAD`), whether the reader has finished with what it last
//! read (busy from before a read until it asks the socket for more and finds none; the framed
//! decoder asks for more only once every complete frame in its buffer has been decoded and
//! dispatched, pushes included), and the commands in flight ([`Counted`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The link's input state, read by request threads.
#[derive(Default)]
pub(crate) struct Input {
    busy: AtomicBool,
    /// The socket while the link is up, else -1.
    fd: AtomicI32,
    /// Commands sent so far, and answered so far (see [`Counted`]). Replies on one
    /// connection come in the order the commands went out.
    sent: AtomicU64,
    answered: AtomicU64,
    /// Streams made so far, and the one the link is attached to: a connection replaced after
    /// a loss may still be read (its driver ends once its requests have), and must not mark
    /// the current connection's reader idle.
    streams: AtomicU64,
    attached: AtomicU64,
    /// Waiters in [`until_handled`](Input::until_handled), told of every change that may
    /// satisfy them: a command answered, a read that found nothing more, the link detached.
    waiting: AtomicUsize,
    changed: Notify,
}

/// Where a read began: the commands sent by then (see [`Input::until_handled`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Since(u64);

impl Input {
    pub(crate) fn new() -> Self {
        Self {
            fd: AtomicI32::new(-1),
            ..Self::default()
        }
    }

    /// Attaches the link to `stream`'s connection, whose socket is `fd`: from now on only
    /// its reader reports whether it is busy.
    pub(crate) fn attach(&self, stream: &WatchedNumber, fd: i32) {
        self.attached.store(stream.0, SeqCst);
        self.busy.store(false, SeqCst);
        self.fd.store(fd, SeqCst);
    }

    pub(crate) fn detach(&self) {
        self.fd.store(-1, SeqCst);
        self.busy.store(false, SeqCst);
        // A waiting read goes on at once: its copy is no longer trusted.
        self.tell_waiters();
    }

    /// In a forked child: the commands the parent had in flight are not this process's, and
    /// no answer to them will come here. Counted as unanswered, they would keep every read
    /// from trusting a local copy for the life of the child.
    pub(crate) fn forget_in_flight(&self) {
        self.answered.store(self.sent.load(SeqCst), SeqCst);
    }

    /// Where a read starts from: the commands sent so far.
    pub(crate) fn mark(&self) -> u64 {
        self.sent.load(SeqCst)
    }

    /// Whether everything the link has received so far has been handled, and every command
    /// sent before `mark` has been answered.
    ///
    /// The socket is asked before the reader: bytes it no longer holds were taken by a read
    /// that marked the reader busy before it started, and the reader stays busy until it has
    /// dispatched them. Asking in the other order, or marking busy only after the read, leaves
    /// a moment in which the bytes are in neither place and a stale copy is served.
    ///
    /// The commands: Redis writes to its clients one after another, so the answer to another
    /// process's write can leave before the invalidation queued for this process in the same
    /// pass, when that invalidation waits in this process's output buffer behind a reply to
    /// one of its commands; that reply arrives together with the invalidation. Only commands
    /// sent before the read began can be in that position: one sent later reached Redis after
    /// the other process had its answer, so after that pass.
    pub(crate) fn handled(&self, mark: u64) -> bool {
        self.answered.load(SeqCst) >= mark
            && unread_bytes(self.fd.load(SeqCst)) == 0
            && !self.busy.load(SeqCst)
    }

    /// Where a read begins, for [`until_handled`](Input::until_handled).
    pub(crate) fn since(&self) -> Since {
        Since(self.mark())
    }

    /// [`handled`](Input::handled) for a read that began at `since`.
    pub(crate) fn handled_since(&self, since: Since) -> bool {
        self.handled(since.0)
    }

    /// On the link thread: returns once [`handled_since`](Input::handled_since) holds, or the
    /// link is detached. It is checked again at each change that can make it hold (a command
    /// answered, a read that found nothing more), so the wait neither spins nor holds a
    /// thread. A read that returned `Pending` does not prove the socket empty (tokio may
    /// answer from readiness it has cached, or from a spent budget), so the socket itself is
    /// asked each time, as `handled` does.
    /// Input that keeps coming could put the check off for good: after `checks` checks that
    /// found every command answered but input still there, it gives up (the caller then asks
    /// Redis). Checks made while answers are still due do not count: a deep pipeline is the
    /// link keeping up, not falling behind.
    pub(crate) async fn until_handled(&self, since: Since, checks: u32) {
        self.waiting.fetch_add(1, SeqCst);
        let _counted = Waiting(&self.waiting);
        let mut checks_left = checks;
        loop {
            // Registered before the check, so a change between the two is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.handled_since(since) || self.fd.load(SeqCst) < 0 {
                return;
            }
            if self.answered.load(SeqCst) >= since.0 {
                checks_left = checks_left.saturating_sub(1);
                if checks_left == 0 {
                    return;
                }
            }
            changed.await;
        }
    }

    fn tell_waiters(&self) {
        if self.waiting.load(SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }
}

#[cfg(unix)]
fn unread_bytes(fd: i32) -> i32 {
    if fd < 0 {
        return 0;
    }
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at a live local. A
    // stale fd (the link closed and the number reused) only gives a wrong count, never memory
    // unsafety; a wrong count costs one extra round trip or nothing.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread as *mut libc::c_int) };
    if rc == 0 { unread } else { 0 }
}

#[cfg(not(unix))]
fn unread_bytes(_fd: i32) -> i32 {
    0
}

/// A stream that reports to an [`Input`] whether its reader is busy.
pub(crate) struct Watched<S> {
    inner: S,
    input: Arc<Input>,
    /// Which stream this is (see `Input::attached`).
    number: u64,
}

/// Names a [`Watched`] stream for [`Input::attach`] once the stream itself has been handed
/// to its connection.
pub(crate) struct WatchedNumber(u64);

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, input: Arc<Input>) -> (Self, WatchedNumber) {
        let number = input.streams.fetch_add(1, SeqCst) + 1;
        let named = WatchedNumber(number);
        (
            Self {
                inner,
                input,
                number,
            },
            named,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A connection the link is not attached to (being set up, or replaced) reports
        // nothing: nothing is trusted through it.
        if this.input.attached.load(SeqCst) != this.number {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // Busy from before the bytes leave the socket (see `Input::handled`) until a read
        // finds nothing left, which the decoder asks for only once it has dispatched every
        // complete frame it holds.
        this.input.busy.store(true, SeqCst);
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_pending() {
            this.input.busy.store(false, SeqCst);
            this.input.tell_waiters();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The link's connection, counting the commands sent on it that are not yet answered.
///
/// A command counts until the task that awaited it runs again, which on the link's
/// single-threaded runtime is after the connection's reader has dispatched everything that
/// came with the reply, invalidations included.
#[derive(Clone)]
pub(crate) struct Counted {
    inner: MultiplexedConnection,
    input: Arc<Input>,
}

impl Counted {
    pub(crate) fn new(inner: MultiplexedConnection, input: Arc<Input>) -> Self {
        Self { inner, input }
    }
}

/// One command in flight, counted as answered when it ends (a timed-out command counts as
/// answered when its caller gives up: the link is then on its way to being declared lost).
struct InFlight<'a>(&'a Input);

impl<'a> InFlight<'a> {
    fn start(input: &'a Input) -> Self {
        input.sent.fetch_add(1, SeqCst);
        Self(input)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, SeqCst);
        self.0.tell_waiters();
    }
}

/// Counts a waiter of [`Input::until_handled`] for as long as it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl ConnectionLike for Counted {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let _counted = InFlight::start(&self.input);
            self.inner.req_packed_command(cmd).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let _counted = InFlight::start(&self.input);
            self.inner
                .req_packed_commands(pipeline, offset, count)
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
