//! Randomness is injected: every state machine that needs random bytes
//! (handshake secrets, circuit ids, cell padding, lookup targets) takes
//! them from an `Rng` it was given. Adapters pass `OsRng`; the simulation
//! passes a seeded `SimRng`, so a whole-network run is the same every time.
//!
//! Long-lived objects that need randomness on every step (a circuit pads
//! each cell it originates) keep a `KeystreamRng` seeded once from the
//! injected source rather than holding the source itself.

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the random number generator failed")]
pub struct RngError;

/// A source of random bytes.
pub trait Rng {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError>;

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], RngError>
    where
        Self: Sized,
    {
        let mut out = [0u8; N];
        self.fill(&mut out)?;
        Ok(out)
    }
}

/// `N` random bytes from any source, trait object or not.
pub fn random_bytes<const N: usize>(rng: &mut dyn Rng) -> Result<[u8; N], RngError> {
    let mut out = [0u8; N];
    rng.fill(&mut out)?;
    Ok(out)
}

/// A random `u64` (uniform).
pub fn random_u64(rng: &mut dyn Rng) -> Result<u64, RngError> {
    random_bytes::<8>(rng).map(u64::from_le_bytes)
}

/// A random index below `n` (`n > 0`); modulo bias is negligible for the
/// small `n` this picks among (peers, relays).
pub fn random_below(rng: &mut dyn Rng, n: usize) -> Result<usize, RngError> {
    let n64 = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
    Ok(usize::try_from(random_u64(rng)? % n64).unwrap_or(0))
}

/// The operating system's generator (getrandom; WebCrypto's
/// `getRandomValues` in a browser).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRng;

impl Rng for OsRng {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
        getrandom::fill(buf).map_err(|_| RngError)
    }
}

/// A cryptographically strong generator seeded once: the AES-128-CTR
/// keystream under a random key. Circuits use one each for padding and
/// handshake secrets.
pub struct KeystreamRng {
    cipher: ctr::Ctr128BE<Aes128>,
}

impl KeystreamRng {
    pub fn seeded_from(rng: &mut dyn Rng) -> Result<Self, RngError> {
        let key: [u8; 16] = random_bytes(rng)?;
        let iv: [u8; 16] = random_bytes(rng)?;
        Ok(KeystreamRng {
            cipher: ctr::Ctr128BE::<Aes128>::new(&key.into(), &iv.into()),
        })
    }
}

impl Rng for KeystreamRng {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
        buf.fill(0);
        self.cipher.apply_keystream(buf);
        Ok(())
    }
}

/// SplitMix64: a small seeded generator for simulations and tests. Not for
/// secrets: its output is predictable from the seed, which is the point.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A generator for another party, derived from this one.
    pub fn fork(&mut self) -> SimRng {
        SimRng(self.next_u64())
    }

    pub fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
        usize::try_from(self.next_u64() % n64).unwrap_or(0)
    }
}

impl Rng for SimRng {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            let n = chunk.len();
            chunk.copy_from_slice(r.get(..n).unwrap_or_default());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_generators_repeat_and_keystreams_differ() {
        let (mut a, mut b) = (SimRng::new(7), SimRng::new(7));
        assert_eq!(a.bytes::<33>().unwrap(), b.bytes::<33>().unwrap());
        let mut k1 = KeystreamRng::seeded_from(&mut a).unwrap();
        let mut k2 = KeystreamRng::seeded_from(&mut a).unwrap();
        assert_ne!(k1.bytes::<32>().unwrap(), k2.bytes::<32>().unwrap());
        assert!(random_below(&mut b, 5).unwrap() < 5);
    }
}
