//! The routing table: 160 buckets by XOR distance, each holding at most
//! `K` peers, least recently seen first. A full bucket keeps its live old
//! peers (Kademlia §2.2: they are the likeliest to stay) and remembers the
//! newcomer as a replacement, asking the adapter to ping the oldest; a
//! peer that fails to answer is evicted and the replacement takes its
//! place. `C` is what the adapter needs to reach a peer (its introducer).

use crate::crypto::PeerId;

use super::distance::{random_id_in_bucket, Distance};
use super::{ID_BITS, K};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<C> {
    pub id: PeerId,
    pub contact: C,
    /// When we last heard from it (adapter's clock, ms).
    pub last_seen: u64,
}

#[derive(Debug, Clone)]
struct Bucket<C> {
    /// Least recently seen first.
    entries: Vec<Entry<C>>,
    /// A peer waiting for a slot, most recent only.
    replacement: Option<Entry<C>>,
    /// When a lookup last went through this bucket's range.
    last_used: u64,
}

/// What `insert` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    Added,
    Refreshed,
    /// The bucket is full: the peer waits as a replacement; ping this peer
    /// (the least recently seen) and report it dead if it does not answer.
    Full {
        ping: PeerId,
    },
    /// Our own ID.
    Ignored,
}

#[derive(Debug, Clone)]
pub struct RoutingTable<C> {
    me: PeerId,
    buckets: Vec<Bucket<C>>,
}

impl<C: Clone> RoutingTable<C> {
    pub fn new(me: PeerId) -> Self {
        RoutingTable {
            me,
            buckets: (0..ID_BITS)
                .map(|_| Bucket {
                    entries: Vec::new(),
                    replacement: None,
                    last_used: 0,
                })
                .collect(),
        }
    }

    pub fn me(&self) -> &PeerId {
        &self.me
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bucket_of(&mut self, id: &PeerId) -> Option<&mut Bucket<C>> {
        let i = Distance::between(&self.me, id).bucket()?;
        self.buckets.get_mut(i)
    }

    /// We heard from `id` (it answered, or it contacted us).
    pub fn insert(&mut self, id: PeerId, contact: C, now: u64) -> Insert {
        let Some(bucket) = self.bucket_of(&id) else {
            return Insert::Ignored;
        };
        bucket.last_used = bucket.last_used.max(now);
        if let Some(pos) = bucket.entries.iter().position(|e| e.id == id) {
            let mut e = bucket.entries.remove(pos);
            e.last_seen = now;
            e.contact = contact;
            bucket.entries.push(e);
            return Insert::Refreshed;
        }
        let entry = Entry {
            id,
            contact,
            last_seen: now,
        };
        if bucket.entries.len() < K {
            bucket.entries.push(entry);
            return Insert::Added;
        }
        bucket.replacement = Some(entry);
        match bucket.entries.first() {
            Some(oldest) => Insert::Full { ping: oldest.id },
            None => Insert::Ignored,
        }
    }

    /// `id` did not answer: it leaves the table, and its bucket's
    /// replacement (if any) takes the slot.
    pub fn remove_dead(&mut self, id: &PeerId) {
        let Some(bucket) = self.bucket_of(id) else {
            return;
        };
        let before = bucket.entries.len();
        bucket.entries.retain(|e| e.id != *id);
        if bucket.entries.len() < before {
            if let Some(r) = bucket.replacement.take() {
                bucket.entries.push(r);
            }
        } else if bucket.replacement.as_ref().is_some_and(|r| r.id == *id) {
            bucket.replacement = None;
        }
    }

    /// Whether `id` would be added without waiting for a slot.
    pub fn has_room_for(&self, id: &PeerId) -> bool {
        Distance::between(&self.me, id)
            .bucket()
            .and_then(|i| self.buckets.get(i))
            .is_some_and(|b| b.entries.len() < K && !b.entries.iter().any(|e| e.id == *id))
    }

    pub fn contains(&self, id: &PeerId) -> bool {
        Distance::between(&self.me, id)
            .bucket()
            .and_then(|i| self.buckets.get(i))
            .is_some_and(|b| b.entries.iter().any(|e| e.id == *id))
    }

    pub fn get(&self, id: &PeerId) -> Option<&Entry<C>> {
        let i = Distance::between(&self.me, id).bucket()?;
        self.buckets.get(i)?.entries.iter().find(|e| e.id == *id)
    }

    /// The `n` known peers closest to `target`, closest first.
    pub fn closest(&self, target: &PeerId, n: usize) -> Vec<Entry<C>> {
        let mut all: Vec<(Distance, &Entry<C>)> = self
            .buckets
            .iter()
            .flat_map(|b| &b.entries)
            .map(|e| (Distance::between(&e.id, target), e))
            .collect();
        if n < all.len() {
            all.select_nth_unstable_by_key(n, |(d, _)| *d);
            all.truncate(n);
        }
        all.sort_unstable_by_key(|(d, _)| *d);
        all.into_iter().map(|(_, e)| e.clone()).collect()
    }

    /// Buckets not used for `interval` ms (and not empty-and-unreachable:
    /// only buckets up to the farthest non-empty one), with a random ID
    /// in each to look up (Kademlia §2.3 refresh).
    pub fn refresh_targets(
        &mut self,
        now: u64,
        interval: u64,
        mut random: impl FnMut() -> [u8; 20],
    ) -> Vec<PeerId> {
        let farthest = self.buckets.iter().rposition(|b| !b.entries.is_empty());
        let Some(farthest) = farthest else {
            return Vec::new();
        };
        let me = self.me;
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate().take(farthest + 1) {
            if now.saturating_sub(b.last_used) >= interval {
                b.last_used = now;
                out.push(random_id_in_bucket(&me, i, random()));
            }
        }
        out
    }

    /// Every entry, for inspection (`peer.peers()`).
    pub fn entries(&self) -> impl Iterator<Item = &Entry<C>> {
        self.buckets.iter().flat_map(|b| &b.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8, last: u8) -> PeerId {
        let mut b = [0u8; 20];
        b[0] = first;
        b[19] = last;
        PeerId(b)
    }

    #[test]
    fn full_bucket_keeps_old_peers_until_one_dies() {
        let mut t = RoutingTable::new(id(0, 0));
        // All in bucket 159 (first bit set).
        for i in 0..K as u8 {
            assert_eq!(t.insert(id(0x80, i), (), u64::from(i)), Insert::Added);
        }
        assert_eq!(
            t.insert(id(0x80, 200), (), 100),
            Insert::Full { ping: id(0x80, 0) }
        );
        assert!(!t.contains(&id(0x80, 200)));
        // The oldest answered: it moves to the back, the newcomer still waits.
        assert_eq!(t.insert(id(0x80, 0), (), 101), Insert::Refreshed);
        assert_eq!(
            t.insert(id(0x80, 201), (), 102),
            Insert::Full { ping: id(0x80, 1) }
        );
        t.remove_dead(&id(0x80, 1));
        assert!(t.contains(&id(0x80, 201)));
        assert!(!t.contains(&id(0x80, 1)));
        assert_eq!(t.len(), K);
        assert_eq!(t.insert(id(0, 0), (), 1), Insert::Ignored);
    }

    #[test]
    fn closest_is_sorted_by_xor_distance() {
        let mut t = RoutingTable::new(id(0, 0));
        for i in 1..=50u8 {
            t.insert(id(i, i), (), 0);
        }
        let target = id(7, 0);
        let got: Vec<PeerId> = t.closest(&target, 5).into_iter().map(|e| e.id).collect();
        let mut all: Vec<PeerId> = (1..=50u8).map(|i| id(i, i)).collect();
        all.sort_by_key(|p| Distance::between(p, &target));
        assert_eq!(got, all[..5].to_vec());
    }

    #[test]
    fn refresh_targets_land_in_stale_buckets() {
        let mut t = RoutingTable::new(id(0, 0));
        t.insert(id(0x01, 0), (), 0); // bucket 152
        let targets = t.refresh_targets(10_000, 1_000, || [0xa5; 20]);
        assert_eq!(targets.len(), 153);
        for (i, target) in targets.iter().enumerate() {
            assert_eq!(Distance::between(&id(0, 0), target).bucket(), Some(i));
        }
        assert!(t.refresh_targets(10_500, 1_000, || [0; 20]).is_empty());
    }
}
