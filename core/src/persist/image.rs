//! The table as the files describe it: a snapshot, then its logs replayed over it in order.
//!
//! Replay is by version, so it gives the same result whatever overlap a snapshot and the log
//! written during its compaction have: a record older than what the image holds for its id is
//! skipped, a removal at or above it removes, and slides and owner changes apply only to the
//! version they were made on.

use hashbrown::HashMap;

use super::format::Record;

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
    pub(crate) value: &'a [u8],
}

#[derive(Debug, Default)]
pub(crate) struct Image<'a> {
    pub(crate) sessions: HashMap<&'a str, Restored<'a>>,
    /// The highest version any record named, live or removed.
    pub(crate) issued: u64,
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
                        value,
                    },
                );
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
