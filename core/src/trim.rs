//! The sweeper's dealings with the operating system: handing freed memory back, and running
//! below the priority of request threads.
//!
//! glibc keeps freed chunks in its arenas, so after a mass expiry the process would stay at its
//! peak size forever. `malloc_trim` returns whole free pages.

/// Returns free heap pages to the OS. A no-op where the allocator is not glibc's.
#[cfg(all(target_os = "linux", target_env = "gnu", not(miri)))]
pub(crate) fn release_free_memory() {
    // SAFETY: `malloc_trim` has no preconditions: it takes glibc's own arena locks and only
    // releases pages that hold no live allocation. Its return value is informational.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(miri))))]
pub(crate) fn release_free_memory() {}

/// Makes the calling thread yield the CPU to request threads when both want it: on Linux,
/// `nice` applies to the calling thread only. Housekeeping after a mass expiry is CPU-bound
/// for a while; at normal priority, on a machine with few cores, it would take turns with the
/// threads answering requests and stretch their worst latency to a scheduler time slice.
#[cfg(target_os = "linux")]
pub(crate) fn lower_this_threads_priority() {
    // SAFETY: `nice` has no memory-safety preconditions; on Linux it changes only the calling
    // thread's niceness. A failure (-1 with errno) leaves the priority as it was, which is fine.
    unsafe {
        libc::nice(10);
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_this_threads_priority() {}
