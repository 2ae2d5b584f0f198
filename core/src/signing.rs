//! Signed tokens, byte-compatible with the `cookie-signature` package used by express-session:
//! `<value>.<base64(HMAC-SHA256(secret, value))>` in standard base64 without `=` padding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

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
        let dot = token.rfind('.').ok_or(Error::BadSignature)?;
        let (value, signature) = (&token[..dot], &token[dot + 1..]);
        if signature.len() != SIGNATURE_LEN {
            return Err(Error::BadSignature);
        }
        // The strict decoder rejects padding, foreign alphabets and non-canonical trailing bits,
        // so only the one canonical spelling of the tag can reach the comparison.
        let tag = STANDARD_NO_PAD
            .decode(signature)
            .map_err(|_| Error::BadSignature)?;
        let mut verified = false;
        for key in &self.keys {
            let mut mac = key.clone();
            mac.update(value.as_bytes());
            // Every key is tried, so timing does not reveal which secret matched.
            verified |= mac.verify_slice(&tag).is_ok();
        }
        if verified {
            Ok(value)
        } else {
            Err(Error::BadSignature)
        }
    }
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
