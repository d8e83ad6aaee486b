//! The values a peer keeps for the DHT (docs/PROTOCOL.md "FIND_VALUE and
//! STORE"): per key (a hash_name and its kind), the peers that said they
//! can answer DB_QUERY for it. Bounded in every direction, since anyone
//! can STORE: a few values per key (the newest win), a few hundred keys
//! (when full, a new key takes the place of the one farthest from us if
//! it is nearer, as Kademlia keeps what it is closest to; else it is
//! refused), and every value expires unless stored again.

use std::collections::BTreeMap;

use crate::crypto::PeerId;

use super::Distance;

/// Values kept per key; a new peer replaces the one stored longest ago.
pub const MAX_VALUES_PER_KEY: usize = 8;
/// Keys kept; beyond, a STORE for a new key is refused.
pub const MAX_KEYS: usize = 512;
/// A value lives this long unless stored again.
pub const VALUE_TTL_MS: u64 = 30 * 60_000;

/// A key: the hash_name and its kind (0 file, 1 live stream).
pub type ValueKey = ([u8; 20], u8);

#[derive(Debug, Clone)]
struct Kept<V> {
    peer: PeerId,
    value: V,
    stored: u64,
}

#[derive(Debug, Clone)]
pub struct ValueStore<V> {
    /// Our own ID: keys nearer to it are kept first.
    me: PeerId,
    keys: BTreeMap<ValueKey, Vec<Kept<V>>>,
}

impl<V: Clone> ValueStore<V> {
    pub fn new(me: PeerId) -> Self {
        ValueStore {
            me,
            keys: BTreeMap::new(),
        }
    }

    fn distance(&self, key: &ValueKey) -> Distance {
        Distance::between(&PeerId(key.0), &self.me)
    }

    /// Keeps `value` (what `peer` stored) under `key`; a peer storing again
    /// refreshes its value. False when refused (too many keys).
    pub fn put(&mut self, key: ValueKey, peer: PeerId, value: V, now: u64) -> bool {
        if !self.keys.contains_key(&key) && self.keys.len() >= MAX_KEYS {
            self.expire(now);
            if self.keys.len() >= MAX_KEYS {
                let farthest = self.keys.keys().max_by_key(|k| self.distance(k)).copied();
                match farthest {
                    Some(far) if self.distance(&key) < self.distance(&far) => {
                        self.keys.remove(&far);
                    }
                    _ => return false,
                }
            }
        }
        let kept = self.keys.entry(key).or_default();
        kept.retain(|k| k.peer != peer);
        if kept.len() >= MAX_VALUES_PER_KEY {
            if let Some(oldest) = kept.iter().enumerate().min_by_key(|(_, k)| k.stored) {
                let i = oldest.0;
                kept.remove(i);
            }
        }
        kept.push(Kept {
            peer,
            value,
            stored: now,
        });
        true
    }

    /// The live values under `key`, newest first.
    pub fn get(&self, key: &ValueKey, now: u64) -> Vec<(PeerId, V)> {
        let mut live: Vec<&Kept<V>> = self
            .keys
            .get(key)
            .map(|k| k.iter().filter(|k| live_at(k.stored, now)).collect())
            .unwrap_or_default();
        live.sort_by_key(|k| std::cmp::Reverse(k.stored));
        live.into_iter()
            .map(|k| (k.peer, k.value.clone()))
            .collect()
    }

    /// Drops what expired.
    pub fn expire(&mut self, now: u64) {
        for kept in self.keys.values_mut() {
            kept.retain(|k| live_at(k.stored, now));
        }
        self.keys.retain(|_, k| !k.is_empty());
    }

    /// Keys kept (expired ones included until `expire`).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn live_at(stored: u64, now: u64) -> bool {
    now.saturating_sub(stored) < VALUE_TTL_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId([n; 20])
    }

    #[test]
    fn values_are_bounded_refreshed_and_expire() {
        let mut s = ValueStore::new(peer(0));
        let key = ([1; 20], 0);
        for i in 0..10u8 {
            assert!(s.put(key, peer(i), i, u64::from(i)));
        }
        // The two stored first made room.
        let got: Vec<u8> = s.get(&key, 10).into_iter().map(|(_, v)| v).collect();
        assert_eq!(got, vec![9, 8, 7, 6, 5, 4, 3, 2]);
        // Storing again refreshes (and replaces) the peer's value.
        assert!(s.put(key, peer(2), 42, 100));
        assert_eq!(s.get(&key, 100).first(), Some(&(peer(2), 42)));
        assert_eq!(s.get(&key, 100).len(), MAX_VALUES_PER_KEY);
        // Past the lifetime only the refreshed value is left.
        let later = 9 + VALUE_TTL_MS;
        assert_eq!(s.get(&key, later), vec![(peer(2), 42)]);
        s.expire(100 + VALUE_TTL_MS);
        assert!(s.is_empty());
        assert!(s.get(&key, 0).is_empty());
    }

    #[test]
    fn when_full_nearer_keys_replace_the_farthest_and_farther_ones_wait() {
        // Our ID is 0x80…: keys 0x80…80 + i are near it, 0x00… and 0xff…
        // are farther than all of them.
        let mut s = ValueStore::new(PeerId([0x80; 20]));
        let near = |i: u64| {
            let mut h = [0x80u8; 20];
            h[12..].copy_from_slice(&i.to_be_bytes());
            (h, 0u8)
        };
        for i in 1..=MAX_KEYS as u64 {
            assert!(s.put(near(i), peer(1), (), 0));
        }
        // A far key (an attacker's random one) finds no room.
        assert!(!s.put(([0xff; 20], 0), peer(1), (), 1));
        assert!(!s.put(([0x00; 20], 0), peer(1), (), 1));
        // Our own ID is the nearest key there is: it takes the farthest's
        // place.
        assert!(s.put(([0x80; 20], 0), peer(2), (), 1));
        assert_eq!(s.len(), MAX_KEYS);
        assert_eq!(s.get(&([0x80; 20], 0), 1).len(), 1);
        // A key already kept still takes values.
        assert!(s.put(near(1), peer(2), (), 1));
        // Once the old ones expire, anything fits again.
        assert!(s.put(([0xff; 20], 0), peer(1), (), VALUE_TTL_MS));
        assert_eq!(s.len(), 3, "the two refreshed keys and the new one");
    }
}
