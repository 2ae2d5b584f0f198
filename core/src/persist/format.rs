//! The bytes of the restart log and its snapshots: a 16-byte header, then frames of
//! `[body length: u32][CRC-32 of the body: u32][body]`, all little-endian.
//!
//! A body is one [`Record`]: a tag byte and the record's fields. From format version 3 (see
//! [`Layout`]) every number in a body is a LEB128 variable-length integer, and in a log file
//! the body starts with the change's sequence number, which orders the changes of one session
//! across the several files a log generation is written to. Before, numbers were fixed-width. Decoding checks everything a
//! record claims (lengths, id and owner rules, UTF-8, that the body is used up exactly), so a
//! frame whose CRC happens to match garbage is still refused rather than restored.

use crate::id::validate_id;
use crate::store::MAX_OWNER_LEN;

/// First bytes of every file the log writes.
pub(crate) const MAGIC: [u8; 8] = *b"coatchk\n";
/// The layout described here, which this version writes. Version 2 has fixed-width numbers and
/// no sequence numbers (one log file per generation, in order), version 1 also no
/// [`Record::Patch`], so both are read too; a file of any other version is set aside, never
/// guessed at.
pub(crate) const FORMAT_VERSION: u32 = 3;
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

/// How the bodies of a file are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Each body starts with a sequence number.
    pub(crate) sequenced: bool,
    /// Numbers are variable-length integers, not fixed-width.
    pub(crate) compact: bool,
}

impl Layout {
    /// What this version writes into a log.
    pub(crate) const LOG: Layout = Layout {
        sequenced: true,
        compact: true,
    };
    /// What this version writes into a snapshot.
    pub(crate) const SNAPSHOT: Layout = Layout {
        sequenced: false,
        compact: true,
    };

    /// The layout of a file of `kind` in format `version`.
    pub(crate) fn of(version: u32, kind: FileKind) -> Self {
        Layout {
            sequenced: kind == FileKind::Log && version >= 3,
            compact: version >= 3,
        }
    }
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

/// Values run to kilobytes, so they are compared a 16-byte word at a time; the first word that
/// differs says by its lowest (or, from the end, highest) differing byte where the run ends.
const WORD: usize = 16;

fn word(bytes: &[u8]) -> u128 {
    let mut w = [0; WORD];
    w.copy_from_slice(bytes);
    u128::from_le_bytes(w)
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let most = a.len().min(b.len());
    let (a, b) = (&a[..most], &b[..most]);
    let mut same = 0;
    for (x, y) in a.chunks_exact(WORD).zip(b.chunks_exact(WORD)) {
        let differ = word(x) ^ word(y);
        if differ != 0 {
            return same + differ.trailing_zeros() as usize / 8;
        }
        same += WORD;
    }
    same + a[same..]
        .iter()
        .zip(&b[same..])
        .take_while(|(x, y)| x == y)
        .count()
}

fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let most = a.len().min(b.len());
    let (a, b) = (&a[a.len() - most..], &b[b.len() - most..]);
    let mut same = 0;
    for (x, y) in a.rchunks_exact(WORD).zip(b.rchunks_exact(WORD)) {
        // Little-endian: a word's last bytes are its most significant.
        let differ = word(x) ^ word(y);
        if differ != 0 {
            return same + differ.leading_zeros() as usize / 8;
        }
        same += WORD;
    }
    let rest = most - same;
    same + a[..rest]
        .iter()
        .rev()
        .zip(b[..rest].iter().rev())
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
    encode_frame(Layout::SNAPSHOT, 0, record, out);
}

/// Appends `record` as one frame of a log to `out`, numbered `sequence`.
pub(crate) fn encode_sequenced(sequence: u64, record: &Record<'_>, out: &mut Vec<u8>) {
    encode_frame(Layout::LOG, sequence, record, out);
}

/// Appends `record` as one frame of a file of format version 2 (what older versions wrote).
#[cfg(test)]
pub(crate) fn encode_version_2(record: &Record<'_>, out: &mut Vec<u8>) {
    encode_frame(Layout::of(2, FileKind::Log), 0, record, out);
}

/// Room for a frame's fixed fields at their longest: a tag, an id length byte, and at most 11
/// numbers of at most 10 bytes each (a `Patch`).
const FIELDS_ROOM: usize = 2 + 11 * 10;

fn encode_frame(layout: Layout, sequence: u64, record: &Record<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    // The fields before a record's trailing bytes (its value, or a patch's middle) are written
    // into room made for them at once and cut to what they took: a bounds check per byte into
    // a slice, where a push per byte checked and updated the vector's length each time.
    let (id, owner, tail) = match *record {
        Record::Put {
            id, owner, value, ..
        } => (id, owner, value),
        Record::Patch {
            id, owner, middle, ..
        } => (id, owner, middle),
        Record::Slid { id, .. } | Record::Removed { id, .. } => (id, None, &[][..]),
        Record::Owner { id, owner, .. } => (id, owner, &[][..]),
        Record::Versions { .. } | Record::End { .. } => ("", None, &[][..]),
    };
    let room = FRAME_HEAD + FIELDS_ROOM + id.len() + owner.map_or(0, str::len);
    out.resize(start + room, 0);
    let mut w = Writer {
        buf: &mut out[start..],
        at: FRAME_HEAD,
        compact: layout.compact,
    };
    if layout.sequenced {
        w.u64(sequence);
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
            w.u8(TAG_PUT);
            w.id(id, version);
            w.state(deadline, ttl_ms, absolute, owner);
            w.u32(value.len() as u32);
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
            w.u8(TAG_PATCH);
            w.id(id, version);
            w.state(deadline, ttl_ms, absolute, owner);
            w.u64(base);
            w.u32(base_len);
            w.u32(prefix);
            w.u32(suffix);
            w.u32(middle.len() as u32);
        }
        Record::Slid {
            id,
            version,
            deadline,
            ttl_ms,
        } => {
            w.u8(TAG_SLID);
            w.id(id, version);
            w.u64(deadline);
            w.u64(ttl_ms);
        }
        Record::Owner { id, version, owner } => {
            w.u8(TAG_OWNER);
            w.id(id, version);
            w.owner(owner);
        }
        Record::Removed { id, version } => {
            w.u8(TAG_REMOVED);
            w.id(id, version);
        }
        Record::Versions { issued } => {
            w.u8(TAG_VERSIONS);
            w.u64(issued);
        }
        Record::End { sessions } => {
            w.u8(TAG_END);
            w.u64(sessions);
        }
    }
    let fields_end = start + w.at;
    out.truncate(fields_end);
    // Values are at most 1 GiB (`max_session_bytes`): their length was written as a u32.
    out.extend_from_slice(tail);
    let body_len = out.len() - start - FRAME_HEAD;
    let crc = crc32fast::hash(&out[start + FRAME_HEAD..]);
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Writes the fields of a body into room made for them, numbers as variable-length integers
/// or fixed-width. Its methods are always inlined: called out of line, as the compiler chose to,
/// they kept the write position in memory and reloaded it for every byte.
struct Writer<'o> {
    buf: &'o mut [u8],
    /// Where the next byte goes.
    at: usize,
    compact: bool,
}

impl Writer<'_> {
    #[inline(always)]
    fn u8(&mut self, n: u8) {
        self.buf[self.at] = n;
        self.at += 1;
    }

    #[inline(always)]
    fn raw(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    #[inline(always)]
    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.u8(n as u8 | 0x80);
            n >>= 7;
        }
        self.u8(n as u8);
    }

    #[inline(always)]
    fn u16(&mut self, n: u16) {
        match self.compact {
            true => self.varint(u64::from(n)),
            false => self.raw(&n.to_le_bytes()),
        }
    }

    #[inline(always)]
    fn u32(&mut self, n: u32) {
        match self.compact {
            true => self.varint(u64::from(n)),
            false => self.raw(&n.to_le_bytes()),
        }
    }

    #[inline(always)]
    fn u64(&mut self, n: u64) {
        match self.compact {
            true => self.varint(n),
            false => self.raw(&n.to_le_bytes()),
        }
    }

    #[inline(always)]
    fn id(&mut self, id: &str, version: u64) {
        // Ids are at most MAX_ID_LEN (255) bytes: validated before they enter the table.
        self.u8(id.len() as u8);
        self.raw(id.as_bytes());
        self.u64(version);
    }

    /// The fields a `Put` and a `Patch` share after the id.
    #[inline(always)]
    fn state(&mut self, deadline: u64, ttl_ms: u64, absolute: Option<u64>, owner: Option<&str>) {
        self.u64(deadline);
        self.u64(ttl_ms);
        match (self.compact, absolute) {
            // Shifted by one, so that "none" takes one byte; a deadline is far below u64::MAX.
            (true, absolute) => self.varint(absolute.map_or(0, |a| a.saturating_add(1))),
            (false, absolute) => self.u64(absolute.unwrap_or(NONE_U64)),
        }
        self.owner(owner);
    }

    #[inline(always)]
    fn owner(&mut self, owner: Option<&str>) {
        // Owners are 1 to MAX_OWNER_LEN (1024) bytes: a length of 0 (compact) or the
        // fixed-width "none" marker says there is none.
        match owner {
            Some(o) => {
                self.u16(o.len() as u16);
                self.raw(o.as_bytes());
            }
            None if self.compact => self.varint(0),
            None => self.u16(NONE_U16),
        }
    }
}

/// One frame as read: where it starts in the body, its sequence number and its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) offset: usize,
    /// As written in a log of format version 3; in other files, the frame's place among those
    /// read by this [`Frames`] (their records are in order).
    pub(crate) sequence: u64,
    pub(crate) record: Record<'a>,
}

/// The frames of a file's body (after the header), one record at a time. After the first
/// frame that does not decode, [`Frames::damage`] says why and [`Frames::good_len`] how many
/// bytes before it were good.
pub(crate) struct Frames<'a> {
    bytes: &'a [u8],
    pos: usize,
    layout: Layout,
    /// Frames read so far: the sequence number of frames that carry none.
    read: u64,
    damage: Option<String>,
}

impl<'a> Frames<'a> {
    /// The frames of a snapshot's body as this version writes it.
    #[cfg(test)]
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Self::at(body, 0, Layout::SNAPSHOT)
    }

    /// The frames of a file's body from `offset` on (0, or where [`Frames::next_frame`] found
    /// a frame before).
    pub(crate) fn at(body: &'a [u8], offset: usize, layout: Layout) -> Self {
        Self {
            bytes: body,
            pos: offset.min(body.len()),
            layout,
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
        let mut reader = Reader {
            bytes: body,
            compact: self.layout.compact,
        };
        let sequence = if self.layout.sequenced {
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

/// Reads fields off the front of a body: what [`Writer`] wrote.
struct Reader<'a> {
    bytes: &'a [u8],
    compact: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Some(a)
    }

    /// A LEB128 integer of at most 10 bytes whose value fits in 64 bits.
    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return None;
            }
            n |= bits << shift;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn u16(&mut self) -> Option<u16> {
        match self.compact {
            true => u16::try_from(self.varint()?).ok(),
            false => self.fixed().map(u16::from_le_bytes),
        }
    }

    fn u32(&mut self) -> Option<u32> {
        match self.compact {
            true => u32::try_from(self.varint()?).ok(),
            false => self.fixed().map(u32::from_le_bytes),
        }
    }

    fn u64(&mut self) -> Option<u64> {
        match self.compact {
            true => self.varint(),
            false => self.fixed().map(u64::from_le_bytes),
        }
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn id(&mut self) -> Option<(&'a str, u64)> {
        let len = self.u8()? as usize;
        let id = std::str::from_utf8(self.take(len)?).ok()?;
        validate_id(id).ok()?;
        Some((id, self.u64()?))
    }

    /// What [`Writer::state`] wrote.
    #[allow(clippy::type_complexity)]
    fn state(&mut self) -> Option<(u64, u64, Option<u64>, Option<&'a str>)> {
        let deadline = self.u64()?;
        let ttl_ms = self.u64()?;
        let absolute = match self.compact {
            true => self.varint()?.checked_sub(1),
            false => Some(self.u64()?).filter(|&a| a != NONE_U64),
        };
        Some((deadline, ttl_ms, absolute, self.owner()?))
    }

    fn owner(&mut self) -> Option<Option<&'a str>> {
        let len = self.u16()?;
        let none = if self.compact { 0 } else { NONE_U16 };
        if len == none {
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
            let value = r.bytes()?;
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
            let middle = r.bytes()?;
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
    r.bytes.is_empty().then_some(record)
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
        let mut frames = Frames::at(&bytes, 0, Layout::LOG);
        let read: Vec<_> = std::iter::from_fn(|| frames.next_frame()).collect();
        assert_eq!(frames.damage(), None);
        let records: Vec<_> = read.iter().map(|f| f.record.clone()).collect();
        assert_eq!(records, samples());
        let sequences: Vec<_> = read.iter().map(|f| f.sequence).collect();
        assert_eq!(sequences, [40, 7, 41, 8, 9, 1, 2, 3]);
        for frame in &read {
            let again = Frames::at(&bytes, frame.offset, Layout::LOG).next_frame();
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
    fn version_2_files_with_fixed_width_numbers_still_read() {
        let mut bytes = Vec::new();
        for r in samples() {
            encode_version_2(&r, &mut bytes);
        }
        let layout = Layout::of(2, FileKind::Log);
        let mut frames = Frames::at(&bytes, 0, layout);
        let read: Vec<_> = frames.by_ref().collect();
        assert_eq!(read, samples());
        assert_eq!(frames.damage(), None);
        // The same bytes read as this version's snapshot are refused, not misread.
        let mut compact = Frames::new(&bytes);
        assert!(compact.by_ref().count() < samples().len());
        assert!(compact.damage().is_some());
    }

    #[test]
    fn numbers_take_the_bytes_their_values_need() {
        // A session write that changed a counter: a patch of a 200-byte value.
        let patch = Record::Patch {
            id: "0123456789abcdef0123456789abcdef",
            version: 1234,
            deadline: 1_796_000_000_000,
            ttl_ms: 86_400_000,
            absolute: None,
            owner: None,
            base: 1233,
            base_len: 200,
            prefix: 90,
            suffix: 108,
            middle: b"42",
        };
        let (mut compact, mut fixed) = (Vec::new(), Vec::new());
        encode_sequenced(1_000_000, &patch, &mut compact);
        encode_version_2(&patch, &mut fixed);
        // A third smaller, though it carries a sequence number that version 2 had not.
        assert_eq!(fixed.len(), 102);
        assert_eq!(compact.len(), 68);
        for n in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut room = [0; 10];
            let mut w = Writer {
                buf: &mut room,
                at: 0,
                compact: true,
            };
            w.varint(n);
            let len = w.at;
            let written = room[..len].to_vec();
            let mut r = Reader {
                bytes: &written,
                compact: true,
            };
            assert_eq!((r.varint(), r.bytes.len()), (Some(n), 0), "{n}");
        }
        // Longer than 64 bits, or not ended: refused.
        for bad in [
            &[0xff; 10][..],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            &[0x80],
        ] {
            let mut r = Reader {
                bytes: bad,
                compact: true,
            };
            assert_eq!(r.varint(), None, "{bad:?}");
        }
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

    #[test]
    fn the_unchanged_ends_are_found_wherever_a_change_falls_in_a_word() {
        // Counted a byte at a time, as the definition says.
        fn by_bytes(old: &[u8], new: &[u8]) -> (usize, usize) {
            let prefix = old.iter().zip(new).take_while(|(x, y)| x == y).count();
            let (old, new) = (&old[prefix..], &new[prefix..]);
            let suffix = old
                .iter()
                .rev()
                .zip(new.iter().rev())
                .take_while(|(x, y)| x == y)
                .count();
            (prefix, suffix)
        }
        let base: Vec<u8> = (0..70u32).map(|i| (i * 7 % 256) as u8).collect();
        for old_len in [0, 1, 15, 16, 17, 31, 32, 33, 47, 70] {
            let old = &base[..old_len];
            for grow in 0..3 {
                let mut longer = old.to_vec();
                longer.extend(std::iter::repeat_n(0xAA, grow));
                for at in 0..longer.len() {
                    for new in [
                        {
                            let mut v = longer.clone();
                            v[at] ^= 0x80;
                            v
                        },
                        {
                            let mut v = longer.clone();
                            v.remove(at);
                            v
                        },
                    ] {
                        assert_eq!(
                            unchanged_ends(old, &new),
                            by_bytes(old, &new),
                            "{old:?} -> {new:?}"
                        );
                        assert_eq!(unchanged_ends(&new, old), by_bytes(&new, old));
                    }
                }
            }
        }
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
            assert!(!Layout::of(u32::from(older), FileKind::Log).sequenced);
            assert!(!Layout::of(u32::from(older), FileKind::Snapshot).compact);
        }
        assert_eq!(Layout::of(FORMAT_VERSION, FileKind::Log), Layout::LOG);
        assert_eq!(
            Layout::of(FORMAT_VERSION, FileKind::Snapshot),
            Layout::SNAPSHOT
        );
        let mut magic = log;
        magic[0] = b'C';
        assert!(check_header(&magic, FileKind::Log).is_err());
    }
}
