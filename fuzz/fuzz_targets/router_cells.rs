//! Fuzz target: arbitrary cells from two links into the onion router. It
//! must never panic, whatever the cells claim (CREATE2 with garbage,
//! RELAY on circuits that exist or not, DESTROY, RELAY_EARLY toward the
//! client), and what it sends back must be well-formed cells.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::{CircIdLen, RawCell};
use peersm_core::circuit::LinkSide;
use peersm_core::crypto::ntor::NtorRelayKey;
use peersm_core::rng::SimRng;
use peersm_core::router::{LinkPeer, Router, RouterConfig};

fuzz_target!(|data: &[u8]| {
    let mut rng = SimRng::new(1);
    let key = NtorRelayKey::new([7; 20], [9; 32]);
    let mut router = Router::new(RouterConfig::new(vec![key]), &mut rng).expect("router");
    router.add_link(1u8, LinkSide::Responder, LinkPeer::default());
    router.add_link(2u8, LinkSide::Initiator, LinkPeer { id: Some([2; 20]), ed25519_id: None });
    let mut input = data;
    while let Some((&which, rest)) = input.split_first() {
        input = rest;
        let Ok(cell) = RawCell::decode(&mut input, CircIdLen::Four) else {
            break;
        };
        let _ = router.handle_cell(if which & 1 == 0 { 1 } else { 2 }, cell);
        while let Some((_, cells)) = router.poll_transmit() {
            for c in cells {
                c.to_bytes(CircIdLen::Four).expect("the router sends cells it can encode");
            }
        }
        while router.poll_event().is_some() {}
    }
    router.remove_link(1);
    router.remove_link(2);
    assert_eq!(router.circuit_count(), 0, "no circuit outlives its links");
});
