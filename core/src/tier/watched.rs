//! Knowing whether the link has input not yet handled, so a local read does not answer from a
//! copy whose invalidation is already on its way in.
//!
//! Redis hands an invalidation to the other processes' sockets in the same pass in which it
//! answers the write (BCAST invalidations are flushed with the replies). By the time a client
//! acts on that answer and its next request reaches another process, the invalidation is in
//! that process's socket, or in its link thread's buffer, or already applied. The first two are
//! what this module sees: the socket's unread bytes (`FIONREAD`), and whether the reader has
//! finished with what it last read. A reader that read bytes is busy until it asks the socket
//! for more and finds none: the framed decoder asks for more only once every complete frame in
//! its buffer has been decoded and dispatched, pushes included.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The link's input state, read by request threads.
#[derive(Default)]
pub(crate) struct Input {
    busy: AtomicBool,
    /// The socket while the link is up, else -1.
    fd: AtomicI32,
}

impl Input {
    pub(crate) fn new() -> Self {
        Self {
            busy: AtomicBool::new(false),
            fd: AtomicI32::new(-1),
        }
    }

    pub(crate) fn attach(&self, fd: i32) {
        self.busy.store(false, SeqCst);
        self.fd.store(fd, SeqCst);
    }

    pub(crate) fn detach(&self) {
        self.fd.store(-1, SeqCst);
        self.busy.store(false, SeqCst);
    }

    /// Whether everything the link has received so far has been handled.
    pub(crate) fn handled(&self) -> bool {
        !self.busy.load(SeqCst) && unread_bytes(self.fd.load(SeqCst)) == 0
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
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, input: Arc<Input>) -> Self {
        Self { inner, input }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.input.busy.store(true, SeqCst)
            }
            Poll::Pending => this.input.busy.store(false, SeqCst),
            _ => {}
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
