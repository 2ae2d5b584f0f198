//! Token verification with key rotation, on attacker-written cookies: no panic on any input;
//! a token is accepted only if it is exactly `sign(id)` under one of the secrets; signing then
//! verifying gives the id back.

#![no_main]

use arbitrary::Arbitrary;
use coatcheck::Signer;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    secrets: Vec<Vec<u8>>,
    id: String,
    token: String,
}

/// Rotations in use hold two or three secrets; more only slows each run (every secret is checked
/// against every other) without reaching new code.
const MOST_SECRETS: usize = 4;

fuzz_target!(|input: Input| {
    let mut input = input;
    input.secrets.truncate(MOST_SECRETS);
    let Ok(signer) = Signer::new(&input.secrets) else {
        // No secret, or an empty one: refused at construction, nothing to verify with.
        assert!(input.secrets.is_empty() || input.secrets.iter().any(|s| s.is_empty()));
        return;
    };
    let each: Vec<Signer> = input
        .secrets
        .iter()
        .map(|s| Signer::new([s]).expect("a non-empty secret"))
        .collect();

    if let Ok(id) = signer.unsign(&input.token) {
        assert!(
            each.iter().any(|one| one.sign(id) == input.token),
            "accepted a token that no secret signs: {:?}",
            input.token
        );
    }

    let token = signer.sign(&input.id);
    assert_eq!(
        signer.unsign(&token),
        Ok(input.id.as_str()),
        "sign then unsign"
    );
    assert_eq!(token, each[0].sign(&input.id), "the first secret signs");
    // Any secret of the rotation verifies what it signed.
    for one in &each {
        assert_eq!(signer.unsign(&one.sign(&input.id)), Ok(input.id.as_str()));
    }
});
