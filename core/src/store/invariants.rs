//! The invariant checker the model-based tests run after every step.

use std::sync::atomic::Ordering::Relaxed;

use super::Inner;

impl Inner {
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        let mut sessions = 0;
        let mut bytes = 0;
        let mut owned: Vec<(String, String)> = Vec::new();
        for (n, shard) in self.shards.iter().enumerate() {
            let stripe = shard.state.read();
            stripe.check().map_err(|e| format!("stripe {n}: {e}"))?;
            let earliest = stripe
                .live_indices()
                .map(|i| stripe.record(i).deadline())
                .min()
                .unwrap_or(u64::MAX);
            if shard.next_due.load(Relaxed) > earliest {
                return Err(format!(
                    "stripe {n}: next_due {} is later than the earliest deadline {earliest}",
                    shard.next_due.load(Relaxed)
                ));
            }
            sessions += stripe.live();
            bytes += stripe.bytes();
            for i in stripe.live_indices() {
                let id = stripe.block(i).id_str();
                if self.locate(id).1 != n {
                    return Err(format!("{id} is stored in stripe {n}, hashes elsewhere"));
                }
                if let Some(owner) = stripe.owner(i) {
                    owned.push((owner.to_string(), id.to_string()));
                }
            }
        }
        if sessions != self.sessions.load(Relaxed) {
            return Err(format!(
                "session total {} != {sessions} live",
                self.sessions.load(Relaxed)
            ));
        }
        if bytes != self.bytes.load(Relaxed) {
            return Err(format!(
                "byte total {} != {bytes}",
                self.bytes.load(Relaxed)
            ));
        }
        let mut indexed = self.owners.all();
        indexed.sort();
        owned.sort();
        if indexed != owned {
            return Err(format!(
                "owner index {indexed:?} != owners of live sessions {owned:?}"
            ));
        }
        Ok(())
    }
}
