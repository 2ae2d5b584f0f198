//! The per-owner index behind "log out everywhere": owner key -> ids of that owner's sessions.
//!
//! Lock order: a session stripe is always locked before an owner stripe, never the reverse, so
//! the index can be updated in the same critical section as the session it describes.

use hashbrown::{DefaultHashBuilder, HashMap, HashSet};
use parking_lot::Mutex;
use std::hash::BuildHasher;

type Ids = HashSet<Box<str>>;
type Stripe = Mutex<HashMap<Box<str>, Ids>>;

pub(crate) struct OwnerIndex {
    stripes: Box<[Stripe]>,
    hasher: DefaultHashBuilder,
}

/// Longest owner key accepted.
pub const MAX_OWNER_LEN: usize = 1024;

impl OwnerIndex {
    pub(crate) fn new(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn stripe(&self, owner: &str) -> &Stripe {
        let hash = self.hasher.hash_one(owner);
        // Stripe count is at least 1, so the modulo is defined.
        &self.stripes[(hash as usize) % self.stripes.len()]
    }

    pub(crate) fn add(&self, owner: &str, id: &str) {
        let mut map = self.stripe(owner).lock();
        map.entry(owner.into()).or_default().insert(id.into());
    }

    pub(crate) fn remove(&self, owner: &str, id: &str) {
        let mut map = self.stripe(owner).lock();
        if let Some(ids) = map.get_mut(owner) {
            ids.remove(id);
            if ids.is_empty() {
                map.remove(owner);
            }
        }
    }

    /// A snapshot of the ids filed under `owner`. Some may have expired since.
    pub(crate) fn ids_of(&self, owner: &str) -> Vec<String> {
        let map = self.stripe(owner).lock();
        map.get(owner).map_or_else(Vec::new, |ids| {
            ids.iter().map(|id| id.to_string()).collect()
        })
    }
}

impl OwnerIndex {
    /// Every (owner, id) pair, for the invariant checker.
    pub(crate) fn all(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for stripe in self.stripes.iter() {
            for (owner, ids) in stripe.lock().iter() {
                pairs.extend(ids.iter().map(|id| (owner.to_string(), id.to_string())));
            }
        }
        pairs
    }
}
