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
    assert_eq!(store.sign("bad id").unwrap_err().code(), "invalid_id");
}
