//! The C ABI driven by byte-coded sequences of calls against one store, as a careless or
//! hostile C caller would make them: NULL pointers, zero and huge lengths, short output
//! buffers, invalid UTF-8, ids at and past the length limit. No call may crash or panic
//! (`COATCHECK_STATUS_PANIC`), every status must be a documented one, and a call that fails
//! must leave the number of sessions as it was.

#![no_main]

use std::ffi::c_char;
use std::ptr;

use arbitrary::Arbitrary;
use coatcheck_ffi::*;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Id {
    /// One of the ids the store handed out (or a made-up one if none yet).
    Known(u8),
    /// Any bytes: empty, non-ASCII, invalid UTF-8, over the length limit.
    Raw(Vec<u8>),
    /// A NULL pointer with this length.
    Null(u8),
}

#[derive(Arbitrary, Debug)]
enum Call {
    Create {
        value: Vec<u8>,
        ttl_ms: u16,
        buf_len: u8,
        null_value: bool,
    },
    Get {
        id: Id,
        buf_len: u16,
        null_buf: bool,
    },
    Set {
        id: Id,
        value: Vec<u8>,
        ttl_ms: u16,
    },
    SetIfVersion {
        id: Id,
        value: Vec<u8>,
        version: u8,
    },
    Touch {
        id: Id,
        ttl_ms: u16,
    },
    Destroy {
        id: Id,
    },
    Regenerate {
        id: Id,
        buf_len: u8,
    },
    Sign {
        id: Id,
        buf_len: u8,
    },
    Unsign {
        token: Vec<u8>,
        sign_known: Option<u8>,
    },
    SetOwner {
        id: Id,
        owner: Vec<u8>,
    },
    Sweep,
}

/// Statuses a call may return; everything else (a panic caught at the boundary, an unknown
/// error) is a bug.
const DOCUMENTED: &[u32] = &[0, 100, 101, 102, 200, 201, 202, 203, 204, 205, 206, 207];

struct Store(*mut coatcheck_store);

impl Drop for Store {
    fn drop(&mut self) {
        coatcheck_store_free(self.0);
    }
}

/// A TTL of whole seconds (0: the store's default), so that no session expires while one
/// input runs and "a failed call changed nothing" stays checkable.
fn ttl(seconds: u16) -> u64 {
    u64::from(seconds) * 1000
}

/// An id argument as the C caller passes it: bytes, or NULL with a length.
struct IdArg {
    bytes: Vec<u8>,
    null: bool,
}

impl IdArg {
    fn of(id: &Id, known: &[Vec<u8>]) -> Self {
        let (bytes, null) = match id {
            Id::Known(i) if !known.is_empty() => {
                (known[usize::from(*i) % known.len()].clone(), false)
            }
            Id::Known(_) => (b"never-created".to_vec(), false),
            Id::Raw(bytes) => (bytes.clone(), false),
            Id::Null(len) => (vec![0; usize::from(*len)], true),
        };
        Self { bytes, null }
    }

    fn ptr(&self) -> *const c_char {
        if self.null {
            ptr::null()
        } else {
            self.bytes.as_ptr().cast()
        }
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }
}

fuzz_target!(|calls: Vec<Call>| {
    let secret = b"a secret for the fuzzer";
    let secrets = [coatcheck_bytes {
        data: secret.as_ptr(),
        len: secret.len(),
    }];
    // SAFETY: a zeroed config is a valid out-parameter for coatcheck_config_default to fill.
    let mut config: coatcheck_config = unsafe { std::mem::zeroed() };
    assert_eq!(coatcheck_config_default(&mut config) as u32, 0);
    config.secrets = secrets.as_ptr();
    config.secrets_len = 1;
    config.max_sessions = 64;
    config.max_session_bytes = 1024;
    config.background_sweeper = false;
    let mut raw = ptr::null_mut();
    assert_eq!(coatcheck_store_new(&config, &mut raw) as u32, 0);
    let store = Store(raw);
    let mut known: Vec<Vec<u8>> = Vec::new();
    let len = |s: &Store| {
        let mut n = 0usize;
        assert_eq!(coatcheck_store_len(s.0, &mut n) as u32, 0);
        n
    };

    for call in calls.into_iter().take(128) {
        let before = len(&store);
        let status = match &call {
            Call::Create {
                value,
                ttl_ms,
                buf_len,
                null_value,
            } => {
                let mut buf = vec![0u8; usize::from(*buf_len)];
                let mut out = 0usize;
                let value_ptr = if *null_value {
                    ptr::null()
                } else {
                    value.as_ptr()
                };
                let status = coatcheck_store_create(
                    store.0,
                    value_ptr,
                    value.len(),
                    ttl(*ttl_ms),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut out,
                );
                if status as u32 == 0 {
                    known.push(buf[..out].to_vec());
                }
                status
            }
            Call::Get {
                id,
                buf_len,
                null_buf,
            } => {
                let id = IdArg::of(id, &known);
                let mut buf = vec![0u8; usize::from(*buf_len)];
                let buf_ptr = if *null_buf {
                    ptr::null_mut()
                } else {
                    buf.as_mut_ptr()
                };
                let (mut out, mut version) = (0usize, 0u64);
                coatcheck_store_get(
                    store.0,
                    id.ptr(),
                    id.len(),
                    buf_ptr,
                    buf.len(),
                    &mut out,
                    &mut version,
                )
            }
            Call::Set { id, value, ttl_ms } => {
                let id = IdArg::of(id, &known);
                coatcheck_store_set(
                    store.0,
                    id.ptr(),
                    id.len(),
                    value.as_ptr(),
                    value.len(),
                    ttl(*ttl_ms),
                    ptr::null_mut(),
                )
            }
            Call::SetIfVersion { id, value, version } => {
                let id = IdArg::of(id, &known);
                coatcheck_store_set_if_version(
                    store.0,
                    id.ptr(),
                    id.len(),
                    value.as_ptr(),
                    value.len(),
                    u64::from(*version),
                    0,
                    ptr::null_mut(),
                )
            }
            Call::Touch { id, ttl_ms } => {
                let id = IdArg::of(id, &known);
                coatcheck_store_touch(store.0, id.ptr(), id.len(), ttl(*ttl_ms))
            }
            Call::Destroy { id } => {
                let id = IdArg::of(id, &known);
                coatcheck_store_destroy(store.0, id.ptr(), id.len())
            }
            Call::Regenerate { id, buf_len } => {
                let id = IdArg::of(id, &known);
                let mut buf = vec![0u8; usize::from(*buf_len)];
                let mut out = 0usize;
                let status = coatcheck_store_regenerate(
                    store.0,
                    id.ptr(),
                    id.len(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut out,
                );
                if status as u32 == 0 {
                    known.push(buf[..out].to_vec());
                }
                status
            }
            Call::Sign { id, buf_len } => {
                let id = IdArg::of(id, &known);
                let mut buf = vec![0u8; usize::from(*buf_len)];
                let mut out = 0usize;
                coatcheck_store_sign(
                    store.0,
                    id.ptr(),
                    id.len(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut out,
                )
            }
            Call::Unsign { token, sign_known } => {
                let mut token = token.clone();
                if let (Some(i), false) = (sign_known, known.is_empty()) {
                    // A real token of a known id, then tampered with by the fuzzer's bytes.
                    let id = &known[usize::from(*i) % known.len()];
                    let mut buf = [0u8; 256];
                    let mut out = 0usize;
                    let s = coatcheck_store_sign(
                        store.0,
                        id.as_ptr().cast(),
                        id.len(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        &mut out,
                    );
                    assert_eq!(s as u32, 0, "signing an id the store issued");
                    let mut signed = buf[..out].to_vec();
                    signed.extend_from_slice(&token);
                    token = signed;
                }
                let mut out = 0usize;
                let status =
                    coatcheck_store_unsign(store.0, token.as_ptr().cast(), token.len(), &mut out);
                if status as u32 == 0 {
                    assert!(out <= token.len(), "the id is a prefix of the token");
                }
                status
            }
            Call::SetOwner { id, owner } => {
                let id = IdArg::of(id, &known);
                coatcheck_store_set_owner(
                    store.0,
                    id.ptr(),
                    id.len(),
                    owner.as_ptr().cast(),
                    owner.len(),
                )
            }
            Call::Sweep => {
                let mut n = 0usize;
                coatcheck_store_sweep(store.0, &mut n)
            }
        };
        let code = status as u32;
        assert!(
            DOCUMENTED.contains(&code),
            "{call:?} returned undocumented status {code}"
        );
        if code != 0 {
            assert_eq!(
                len(&store),
                before,
                "{call:?} failed with {code} but changed the store"
            );
        }
    }
});
