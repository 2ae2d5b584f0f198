//! Who makes room when a budget is reached, decided from bits in the records and two hands over
//! the slab (CLOCK), with no per-session queue entries.
//!
//! First choice: a session never read since it was created (abandoned by a bot or a one-off
//! visitor); the unread hand finds them, and the stripe's unread count says when there are none
//! so the hand is not moved in vain. Then the least recently used: the clock hand clears each
//! session's second-chance bit as it passes and takes the first one whose bit was already clear.
//! Either hand also takes an expired session it meets.

use super::super::record::{READ, REFERENCED};
use super::Stripe;

/// What a bounded step of a hand found.
pub(crate) enum Victim {
    /// This live record should go.
    Found(u32),
    /// The step's budget ran out; call again.
    Continue,
    /// Nothing in this stripe qualifies.
    Exhausted,
}

/// The state of one search across several bounded steps (each under its own lock hold).
#[derive(Default)]
pub(crate) struct Scan {
    visited: usize,
}

impl Stripe {
    /// Advances the unread hand by at most `budget` records. `spare` is a hash never taken.
    pub(crate) fn find_unread(
        &mut self,
        scan: &mut Scan,
        budget: usize,
        spare: Option<u32>,
        now: u64,
    ) -> Victim {
        if self.unread() == 0 {
            return Victim::Exhausted;
        }
        self.sweep_hand(
            scan,
            budget,
            spare,
            |stripe, i| {
                let r = &stripe.records[i as usize];
                r.is_expired(now) || r.flags() & READ == 0
            },
            true,
        )
    }

    /// Advances the clock hand by at most `budget` records, clearing second-chance bits.
    pub(crate) fn find_least_recent(
        &mut self,
        scan: &mut Scan,
        budget: usize,
        spare: Option<u32>,
        now: u64,
    ) -> Victim {
        self.sweep_hand(
            scan,
            budget,
            spare,
            |stripe, i| {
                let r = &mut stripe.records[i as usize];
                if r.is_expired(now) {
                    return true;
                }
                if r.flags() & REFERENCED != 0 {
                    r.clear_referenced();
                    return false;
                }
                true
            },
            false,
        )
    }

    /// Moves one hand over up to `budget` slots, offering `take` each live record but the
    /// `spare` one.
    fn sweep_hand(
        &mut self,
        scan: &mut Scan,
        budget: usize,
        spare: Option<u32>,
        mut take: impl FnMut(&mut Stripe, u32) -> bool,
        unread_hand: bool,
    ) -> Victim {
        let len = self.records.len();
        // Two full turns: the first may only clear second-chance bits.
        if self.live == 0 || scan.visited > 2 * len {
            return Victim::Exhausted;
        }
        for _ in 0..budget {
            let hand = if unread_hand {
                &mut self.unread_hand
            } else {
                &mut self.clock_hand
            };
            let at = if (*hand as usize) < len { *hand } else { 0 };
            *hand = if at as usize + 1 < len { at + 1 } else { 0 };
            scan.visited += 1;
            let record = &self.records[at as usize];
            let offered = record.block.is_some() && Some(record.hash) != spare;
            if offered && take(self, at) {
                return Victim::Found(at);
            }
            if scan.visited > 2 * len {
                return Victim::Exhausted;
            }
        }
        Victim::Continue
    }
}
