//! The change stream: one [`Change`] for every change to the table, handed to a listener.
//!
//! Changes are collected while a stripe is locked and delivered after it is released, on the
//! thread that made them. Before releasing the stripe the thread takes that stripe's delivery
//! lock, so the changes of one stripe (and so of one session) reach the listener in the order
//! they were made. The listener must not call the store: it would wait on a stripe whose
//! delivery it is holding up.

use std::sync::Arc;
use std::time::Duration;

use super::block::Block;
use super::stripe::Removed;

/// Why a session left the table.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// Its idle or absolute deadline passed.
    Expired,
    /// Removed to make room under `max_sessions` / `max_bytes`.
    Evicted,
    /// Removed by `destroy` or `destroy_owner`.
    Destroyed,
    /// Moved to a new id by `regenerate`; the change names the new id.
    Replaced,
    /// Removed by `clear`.
    Cleared,
    /// On the shared tier: the local copy was dropped because Redis holds another version or
    /// none (another process wrote or removed the session, or it expired there first). The
    /// session itself may live on in Redis.
    Invalidated,
}

/// What happened to a session.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind<'a> {
    /// A new session: `create`, `insert`, a `set` of an absent id, or the new id of a
    /// `regenerate` (which keeps the data, owner and absolute deadline).
    Created {
        /// The stored value.
        value: &'a [u8],
    },
    /// A live session's value was replaced; its idle deadline restarted.
    Written {
        /// The stored value.
        value: &'a [u8],
    },
    /// A read or touch moved the deadline across a multiple of the listener's slide slack, or
    /// a touch (or a copy Redis vouched for) moved the deadline earlier, or moved the idle
    /// timeout into another band (at most the slack wide). Smaller slides and changes are not
    /// reported one by one, so a consumer sees each session's deadline at most one slack behind
    /// the truth, and its idle timeout within a slack of it.
    Slid,
    /// The owner was set or cleared; see [`Change::owner`].
    OwnerChanged,
    /// The session left the table.
    Removed {
        /// Why.
        cause: Cause,
        /// For [`Cause::Replaced`], the id the session now lives under.
        replaced_by: Option<&'a str>,
    },
}

/// One change to one session, as delivered to a listener.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change<'a> {
    /// The session id.
    pub id: &'a str,
    /// What happened.
    pub kind: ChangeKind<'a>,
    /// The session's version after the change (for a removal, its last version).
    pub version: u64,
    /// When the session expires (the earlier of its idle and absolute deadlines), in ms on the
    /// store's clock ([`Store::clock_ms`](crate::Store::clock_ms)).
    pub deadline_ms: u64,
    /// The session's idle timeout.
    pub idle_timeout: Duration,
    /// The absolute deadline in ms on the store's clock, if the store has an absolute timeout.
    pub absolute_deadline_ms: Option<u64>,
    /// The session's owner after the change.
    pub owner: Option<&'a str>,
    /// For [`ChangeKind::Written`] by a plain write, the value and version it replaced: the
    /// restart log then records only the bytes that differ.
    pub(crate) previous: Option<Previous<'a>>,
    /// Numbers the changes of one stripe in the order they were delivered (from 1 when the
    /// store was built; a regenerate across two stripes numbers its changes above both
    /// stripes' last). So the changes of one session are ordered by it wherever a listener
    /// filed them: the restart log keeps one file per writing thread and replays by it.
    pub(crate) sequence: u64,
}

/// What a write replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Previous<'a> {
    pub(crate) value: &'a [u8],
    pub(crate) version: u64,
}

/// A listener registered with [`StoreBuilder::listener`](crate::StoreBuilder::listener).
pub(crate) struct Listener {
    pub(crate) callback: Arc<dyn Fn(&Change<'_>) + Send + Sync>,
    /// Slides are reported when the deadline crosses a multiple of this (ms, at least 1).
    pub(crate) slide_slack_ms: u64,
}

impl Listener {
    /// Whether a slide from `before` to `after` crosses a multiple of the slack.
    pub(crate) fn reports_slide(&self, before: u64, after: u64) -> bool {
        after != before && after / self.slide_slack_ms > before / self.slide_slack_ms
    }

    /// Whether a new idle timeout (`old_idle` to `new_idle` ms) that moved the deadline from
    /// `before` to `after` is reported: when the deadline crossed a multiple of the slack (as a
    /// slide) or came earlier, so that a consumer's deadline may lag the truth by up to a slack
    /// but never leads it; and when the timeout moved into another band, so that a consumer's
    /// timeout stays in the band of the truth, within a slack of it, however many small changes
    /// add up. Bands are an odd number of seconds wide (15, 5, 3 or 1: the widest within the
    /// slack; the slack itself below a second) and centred on multiples of their width, so
    /// with a slack of a second or more (the restart log's always is) a timeout of whole seconds
    /// lies at least half a second inside its band. Restated a few ms (up to half a second)
    /// short, as express-session restates `cookie.expires` on every request, it stays there:
    /// not one record in the restart log per request.
    pub(crate) fn reports_retime(
        &self,
        (before, after): (u64, u64),
        (old_idle, new_idle): (u64, u64),
    ) -> bool {
        let width = [15_000, 5_000, 3_000, 1_000]
            .into_iter()
            .find(|&w| w <= self.slide_slack_ms)
            .unwrap_or(self.slide_slack_ms);
        let band = |idle: u64| (idle + width / 2) / width;
        after < before || band(old_idle) != band(new_idle) || self.reports_slide(before, after)
    }
}

/// The store's listener: the caller's, the restart log's appends before it, or both.
pub(crate) fn with_log(
    listener: Option<Listener>,
    log: Option<Arc<crate::persist::Log>>,
) -> Option<Listener> {
    let Some(log) = log else { return listener };
    let log_slack = crate::clock::duration_to_ms(log.slide_slack).max(1);
    Some(match listener {
        None => Listener {
            callback: Arc::new(move |change: &Change<'_>| log.append(change)),
            slide_slack_ms: log_slack,
        },
        Some(theirs) => Listener {
            slide_slack_ms: theirs.slide_slack_ms.min(log_slack),
            callback: Arc::new(move |change: &Change<'_>| {
                log.append(change);
                (theirs.callback)(change);
            }),
        },
    })
}

/// The metadata of a session as a change reports it.
#[derive(Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) version: u64,
    pub(crate) deadline: u64,
    pub(crate) ttl_ms: u64,
    pub(crate) absolute: Option<u64>,
}

/// A change recorded under a stripe lock, holding what it refers to until it is delivered.
pub(crate) enum Pending<'a> {
    Stored {
        id: &'a str,
        value: &'a [u8],
        created: bool,
        meta: Meta,
        owner: Option<Box<str>>,
        /// The block this write replaced, kept (and freed) until the change is delivered.
        previous: Option<Block>,
    },
    /// A session created under an id the store generated (create, regenerate).
    StoredOwned {
        id: String,
        value: Vec<u8>,
        meta: Meta,
        owner: Option<Box<str>>,
    },
    Slid {
        id: &'a str,
        meta: Meta,
        owner: Option<Box<str>>,
    },
    Owner {
        id: &'a str,
        meta: Meta,
        owner: Option<Box<str>>,
    },
    Removed {
        removed: Removed,
        absolute: Option<u64>,
        cause: Cause,
        replaced_by: Option<String>,
    },
}

impl Pending<'_> {
    pub(crate) fn removed(removed: Removed, cause: Cause) -> Self {
        let absolute = removed.block.absolute();
        Pending::Removed {
            removed,
            absolute,
            cause,
            replaced_by: None,
        }
    }

    /// A session moved to `new_id` by a regenerate.
    pub(crate) fn replaced(removed: Removed, new_id: String) -> Self {
        let absolute = removed.block.absolute();
        Pending::Removed {
            removed,
            absolute,
            cause: Cause::Replaced,
            replaced_by: Some(new_id),
        }
    }

    fn change(&self) -> Change<'_> {
        fn with<'c>(
            id: &'c str,
            kind: ChangeKind<'c>,
            meta: &Meta,
            owner: &'c Option<Box<str>>,
        ) -> Change<'c> {
            Change {
                id,
                kind,
                version: meta.version,
                deadline_ms: meta.deadline,
                idle_timeout: Duration::from_millis(meta.ttl_ms),
                absolute_deadline_ms: meta.absolute,
                owner: owner.as_deref(),
                previous: None,
                sequence: 0,
            }
        }
        match self {
            Pending::Stored {
                id,
                value,
                created,
                meta,
                owner,
                previous,
            } => {
                let kind = if *created {
                    ChangeKind::Created { value }
                } else {
                    ChangeKind::Written { value }
                };
                Change {
                    previous: previous.as_ref().map(|block| Previous {
                        value: block.value(),
                        version: block.version(),
                    }),
                    ..with(id, kind, meta, owner)
                }
            }
            Pending::StoredOwned {
                id,
                value,
                meta,
                owner,
            } => with(id, ChangeKind::Created { value }, meta, owner),
            Pending::Slid { id, meta, owner } => with(id, ChangeKind::Slid, meta, owner),
            Pending::Owner { id, meta, owner } => with(id, ChangeKind::OwnerChanged, meta, owner),
            Pending::Removed {
                removed,
                absolute,
                cause,
                replaced_by,
            } => Change {
                id: removed.block.id_str(),
                kind: ChangeKind::Removed {
                    cause: *cause,
                    replaced_by: replaced_by.as_deref(),
                },
                version: removed.version,
                deadline_ms: removed.deadline,
                idle_timeout: Duration::from_millis(removed.ttl_ms),
                absolute_deadline_ms: *absolute,
                owner: removed.owner.as_deref(),
                previous: None,
                sequence: 0,
            },
        }
    }
}

/// The changes of one locked section; most sections make one or two, kept on the stack.
pub(crate) type Outbox<'a> = smallvec::SmallVec<[Pending<'a>; 2]>;

/// Hands each pending change to the listener, in order, numbering them after `sequence` (the
/// last number its stripe delivered, held under the stripe's delivery lock).
pub(crate) fn deliver(listener: &Listener, pending: &[Pending<'_>], sequence: &mut u64) {
    for p in pending {
        *sequence += 1;
        let change = Change {
            sequence: *sequence,
            ..p.change()
        };
        (listener.callback)(&change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(slack_ms: u64) -> Listener {
        Listener {
            callback: Arc::new(|_: &Change<'_>| {}),
            slide_slack_ms: slack_ms,
        }
    }

    #[test]
    fn round_timeouts_restated_up_to_half_a_second_short_are_never_reported() {
        const S: u64 = 1000;
        // The log's slack for stores of 1 min, 5 min, 30 min, 1 h and 1 day (1/64, 1 s to 1 min).
        for slack in [S, 4_687, 28_125, 56_250, 60 * S] {
            let l = listener(slack);
            for max_age in [90 * S, 3600 * S, 3539 * S, 86_400 * S, 14 * 86_400 * S] {
                for short in [0, 1, 7, 250, 499] {
                    // The deadline stays put: only the timeout's band could report.
                    let (at, restated) = (1_000_000, max_age - short);
                    assert!(
                        !l.reports_retime((at, at), (max_age, restated)),
                        "slack {slack}: {max_age} restated as {restated}"
                    );
                    assert!(!l.reports_retime((at, at), (restated, max_age)));
                }
            }
        }
    }

    #[test]
    fn a_timeout_that_drifts_is_reported_before_it_leaves_a_slack_of_the_last_report() {
        for slack in [700, 1_000, 4_687, 56_250] {
            let l = listener(slack);
            let mut reported = 3_600_000u64;
            let mut idle = reported;
            while idle > 60_000 {
                let next = idle - 37; // small steps that add up
                if l.reports_retime((5_000_000, 5_000_000), (idle, next)) {
                    reported = next;
                }
                idle = next;
                assert!(
                    reported.abs_diff(idle) < slack,
                    "slack {slack}: {reported} vs {idle}"
                );
            }
        }
    }
}
