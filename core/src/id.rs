//! Session ids: generation from a CSPRNG and validation of ids that come from outside.

use std::cell::RefCell;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::error::{Error, Result};

/// Random bytes in a generated id: 192 bits, as express-session's default `genid` (uid-safe(24)).
pub const ID_RANDOM_BYTES: usize = 24;
/// Length of a generated id: 24 bytes in unpadded base64url.
pub const GENERATED_ID_LEN: usize = 32;
/// Longest id the store accepts. Ids come from cookies; anything longer is not a session id.
pub const MAX_ID_LEN: usize = 255;

thread_local! {
    // A per-thread ChaCha12 seeded from the OS. A forked child inherits this state, so it is
    // reseeded when the fork generation changes: without that, parent and child would issue the
    // same ids. (The generation is one atomic load; `getpid` would be a system call per id.)
    static ID_RNG: RefCell<Option<(u64, StdRng)>> = const { RefCell::new(None) };
}

/// A new session id: 24 bytes from a CSPRNG, as 32 base64url characters.
pub fn generate_id() -> String {
    let mut raw = [0u8; ID_RANDOM_BYTES];
    ID_RNG.with(|cell| {
        let mut slot = cell.borrow_mut();
        let generation = crate::fork::generation();
        let rng = match &mut *slot {
            Some((seeded_in, rng)) if *seeded_in == generation => rng,
            other => &mut other.insert((generation, StdRng::from_os_rng())).1,
        };
        rng.fill_bytes(&mut raw);
    });
    URL_SAFE_NO_PAD.encode(raw)
}

/// Checks an id that came from outside (a cookie, a binding): non-empty, at most
/// [`MAX_ID_LEN`] bytes, printable ASCII without spaces (`!`..=`~`).
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidId("empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::InvalidId("longer than 255 bytes"));
    }
    if !all_graphic(id.as_bytes()) {
        return Err(Error::InvalidId("contains bytes outside printable ASCII"));
    }
    Ok(())
}

/// Whether every byte is printable ASCII without space (`!`..=`~`), eight bytes at a time:
/// this runs on every call with an id, and a byte loop cost more than the table lookup.
fn all_graphic(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_ne_bytes(word);
        // A byte below 0x21: subtracting 0x21 borrows into its high bit. A byte above 0x7E:
        // adding 0x01 carries into it (0x7F and up). Bytes with the high bit set are caught
        // by `w` itself. No byte's borrow or carry can reach a neighbour that passes.
        let below = w.wrapping_sub(ONES * 0x21) & !w;
        let above = w.wrapping_add(ONES);
        if (below | above | w) & HIGH != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(u8::is_ascii_graphic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_32_url_safe_chars_and_distinct() {
        let a = generate_id();
        let b = generate_id();
        assert_eq!(a.len(), GENERATED_ID_LEN);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
        assert!(validate_id(&a).is_ok());
    }

    #[test]
    fn ids_outside_printable_ascii_are_rejected() {
        for bad in ["", "a b", "caf\u{e9}", "nul\0byte", "tab\t"] {
            assert_eq!(
                validate_id(bad).unwrap_err().code(),
                "invalid_id",
                "{bad:?}"
            );
        }
        assert!(validate_id(&"x".repeat(MAX_ID_LEN)).is_ok());
        // Every byte value, alone and at every position of an eight-byte word.
        for b in 0..=255u8 {
            for at in 0..16 {
                let mut id = vec![b'a'; 16];
                id[at] = b;
                assert_eq!(
                    all_graphic(&id),
                    b.is_ascii_graphic(),
                    "byte {b:#x} at {at}"
                );
            }
        }
        assert!(validate_id(&"x".repeat(MAX_ID_LEN + 1)).is_err());
    }
}
