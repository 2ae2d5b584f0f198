//! Signed tokens at the store level: a forged ticket gets nothing.

mod common;

use coatcheck::Error;
use common::manual_store;

#[test]
fn a_signed_token_round_trips_to_its_session() {
    let (store, _) = manual_store(|c| c.secrets = vec![b"keyboard cat".to_vec()]);
    let id = store.create(b"v", None).unwrap();
    let token = store.sign(&id).unwrap();
    assert!(token.starts_with(&format!("{id}.")));
    assert_eq!(store.unsign(&token).unwrap(), id);
    assert_eq!(
        store.sign("hello").unwrap(),
        "hello.xz6khi6+oL1pnNhBgjk3Nr1CX2sxTjJiO9pKXaHZ33E"
    );
}

#[test]
fn tampered_tokens_are_refused_and_counted() {
    let (store, _) = manual_store(|c| c.secrets = vec![b"s3cret".to_vec()]);
    let id = store.create(b"v", None).unwrap();
    let token = store.sign(&id).unwrap();
    let mut flipped = token.clone().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [flipped.as_str(), id.as_str(), "", ".", &format!("{token}=")] {
        assert_eq!(store.unsign(bad), Err(Error::BadSignature), "{bad:?}");
    }
    assert_eq!(store.stats().signature_failures, 5);
    assert!(store.get(&id).unwrap().is_some());
}

#[test]
fn rotated_secrets_verify_old_tokens_and_sign_with_the_newest() {
    let (old_store, _) = manual_store(|c| c.secrets = vec![b"old".to_vec()]);
    let (store, _) = manual_store(|c| c.secrets = vec![b"new".to_vec(), b"old".to_vec()]);
    let old_token = old_store.sign("sid").unwrap();
    assert_eq!(store.unsign(&old_token).unwrap(), "sid");
    assert_ne!(store.sign("sid").unwrap(), old_token);
    let (retired, _) = manual_store(|c| c.secrets = vec![b"new".to_vec()]);
    assert_eq!(retired.unsign(&old_token), Err(Error::BadSignature));
}

#[test]
fn a_store_without_secrets_cannot_sign() {
    let (store, _) = manual_store(|_| {});
    assert_eq!(store.sign("sid").unwrap_err().code(), "invalid_config");
    assert_eq!(
        store.unsign("sid.sig").unwrap_err().code(),
        "invalid_config"
    );
}

#[test]
fn signing_a_malformed_id_is_refused() {
    let (store, _) = manual_store(|c| c.secrets = vec![b"k".to_vec()]);
    let too_long = "a".repeat(coatcheck::MAX_ID_LEN + 1);
    for bad in ["bad id", "", "caf\u{e9}", "nul\0id", too_long.as_str()] {
        assert_eq!(store.sign(bad).unwrap_err().code(), "invalid_id", "{bad:?}");
    }
}

#[test]
fn malformed_tokens_are_refused_counted_and_reach_nothing() {
    let (store, _) = manual_store(|c| c.secrets = vec![b"k".to_vec()]);
    let id = store.create(b"keep", None).unwrap();
    let token = store.sign(&id).unwrap();
    let signature = &token[id.len() + 1..];
    // Tokens whose signature verifies but whose id is not one the store accepts: signed with
    // the same secret by something other than the store.
    let signer = coatcheck::Signer::new([b"k"]).unwrap();
    let bad = [
        String::new(),
        "x".repeat(10_000),
        format!("caf\u{e9}.{signature}"),
        format!("{id}\0.{signature}"),
        format!("{id}.{signature}\0"),
        format!("{}\0{}.{signature}", &id[..4], &id[5..]),
        signer.sign("has space"),
        signer.sign(""),
        signer.sign(&"a".repeat(coatcheck::MAX_ID_LEN + 1)),
        signer.sign("caf\u{e9}"),
    ];
    for token in &bad {
        assert_eq!(store.unsign(token), Err(Error::BadSignature), "{token:?}");
    }
    assert_eq!(store.stats().signature_failures, bad.len() as u64);
    assert_eq!(store.len(), 1);
    assert_eq!(store.get(&id).unwrap().unwrap(), b"keep");
}
