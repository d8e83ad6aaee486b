//! Unit tests of the tab's pieces that need no network.

use super::{fingerprint_of, same_fingerprint};

#[test]
fn an_sdp_names_exactly_one_fingerprint() {
    let one = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
               a=fingerprint:sha-256 AB:CD:EF\r\n";
    assert_eq!(fingerprint_of(one).as_deref(), Some("sha-256 AB:CD:EF"));
    // A second line, at session or media level, in front or behind.
    let session_first = format!("v=0\r\na=fingerprint:sha-256 00:11:22\r\n{}", &one[5..]);
    assert_eq!(fingerprint_of(&session_first), None);
    let media_second = format!("{one}a=fingerprint:sha-256 00:11:22\r\n");
    assert_eq!(fingerprint_of(&media_second), None);
    // The same value twice is still two lines.
    let twice = format!("{one}a=fingerprint:sha-256 AB:CD:EF\r\n");
    assert_eq!(fingerprint_of(&twice), None);
    assert_eq!(fingerprint_of("v=0\r\n"), None);
    assert_eq!(fingerprint_of("a=fingerprint:   \r\n"), None);
}

#[test]
fn fingerprints_compare_without_case() {
    assert!(same_fingerprint("sha-256 ab:cd", "SHA-256 AB:CD"));
    assert!(same_fingerprint("sha-256  AB:CD ", "sha-256 AB:CD"));
    assert!(!same_fingerprint("sha-256 AB:CD", "sha-256 AB:CE"));
    assert!(!same_fingerprint("sha-1 AB:CD", "sha-256 AB:CD"));
}

/// A tab whose ntor key is signed (so it may answer introductions).
fn ready_tab(now: u64) -> super::TabPeer {
    use crate::sim::SimKey;
    let mut rng = crate::rng::SimRng::new(11);
    let key = SimKey::generate(&mut rng);
    let config = super::TabConfig::new(key.spki.clone());
    let mut tab = super::TabPeer::new(config, &mut rng, now).unwrap();
    while let Some(e) = tab.poll_event() {
        if let super::TabEvent::Sign { request, message } = e {
            tab.handle_signature(request, Ok(key.sign(&message)), now);
        }
    }
    tab
}

/// A linked peer floods FIND_NODE (a 1-cell request, a ~4 KB answer;
/// control cells have no SENDME window): the tab answers a burst, then
/// at the link's rate, and counts the rest as refused. Another link has
/// its own budget.
#[test]
fn control_messages_are_served_at_a_bounded_rate_per_link() {
    use super::{CONTROL_BURST, CONTROL_PER_SECOND};
    use crate::cell::ControlMessage;
    use crate::crypto::PeerId;
    use crate::peer::core::CoreEvent;
    use crate::router::{CircuitKey, RouterEvent};
    let mut tab = ready_tab(1_000);
    let find = |link, circ| {
        CoreEvent::Router(RouterEvent::Control {
            circuit: CircuitKey { link, circ },
            message: ControlMessage::FindNode {
                target: PeerId([9; 20]),
            },
        })
    };
    for i in 0..200 {
        tab.on_core_event(find(7, i));
    }
    let burst = u64::from(CONTROL_BURST);
    assert_eq!(tab.refused().control_messages, 200 - burst);
    tab.on_core_event(find(8, 1));
    assert_eq!(
        tab.refused().control_messages,
        200 - burst,
        "its own budget"
    );
    tab.now += 1_000;
    for i in 0..100 {
        tab.on_core_event(find(7, 300 + i));
    }
    let per_second = u64::from(CONTROL_PER_SECOND);
    assert_eq!(
        tab.refused().control_messages,
        200 - burst + 100 - per_second
    );
}

/// Offers from many askers at once (each answer would make an
/// RTCPeerConnection): a burst is answered, the rest get an empty answer
/// until the rate allows more.
#[test]
fn introductions_are_answered_at_a_bounded_rate() {
    use super::links::Reply;
    use super::{INTRODUCTIONS_PER_SECOND, INTRODUCTION_BURST};
    use crate::crypto::PeerId;
    let mut tab = ready_tab(1_000);
    // Offers refused for what they are cost no token.
    for i in 0..50u8 {
        tab.answer(PeerId([200 + i % 50; 20]), "v=0\r\n", Reply::Bridge);
    }
    assert_eq!(tab.refused().introductions, 0);
    let offer = "v=0\r\na=fingerprint:sha-256 AB:CD:EF\r\n";
    let askers = u64::from(INTRODUCTION_BURST) + 4;
    for i in 0..askers {
        tab.answer(PeerId([i as u8 + 1; 20]), offer, Reply::Bridge);
    }
    assert_eq!(tab.refused().introductions, 4);
    let accepted = std::iter::from_fn(|| tab.poll_event())
        .filter(|e| matches!(e, super::TabEvent::AcceptOffer { .. }))
        .count();
    assert_eq!(accepted as u64, u64::from(INTRODUCTION_BURST));
    tab.now += 2_000;
    for i in 0..4u8 {
        tab.answer(PeerId([100 + i; 20]), offer, Reply::Bridge);
    }
    let more = u64::from(INTRODUCTIONS_PER_SECOND) * 2;
    assert_eq!(tab.refused().introductions, 4 + 4 - more);
}

/// The NETINFO a tab sends on a link another tab opened carries no clock
/// (timestamp 0) and no addresses.
#[test]
fn a_tab_link_netinfo_tells_no_time() {
    use crate::cell::{command, CircIdLen, Netinfo, Versions};
    use crate::channel::decode_frame;
    let mut responder = super::links::tab_link_responder(
        [1; 32],
        crate::cell::Certs { certs: Vec::new() },
        crate::crypto::PeerId([2; 20]),
        "sha-256 AB:CD".into(),
    );
    let versions = Versions::new(&[4, 5])
        .to_cell()
        .to_bytes(CircIdLen::Two)
        .unwrap();
    responder.handle_frame(&versions).unwrap();
    let frame = responder.poll_transmit().unwrap();
    let cells = decode_frame(&frame, CircIdLen::Two, |_| CircIdLen::Four).unwrap();
    let netinfo = cells
        .iter()
        .find(|c| c.command == command::NETINFO)
        .unwrap();
    let netinfo = Netinfo::from_cell(netinfo).unwrap();
    assert_eq!(netinfo.timestamp, 0);
    assert!(netinfo.my_addrs.is_empty() && netinfo.other_addr.is_none());
}
