//! The table as the files describe it: a snapshot, then its logs replayed over it in order.
//!
//! Replay is by version, so it gives the same result whatever overlap a snapshot and the log
//! written during its compaction have: a record older than what the image holds for its id is
//! skipped, a removal at or above it removes, and slides, owner changes and patches apply only
//! to the version they were made on.

use std::borrow::Cow;

use hashbrown::HashMap;

use super::format::{Record, apply_patch};

/// One session as restored, borrowing its id, owner and value from the files read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Restored<'a> {
    pub(crate) version: u64,
    /// Wall-clock ms: the earlier of the idle and absolute deadlines.
    pub(crate) deadline: u64,
    pub(crate) ttl_ms: u64,
    /// Wall-clock ms.
    pub(crate) absolute: Option<u64>,
    pub(crate) owner: Option<&'a str>,
    /// Borrowed from a `Put`; built by a `Patch`.
    pub(crate) value: Cow<'a, [u8]>,
}

#[derive(Debug, Default)]
pub(crate) struct Image<'a> {
    pub(crate) sessions: HashMap<&'a str, Restored<'a>>,
    /// The highest version any record named, live or removed.
    pub(crate) issued: u64,
    /// Sessions dropped because a patch found another version than the one it was made
    /// against: a record before it is missing (an append that failed), so what the image holds
    /// is older than what the store held, and is not restored.
    pub(crate) unrebuilt: u64,
}

impl<'a> Image<'a> {
    pub(crate) fn apply(&mut self, record: &Record<'a>) {
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
                self.saw(version);
                if self.holds_newer(id, version) {
                    return;
                }
                self.sessions.insert(
                    id,
                    Restored {
                        version,
                        deadline,
                        ttl_ms,
                        absolute,
                        owner,
                        value: Cow::Borrowed(value),
                    },
                );
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
                self.saw(version);
                let Some(s) = self.sessions.get_mut(id) else {
                    // Removed after this write: a later record says so.
                    return;
                };
                if s.version >= version {
                    return;
                }
                // The first patch after a `Put` copies the value out of the file; later ones
                // change that copy.
                if s.version == base
                    && apply_patch(s.value.to_mut(), base_len, prefix, suffix, middle)
                {
                    s.version = version;
                    s.deadline = deadline;
                    s.ttl_ms = ttl_ms;
                    s.absolute = absolute;
                    s.owner = owner;
                } else {
                    self.sessions.remove(id);
                    self.unrebuilt += 1;
                }
            }
            Record::Slid {
                id,
                version,
                deadline,
                ttl_ms,
            } => {
                self.saw(version);
                if let Some(s) = self.sessions.get_mut(id).filter(|s| s.version == version) {
                    s.deadline = deadline;
                    s.ttl_ms = ttl_ms;
                }
            }
            Record::Owner { id, version, owner } => {
                self.saw(version);
                if let Some(s) = self.sessions.get_mut(id).filter(|s| s.version == version) {
                    s.owner = owner;
                }
            }
            Record::Removed { id, version } => {
                self.saw(version);
                if !self.holds_newer(id, version) {
                    self.sessions.remove(id);
                }
            }
            Record::Versions { issued } => self.saw(issued),
            Record::End { .. } => {}
        }
    }

    fn saw(&mut self, version: u64) {
        self.issued = self.issued.max(version);
    }

    fn holds_newer(&self, id: &str, version: u64) -> bool {
        self.sessions.get(id).is_some_and(|s| s.version > version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(id: &str, version: u64) -> Record<'_> {
        Record::Put {
            id,
            version,
            deadline: 100,
            ttl_ms: 10,
            absolute: None,
            owner: None,
            value: b"v",
        }
    }

    fn patch<'a>(
        id: &'a str,
        version: u64,
        base: u64,
        base_len: u32,
        middle: &'a [u8],
    ) -> Record<'a> {
        Record::Patch {
            id,
            version,
            deadline: 200,
            ttl_ms: 20,
            absolute: None,
            owner: Some("o"),
            base,
            base_len,
            prefix: 0,
            suffix: 1,
            middle,
        }
    }

    #[test]
    fn a_patch_applies_to_the_version_it_was_made_against() {
        let mut image = Image::default();
        image.apply(&put("a", 2));
        image.apply(&patch("a", 4, 2, 1, b"xy"));
        image.apply(&patch("a", 5, 4, 3, b"z"));
        let a = &image.sessions["a"];
        assert_eq!((a.version, &*a.value, a.owner), (5, &b"zv"[..], Some("o")));
        // Replayed again over a snapshot that already holds it: skipped.
        image.apply(&patch("a", 5, 4, 3, b"q"));
        assert_eq!(&*image.sessions["a"].value, b"zv");
        // A patch of a session a later record removes: nothing to rebuild, nothing lost.
        image.apply(&patch("gone", 3, 2, 1, b"x"));
        assert!(!image.sessions.contains_key("gone"));
        assert_eq!((image.unrebuilt, image.issued), (0, 5));
    }

    #[test]
    fn a_patch_against_a_missing_version_drops_the_session_rather_than_restore_it_stale() {
        let mut image = Image::default();
        image.apply(&put("a", 2));
        // Version 3, its base, never reached the log.
        image.apply(&patch("a", 4, 3, 1, b"x"));
        assert!(!image.sessions.contains_key("a"));
        image.apply(&put("b", 2));
        // The right version but another length: not the value it was made against.
        image.apply(&patch("b", 4, 2, 9, b"x"));
        assert!(!image.sessions.contains_key("b"));
        assert_eq!(image.unrebuilt, 2);
    }

    #[test]
    fn records_older_than_the_image_change_nothing() {
        let mut image = Image::default();
        image.apply(&put("a", 5));
        image.apply(&put("a", 3));
        image.apply(&Record::Removed {
            id: "a",
            version: 4,
        });
        assert_eq!(image.sessions["a"].version, 5);
        image.apply(&Record::Removed {
            id: "a",
            version: 5,
        });
        assert!(image.sessions.is_empty());
        assert_eq!(image.issued, 5);
    }

    #[test]
    fn slides_and_owners_apply_only_to_their_version() {
        let mut image = Image::default();
        image.apply(&put("a", 2));
        image.apply(&Record::Slid {
            id: "a",
            version: 1,
            deadline: 1,
            ttl_ms: 1,
        });
        image.apply(&Record::Owner {
            id: "a",
            version: 2,
            owner: Some("u"),
        });
        image.apply(&Record::Slid {
            id: "a",
            version: 2,
            deadline: 500,
            ttl_ms: 50,
        });
        let a = &image.sessions["a"];
        assert_eq!((a.deadline, a.ttl_ms, a.owner), (500, 50, Some("u")));
    }

    #[test]
    fn removed_versions_still_count_as_issued() {
        let mut image = Image::default();
        image.apply(&Record::Removed {
            id: "gone",
            version: 41,
        });
        image.apply(&Record::Versions { issued: 12 });
        assert_eq!(image.issued, 41);
    }
}
