//! Redis key names, and how an id becomes one.
//!
//! A session lives under `<prefix>s:<hash>`, where `<hash>` is 18 bytes of SHA-256 over the id
//! (domain-separated), base64url. Ids are bearer credentials; a Redis key must not be one. The
//! hash is one-way for generated ids (192 random bits) and for express-session's (uid-safe, 192
//! bits), and it does not depend on the signing secrets, so rotating secrets keeps every session.
//!
//! The same 18 bytes also place the session in the local table (stripe and 32-bit record hash),
//! so an invalidation, which names only the Redis key, finds the local copy without the id.
//!
//! The owner index (`<prefix>o:<owner>`, a Redis hash) maps session hashes to their ids
//! *sealed*: XORed with a keystream derived from the first signing secret and the session hash,
//! tagged with which secret sealed them, so `sessions_of` can return ids while someone who lists
//! Redis cannot read them (if the store has no secrets there is nothing to seal with, and the
//! ids are readable there, as they are in the cookie).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Bytes of the session hash.
pub(crate) const KEY_HASH_LEN: usize = 18;
/// Characters of the session hash in base64url.
pub(crate) const KEY_HASH_CHARS: usize = 24;
/// Bytes of the tag naming the secret an owner-index entry was sealed with.
const SEAL_TAG_LEN: usize = 4;

/// The hash a session is known by in Redis and placed by in the local table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct KeyHash(pub(crate) [u8; KEY_HASH_LEN]);

impl KeyHash {
    pub(crate) fn of(id: &str) -> Self {
        let digest = Sha256::new()
            .chain_update(b"coatcheck/1 session key\0")
            .chain_update(id.as_bytes())
            .finalize();
        let mut out = [0u8; KEY_HASH_LEN];
        out.copy_from_slice(&digest[..KEY_HASH_LEN]);
        KeyHash(out)
    }

    /// The 32-bit hash the local record keeps, and the bits that choose its stripe.
    pub(crate) fn placement(&self) -> (u32, u64) {
        let b = &self.0;
        let hash = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let stripe = u64::from_le_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]);
        (hash, stripe)
    }

    /// 64 bits of the hash, mostly ones `placement` does not use, to tell keys of one stripe
    /// apart (two keys that share it are only treated as one: a ticket goes stale).
    pub(crate) fn fingerprint(&self) -> u64 {
        let b = &self.0;
        u64::from_le_bytes([b[10], b[11], b[12], b[13], b[14], b[15], b[16], b[17]])
    }

    pub(crate) fn encoded(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub(crate) fn decode(text: &[u8]) -> Option<Self> {
        if text.len() != KEY_HASH_CHARS {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let mut out = [0u8; KEY_HASH_LEN];
        out.copy_from_slice(bytes.get(..KEY_HASH_LEN)?);
        Some(KeyHash(out))
    }
}

/// The key names of one store's tier.
pub(crate) struct Keys {
    prefix: String,
    /// One sealing key per signing secret, the first seals; empty if the store does not sign.
    seal_keys: Vec<[u8; 32]>,
}

impl Keys {
    pub(crate) fn new(prefix: &str, secrets: &[Vec<u8>]) -> Self {
        let seal_keys = secrets
            .iter()
            .map(|secret| {
                Sha256::new()
                    .chain_update(b"coatcheck/1 owner seal\0")
                    .chain_update(secret)
                    .finalize()
                    .into()
            })
            .collect();
        Self {
            prefix: prefix.to_string(),
            seal_keys,
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix client tracking broadcasts: session keys only, so owner-index and counter
    /// writes invalidate nothing.
    pub(crate) fn tracked_prefix(&self) -> String {
        format!("{}s:", self.prefix)
    }

    pub(crate) fn session(&self, hash: &KeyHash) -> String {
        format!("{}s:{}", self.prefix, hash.encoded())
    }

    pub(crate) fn version_counter(&self) -> String {
        format!("{}version", self.prefix)
    }

    /// Which incarnation of Redis's data this is (set when a process finds none).
    pub(crate) fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    /// Present while processes may write back the sessions Redis lost; holds the tombstones
    /// of what was removed meanwhile (see `scripts`).
    pub(crate) fn recovery_window(&self) -> String {
        format!("{}recovery", self.prefix)
    }

    pub(crate) fn owner(&self, owner: &str) -> Vec<u8> {
        let mut key = format!("{}o:", self.prefix).into_bytes();
        key.extend_from_slice(owner.as_bytes());
        key
    }

    /// `id` sealed for the session's own record, so the store can list ids: `None` in a store
    /// without secrets, which cannot hide it (such a store cannot list the sessions in Redis).
    pub(crate) fn seal_for_listing(&self, hash: &KeyHash, id: &str) -> Option<Vec<u8>> {
        (!self.seal_keys.is_empty()).then(|| self.seal(hash, id))
    }

    /// Whether ids can be listed (see `seal_for_listing`).
    pub(crate) fn can_list(&self) -> bool {
        !self.seal_keys.is_empty()
    }

    /// The SCAN pattern of this store's session keys, and of its owner indexes.
    pub(crate) fn patterns(&self) -> (String, String) {
        let prefix = glob_escape(&self.prefix);
        (format!("{prefix}s:*"), format!("{prefix}o:*"))
    }

    /// The session hash inside a tracked key, if it is one of ours.
    pub(crate) fn hash_in(&self, key: &[u8]) -> Option<KeyHash> {
        let rest = key
            .strip_prefix(self.prefix.as_bytes())?
            .strip_prefix(b"s:")?;
        KeyHash::decode(rest)
    }

    /// `id` sealed for the owner index.
    pub(crate) fn seal(&self, hash: &KeyHash, id: &str) -> Vec<u8> {
        let Some(key) = self.seal_keys.first() else {
            return id.as_bytes().to_vec();
        };
        let mut out = Vec::with_capacity(1 + SEAL_TAG_LEN + id.len());
        out.push(b'~');
        out.extend_from_slice(&seal_tag(key));
        let stream = keystream(key, hash, id.len());
        out.extend(id.bytes().zip(stream).map(|(b, k)| b ^ k));
        out
    }

    /// The id inside an owner-index entry, if a secret of this store sealed it.
    pub(crate) fn unseal(&self, hash: &KeyHash, sealed: &[u8]) -> Option<String> {
        let Some(body) = sealed.strip_prefix(b"~") else {
            // Stored by a store without secrets: the id itself.
            return String::from_utf8(sealed.to_vec()).ok();
        };
        let (tag, masked) = body.split_at_checked(SEAL_TAG_LEN)?;
        let key = self.seal_keys.iter().find(|k| seal_tag(k) == tag)?;
        let stream = keystream(key, hash, masked.len());
        let id: Vec<u8> = masked.iter().zip(stream).map(|(b, k)| b ^ k).collect();
        let id = String::from_utf8(id).ok()?;
        crate::id::validate_id(&id).ok()?;
        (KeyHash::of(&id) == *hash).then_some(id)
    }
}

/// `text` with the characters a Redis glob pattern gives a meaning to escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn seal_tag(key: &[u8; 32]) -> [u8; SEAL_TAG_LEN] {
    let digest = Sha256::new()
        .chain_update(b"coatcheck/1 seal tag\0")
        .chain_update(key)
        .finalize();
    let mut tag = [0u8; SEAL_TAG_LEN];
    tag.copy_from_slice(&digest[..SEAL_TAG_LEN]);
    tag
}

/// SHA-256 in counter mode over the sealing key and the session hash: unique per session, so
/// XORing with it hides the id from anyone without the key.
fn keystream(key: &[u8; 32], hash: &KeyHash, len: usize) -> impl Iterator<Item = u8> {
    let blocks = len.div_ceil(32) as u32;
    let key = *key;
    let hash = *hash;
    (0..blocks)
        .flat_map(move |counter| {
            let block: [u8; 32] = Sha256::new()
                .chain_update(key)
                .chain_update(hash.0)
                .chain_update(counter.to_le_bytes())
                .finalize()
                .into();
            block
        })
        .take(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_id_opens_under_any_secret_of_the_store_and_not_under_another() {
        let old = Keys::new("p:", &[b"old".to_vec()]);
        let rotated = Keys::new("p:", &[b"new".to_vec(), b"old".to_vec()]);
        let stranger = Keys::new("p:", &[b"other".to_vec()]);
        let id = "abcdefghijklmnopqrstuvwxyz012345";
        let hash = KeyHash::of(id);
        let sealed = old.seal(&hash, id);
        assert!(
            !sealed
                .windows(8)
                .any(|w| id.as_bytes().windows(8).any(|x| x == w))
        );
        assert_eq!(rotated.unseal(&hash, &sealed).as_deref(), Some(id));
        assert_eq!(stranger.unseal(&hash, &sealed), None);
    }

    #[test]
    fn glob_characters_in_the_prefix_are_escaped_in_scan_patterns() {
        let keys = Keys::new("app*[1]?\\:", &[]);
        assert_eq!(keys.patterns().0, "app\\*\\[1\\]\\?\\\\:s:*");
    }

    #[test]
    fn a_tracked_key_names_the_hash_it_was_made_from() {
        let keys = Keys::new("app:", &[]);
        let hash = KeyHash::of("some-id");
        let key = keys.session(&hash);
        assert!(!key.contains("some-id"));
        assert_eq!(keys.hash_in(key.as_bytes()), Some(hash));
        assert_eq!(keys.hash_in(b"app:o:someone"), None);
        assert_eq!(keys.hash_in(b"other:s:AAAAAAAAAAAAAAAAAAAAAAAA"), None);
    }
}
