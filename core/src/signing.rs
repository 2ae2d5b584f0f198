//! Signed tokens, byte-compatible with the `cookie-signature` package used by express-session:
//! `<value>.<base64(HMAC-SHA256(secret, value))>` in standard base64 without `=` padding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag in bytes.
const TAG_LEN: usize = 32;

/// Length of the signature part: 32 bytes in unpadded base64.
const SIGNATURE_LEN: usize = 43;

/// Signs with the first secret; verifies against all of them, so secrets can be rotated by
/// prepending the new one and dropping the oldest later.
#[derive(Clone)]
pub struct Signer {
    // Keyed once: cloning a keyed HMAC skips re-deriving the inner and outer pads on every call.
    keys: Vec<HmacSha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("secrets", &self.keys.len())
            .finish()
    }
}

impl Signer {
    /// Builds a signer from one or more secrets. The first signs; all verify.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the list is empty or a secret is empty.
    pub fn new<I, S>(secrets: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut keys = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.is_empty() {
                return Err(Error::InvalidConfig("a secret must not be empty".into()));
            }
            let key = HmacSha256::new_from_slice(secret)
                .map_err(|_| Error::InvalidConfig("secret rejected by HMAC".into()))?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(Error::InvalidConfig(
                "at least one secret is required".into(),
            ));
        }
        Ok(Self { keys })
    }

    /// `<value>.<signature>`, signed with the first secret.
    pub fn sign(&self, value: &str) -> String {
        let mut mac = self.keys[0].clone();
        mac.update(value.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut out = String::with_capacity(value.len() + 1 + SIGNATURE_LEN);
        out.push_str(value);
        out.push('.');
        STANDARD_NO_PAD.encode_string(tag, &mut out);
        out
    }

    /// The value of a token whose signature verifies under any of the secrets.
    ///
    /// Only the canonical encoding is accepted: padding, the URL-safe alphabet, non-zero trailing
    /// bits or extra characters all fail, as in `cookie-signature`. The tag comparison is
    /// constant-time.
    ///
    /// # Errors
    /// [`Error::BadSignature`] for anything that does not verify.
    pub fn unsign<'a>(&self, token: &'a str) -> Result<&'a str> {
        // The tag is the token's last SIGNATURE_LEN characters, after a dot. Looking there
        // answers as `rfind('.')` would: a later dot would sit inside those characters, which the
        // decoder below refuses.
        let dot = token
            .len()
            .checked_sub(SIGNATURE_LEN + 1)
            .ok_or(Error::BadSignature)?;
        if token.as_bytes()[dot] != b'.' {
            return Err(Error::BadSignature);
        }
        let (value, signature) = (&token[..dot], &token[dot + 1..]);
        let tag = decode_tag(signature.as_bytes()).ok_or(Error::BadSignature)?;
        let mut verified = false;
        for key in &self.keys {
            let mut mac = key.clone();
            mac.update(value.as_bytes());
            // Every key is tried, so timing does not reveal which secret matched.
            verified |= tags_equal(&mac.finalize().into_bytes().into(), &tag);
        }
        if verified {
            Ok(value)
        } else {
            Err(Error::BadSignature)
        }
    }
}

/// Each byte's value as a base64 digit of the standard alphabet, or `NOT_A_DIGIT`.
const DIGITS: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut digits = [NOT_A_DIGIT; 256];
    let mut i = 0;
    while i < alphabet.len() {
        digits[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    digits
};

/// Marks a byte outside the alphabet; no digit (0..=63) has this bit.
const NOT_A_DIGIT: u8 = 0x80;

/// The tag spelled by `signature`, if it is the one canonical spelling of a 32-byte tag in
/// standard base64 without padding, as `cookie-signature` writes it: exactly 43 digits of the
/// standard alphabet (no padding, no URL-safe digits), the last one's two unused bits zero.
///
/// Written out for this one length: it runs on every request, and the general decoder (into a
/// buffer of any size) took more instructions than the rest of `unsign` apart from the hash.
/// The signature is what the client sent, not a secret, so the early exits leak nothing.
fn decode_tag(signature: &[u8]) -> Option<[u8; TAG_LEN]> {
    let signature: &[u8; SIGNATURE_LEN] = signature.try_into().ok()?;
    let mut tag = [0u8; TAG_LEN];
    let mut seen = 0u8;
    // Ten groups of four digits give 30 bytes.
    for (digits, bytes) in signature.chunks_exact(4).zip(tag.chunks_exact_mut(3)) {
        let [a, b, c, d] = [0, 1, 2, 3].map(|i| DIGITS[usize::from(digits[i])]);
        seen |= a | b | c | d;
        let n = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        bytes.copy_from_slice(&n.to_be_bytes()[1..]);
    }
    // The last three digits carry 18 bits: two bytes and two bits that must be zero.
    let [a, b, c] = [40, 41, 42].map(|i| DIGITS[usize::from(signature[i])]);
    seen |= a | b | c;
    let n = u32::from(a) << 12 | u32::from(b) << 6 | u32::from(c);
    if seen & NOT_A_DIGIT != 0 || n & 0b11 != 0 {
        return None;
    }
    tag[30] = (n >> 10) as u8;
    tag[31] = (n >> 2) as u8;
    Some(tag)
}

/// Whether two tags are equal, in a time that does not depend on where they differ: every
/// byte is compared into one accumulated difference, and the barrier on it keeps the compiler
/// from turning the fold back into a comparison that stops at the first difference.
/// (`Mac::verify_slice` puts a barrier on every byte instead, which profiles showed as about a
/// tenth of `unsign`'s time.)
fn tags_equal(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_cookie_signature_reference_vector() {
        let signer = Signer::new(["keyboard cat"]).unwrap();
        assert_eq!(
            signer.sign("hello"),
            "hello.xz6khi6+oL1pnNhBgjk3Nr1CX2sxTjJiO9pKXaHZ33E"
        );
        assert_eq!(
            signer.unsign("hello.xz6khi6+oL1pnNhBgjk3Nr1CX2sxTjJiO9pKXaHZ33E"),
            Ok("hello")
        );
    }

    #[test]
    fn rejects_non_canonical_and_tampered_tokens() {
        let signer = Signer::new(["keyboard cat"]).unwrap();
        let good = "hello.xz6khi6+oL1pnNhBgjk3Nr1CX2sxTjJiO9pKXaHZ33E";
        let bad = [
            "hello.xz6khi6+oL1pnNhBgjk3Nr1CX2sxTjJiO9pKXaHZ33E=", // padding
            "hello.xz6khi6-oL1pnNhBgjk3Nr1CX2sxTjJiO9pKXaHZ33E",  // url-safe alphabet
            "hello.xz6khi6+oL1pnNhBgjk3Nr1CX2sxTjJiO9pKXaHZ33F",  // non-canonical trailing bits
            "hello.xz6khi6+oL1pnNhBgjk3Nr1CX2sxTjJiO9pKXaHZ33E ", // extra character
            "hellp.xz6khi6+oL1pnNhBgjk3Nr1CX2sxTjJiO9pKXaHZ33E",  // tampered value
            "hello",
            "",
            ".",
        ];
        assert!(signer.unsign(good).is_ok());
        for token in bad {
            assert_eq!(signer.unsign(token), Err(Error::BadSignature), "{token:?}");
        }
    }

    #[test]
    fn a_tag_differing_in_any_one_byte_fails() {
        let signer = Signer::new(["keyboard cat"]).unwrap();
        let good = signer.sign("session-id");
        let (value, signature) = good.rsplit_once('.').unwrap();
        let tag = STANDARD_NO_PAD.decode(signature).unwrap();
        assert_eq!(tag.len(), TAG_LEN);
        for byte in 0..TAG_LEN {
            for bit in [0x01u8, 0x80] {
                let mut forged = tag.clone();
                forged[byte] ^= bit;
                let token = format!("{value}.{}", STANDARD_NO_PAD.encode(&forged));
                assert_eq!(signer.unsign(&token), Err(Error::BadSignature), "{token:?}");
            }
        }
    }

    /// The reference: the base64 crate's strict decoder, for exactly a tag's length.
    fn reference_tag(signature: &[u8]) -> Option<Vec<u8>> {
        STANDARD_NO_PAD
            .decode(signature)
            .ok()
            .filter(|tag| tag.len() == TAG_LEN)
    }

    #[test]
    fn the_tag_decoder_agrees_with_base64_on_every_byte_in_every_place() {
        let good = Signer::new(["keyboard cat"]).unwrap().sign("hello");
        let signature = good.rsplit_once('.').unwrap().1.as_bytes().to_vec();
        for place in 0..SIGNATURE_LEN {
            for byte in 0..=u8::MAX {
                let mut changed = signature.clone();
                changed[place] = byte;
                assert_eq!(
                    decode_tag(&changed).map(Vec::from),
                    reference_tag(&changed),
                    "{byte:#04x} at {place}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn the_tag_decoder_agrees_with_base64_on_any_text(
            signature in "[A-Za-z0-9+/=._-]{41,45}",
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 43),
        ) {
            for signature in [signature.as_bytes(), &bytes] {
                proptest::prop_assert_eq!(
                    decode_tag(signature).map(Vec::from),
                    reference_tag(signature)
                );
            }
        }
    }

    #[test]
    fn dots_belong_to_the_value_and_never_to_the_tag() {
        let signer = Signer::new(["keyboard cat"]).unwrap();
        for value in ["a.b", "a.b.c", ".", "..", "ends.with.dot."] {
            assert_eq!(signer.unsign(&signer.sign(value)), Ok(value), "{value:?}");
        }
        let good = signer.sign("hello");
        let (value, signature) = good.rsplit_once('.').unwrap();
        // A dot inside the tag's characters, whether it replaces one or is added.
        let replaced = format!("{value}.{}.{}", &signature[..10], &signature[11..]);
        let added = format!("{value}.{}.{}", &signature[..10], &signature[10..]);
        // The tag moved one place left, a dot after it.
        let shifted = format!("{value}{signature}.");
        for token in [replaced, added, shifted] {
            assert_eq!(signer.unsign(&token), Err(Error::BadSignature), "{token:?}");
        }
    }

    #[test]
    fn first_secret_signs_and_every_secret_verifies() {
        let old = Signer::new(["old"]).unwrap();
        let rotated = Signer::new(["new", "old"]).unwrap();
        let token = old.sign("sid");
        assert_eq!(rotated.unsign(&token), Ok("sid"));
        assert_eq!(
            rotated.sign("sid"),
            Signer::new(["new"]).unwrap().sign("sid")
        );
        assert!(Signer::new(["other"]).unwrap().unsign(&token).is_err());
    }

    #[test]
    fn empty_secret_lists_are_invalid_config() {
        assert_eq!(
            Signer::new(Vec::<&str>::new()).unwrap_err().code(),
            "invalid_config"
        );
        assert_eq!(Signer::new([""]).unwrap_err().code(), "invalid_config");
    }
}
