//! Circuit ids on a link (tor-spec §5.1.1): with 4-byte ids, the side that
//! initiated the link sets the high bit on the ids of circuits it creates
//! and the other side clears it, so the two never pick the same id. Zero
//! is never an id.
//!
//! Inside one peer, two parts create circuits on the same link: its onion
//! proxy (`ClientMux`) and its onion router (extending someone else's
//! circuit). They split our half by the next bit, so each allocates
//! without asking the other: the peer across the link sees ordinary ids
//! of our half.

use std::collections::BTreeSet;

use crate::rng::{random_bytes, Rng};

/// Which side of the link we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkSide {
    /// We opened the link: our circuit ids have the high bit set.
    Initiator,
    /// The other side opened it: our ids have the high bit clear.
    Responder,
}

/// Which part of this peer creates circuits with the ids of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdOwner {
    /// The onion proxy: circuits we originate.
    Client,
    /// The onion router: the next leg of a circuit we extend.
    Router,
}

const HIGH_BIT: u32 = 0x8000_0000;
const OWNER_BIT: u32 = 0x4000_0000;
/// Random draws before giving up: with 2^30 ids per range, failing this
/// many times means the range is (nearly) full, not bad luck.
const MAX_TRIES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CircIdError {
    #[error("no free circuit id on this link after {MAX_TRIES} tries")]
    Exhausted,
    #[error("the random number generator failed")]
    Random,
}

/// The ids one part of this peer allocates on one link.
#[derive(Debug, Clone)]
pub struct CircIdRange {
    side: LinkSide,
    owner: IdOwner,
    used: BTreeSet<u32>,
}

impl CircIdRange {
    pub fn new(side: LinkSide, owner: IdOwner) -> Self {
        CircIdRange {
            side,
            owner,
            used: BTreeSet::new(),
        }
    }

    pub fn side(&self) -> LinkSide {
        self.side
    }

    /// A fresh id of this range, marked used until `release`.
    pub fn allocate(&mut self, rng: &mut dyn Rng) -> Result<u32, CircIdError> {
        for _ in 0..MAX_TRIES {
            let raw = u32::from_be_bytes(random_bytes(rng).map_err(|_| CircIdError::Random)?);
            let id = self.shape(raw);
            if self.used.insert(id) {
                return Ok(id);
            }
        }
        Err(CircIdError::Exhausted)
    }

    pub fn release(&mut self, id: u32) {
        self.used.remove(&id);
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }

    fn shape(&self, raw: u32) -> u32 {
        let half = match self.side {
            LinkSide::Initiator => (raw & !HIGH_BIT) | HIGH_BIT,
            LinkSide::Responder => raw & !HIGH_BIT,
        };
        let id = match self.owner {
            IdOwner::Client => half | OWNER_BIT,
            IdOwner::Router => half & !OWNER_BIT,
        };
        // Zero is not an id; with the owner bit clear, 0 becomes 1.
        id.max(1)
    }

    /// Whether `id` is one the other side of a link may create when we
    /// are `side`: a CREATE with an id of our half is a protocol error.
    pub fn peer_may_create(side: LinkSide, id: u32) -> bool {
        id != 0
            && match side {
                LinkSide::Initiator => id & HIGH_BIT == 0,
                LinkSide::Responder => id & HIGH_BIT != 0,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{RngError, SimRng};

    #[test]
    fn halves_and_owners_never_meet() {
        let mut rng = SimRng::new(1);
        let mut ours_client = CircIdRange::new(LinkSide::Initiator, IdOwner::Client);
        let mut ours_router = CircIdRange::new(LinkSide::Initiator, IdOwner::Router);
        let mut theirs = CircIdRange::new(LinkSide::Responder, IdOwner::Client);
        for _ in 0..1000 {
            let a = ours_client.allocate(&mut rng).unwrap();
            let b = ours_router.allocate(&mut rng).unwrap();
            let c = theirs.allocate(&mut rng).unwrap();
            assert!(a & HIGH_BIT != 0 && a & OWNER_BIT != 0);
            assert!(b & HIGH_BIT != 0 && b & OWNER_BIT == 0 && b != 0);
            assert!(c & HIGH_BIT == 0 && c != 0);
            assert!(CircIdRange::peer_may_create(LinkSide::Initiator, c));
            assert!(!CircIdRange::peer_may_create(LinkSide::Initiator, a));
            assert!(CircIdRange::peer_may_create(LinkSide::Responder, b));
        }
        assert_eq!(ours_client.in_use(), 1000);
        assert!(!CircIdRange::peer_may_create(LinkSide::Responder, 0));
    }

    /// A generator stuck on one value: the second allocation finds its
    /// only id taken and gives up after a bounded number of tries.
    struct Stuck;
    impl Rng for Stuck {
        fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
            buf.fill(0x11);
            Ok(())
        }
    }

    struct Broken;
    impl Rng for Broken {
        fn fill(&mut self, _: &mut [u8]) -> Result<(), RngError> {
            Err(RngError)
        }
    }

    #[test]
    fn bounded_tries_then_an_error() {
        let mut r = CircIdRange::new(LinkSide::Responder, IdOwner::Router);
        let id = r.allocate(&mut Stuck).unwrap();
        assert_eq!(r.allocate(&mut Stuck), Err(CircIdError::Exhausted));
        r.release(id);
        assert_eq!(r.allocate(&mut Stuck), Ok(id));
        assert_eq!(r.allocate(&mut Broken), Err(CircIdError::Random));
    }
}
