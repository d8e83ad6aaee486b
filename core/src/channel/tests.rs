//! Both handshake state machines driven against each other, plus the
//! failures each must turn into a closed link rather than a panic.

use rsa::pkcs8::EncodePublicKey;
use rsa::sha2::Sha256;
use rsa::traits::PublicKeyParts;
use rsa::{Generate, PrivateKey};

use super::*;
use crate::cell::{
    auth_method, cert_type, command, CertEntry, Certs, CircIdLen, RawCell, Versions,
};

fn key() -> (PrivateKey, Vec<u8>) {
    let private = PrivateKey::generate();
    let spki = private
        .to_public_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    (private, spki)
}

fn responder() -> LinkResponder {
    LinkResponder::new(
        [42; 32],
        1_700_000_000,
        Some("127.0.0.1".parse().unwrap()),
        vec![],
    )
}

/// Moves frames both ways until neither side has anything to send,
/// answering signature requests with `private`; returns the initiator's
/// other events.
fn run(
    initiator: &mut LinkInitiator,
    responder: &mut LinkResponder,
    private: Option<&PrivateKey>,
) -> Vec<InitiatorEvent> {
    let mut events = Vec::new();
    loop {
        let mut moved = false;
        while let Some(f) = initiator.poll_transmit() {
            responder.handle_frame(&f).unwrap();
            moved = true;
        }
        while let Some(f) = responder.poll_transmit() {
            initiator.handle_frame(&f).unwrap();
            moved = true;
        }
        while let Some(e) = initiator.poll_event() {
            if let InitiatorEvent::SignatureNeeded(m) = e {
                let sig = private.unwrap().pkcs1v15_sign::<Sha256>(&m).unwrap();
                initiator.handle_signature(sig).unwrap();
                moved = true;
            } else {
                events.push(e);
            }
        }
        if !moved {
            return events;
        }
    }
}

#[test]
fn authenticated_handshake_yields_the_initiators_id() {
    let (private, spki) = key();
    let mut i = LinkInitiator::new(Some(spki.clone()), ResponderCheck::None).unwrap();
    let mut r = responder();
    let events = run(&mut i, &mut r, Some(&private));
    assert!(matches!(
        events[..],
        [InitiatorEvent::Open {
            authenticated: true,
            ..
        }]
    ));
    assert!(i.is_open() && r.is_open());
    assert_eq!(i.link_version(), Some(5));
    match r.poll_event() {
        Some(ResponderEvent::Open {
            link_version: 5,
            peer: Some(p),
        }) => {
            assert_eq!(p.id, crate::crypto::PeerId::from_spki(&spki));
            assert_eq!(
                p.key.modulus().len() * 8,
                private.as_public_key().n().bit_width() as usize
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // Cells now flow both ways on the open link.
    i.send_cells(&[RawCell::new(5, command::PADDING, vec![])])
        .unwrap();
    r.handle_frame(&i.poll_transmit().unwrap()).unwrap();
    assert!(matches!(r.poll_event(), Some(ResponderEvent::Cell(c)) if c.circ_id == 5));
}

#[test]
fn anonymous_initiator_opens_without_identity() {
    let mut i = LinkInitiator::new(None, ResponderCheck::None).unwrap();
    let mut r = responder();
    let events = run(&mut i, &mut r, None);
    assert!(matches!(
        r.poll_event(),
        Some(ResponderEvent::Open { peer: None, .. })
    ));
    let mut saw_open = false;
    for e in events {
        if let InitiatorEvent::Open {
            our_address,
            authenticated,
            ..
        } = e
        {
            assert_eq!(our_address, Some("127.0.0.1".parse().unwrap()));
            assert!(!authenticated);
            saw_open = true;
        }
    }
    assert!(saw_open);
}

/// Runs the handshake up to the responder's challenge and returns the frame
/// an honest initiator would send after it, so tests can tamper with it.
fn responder_after_versions() -> LinkResponder {
    let mut r = responder();
    let versions = Versions::new(&[4, 5])
        .to_cell()
        .to_bytes(CircIdLen::Two)
        .unwrap();
    r.handle_frame(&versions).unwrap();
    assert!(r.poll_transmit().is_some());
    r
}

fn netinfo_cell() -> RawCell {
    crate::cell::Netinfo {
        timestamp: 0,
        other_addr: None,
        my_addrs: vec![],
    }
    .to_cell()
    .unwrap()
}

#[test]
fn wrong_signature_is_refused() {
    let (_, spki) = key();
    let (other_private, _) = key();
    let mut r = responder_after_versions();
    let message = peersm_auth_message(
        &[42; 32],
        &crate::crypto::PeerId::from_spki(&spki),
        &responder_certs_digest(None),
    );
    let forged = other_private.pkcs1v15_sign::<Sha256>(&message).unwrap();
    let cells = [
        Certs {
            certs: vec![CertEntry {
                cert_type: cert_type::PEERSM_RSA_SPKI,
                body: spki,
            }],
        }
        .to_cell()
        .unwrap(),
        crate::cell::Authenticate {
            method: auth_method::PEERSM_RSA_SHA256,
            authentication: forged,
        }
        .to_cell()
        .unwrap(),
        netinfo_cell(),
    ];
    let frame = encode_cells(&cells, CircIdLen::Four).unwrap();
    assert!(matches!(r.handle_frame(&frame), Err(ChannelError::Auth(_))));
    assert!(!r.is_open());
    assert_eq!(r.handle_frame(&frame), Err(ChannelError::Closed));
}

#[test]
fn certs_without_authenticate_is_refused() {
    let (_, spki) = key();
    let mut r = responder_after_versions();
    let cells = [
        Certs {
            certs: vec![CertEntry {
                cert_type: cert_type::PEERSM_RSA_SPKI,
                body: spki,
            }],
        }
        .to_cell()
        .unwrap(),
        netinfo_cell(),
    ];
    let frame = encode_cells(&cells, CircIdLen::Four).unwrap();
    assert_eq!(r.handle_frame(&frame), Err(ChannelError::MissingIdentity));
}

#[test]
fn out_of_order_and_unknown_versions_are_refused() {
    let mut r = responder();
    let frame = netinfo_cell().to_bytes(CircIdLen::Two).unwrap();
    assert!(matches!(
        r.handle_frame(&frame),
        Err(ChannelError::UnexpectedCell { .. })
    ));

    let mut r = responder();
    let old = Versions::new(&[1, 2, 3])
        .to_cell()
        .to_bytes(CircIdLen::Two)
        .unwrap();
    assert_eq!(
        r.handle_frame(&old),
        Err(ChannelError::NoCommonVersion(vec![1, 2, 3]))
    );

    let mut i = LinkInitiator::new(None, ResponderCheck::None).unwrap();
    i.poll_transmit();
    let relay = RawCell::new(1, command::RELAY, vec![])
        .to_bytes(CircIdLen::Two)
        .unwrap();
    assert!(i.handle_frame(&relay).is_err());
}

#[test]
fn garbage_never_panics_either_side() {
    let mut seed = 0x1234_5678u32;
    for len in 0..600 {
        let frame: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let _ = responder().handle_frame(&frame);
        let _ = responder_after_versions().handle_frame(&frame);
        let _ = LinkInitiator::new(None, ResponderCheck::None)
            .unwrap()
            .handle_frame(&frame);
    }
}

/// A tab's WebRTC link: both ends prove their IDs and bind them to the
/// DTLS fingerprints of the SDPs (PEERSM_DTLS_BINDING).
mod webrtc_links {
    use super::*;
    use crate::crypto::PeerId;

    const FP_A: &str = "sha-256 AA:AA:AA";
    const FP_B: &str = "sha-256 BB:BB:BB";

    fn binding(private: &PrivateKey, fp: &str) -> CertEntry {
        let sig = private
            .pkcs1v15_sign::<Sha256>(&dtls_binding_message(fp))
            .unwrap();
        CertEntry {
            cert_type: cert_type::PEERSM_DTLS_BINDING,
            body: dtls_binding_cert(fp, &sig).unwrap(),
        }
    }

    struct Tab {
        private: PrivateKey,
        spki: Vec<u8>,
        id: PeerId,
    }

    fn tab() -> Tab {
        let (private, spki) = key();
        Tab {
            id: PeerId::from_spki(&spki),
            private,
            spki,
        }
    }

    /// `a` offers to the peer it believes is `expected_b`; `b` answers
    /// believing it talks to `expected_a`. Returns both sides' outcome.
    fn link(
        a: &Tab,
        b: &Tab,
        expected_b: PeerId,
        expected_a: PeerId,
        b_binds: &str,
    ) -> (
        Result<(), ChannelError>,
        Result<Option<PeerId>, ChannelError>,
    ) {
        let check = ResponderCheck::Peer {
            id: expected_b,
            dtls_fingerprint: FP_B.into(),
        };
        let mut init = LinkInitiator::new(Some(a.spki.clone()), check)
            .unwrap()
            .with_extra_certs(vec![binding(&a.private, FP_A)]);
        let certs = Certs {
            certs: vec![
                CertEntry {
                    cert_type: cert_type::PEERSM_RSA_SPKI,
                    body: b.spki.clone(),
                },
                binding(&b.private, b_binds),
            ],
        };
        let mut resp = responder()
            .with_certs(certs)
            .expect_peer(expected_a, FP_A.into());
        let mut init_result = Ok(());
        let mut resp_result = Ok(None);
        for _ in 0..10 {
            while let Some(f) = init.poll_transmit() {
                if let Err(e) = resp.handle_frame(&f) {
                    resp_result = Err(e);
                }
            }
            while let Some(f) = resp.poll_transmit() {
                if let Err(e) = init.handle_frame(&f) {
                    init_result = Err(e);
                }
            }
            while let Some(e) = init.poll_event() {
                if let InitiatorEvent::SignatureNeeded(m) = e {
                    let sig = a.private.pkcs1v15_sign::<Sha256>(&m).unwrap();
                    if let Err(e) = init.handle_signature(sig) {
                        init_result = Err(e);
                    }
                }
            }
            while let Some(e) = resp.poll_event() {
                if let ResponderEvent::Open { peer, .. } = e {
                    resp_result = Ok(peer.map(|p| p.id));
                }
            }
        }
        (init_result, resp_result)
    }

    #[test]
    fn both_ends_prove_their_ids_bound_to_dtls() {
        let (a, b) = (tab(), tab());
        let (init, resp) = link(&a, &b, b.id, a.id, FP_B);
        init.unwrap();
        assert_eq!(resp.unwrap(), Some(a.id));
    }

    #[test]
    fn a_forged_introduction_cannot_link_another_id() {
        let (a, b, c) = (tab(), tab(), tab());
        // a asked for c; whoever answers proves b: a refuses.
        let (init, _) = link(&a, &b, c.id, a.id, FP_B);
        assert!(matches!(init, Err(ChannelError::WrongPeer(_))), "{init:?}");
        // b was told a wants it, but c offers: b refuses.
        let (_, resp) = link(&c, &b, b.id, a.id, FP_B);
        assert!(matches!(resp, Err(ChannelError::WrongPeer(_))), "{resp:?}");
    }

    #[test]
    fn a_binding_to_another_dtls_certificate_is_refused() {
        let (a, b) = (tab(), tab());
        let (init, _) = link(&a, &b, b.id, a.id, "sha-256 CC:CC:CC");
        assert!(
            matches!(init, Err(ChannelError::DtlsBinding(_))),
            "{init:?}"
        );
    }
}

/// A bridge's CERTS for the relayed-challenge test: any body names it.
fn bridge_certs(name: u8) -> Certs {
    Certs {
        certs: vec![CertEntry {
            cert_type: cert_type::PEERSM_RSA_SPKI,
            body: vec![name; 40],
        }],
    }
}

/// A malicious bridge M relays an honest bridge B's AUTH_CHALLENGE to a
/// tab that links to M, then replays everything the tab sent to B: were
/// the signature only over the challenge and the tab's ID, B would take
/// M's link as the tab's own (and evict its real one). The tab signs the
/// digest of the CERTS it was shown, M's, so B refuses.
#[test]
fn a_challenge_relayed_from_another_responder_does_not_authenticate_there() {
    let (private, spki) = key();
    let challenge = [9; 32];
    let mut honest =
        LinkResponder::new(challenge, 1_700_000_000, None, vec![]).with_certs(bridge_certs(0xb));
    let mut middle =
        LinkResponder::new(challenge, 1_700_000_000, None, vec![]).with_certs(bridge_certs(0xa));
    let mut tab = LinkInitiator::new(Some(spki), ResponderCheck::None).unwrap();
    // The tab and M, with every frame the tab sends kept.
    let mut sent = Vec::new();
    loop {
        let mut moved = false;
        while let Some(f) = tab.poll_transmit() {
            middle.handle_frame(&f).unwrap();
            sent.push(f);
            moved = true;
        }
        while let Some(f) = middle.poll_transmit() {
            tab.handle_frame(&f).unwrap();
            moved = true;
        }
        while let Some(e) = tab.poll_event() {
            if let InitiatorEvent::SignatureNeeded(m) = e {
                let sig = private.pkcs1v15_sign::<Sha256>(&m).unwrap();
                tab.handle_signature(sig).unwrap();
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    assert!(tab.is_open() && middle.is_open(), "the tab linked to M");
    // M replays the tab's frames to B, whose challenge the tab signed.
    let replayed: Result<Vec<()>, ChannelError> =
        sent.iter().map(|f| honest.handle_frame(f)).collect();
    assert!(
        matches!(replayed, Err(ChannelError::Auth(_))),
        "B refuses: {replayed:?}"
    );
    assert!(!honest.is_open());
}
