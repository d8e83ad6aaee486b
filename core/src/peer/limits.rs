//! Rate limits on what others can make a peer do: a token bucket per
//! resource (docs/SECURITY.md "Resource limits").

/// Up to `burst` at once, then `per_second` on average. Times are the
/// caller's clock in ms.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: u32,
    per_second: u32,
    /// Tokens, in thousandths.
    milli: u64,
    last: u64,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(burst: u32, per_second: u32, now: u64) -> Self {
        TokenBucket {
            burst,
            per_second,
            milli: u64::from(burst) * 1000,
            last: now,
        }
    }

    /// Takes a token if there is one at `now`.
    pub fn allow(&mut self, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        let full = u64::from(self.burst) * 1000;
        self.milli = self
            .milli
            .saturating_add(elapsed.saturating_mul(u64::from(self.per_second)))
            .min(full);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// A `TokenBucket` per key (a link, say), made full on first use, with a
/// count of what it refused.
#[derive(Debug, Clone)]
pub struct BucketPerKey<K> {
    burst: u32,
    per_second: u32,
    buckets: std::collections::BTreeMap<K, TokenBucket>,
    refused: u64,
}

impl<K: Ord> BucketPerKey<K> {
    pub fn new(burst: u32, per_second: u32) -> Self {
        BucketPerKey {
            burst,
            per_second,
            buckets: std::collections::BTreeMap::new(),
            refused: 0,
        }
    }

    /// Takes a token from `key`'s bucket at `now`; counts a refusal.
    pub fn allow(&mut self, key: K, now: u64) -> bool {
        let (burst, per_second) = (self.burst, self.per_second);
        let allowed = self
            .buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::new(burst, per_second, now))
            .allow(now);
        self.refused += u64::from(!allowed);
        allowed
    }

    /// `key` is gone (a closed link): its bucket goes too.
    pub fn forget(&mut self, key: &K) {
        self.buckets.remove(key);
    }

    /// Requests refused so far, all keys together.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = TokenBucket::new(4, 2, 1_000);
        assert_eq!((0..10).filter(|_| b.allow(1_000)).count(), 4);
        assert!(!b.allow(1_400), "0.8 of a token after 400 ms");
        assert!(b.allow(1_500));
        assert_eq!(
            (0..10).filter(|_| b.allow(11_000)).count(),
            4,
            "never more than the burst"
        );
        assert!(!b.allow(500), "a clock going back gives nothing");
    }
}
