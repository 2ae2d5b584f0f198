//! The expiry structure: a hierarchical timing wheel whose lists are linked through the records
//! themselves (as tokio's `runtime/time/wheel` and Kafka's purgatory do).
//!
//! Six levels of 64 slots; a level-0 slot is 1 ms, a level-`n` slot 64^n ms, so filing and
//! unfiling are O(1) and finding the next due slot is a few bit operations. A record is filed
//! at its deadline when it is written, and unfiled when it leaves the table, so the wheel holds
//! exactly the live records, each once. Reads slide deadlines without touching the wheel; when
//! a record's slot falls due, the sweeper either reclaims it (expired) or files it again at its
//! current deadline. Because ticks are milliseconds, "its slot is due" and "it has expired" are
//! the same test, which is what lets eviction take expired sessions strictly first.

use super::record::{NIL, Record};

pub(crate) const LEVELS: usize = 6;
const SLOT_BITS: usize = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// Tags a `prev` link that points at a slot head rather than a record: `HEAD | slot`.
const HEAD: u32 = 1 << 31;
/// Furthest ahead a record is filed. One top-level slot short of the wheel's full span, so a
/// record filed in the top level can never land in the slot being drained; later deadlines are
/// filed here and filed again when this comes due.
const MAX_AHEAD: u64 = (1 << (SLOT_BITS * LEVELS)) - (1 << (SLOT_BITS * (LEVELS - 1))) - 1;

pub(crate) struct Wheel {
    heads: [u32; LEVELS * SLOTS],
    occupied: [u64; LEVELS],
    /// Every slot that starts at or before this time has been drained.
    elapsed: u64,
    filed: usize,
}

/// A slot of the wheel and the time it falls due.
#[derive(Clone, Copy, Debug)]
struct Due {
    slot: usize,
    start: u64,
}

impl Wheel {
    pub(crate) fn new() -> Self {
        Self {
            heads: [NIL; LEVELS * SLOTS],
            occupied: [0; LEVELS],
            elapsed: 0,
            filed: 0,
        }
    }

    /// An empty wheel at the same point in time, for a stripe rebuilt around its live records.
    pub(crate) fn emptied(&self) -> Self {
        Self {
            elapsed: self.elapsed,
            ..Self::new()
        }
    }

    #[cfg(test)]
    pub(crate) fn filed(&self) -> usize {
        self.filed
    }

    /// Files record `index` to fall due at `deadline` (ms).
    pub(crate) fn file(&mut self, records: &mut [Record], index: u32, deadline: u64) {
        let when = deadline.clamp(self.elapsed, self.elapsed.saturating_add(MAX_AHEAD));
        let slot = self.slot_for(when);
        let head = self.heads[slot];
        let record = &mut records[index as usize];
        record.next = head;
        record.prev = HEAD | slot as u32;
        if head != NIL {
            records[head as usize].prev = index;
        }
        self.heads[slot] = index;
        self.occupied[slot / SLOTS] |= 1 << (slot % SLOTS);
        self.filed += 1;
    }

    /// Takes record `index` out of the wheel, if it is filed (a filed record always has a
    /// `prev`: a slot head or another record).
    pub(crate) fn unfile(&mut self, records: &mut [Record], index: u32) {
        if records[index as usize].prev == NIL {
            return;
        }
        let (next, prev) = {
            let record = &mut records[index as usize];
            let links = (record.next, record.prev);
            record.next = NIL;
            record.prev = NIL;
            links
        };
        if prev & HEAD != 0 {
            let slot = (prev & !HEAD) as usize;
            self.heads[slot] = next;
            if next == NIL {
                self.occupied[slot / SLOTS] &= !(1 << (slot % SLOTS));
            }
        } else {
            records[prev as usize].next = next;
        }
        if next != NIL {
            records[next as usize].prev = prev;
        }
        self.filed -= 1;
    }

    /// Unfiles and returns one record from a slot that is due at `now`, or `None` when nothing
    /// is due. The caller reclaims the record or files it again.
    pub(crate) fn pop_due(&mut self, records: &mut [Record], now: u64) -> Option<u32> {
        let Some(due) = self.next_due_slot() else {
            self.elapsed = self.elapsed.max(now);
            return None;
        };
        if due.start > now {
            // Every slot starting at or before `now` is drained: move the reference point on
            // so that new records are filed relative to the present.
            self.elapsed = self.elapsed.max(now);
            return None;
        }
        self.elapsed = self.elapsed.max(due.start);
        let index = self.heads[due.slot];
        self.unfile(records, index);
        Some(index)
    }

    /// When the next slot falls due (ms), or `u64::MAX` if nothing is filed.
    pub(crate) fn next_due(&self) -> u64 {
        self.next_due_slot().map_or(u64::MAX, |d| d.start)
    }

    fn next_due_slot(&self) -> Option<Due> {
        let mut best: Option<Due> = None;
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let current = self.digit(level);
            let rotated = occupied.rotate_right(current as u32);
            let slot_in_level = (rotated.trailing_zeros() as usize + current) % SLOTS;
            let start = self.slot_start(level, slot_in_level);
            if best.is_none_or(|b| start < b.start) {
                best = Some(Due {
                    slot: level * SLOTS + slot_in_level,
                    start,
                });
            }
        }
        best
    }

    /// The slot of level `level` that `elapsed` is in.
    fn digit(&self, level: usize) -> usize {
        ((self.elapsed >> (SLOT_BITS * level)) as usize) & (SLOTS - 1)
    }

    /// When slot `slot_in_level` of `level` starts, seen from `elapsed`: slots behind the
    /// current one belong to the next turn of that level (only the top level wraps so).
    fn slot_start(&self, level: usize, slot_in_level: usize) -> u64 {
        let slot_range = 1u64 << (SLOT_BITS * level);
        let level_range = slot_range << SLOT_BITS;
        let level_start = self.elapsed & !(level_range - 1);
        let start = level_start + slot_in_level as u64 * slot_range;
        if slot_in_level < self.digit(level) {
            start.saturating_add(level_range)
        } else {
            start
        }
    }

    fn slot_for(&self, when: u64) -> usize {
        let significant =
            ((self.elapsed ^ when) | (SLOTS as u64 - 1)).min((1 << (SLOT_BITS * LEVELS)) - 1);
        let level = (63 - significant.leading_zeros() as usize) / SLOT_BITS;
        level * SLOTS + (((when >> (SLOT_BITS * level)) as usize) & (SLOTS - 1))
    }

    /// Checks the wheel against the slab: every list well linked, each filed record live and
    /// filed once, no slot due later than a record in it, and the occupancy bits and count
    /// true. Returns how many records are filed.
    pub(crate) fn check(&self, records: &[Record], seen: &mut [bool]) -> Result<usize, String> {
        let mut count = 0;
        for slot in 0..LEVELS * SLOTS {
            let (level, in_level) = (slot / SLOTS, slot % SLOTS);
            let head = self.heads[slot];
            let bit = self.occupied[level] & (1 << in_level) != 0;
            if bit != (head != NIL) {
                return Err(format!(
                    "wheel slot {slot}: occupancy bit {bit}, head {head}"
                ));
            }
            let start = self.slot_start(level, in_level);
            let mut prev = HEAD | slot as u32;
            let mut at = head;
            while at != NIL {
                let record = records
                    .get(at as usize)
                    .ok_or_else(|| format!("wheel slot {slot} links to {at}, past the slab"))?;
                if record.block.is_none() {
                    return Err(format!("wheel slot {slot} holds vacant record {at}"));
                }
                if std::mem::replace(&mut seen[at as usize], true) {
                    return Err(format!("record {at} is filed twice in the wheel"));
                }
                if record.prev != prev {
                    return Err(format!("record {at}: prev {} != {prev}", record.prev));
                }
                if start > record.deadline() {
                    return Err(format!(
                        "record {at} (deadline {}) sits in slot {slot}, due only at {start}",
                        record.deadline()
                    ));
                }
                count += 1;
                prev = at;
                at = record.next;
            }
        }
        if count != self.filed {
            return Err(format!("wheel counts {} filed, holds {count}", self.filed));
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slab(n: usize) -> Vec<Record> {
        (0..n)
            .map(|_| {
                let mut r = Record::vacant(NIL);
                r.block = Some(super::super::block::Block::new(b"i", b"", None));
                r
            })
            .collect()
    }

    /// Files records at many deadlines and drains the wheel in steps: each comes out exactly
    /// when its deadline is reached, never before and never twice.
    #[test]
    fn records_come_due_exactly_at_their_deadlines() {
        let deadlines: Vec<u64> = (0..2000u64)
            .map(|i| (i * 7919 + 13) % 5_000_000 + 1)
            .chain([1, 63, 64, 4095, 4096, 1 << 30, (1 << 36) + 5, 1 << 40])
            .collect();
        let mut records = slab(deadlines.len());
        for (i, r) in records.iter_mut().enumerate() {
            r.set_deadline(deadlines[i]);
        }
        let mut wheel = Wheel::new();
        for (i, &d) in deadlines.iter().enumerate() {
            wheel.file(&mut records, i as u32, d);
        }
        let mut done = vec![false; deadlines.len()];
        let mut now = 0u64;
        while done.iter().any(|d| !d) {
            now = (now + 1 + now / 3).min(1 << 41);
            while let Some(i) = wheel.pop_due(&mut records, now) {
                let d = records[i as usize].deadline();
                if d > now {
                    wheel.file(&mut records, i, d); // not yet: file again
                } else {
                    assert!(!done[i as usize]);
                    done[i as usize] = true;
                }
            }
            let mut seen = vec![false; records.len()];
            wheel.check(&records, &mut seen).unwrap();
            for (i, &d) in deadlines.iter().enumerate() {
                assert_eq!(done[i], d <= now, "record {i} deadline {d} at {now}");
            }
        }
        assert_eq!(wheel.filed(), 0);
        assert_eq!(wheel.next_due(), u64::MAX);
    }

    #[test]
    fn unfiled_records_leave_nothing_behind() {
        let mut records = slab(3);
        let mut wheel = Wheel::new();
        for i in 0..3 {
            records[i].set_deadline(100);
            wheel.file(&mut records, i as u32, 100);
        }
        wheel.unfile(&mut records, 1);
        wheel.unfile(&mut records, 0);
        wheel.unfile(&mut records, 2);
        assert_eq!(wheel.filed(), 0);
        assert_eq!(wheel.next_due(), u64::MAX);
        assert_eq!(wheel.pop_due(&mut records, 1000), None);
    }
}
