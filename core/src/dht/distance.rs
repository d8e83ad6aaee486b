//! XOR distance between 160-bit IDs, compared as big-endian integers.

use crate::crypto::PeerId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Distance(pub [u8; 20]);

impl Distance {
    pub fn between(a: &PeerId, b: &PeerId) -> Distance {
        let mut d = [0u8; 20];
        for (i, out) in d.iter_mut().enumerate() {
            *out = a.0.get(i).copied().unwrap_or(0) ^ b.0.get(i).copied().unwrap_or(0);
        }
        Distance(d)
    }

    /// The bucket this distance falls in: `i` when 2^i <= d < 2^(i+1);
    /// `None` for distance 0 (the same ID).
    pub fn bucket(&self) -> Option<usize> {
        let leading = self
            .0
            .iter()
            .position(|b| *b != 0)
            .map(|i| i * 8 + self.0.get(i).map_or(0, |b| b.leading_zeros() as usize))?;
        Some(super::ID_BITS - 1 - leading)
    }
}

/// An ID at a distance in bucket `bucket` from `me`, the rest of its bits
/// taken from `random` (for bucket refreshes).
pub fn random_id_in_bucket(me: &PeerId, bucket: usize, random: [u8; 20]) -> PeerId {
    let bucket = bucket.min(super::ID_BITS - 1);
    // Distance bits: bit `bucket` set, higher bits clear, lower bits random.
    let mut d = random;
    for bit in bucket..super::ID_BITS {
        let byte = (super::ID_BITS - 1 - bit) / 8;
        let mask = 1u8 << (bit % 8);
        if let Some(b) = d.get_mut(byte) {
            if bit == bucket {
                *b |= mask;
            } else {
                *b &= !mask;
            }
        }
    }
    let mut id = [0u8; 20];
    for (i, out) in id.iter_mut().enumerate() {
        *out = me.0.get(i).copied().unwrap_or(0) ^ d.get(i).copied().unwrap_or(0);
    }
    PeerId(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        let zero = PeerId([0; 20]);
        let mut one = [0u8; 20];
        one[19] = 1;
        assert_eq!(Distance::between(&zero, &PeerId(one)).bucket(), Some(0));
        let mut top = [0u8; 20];
        top[0] = 0x80;
        assert_eq!(Distance::between(&zero, &PeerId(top)).bucket(), Some(159));
        assert_eq!(Distance::between(&zero, &zero).bucket(), None);
        for bucket in [0, 1, 7, 8, 100, 159] {
            for r in [[0u8; 20], [0xff; 20], [0x5a; 20]] {
                let id = random_id_in_bucket(&PeerId(top), bucket, r);
                assert_eq!(Distance::between(&PeerId(top), &id).bucket(), Some(bucket));
            }
        }
    }
}
