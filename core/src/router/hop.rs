//! One circuit through the router: its `RelayCircuit` (crypto, streams,
//! RELAY_EARLY and window rules) and where its next leg is.

use crate::cell::Create2;
use crate::circuit::RelayCircuit;

pub(super) struct Hop<L> {
    pub(super) circuit: RelayCircuit,
    /// The next leg: its link and circuit id there, once CREATE2 is sent.
    pub(super) next: Option<(L, u32)>,
    /// The CREATE2 of an EXTEND2 waiting for a link to the next relay.
    pub(super) create: Option<Create2>,
}

impl<L> Hop<L> {
    pub(super) fn new(circuit: RelayCircuit) -> Self {
        Hop {
            circuit,
            next: None,
            create: None,
        }
    }
}
