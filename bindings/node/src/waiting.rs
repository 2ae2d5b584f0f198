//! Where calls that may wait on Redis run: a few threads of this module's own, so that waiting
//! calls neither hold libuv's thread pool (4 threads unless `UV_THREADPOOL_SIZE` says more,
//! shared with `fs`, `dns` and zlib) nor cap the calls in flight at its size. Each call's
//! promise is settled from its thread through `settling`; the main thread never waits.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Result, internal};

/// Calls that can wait on Redis at the same time, per process. Each waits at most the store's
/// `redisTimeout`; the link thread pipelines them all on one connection.
const WAITING_THREADS: usize = 32;

type Job = Box<dyn FnOnce() + Send>;

// A `Sender` may be shared between threads as it is; the threads share the one `Receiver`
// under a mutex, each taking the next job.
static QUEUE: OnceLock<Sender<Job>> = OnceLock::new();

/// Runs `job` on a waiting thread (started on first use).
pub(crate) fn run(job: impl FnOnce() + Send + 'static) -> Result<()> {
    QUEUE.get_or_init(start).send(Box::new(job)).map_err(|_| {
        internal(napi::Error::from_reason(
            "no thread is left to run calls that wait on Redis",
        ))
    })
}

fn start() -> Sender<Job> {
    let (sender, jobs) = channel::<Job>();
    let jobs = Arc::new(Mutex::new(jobs));
    for n in 0..WAITING_THREADS {
        let jobs = jobs.clone();
        // A thread that cannot start leaves the others to do the work; with none, `run`
        // reports it.
        let _ = std::thread::Builder::new()
            .name(format!("coatcheck-wait-{n}"))
            .spawn(move || serve(&jobs));
    }
    sender
}

fn serve(jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A job settles its own promise on every path; a panic must not take the thread.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}
