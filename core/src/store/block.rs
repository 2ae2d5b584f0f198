//! One heap block per session holding its id, its value, its version and, when the store has
//! an absolute timeout, its absolute deadline, behind a thin pointer.
//!
//! A `Box<[u8]>` would cost a 16-byte fat pointer in every record; this block keeps its lengths
//! in its header, so the record holds 8 bytes and a session costs one allocation:
//!
//! ```text
//! [id_len: u8][has_absolute: u8][value_len: u32 LE][version: u64 LE]
//! [absolute: u64 LE, if has_absolute][id][value]
//! ```
//!
//! The version lives here rather than in the record because it changes exactly when the block
//! is replaced (every write builds a new block), and a lookup reads this header anyway to
//! compare the id. That keeps the record at 32 bytes, two to a cache line.
//!
//! This is the only module of the store with `unsafe` code. A block is immutable once it is
//! shared (only `set_version`, through `&mut`, writes before that), so sharing `&Block` between
//! threads is sound; writes replace the whole block.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::NonNull;

const FIXED_HEADER: usize = 14;
const VERSION_AT: usize = 6;
const ABSOLUTE_LEN: usize = 8;

/// A session's id and value in one allocation. Owns it; frees it on drop.
pub(crate) struct Block {
    ptr: NonNull<u8>,
}

// SAFETY: a `Block` owns its allocation exclusively and never mutates it after `new`, so moving
// it to another thread or reading it from several threads at once cannot race.
unsafe impl Send for Block {}
// SAFETY: as above: every access through `&Block` is a read; the one write, `set_version`,
// takes `&mut Block`.
unsafe impl Sync for Block {}

impl Block {
    /// Longest value a block can hold.
    pub(crate) const MAX_VALUE_LEN: usize = u32::MAX as usize;

    /// Copies `id` and `value` into a new block, at version 0 until
    /// [`set_version`](Self::set_version). `id` must be at most 255 bytes and `value`
    /// at most [`MAX_VALUE_LEN`](Self::MAX_VALUE_LEN) (the store validates both first); longer
    /// inputs are truncated rather than overflowing the header.
    pub(crate) fn new(id: &[u8], value: &[u8], absolute: Option<u64>) -> Self {
        let id = &id[..id.len().min(usize::from(u8::MAX))];
        let value = &value[..value.len().min(Self::MAX_VALUE_LEN)];
        let header = header_len(absolute.is_some());
        let layout = layout_for(header + id.len() + value.len());
        // SAFETY: `layout` has a non-zero size (the header alone is 6 bytes).
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        let mut head = [0u8; FIXED_HEADER]; // version 0
        head[0] = id.len() as u8; // at most 255, truncated above
        head[1] = u8::from(absolute.is_some());
        head[2..6].copy_from_slice(&(value.len() as u32).to_le_bytes()); // at most u32::MAX
        // SAFETY: the allocation is `header + id.len() + value.len()` bytes long, freshly
        // allocated so it overlaps none of the sources, and each copy writes inside it:
        // [0, 14), [14, 22) when there is an absolute deadline, [header, header + id),
        // [header + id, end). The fixed-size copies compile to plain stores.
        unsafe {
            std::ptr::copy_nonoverlapping(head.as_ptr(), raw, FIXED_HEADER);
            if let Some(abs) = absolute {
                let abs = abs.to_le_bytes();
                std::ptr::copy_nonoverlapping(abs.as_ptr(), raw.add(FIXED_HEADER), ABSOLUTE_LEN);
            }
            std::ptr::copy_nonoverlapping(id.as_ptr(), raw.add(header), id.len());
            std::ptr::copy_nonoverlapping(value.as_ptr(), raw.add(header + id.len()), value.len());
        }
        Self { ptr }
    }

    /// The session's version.
    pub(crate) fn version(&self) -> u64 {
        let mut raw = [0u8; 8];
        // SAFETY: every block starts with the fixed header written by `new`, which holds the
        // version at bytes [6, 14).
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(VERSION_AT), raw.as_mut_ptr(), 8);
        }
        u64::from_le_bytes(raw)
    }

    /// Sets the version of a block not yet shared with any other thread.
    pub(crate) fn set_version(&mut self, version: u64) {
        let raw = version.to_le_bytes();
        // SAFETY: bytes [6, 14) of the fixed header belong to this block, and `&mut self`
        // means no other reference to it exists.
        unsafe {
            std::ptr::copy_nonoverlapping(raw.as_ptr(), self.ptr.as_ptr().add(VERSION_AT), 8);
        }
    }

    fn header(&self) -> (usize, usize, usize) {
        // SAFETY: every block starts with the fixed header written by `new`, and the block
        // stays allocated for as long as `self` lives.
        let fixed = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), FIXED_HEADER) };
        let id_len = usize::from(fixed[0]);
        let header = header_len(fixed[1] != 0);
        let value_len = u32::from_le_bytes([fixed[2], fixed[3], fixed[4], fixed[5]]) as usize;
        (header, id_len, value_len)
    }

    /// The session id.
    pub(crate) fn id(&self) -> &[u8] {
        let (header, id_len, _) = self.header();
        // SAFETY: `new` wrote `id_len` id bytes right after the header, inside the allocation,
        // and nothing writes to the block afterwards.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(header), id_len) }
    }

    /// The session id as text. Ids are validated as printable ASCII before they are stored.
    pub(crate) fn id_str(&self) -> &str {
        std::str::from_utf8(self.id()).unwrap_or_default()
    }

    /// The stored value.
    pub(crate) fn value(&self) -> &[u8] {
        let (header, id_len, value_len) = self.header();
        // SAFETY: `new` wrote `value_len` value bytes after the header and the id, inside the
        // allocation, and nothing writes to the block afterwards.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(header + id_len), value_len) }
    }

    /// The absolute deadline stored with the session, if the store has an absolute timeout.
    pub(crate) fn absolute(&self) -> Option<u64> {
        let (header, _, _) = self.header();
        if header == FIXED_HEADER {
            return None;
        }
        let mut raw = [0u8; ABSOLUTE_LEN];
        // SAFETY: a header longer than the fixed part means `new` wrote the 8 deadline bytes
        // right after it, inside the allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(FIXED_HEADER),
                raw.as_mut_ptr(),
                ABSOLUTE_LEN,
            );
        }
        Some(u64::from_le_bytes(raw))
    }

    /// Bytes the block occupies: header, id and value.
    pub(crate) fn len(&self) -> usize {
        let (header, id_len, value_len) = self.header();
        header + id_len + value_len
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let layout = layout_for(self.len());
        // SAFETY: `ptr` came from `alloc` with exactly this layout (same total length, align
        // 1), and a `Block` is dropped once, so it is freed once.
        unsafe { dealloc(self.ptr.as_ptr(), layout) }
    }
}

fn header_len(has_absolute: bool) -> usize {
    if has_absolute {
        FIXED_HEADER + ABSOLUTE_LEN
    } else {
        FIXED_HEADER
    }
}

fn layout_for(len: usize) -> Layout {
    // Align 1 never fails for sizes below isize::MAX, which 6 + 255 + u32::MAX + 8 is.
    Layout::from_size_align(len, 1).unwrap_or_else(|_| Layout::new::<[u8; FIXED_HEADER]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_returns_what_it_was_built_from() {
        for (id, value, abs) in [
            (&b"abc"[..], &b""[..], None),
            (&b"x"[..], &[7u8; 3000][..], Some(42)),
            (&[b'i'; 255][..], &b"v"[..], Some(u64::MAX)),
        ] {
            let mut block = Block::new(id, value, abs);
            assert_eq!(block.version(), 0);
            block.set_version(u64::MAX - 1);
            assert_eq!(block.id(), id);
            assert_eq!(block.value(), value);
            assert_eq!(block.absolute(), abs);
            assert_eq!(block.version(), u64::MAX - 1);
            let header = if abs.is_some() { 22 } else { 14 };
            assert_eq!(block.len(), header + id.len() + value.len());
        }
    }

    #[test]
    fn blocks_move_between_threads() {
        let block = Block::new(b"id", b"value", None);
        let back = std::thread::spawn(move || block).join().unwrap();
        assert_eq!(back.value(), b"value");
    }
}
