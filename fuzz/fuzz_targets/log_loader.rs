//! The restart log's loader on arbitrary files: a snapshot and logs of any bytes (with or without
//! a valid header, with or without each frame's checksum recomputed so that damage reaches the
//! record decoder), opened as a store's `persist_path`. No panic, the core's invariants hold,
//! and what was restored survives a clean close and a second load unchanged.

#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use arbitrary::Arbitrary;
use coatcheck::{Config, Fsync, Store};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct File {
    /// Put a valid header of the right kind in front of `bytes`.
    header: bool,
    /// Which format version that header names: 1 (no patch records), 2 (no sequence numbers)
    /// or 3 (log records numbered, a generation in one file per segment), as `1 + version % 3`.
    version: u8,
    /// Rewrite each frame's CRC so that it matches the frame's body.
    fix_checksums: bool,
    bytes: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    snapshot: Option<File>,
    logs: Vec<File>,
}

const MAGIC: &[u8; 8] = b"coatchk\n";

fn render(file: &File, kind: u32) -> Vec<u8> {
    let mut out = Vec::new();
    if file.header {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&format_version(file).to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
    }
    let start = out.len();
    out.extend_from_slice(&file.bytes);
    if file.fix_checksums {
        let mut pos = start;
        while pos + 8 <= out.len() {
            let len = u32::from_le_bytes(out[pos..pos + 4].try_into().unwrap()) as usize;
            if len == 0 || pos + 8 + len > out.len() {
                break;
            }
            let crc = crc32(&out[pos + 8..pos + 8 + len]);
            out[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
            pos += 8 + len;
        }
    }
    out
}

/// Every version this coatcheck reads.
fn format_version(file: &File) -> u32 {
    1 + u32::from(file.version % 3)
}

/// CRC-32 (IEEE), as the log uses; bit by bit, fast enough for fuzz inputs.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn dir() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("coatcheck-fuzz-log-{}", std::process::id()))
}

fn config(path: PathBuf) -> Config {
    let mut config = Config::default();
    config.persist_path = Some(path);
    config.persist_fsync = Fsync::Never;
    config.background_sweeper = false;
    config
}

/// Sessions that will not expire between two loads, with their version, owner and value.
fn lasting(store: &Store) -> BTreeMap<String, (u64, Option<String>, Vec<u8>)> {
    store
        .ids().unwrap()
        .into_iter()
        .filter_map(|id| {
            let s = store.peek(&id).ok()??;
            (s.expires_in > Duration::from_secs(60)).then(|| (id, (s.version, s.owner, s.value)))
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let dir = dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    if let Some(snapshot) = &input.snapshot {
        std::fs::write(dir.join("snapshot.0000000000000001"), render(snapshot, 2)).unwrap();
    }
    for (i, log) in input.logs.iter().take(4).enumerate() {
        // Two files per generation: as segments of one generation in version 3, where the
        // loader merges them by sequence number; otherwise one generation's single file (the
        // second overwrites the first).
        let generation = 1 + i / 2;
        let name = if format_version(log) == 3 {
            format!("log.{generation:016x}.{:02x}", i % 2)
        } else {
            format!("log.{generation:016x}")
        };
        std::fs::write(dir.join(name), render(log, 1)).unwrap();
    }
    let first = Store::new(config(dir.clone())).expect("damaged files never stop a store");
    first.check_invariants().unwrap();
    let restored = lasting(&first);
    // A write after loading gets a version above every one the files named.
    if let Some(max) = restored.values().map(|(v, _, _)| *v).max() {
        let fresh = first.set("fuzz-probe", b"x", None).unwrap();
        assert!(fresh > max, "version {fresh} reissued (files named up to {max})");
        first.destroy("fuzz-probe").unwrap();
    }
    drop(first);
    let second = Store::new(config(dir.clone())).expect("a clean close leaves a loadable log");
    second.check_invariants().unwrap();
    assert_eq!(lasting(&second), restored);
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
});
