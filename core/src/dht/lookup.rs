//! The iterative node lookup (Kademlia §2.3) as a state machine: it is
//! seeded with the closest peers we know, says which peer to ask next
//! (`next_action`, at most `ALPHA` at a time), is told each answer (the
//! peers that peer knows closest to the target) or failure, and ends once
//! the `K` closest peers still standing have all answered. The adapter
//! sends the FIND_NODEs, applies timeouts (a timeout is a failure) and
//! decides how to reach each peer.

use std::collections::BTreeMap;

use crate::crypto::PeerId;

use super::distance::Distance;
use super::{ALPHA, K};

/// Candidates kept beyond the `K` closest (farther ones can never matter
/// once `K` closer peers answered; a margin covers failures).
const KEEP: usize = K * 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotAsked,
    Asked,
    Answered,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    id: PeerId,
    state: State,
    /// How many answers led to this peer (seeds are 1): its round.
    round: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupAction {
    /// Send FIND_NODE(target) to this peer.
    Query(PeerId),
    /// Wait for answers to queries in flight.
    Wait,
    /// Finished: read `result`.
    Done,
}

#[derive(Debug, Clone)]
pub struct Lookup {
    target: PeerId,
    me: PeerId,
    candidates: BTreeMap<Distance, Candidate>,
    in_flight: usize,
    queries: usize,
    /// How many closest peers must answer before the lookup ends.
    k: usize,
}

impl Lookup {
    /// Looks up `target` from `me`, starting with `seeds` (our closest
    /// known peers).
    pub fn new(me: PeerId, target: PeerId, seeds: impl IntoIterator<Item = PeerId>) -> Self {
        Self::with_k(me, target, seeds, K)
    }

    /// The same, ending once the `k` closest peers still standing have
    /// answered (`k` ≤ `K`; FIND_VALUE asks the 4 closest).
    pub fn with_k(
        me: PeerId,
        target: PeerId,
        seeds: impl IntoIterator<Item = PeerId>,
        k: usize,
    ) -> Self {
        let mut l = Lookup {
            target,
            me,
            candidates: BTreeMap::new(),
            in_flight: 0,
            queries: 0,
            k: k.clamp(1, K),
        };
        for id in seeds {
            l.add(id, 1);
        }
        l
    }

    pub fn target(&self) -> &PeerId {
        &self.target
    }

    fn add(&mut self, id: PeerId, round: u32) {
        if id == self.me {
            return;
        }
        let d = Distance::between(&id, &self.target);
        self.candidates.entry(d).or_insert(Candidate {
            id,
            state: State::NotAsked,
            round,
        });
        while self.candidates.len() > KEEP {
            // Drop the farthest peer not waiting on an answer.
            let far = self
                .candidates
                .iter()
                .rev()
                .find(|(_, c)| c.state != State::Asked)
                .map(|(d, _)| *d);
            match far {
                Some(d) => drop(self.candidates.remove(&d)),
                None => break,
            }
        }
    }

    /// The `k` closest candidates that have not failed.
    fn closest_standing(&self) -> impl Iterator<Item = &Candidate> {
        self.candidates
            .values()
            .filter(|c| c.state != State::Failed)
            .take(self.k)
    }

    pub fn next_action(&mut self) -> LookupAction {
        if self.closest_standing().all(|c| c.state == State::Answered) {
            return LookupAction::Done;
        }
        if self.in_flight < ALPHA {
            let next = self
                .closest_standing()
                .find(|c| c.state == State::NotAsked)
                .map(|c| Distance::between(&c.id, &self.target));
            if let Some(c) = next.and_then(|d| self.candidates.get_mut(&d)) {
                c.state = State::Asked;
                self.in_flight += 1;
                self.queries += 1;
                return LookupAction::Query(c.id);
            }
        }
        if self.in_flight > 0 {
            LookupAction::Wait
        } else {
            LookupAction::Done
        }
    }

    fn asked(&mut self, from: &PeerId) -> Option<&mut Candidate> {
        let c = self
            .candidates
            .get_mut(&Distance::between(from, &self.target))?;
        (c.state == State::Asked).then_some(c)
    }

    /// `from` answered with the peers it knows closest to the target.
    /// Answers from peers we did not ask are ignored.
    pub fn on_answer(&mut self, from: &PeerId, peers: impl IntoIterator<Item = PeerId>) {
        let Some(c) = self.asked(from) else { return };
        c.state = State::Answered;
        let round = c.round + 1;
        self.in_flight -= 1;
        for id in peers.into_iter().take(K * 2) {
            self.add(id, round);
        }
    }

    /// `from` did not answer (timeout, unreachable).
    pub fn on_failure(&mut self, from: &PeerId) {
        let Some(c) = self.asked(from) else { return };
        c.state = State::Failed;
        self.in_flight -= 1;
    }

    /// The closest peers that answered, closest first (at most `k`).
    pub fn result(&self) -> Vec<PeerId> {
        self.candidates
            .values()
            .filter(|c| c.state == State::Answered)
            .take(self.k)
            .map(|c| c.id)
            .collect()
    }

    /// The lookup's depth: the most answers chained to reach a peer that
    /// answered (parallel queries of one wave share a round).
    pub fn rounds(&self) -> u32 {
        self.candidates
            .values()
            .filter(|c| c.state == State::Answered)
            .map(|c| c.round)
            .max()
            .unwrap_or(0)
    }

    /// FIND_NODEs sent so far.
    pub fn queries(&self) -> usize {
        self.queries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> PeerId {
        PeerId([n; 20])
    }

    #[test]
    fn alpha_in_flight_then_done() {
        let mut l = Lookup::new(id(0), id(1), [id(2), id(3), id(4), id(5)]);
        let mut asked = Vec::new();
        for _ in 0..ALPHA {
            match l.next_action() {
                LookupAction::Query(p) => asked.push(p),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(l.next_action(), LookupAction::Wait);
        // id(3) is 3^1 = 2 away: the closest; it reports the target itself.
        l.on_answer(&id(3), [id(1), id(0)]);
        assert_eq!(l.next_action(), LookupAction::Query(id(1)));
        l.on_failure(&asked[1]);
        l.on_answer(&id(1), []);
        // Answers from peers not asked change nothing.
        l.on_answer(&id(9), [id(8)]);
        let mut guard = 0;
        loop {
            guard += 1;
            assert!(guard < 20);
            match l.next_action() {
                LookupAction::Query(p) => l.on_answer(&p, []),
                LookupAction::Wait => {
                    let pending: Vec<PeerId> = asked.clone();
                    for p in pending {
                        l.on_answer(&p, []);
                    }
                }
                LookupAction::Done => break,
            }
        }
        let result = l.result();
        assert_eq!(result.first(), Some(&id(1)));
        assert!(!result.contains(&id(0)), "never ourselves");
        assert!(l.rounds() >= 2);
    }

    #[test]
    fn a_lookup_for_the_four_closest_ends_once_they_answered() {
        // Seeds 2..=9 around target 0 (distance = the ID's byte): the four
        // closest (2, 3, 4, 5) answering is enough.
        let mut l = Lookup::with_k(id(100), id(0), (2..=9).map(id), 4);
        let mut asked = Vec::new();
        loop {
            match l.next_action() {
                LookupAction::Query(p) => {
                    asked.push(p);
                    l.on_answer(&p, []);
                }
                LookupAction::Wait => panic!("nothing in flight"),
                LookupAction::Done => break,
            }
        }
        assert_eq!(asked, vec![id(2), id(3), id(4), id(5)]);
        assert_eq!(l.result(), vec![id(2), id(3), id(4), id(5)]);
    }
}
