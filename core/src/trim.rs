//! Handing freed memory back to the operating system.
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
