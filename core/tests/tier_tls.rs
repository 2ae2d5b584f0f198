//! The shared tier over `rediss://` against a real TLS-only `redis-server` whose certificate
//! is signed by a CA made for the test: trusted through `SSL_CERT_FILE` it shares sessions
//! (invalidations included); untrusted it never connects; `#insecure` connects anyway.

mod support;

use std::time::Duration;

use coatcheck::{Config, Error, Store, WhenRedisDown};
use support::redis::RedisServer;

fn config(url: String) -> Config {
    let mut config = Config::default();
    config.secrets = vec![b"tls test secret".to_vec()];
    config.redis_url = Some(url);
    config.redis_timeout = Duration::from_secs(1);
    config
}

/// What `a_trusted_tls_server_shares_sessions_between_stores` runs in a child process
/// started with `SSL_CERT_FILE` naming the test CA (the environment is read once, at
/// startup); a no-op otherwise.
#[test]
fn child_of_the_trusted_tls_test() {
    let Ok(url) = std::env::var("COATCHECK_TLS_TEST_URL") else {
        return;
    };
    let (a, b) = (
        Store::new(config(url.clone())).unwrap(),
        Store::new(config(url)).unwrap(),
    );
    assert!(a.stats().tier.unwrap().connected, "A did not connect");
    assert!(b.stats().tier.unwrap().connected, "B did not connect");
    let id = a.create(b"{\"user\":1}", None).unwrap();
    // B loads the session, then answers from its own copy (not necessarily on the next read:
    // one made while the link still handles input asks Redis instead).
    let start = std::time::Instant::now();
    loop {
        let hits = b.stats().tier.unwrap().near_hits;
        assert_eq!(b.get(&id).unwrap().as_deref(), Some(&b"{\"user\":1}"[..]));
        if b.stats().tier.unwrap().near_hits > hits {
            break;
        }
        assert!(start.elapsed().as_secs() < 5, "B's copy is never trusted");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(a.destroy(&id).unwrap());
    // The invalidation reaches B over TLS: no stale copy once the destroy has returned.
    assert_eq!(b.get(&id).unwrap(), None);
    println!("TLS_CHILD_OK");
}

#[test]
fn a_trusted_tls_server_shares_sessions_between_stores() {
    let redis = RedisServer::start_tls();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_of_the_trusted_tls_test", "--nocapture"])
        .env("COATCHECK_TLS_TEST_URL", redis.tls_url())
        .env("SSL_CERT_FILE", redis.tls_files().ca())
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("TLS_CHILD_OK"),
        "the child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sessions went through this server: over TLS, and nowhere else.
    assert!(redis.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap() > 0);
}

#[test]
fn a_tls_server_whose_certificate_is_not_trusted_is_never_used() {
    let redis = RedisServer::start_tls();
    let mut config = config(redis.tls_url());
    config.redis_when_down = WhenRedisDown::Fail;
    // The system's CA store does not hold the test CA: the handshake fails, the store
    // starts (as with a Redis that is down) and every call gets the typed error.
    let store = Store::new(config).unwrap();
    assert!(!store.stats().tier.unwrap().connected);
    assert!(matches!(
        store.create(b"{}", None),
        Err(Error::Unavailable(_))
    ));
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "0");
}

#[test]
fn insecure_in_the_url_skips_the_certificate_check() {
    let redis = RedisServer::start_tls();
    let store = Store::new(config(format!("{}#insecure", redis.tls_url()))).unwrap();
    assert!(store.stats().tier.unwrap().connected);
    let id = store.create(b"{}", None).unwrap();
    assert_eq!(store.get(&id).unwrap().as_deref(), Some(&b"{}"[..]));
}

#[test]
fn a_rediss_url_asking_for_anything_but_insecure_is_a_config_error() {
    let err = Store::new(config("rediss://127.0.0.1:6379/0#verify-none".into()));
    assert!(matches!(err, Err(Error::InvalidConfig(_))), "{err:?}");
}
