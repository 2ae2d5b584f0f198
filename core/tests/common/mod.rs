#![allow(dead_code)]

use std::time::Duration;

use coatcheck::{Config, ManualClock, Store};

pub const SECOND: Duration = Duration::from_secs(1);

/// A store on a manual clock with no background thread: tests move time and sweep themselves.
pub fn manual_store(configure: impl FnOnce(&mut Config)) -> (Store, ManualClock) {
    let clock = ManualClock::new();
    let mut config = Config::default();
    config.idle_timeout = Duration::from_secs(60);
    config.background_sweeper = false;
    config.shards = Some(16);
    configure(&mut config);
    let store = Store::with_clock(config, clock.clone()).expect("valid config");
    (store, clock)
}
