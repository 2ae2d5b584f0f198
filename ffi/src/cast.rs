//! Pointers from C: opaque handles and out-parameters. Handler code never calls `from_raw` or
//! dereferences a raw pointer itself; it goes through the macros here, which check for NULL.

use std::marker::PhantomData;
use std::ptr::NonNull;

/// Ties a C handle type to the Rust value behind it and to how that value is owned.
pub(crate) trait Castable {
    /// [`OwnershipBox`]: the handle is a `Box<RustType>` created by a `_new` function and
    /// destroyed by the matching `_free`.
    type Ownership;
    /// The Rust value a handle points at.
    type RustType;
}

/// The handle owns its value through a `Box`.
pub(crate) struct OwnershipBox;

/// A new handle owning `value`; the C caller must pass it to the matching `_free`.
pub(crate) fn to_boxed_mut_ptr<C>(value: C::RustType) -> *mut C
where
    C: Castable<Ownership = OwnershipBox>,
{
    Box::into_raw(Box::new(value)).cast()
}

/// Borrows the value behind a handle, or `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or came from [`to_boxed_mut_ptr`] for the same `C` and has not been freed,
/// and it stays valid for `'a`.
pub(crate) unsafe fn try_from<'a, C: Castable>(ptr: *const C) -> Option<&'a C::RustType> {
    // SAFETY: per this function's contract, a non-NULL `ptr` points at a live `C::RustType`.
    unsafe { ptr.cast::<C::RustType>().as_ref() }
}

/// Takes back the value behind a handle and drops it. NULL does nothing.
///
/// # Safety
/// `ptr` is NULL or came from [`to_boxed_mut_ptr`] for the same `C`, has not been freed yet,
/// and is not used by anyone after this call.
pub(crate) unsafe fn free_box<C>(ptr: *mut C)
where
    C: Castable<Ownership = OwnershipBox>,
{
    if !ptr.is_null() {
        // SAFETY: per this function's contract the pointer is a live box we handed out, and
        // this is the last use of it.
        drop(unsafe { Box::from_raw(ptr.cast::<C::RustType>()) });
    }
}

/// An out-parameter: a pointer to caller memory that is written once, on success. It is never
/// read, so the caller's memory may be uninitialized.
pub(crate) struct Out<'a, T> {
    ptr: NonNull<T>,
    _caller: PhantomData<&'a mut T>,
}

impl<T> Out<'_, T> {
    /// `None` for NULL.
    ///
    /// # Safety
    /// A non-NULL `ptr` is valid for writes of one properly aligned `T` for the duration of the
    /// call, and no other argument of the call overlaps it.
    pub(crate) unsafe fn new(ptr: *mut T) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| Out {
            ptr,
            _caller: PhantomData,
        })
    }

    pub(crate) fn write(self, value: T) {
        // SAFETY: `new`'s contract: the pointer is valid and aligned for one `T` write. `write`
        // does not read or drop the old contents, which may be uninitialized.
        unsafe { self.ptr.as_ptr().write(value) }
    }
}

/// Borrows the value behind a handle; returns `COATCHECK_STATUS_NULL_ARGUMENT` from the entry
/// point for NULL.
macro_rules! try_ref {
    ($ptr:expr) => {
        // SAFETY: every entry point documents that a handle argument is NULL or a live handle
        // from its `_new` function, not freed during the call.
        match unsafe { $crate::cast::try_from($ptr) } {
            ::std::option::Option::Some(value) => value,
            ::std::option::Option::None => return $crate::error::coatcheck_status::NullArgument,
        }
    };
}
pub(crate) use try_ref;

/// A required out-parameter; returns `COATCHECK_STATUS_NULL_ARGUMENT` from the entry point for
/// NULL.
macro_rules! try_out {
    ($ptr:expr) => {
        // SAFETY: every entry point documents that an out-parameter is NULL or valid for one
        // write of its type for the duration of the call, and does not overlap other arguments.
        match unsafe { $crate::cast::Out::new($ptr) } {
            ::std::option::Option::Some(out) => out,
            ::std::option::Option::None => return $crate::error::coatcheck_status::NullArgument,
        }
    };
}
pub(crate) use try_out;

/// An optional out-parameter: `None` for NULL ("not wanted").
macro_rules! optional_out {
    ($ptr:expr) => {
        // SAFETY: as for `try_out!`; NULL is allowed and means the caller does not want it.
        unsafe { $crate::cast::Out::new($ptr) }
    };
}
pub(crate) use optional_out;
