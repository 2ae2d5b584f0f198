//! The bytes of the restart log and its snapshots: a 16-byte header, then frames of
//! `[body length: u32][CRC-32 of the body: u32][body]`, all little-endian.
//!
//! A body is one [`Record`]: a tag byte and the record's fields. In a log file (from format
//! version 3) the body starts with the change's sequence number (`u64`), which orders the changes
//! of one session across the several files a log generation is written to. Decoding checks everything a
//! record claims (lengths, id and owner rules, UTF-8, that the body is used up exactly), so a
//! frame whose CRC happens to match garbage is still refused rather than restored.

use crate::id::validate_id;
use crate::store::MAX_OWNER_LEN;

/// First bytes of every file the log writes.
pub(crate) const MAGIC: [u8; 8] = *b"coatchk\n";
/// The layout described here, which this version writes. Version 2 is the same layout without
/// sequence numbers (one log file per generation, in order), version 1 also without
/// [`Record::Patch`], so both are read too; a file of any other version is set aside, never
/// guessed at.
pub(crate) const FORMAT_VERSION: u32 = 3;
/// The first version whose log records carry a sequence number.
const SEQUENCED_SINCE: u32 = 3;
const OLDEST_READ_VERSION: u32 = 1;
/// Header length: magic, format version, file kind.
pub(crate) const HEADER_LEN: usize = 16;
/// Frame header length: body length and CRC.
const FRAME_HEAD: usize = 8;
/// Longest body accepted: a 1 GiB value (the most `max_session_bytes` allows) and its fields.
const MAX_BODY: usize = (1 << 30) + 4096;

const NONE_U64: u64 = u64::MAX;
const NONE_U16: u16 = u16::MAX;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// Changes in the order they were made.
    Log = 1,
    /// The whole table at one moment, ended by [`Record::End`].
    Snapshot = 2,
}

/// The header of a file of `kind`.
pub(crate) fn header(kind: FileKind) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(kind as u32).to_le_bytes());
    h
}

/// Whether the frames of a file of `kind` in format `version` start with a sequence number.
pub(crate) fn sequenced(version: u32, kind: FileKind) -> bool {
    kind == FileKind::Log && version >= SEQUENCED_SINCE
}

/// The format version of a file's header, or why it was refused.
pub(crate) fn check_header(bytes: &[u8], kind: FileKind) -> Result<u32, String> {
    if bytes.is_empty() {
        return Err("the file is empty (a crash while it was being created?)".into());
    }
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "the file is {} bytes, shorter than its header",
            bytes.len()
        ));
    }
    if bytes[..8] != MAGIC {
        return Err("the file does not start with coatcheck's magic bytes".into());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(format!(
            "the file is in format version {version}; this coatcheck reads versions \
             {OLDEST_READ_VERSION} to {FORMAT_VERSION}"
        ));
    }
    let found = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if found != kind as u32 {
        return Err(format!(
            "the file is of kind {found}, expected {}",
            kind as u32
        ));
    }
    Ok(version)
}

/// One entry of a log or snapshot. Times are wall-clock ms since the Unix epoch, so that
/// lifetimes continue across a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    /// A session's whole state after a create or a write (and every session of a snapshot).
    Put {
        id: &'a str,
        version: u64,
        deadline: u64,
        ttl_ms: u64,
        absolute: Option<u64>,
        owner: Option<&'a str>,
        value: &'a [u8],
    },
    /// A write that kept the first `prefix` and last `suffix` bytes of the value it replaced
    /// (version `base`, `base_len` bytes) and put `middle` between them; otherwise as a `Put`.
    /// A session's data usually changes in a few bytes per write (a counter, a timestamp), so
    /// this keeps the log's bytes per write, the cost of a flood of writes, small.
    Patch {
        id: &'a str,
        version: u64,
        deadline: u64,
        ttl_ms: u64,
        absolute: Option<u64>,
        owner: Option<&'a str>,
        base: u64,
        base_len: u32,
        prefix: u32,
        suffix: u32,
        middle: &'a [u8],
    },
    /// A session's deadline moved (a read or touch crossed the slack, or a new idle timeout).
    Slid {
        id: &'a str,
        version: u64,
        deadline: u64,
        ttl_ms: u64,
    },
    /// A session's owner was set or cleared.
    Owner {
        id: &'a str,
        version: u64,
        owner: Option<&'a str>,
    },
    /// A session left the table (destroyed, expired, evicted, regenerated away, cleared).
    Removed { id: &'a str, version: u64 },
    /// Every version issued so far is at most this: a restarted store issues above it, so a
    /// version never repeats for an id, even one whose session is gone.
    Versions { issued: u64 },
    /// The last record of a snapshot, with how many `Put`s it holds.
    End { sessions: u64 },
}

const TAG_PUT: u8 = 1;
const TAG_SLID: u8 = 2;
const TAG_OWNER: u8 = 3;
const TAG_REMOVED: u8 = 4;
const TAG_VERSIONS: u8 = 5;
const TAG_END: u8 = 6;
const TAG_PATCH: u8 = 7;

/// A patch is written instead of a whole value when it keeps at least this many bytes: its own
/// fields take 20 more than a `Put`'s.
pub(crate) const PATCH_MIN_KEPT: usize = 32;

/// How many bytes `new` shares with `old` at its start and, after that, at its end.
pub(crate) fn unchanged_ends(old: &[u8], new: &[u8]) -> (usize, usize) {
    let prefix = common_prefix(old, new);
    (prefix, common_suffix(&old[prefix..], &new[prefix..]))
}

/// Whole 16-byte blocks are compared as slices before single bytes: values run to kilobytes.
const COMPARE_BLOCK: usize = 16;

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let most = a.len().min(b.len());
    let mut same = 0;
    while same + COMPARE_BLOCK <= most
        && a[same..same + COMPARE_BLOCK] == b[same..same + COMPARE_BLOCK]
    {
        same += COMPARE_BLOCK;
    }
    same + a[same..most]
        .iter()
        .zip(&b[same..most])
        .take_while(|(x, y)| x == y)
        .count()
}

fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let most = a.len().min(b.len());
    let (a, b) = (&a[a.len() - most..], &b[b.len() - most..]);
    let mut same = 0;
    while same + COMPARE_BLOCK <= most
        && a[most - same - COMPARE_BLOCK..most - same]
            == b[most - same - COMPARE_BLOCK..most - same]
    {
        same += COMPARE_BLOCK;
    }
    same + a[..most - same]
        .iter()
        .rev()
        .zip(b[..most - same].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Turns `value` into what a patch describes, if it has the length the patch was made against;
/// otherwise leaves it alone and says so. In place: a replay of many small patches to one
/// session costs their bytes, not a copy of the value per patch.
pub(crate) fn apply_patch(
    value: &mut Vec<u8>,
    base_len: u32,
    prefix: u32,
    suffix: u32,
    middle: &[u8],
) -> bool {
    let (prefix, suffix) = (prefix as usize, suffix as usize);
    if value.len() != base_len as usize || prefix + suffix > value.len() {
        return false;
    }
    let end = value.len() - suffix;
    value.splice(prefix..end, middle.iter().copied());
    true
}

/// Appends `record` as one frame of a snapshot to `out`.
pub(crate) fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
    encode_frame(None, record, out);
}

/// Appends `record` as one frame of a log to `out`, numbered `sequence`.
pub(crate) fn encode_sequenced(sequence: u64, record: &Record<'_>, out: &mut Vec<u8>) {
    encode_frame(Some(sequence), record, out);
}

fn encode_frame(sequence: Option<u64>, record: &Record<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEAD]);
    if let Some(sequence) = sequence {
        out.extend_from_slice(&sequence.to_le_bytes());
    }
    match *record {
        Record::Put {
            id,
            version,
            deadline,
            ttl_ms,
            absolute,
            owner,
            value,
        } => {
            out.push(TAG_PUT);
            put_id(out, id, version);
            put_state(out, deadline, ttl_ms, absolute, owner);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        Record::Patch {
            id,
            version,
            deadline,
            ttl_ms,
            absolute,
            owner,
            base,
            base_len,
            prefix,
            suffix,
            middle,
        } => {
            out.push(TAG_PATCH);
            put_id(out, id, version);
            put_state(out, deadline, ttl_ms, absolute, owner);
            out.extend_from_slice(&base.to_le_bytes());
            out.extend_from_slice(&base_len.to_le_bytes());
            out.extend_from_slice(&prefix.to_le_bytes());
            out.extend_from_slice(&suffix.to_le_bytes());
            out.extend_from_slice(&(middle.len() as u32).to_le_bytes());
            out.extend_from_slice(middle);
        }
        Record::Slid {
            id,
            version,
            deadline,
            ttl_ms,
        } => {
            out.push(TAG_SLID);
            put_id(out, id, version);
            out.extend_from_slice(&deadline.to_le_bytes());
            out.extend_from_slice(&ttl_ms.to_le_bytes());
        }
        Record::Owner { id, version, owner } => {
            out.push(TAG_OWNER);
            put_id(out, id, version);
            put_owner(out, owner);
        }
        Record::Removed { id, version } => {
            out.push(TAG_REMOVED);
            put_id(out, id, version);
        }
        Record::Versions { issued } => {
            out.push(TAG_VERSIONS);
            out.extend_from_slice(&issued.to_le_bytes());
        }
        Record::End { sessions } => {
            out.push(TAG_END);
            out.extend_from_slice(&sessions.to_le_bytes());
        }
    }
    let body_len = out.len() - start - FRAME_HEAD;
    let crc = crc32fast::hash(&out[start + FRAME_HEAD..]);
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_id(out: &mut Vec<u8>, id: &str, version: u64) {
    // Ids are at most MAX_ID_LEN (255) bytes: validated before they enter the table.
    out.push(id.len() as u8);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&version.to_le_bytes());
}

/// The fields a `Put` and a `Patch` share after the id.
fn put_state(
    out: &mut Vec<u8>,
    deadline: u64,
    ttl_ms: u64,
    absolute: Option<u64>,
    owner: Option<&str>,
) {
    out.extend_from_slice(&deadline.to_le_bytes());
    out.extend_from_slice(&ttl_ms.to_le_bytes());
    out.extend_from_slice(&absolute.unwrap_or(NONE_U64).to_le_bytes());
    put_owner(out, owner);
}

fn put_owner(out: &mut Vec<u8>, owner: Option<&str>) {
    match owner {
        // Owners are at most MAX_OWNER_LEN (1024) bytes, far below the "none" marker.
        Some(o) => {
            out.extend_from_slice(&(o.len() as u16).to_le_bytes());
            out.extend_from_slice(o.as_bytes());
        }
        None => out.extend_from_slice(&NONE_U16.to_le_bytes()),
    }
}

/// One frame as read: where it starts in the body, its sequence number and its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) offset: usize,
    /// As written in a log of format version 3; in other files, the frame's place in the file
    /// (their records are in order).
    pub(crate) sequence: u64,
    pub(crate) record: Record<'a>,
}

/// The frames of a file's body (after the header), one record at a time. After the first
/// frame that does not decode, [`Frames::damage`] says why and [`Frames::good_len`] how many
/// bytes before it were good.
pub(crate) struct Frames<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Whether each body starts with a sequence number.
    sequenced: bool,
    /// Frames read so far: the sequence number of frames that carry none.
    read: u64,
    damage: Option<String>,
}

impl<'a> Frames<'a> {
    /// The frames of a snapshot's body, or a log's of a version before sequence numbers.
    #[cfg(test)]
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Self::at(body, 0, false)
    }

    /// The frames of a file's body from `offset` on (0, or where [`Frames::next_frame`] found
    /// a frame before), with or without sequence numbers (see [`sequenced`]).
    pub(crate) fn at(body: &'a [u8], offset: usize, sequenced: bool) -> Self {
        Self {
            bytes: body,
            pos: offset.min(body.len()),
            sequenced,
            read: 0,
            damage: None,
        }
    }

    /// Bytes of whole, valid frames read so far.
    pub(crate) fn good_len(&self) -> usize {
        self.pos
    }

    /// Why reading stopped before the end, if it did.
    pub(crate) fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    fn fail(&mut self, why: String) -> Option<Frame<'a>> {
        self.damage = Some(why);
        None
    }

    /// The next frame, with where it starts and its sequence number.
    pub(crate) fn next_frame(&mut self) -> Option<Frame<'a>> {
        if self.damage.is_some() {
            return None;
        }
        let rest = &self.bytes[self.pos..];
        if rest.is_empty() {
            return None;
        }
        if rest.iter().all(|&b| b == 0) {
            // The zero-filled space a log file reserves ahead of its records: the end.
            self.pos = self.bytes.len();
            return None;
        }
        if rest.len() < FRAME_HEAD {
            return self.fail(format!(
                "a frame header is cut off after {} bytes",
                rest.len()
            ));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 || len > MAX_BODY {
            return self.fail(format!(
                "a frame claims an impossible length of {len} bytes"
            ));
        }
        if rest.len() - FRAME_HEAD < len {
            return self.fail(format!(
                "a frame of {len} bytes is cut off after {} (a torn write)",
                rest.len() - FRAME_HEAD
            ));
        }
        let body = &rest[FRAME_HEAD..FRAME_HEAD + len];
        if crc32fast::hash(body) != crc {
            return self.fail("a frame's checksum does not match its bytes".into());
        }
        let mut reader = Reader(body);
        let sequence = if self.sequenced {
            reader.u64()
        } else {
            Some(self.read)
        };
        match sequence.zip(decode(reader)) {
            Some((sequence, record)) => {
                let offset = self.pos;
                self.pos += FRAME_HEAD + len;
                self.read += 1;
                Some(Frame {
                    offset,
                    sequence,
                    record,
                })
            }
            None => self.fail("a frame's checksum matches but its record is malformed".into()),
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        self.next_frame().map(|frame| frame.record)
    }
}

/// How many frames `body` seems to hold, hopping over their length fields without checking
/// them: to size the image before it is read.
pub(crate) fn count_frames(body: &[u8]) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while let Some(head) = body.get(pos..pos + FRAME_HEAD) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len == 0 {
            break;
        }
        pos = pos.saturating_add(FRAME_HEAD + len);
        n += 1;
    }
    n
}

/// Reads fields off the front of a body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }

    fn id(&mut self) -> Option<(&'a str, u64)> {
        let len = self.u8()? as usize;
        let id = std::str::from_utf8(self.take(len)?).ok()?;
        validate_id(id).ok()?;
        Some((id, self.u64()?))
    }

    /// What [`put_state`] wrote.
    #[allow(clippy::type_complexity)]
    fn state(&mut self) -> Option<(u64, u64, Option<u64>, Option<&'a str>)> {
        let deadline = self.u64()?;
        let ttl_ms = self.u64()?;
        let absolute = Some(self.u64()?).filter(|&a| a != NONE_U64);
        Some((deadline, ttl_ms, absolute, self.owner()?))
    }

    fn owner(&mut self) -> Option<Option<&'a str>> {
        let len = self.u16()?;
        if len == NONE_U16 {
            return Some(None);
        }
        let len = len as usize;
        if len == 0 || len > MAX_OWNER_LEN {
            return None;
        }
        Some(Some(std::str::from_utf8(self.take(len)?).ok()?))
    }
}

fn decode(mut r: Reader<'_>) -> Option<Record<'_>> {
    let record = match r.u8()? {
        TAG_PUT => {
            let (id, version) = r.id()?;
            let (deadline, ttl_ms, absolute, owner) = r.state()?;
            let len = r.u32()? as usize;
            let value = r.take(len)?;
            Record::Put {
                id,
                version,
                deadline,
                ttl_ms,
                absolute,
                owner,
                value,
            }
        }
        TAG_PATCH => {
            let (id, version) = r.id()?;
            let (deadline, ttl_ms, absolute, owner) = r.state()?;
            let base = r.u64()?;
            let base_len = r.u32()?;
            let prefix = r.u32()?;
            let suffix = r.u32()?;
            let len = r.u32()? as usize;
            let middle = r.take(len)?;
            // What a patch keeps must fit in what it was made against.
            if base >= version || u64::from(prefix) + u64::from(suffix) > u64::from(base_len) {
                return None;
            }
            Record::Patch {
                id,
                version,
                deadline,
                ttl_ms,
                absolute,
                owner,
                base,
                base_len,
                prefix,
                suffix,
                middle,
            }
        }
        TAG_SLID => {
            let (id, version) = r.id()?;
            Record::Slid {
                id,
                version,
                deadline: r.u64()?,
                ttl_ms: r.u64()?,
            }
        }
        TAG_OWNER => {
            let (id, version) = r.id()?;
            Record::Owner {
                id,
                version,
                owner: r.owner()?,
            }
        }
        TAG_REMOVED => {
            let (id, version) = r.id()?;
            Record::Removed { id, version }
        }
        TAG_VERSIONS => Record::Versions { issued: r.u64()? },
        TAG_END => Record::End { sessions: r.u64()? },
        _ => return None,
    };
    // A record uses its body up exactly.
    r.0.is_empty().then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record<'static>> {
        vec![
            Record::Put {
                id: "abc",
                version: 7,
                deadline: 1_700_000_000_000,
                ttl_ms: 60_000,
                absolute: Some(1_700_000_100_000),
                owner: Some("user-1"),
                value: b"{\"n\":1}",
            },
            Record::Put {
                id: "x",
                version: 1,
                deadline: 5,
                ttl_ms: 1,
                absolute: None,
                owner: None,
                value: b"",
            },
            Record::Slid {
                id: "abc",
                version: 7,
                deadline: 9,
                ttl_ms: 10,
            },
            Record::Patch {
                id: "abc",
                version: 9,
                deadline: 1_700_000_000_500,
                ttl_ms: 60_000,
                absolute: None,
                owner: Some("user-1"),
                base: 7,
                base_len: 7,
                prefix: 5,
                suffix: 1,
                middle: b"22",
            },
            Record::Owner {
                id: "abc",
                version: 7,
                owner: None,
            },
            Record::Removed {
                id: "abc",
                version: 8,
            },
            Record::Versions { issued: 99 },
            Record::End { sessions: 2 },
        ]
    }

    #[test]
    fn every_record_reads_back_as_written() {
        let mut bytes = Vec::new();
        for r in samples() {
            encode(&r, &mut bytes);
        }
        let mut frames = Frames::new(&bytes);
        let read: Vec<_> = frames.by_ref().collect();
        assert_eq!(read, samples());
        assert_eq!(frames.damage(), None);
        assert_eq!(frames.good_len(), bytes.len());
    }

    #[test]
    fn log_frames_carry_their_sequence_numbers_and_can_be_read_again_from_their_offset() {
        let mut bytes = Vec::new();
        for (r, sequence) in samples().iter().zip([40, 7, 41, 8, 9, 1, 2, 3]) {
            encode_sequenced(sequence, r, &mut bytes);
        }
        let mut frames = Frames::at(&bytes, 0, true);
        let read: Vec<_> = std::iter::from_fn(|| frames.next_frame()).collect();
        assert_eq!(frames.damage(), None);
        let records: Vec<_> = read.iter().map(|f| f.record.clone()).collect();
        assert_eq!(records, samples());
        let sequences: Vec<_> = read.iter().map(|f| f.sequence).collect();
        assert_eq!(sequences, [40, 7, 41, 8, 9, 1, 2, 3]);
        for frame in &read {
            let again = Frames::at(&bytes, frame.offset, true).next_frame();
            assert_eq!(again.as_ref(), Some(frame));
        }
        // Read as a file without sequence numbers, the first frame's body does not decode.
        let mut unsequenced = Frames::new(&bytes);
        assert_eq!(unsequenced.next(), None);
        assert!(unsequenced.damage().is_some());
        // Frames of a file without them are numbered by their place.
        let mut plain = Vec::new();
        for r in samples() {
            encode(&r, &mut plain);
        }
        let mut frames = Frames::new(&plain);
        let places: Vec<_> = std::iter::from_fn(|| frames.next_frame())
            .map(|f| f.sequence)
            .collect();
        assert_eq!(places, (0..samples().len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_torn_tail_keeps_every_whole_record_before_it() {
        let mut bytes = Vec::new();
        for r in samples() {
            encode(&r, &mut bytes);
        }
        let whole = bytes.len();
        let mut last = Vec::new();
        encode(&samples()[0], &mut last);
        for cut in 1..last.len() {
            let mut torn = bytes.clone();
            torn.extend_from_slice(&last[..cut]);
            let mut frames = Frames::new(&torn);
            assert_eq!(frames.by_ref().count(), samples().len(), "cut at {cut}");
            assert_eq!(frames.good_len(), whole);
            assert!(frames.damage().is_some());
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_frame_stops_reading_at_that_frame() {
        let mut first = Vec::new();
        encode(&samples()[0], &mut first);
        let mut bytes = first.clone();
        encode(&samples()[2], &mut bytes);
        for byte in first.len()..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[byte] ^= 1 << bit;
                let mut frames = Frames::new(&bad);
                assert_eq!(frames.by_ref().count(), 1, "byte {byte} bit {bit}");
                assert_eq!(frames.good_len(), first.len());
                assert!(frames.damage().is_some());
            }
        }
    }

    #[test]
    fn the_zeros_a_log_reserves_ahead_read_as_its_end() {
        let mut bytes = Vec::new();
        encode(&samples()[0], &mut bytes);
        let whole = bytes.len();
        bytes.resize(whole + 4096, 0);
        let mut frames = Frames::new(&bytes);
        assert_eq!(frames.by_ref().count(), 1);
        assert_eq!(frames.damage(), None);
        // A torn record before the zeros is damage, as anywhere else.
        bytes[whole] = 9;
        let mut frames = Frames::new(&bytes);
        assert_eq!(frames.by_ref().count(), 1);
        assert_eq!(frames.good_len(), whole);
        assert!(frames.damage().is_some());
    }

    #[test]
    fn a_patch_rebuilds_the_value_from_the_ends_it_kept() {
        let cases: [(&[u8], &[u8]); 7] = [
            (b"{\"n\":1}", b"{\"n\":22}"),
            (b"same", b"same"),
            (b"", b"new"),
            (b"old", b""),
            (b"aaaa", b"aaaaaa"),
            (&[7; 100], &[7; 40]),
            (&[1; 300], &[2; 300]),
        ];
        for (old, new) in cases {
            let (prefix, suffix) = unchanged_ends(old, new);
            assert!(
                prefix + suffix <= old.len().min(new.len()),
                "{old:?} -> {new:?}"
            );
            let middle = &new[prefix..new.len() - suffix];
            let mut value = old.to_vec();
            let fits = apply_patch(
                &mut value,
                old.len() as u32,
                prefix as u32,
                suffix as u32,
                middle,
            );
            assert!(fits);
            assert_eq!(value, new, "{old:?} -> {new:?}");
        }
        let long: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut changed = long.clone();
        changed[500] ^= 1;
        assert_eq!(unchanged_ends(&long, &changed), (500, 499));
        // Against another base it is refused, not misapplied.
        let mut value = b"abc".to_vec();
        assert!(!apply_patch(&mut value, 4, 1, 1, b"x"));
        assert!(!apply_patch(&mut value, 3, 2, 2, b"x"));
        assert_eq!(value, b"abc");
    }

    /// Found by the `log_loader` fuzz target: a tail shorter than a frame header that is not
    /// all zeros was read past its end.
    #[test]
    fn a_tail_shorter_than_a_frame_header_is_damage_not_a_panic() {
        for tail in [&[1u8][..], &[0, 0, 0, 7], &[5, 0, 0, 0, 0, 0, 0]] {
            let mut frames = Frames::new(tail);
            assert_eq!(frames.next(), None);
            assert_eq!(frames.good_len(), 0);
            assert!(frames.damage().unwrap().contains("cut off"), "{tail:?}");
        }
        let mut frames = Frames::new(&[0, 0, 0]);
        assert_eq!(frames.next(), None);
        assert_eq!(frames.damage(), None);
    }

    #[test]
    fn headers_of_another_kind_or_version_are_refused() {
        let log = header(FileKind::Log);
        assert!(check_header(&log, FileKind::Log).is_ok());
        assert!(check_header(&log, FileKind::Snapshot).is_err());
        assert!(check_header(&[], FileKind::Log).is_err());
        assert!(check_header(&log[..10], FileKind::Log).is_err());
        let mut other = log;
        other[8] = 4;
        assert!(
            check_header(&other, FileKind::Log)
                .unwrap_err()
                .contains("version 4")
        );
        // Version 2 (without sequence numbers) and 1 (without patches either) are still read.
        for older in [1, 2] {
            other[8] = older;
            assert_eq!(check_header(&other, FileKind::Log), Ok(u32::from(older)));
            assert!(!sequenced(u32::from(older), FileKind::Log));
        }
        assert!(sequenced(FORMAT_VERSION, FileKind::Log));
        assert!(!sequenced(FORMAT_VERSION, FileKind::Snapshot));
        let mut magic = log;
        magic[0] = b'C';
        assert!(check_header(&magic, FileKind::Log).is_err());
    }
}
