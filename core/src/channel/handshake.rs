//! Either side of a link handshake behind one face, so every runtime has
//! one loop that drives a handshake over its transport: send what
//! `poll_transmit` gives, answer `SignatureNeeded` with `handle_signature`,
//! feed frames to `handle_frame`, until `Open`.

use std::net::IpAddr;

use crate::cell::RawCell;
use crate::circuit::LinkSide;

use super::tor_certs::{BridgeIdentity, RelayIdentity};
use super::{
    AuthenticatedPeer, ChannelError, InitiatorEvent, LinkInitiator, LinkResponder, ResponderEvent,
};

pub enum Handshake {
    Initiator(Box<LinkInitiator>),
    Responder(Box<LinkResponder>),
}

/// What the other end proved, once the link is open.
#[derive(Debug, Clone)]
pub struct LinkOpened {
    /// Which side of the link we are.
    pub side: LinkSide,
    pub link_version: u16,
    /// Our address as the responder saw it (initiators only).
    pub our_address: Option<IpAddr>,
    /// A Tor relay's identities (initiator with `ResponderCheck::TorRelay`).
    pub relay: Option<RelayIdentity>,
    /// A bridge's identities and ntor key (`ResponderCheck::Bridge`).
    pub bridge: Option<Box<BridgeIdentity>>,
    /// A peer that proved its identity key: the initiator, to a responder
    /// (when it authenticated); the responder, to an initiator that asked
    /// for one (`ResponderCheck::Peer`).
    pub peer: Option<AuthenticatedPeer>,
}

#[derive(Debug, Clone)]
pub enum HandshakeEvent {
    /// Sign with the identity key (RSASSA-PKCS1-v1_5, SHA-256), then
    /// `handle_signature`.
    SignatureNeeded(Vec<u8>),
    Open(Box<LinkOpened>),
    /// A cell that came after the handshake (possibly in its last frame).
    Cell(RawCell),
}

/// Everything a handshake produced since last asked.
#[derive(Debug, Default)]
pub struct HandshakeOutput {
    /// Frames to send, in order.
    pub frames: Vec<Vec<u8>>,
    /// Sign this and `handle_signature` (initiators that authenticate).
    pub to_sign: Option<Vec<u8>>,
    /// The link is open: what the other end proved.
    pub opened: Option<Box<LinkOpened>>,
    /// Cells that came with the end of the handshake.
    pub early: Vec<RawCell>,
}

impl Handshake {
    /// Takes every frame and event waiting, for adapters that act on them
    /// together (the tab; the simulation's bridges).
    pub fn take_output(&mut self) -> HandshakeOutput {
        let mut out = HandshakeOutput::default();
        while let Some(f) = self.poll_transmit() {
            out.frames.push(f);
        }
        while let Some(e) = self.poll_event() {
            match e {
                HandshakeEvent::SignatureNeeded(m) => out.to_sign = Some(m),
                HandshakeEvent::Open(o) => out.opened = Some(o),
                HandshakeEvent::Cell(c) => out.early.push(c),
            }
        }
        out
    }

    pub fn initiator(h: LinkInitiator) -> Self {
        Handshake::Initiator(Box::new(h))
    }

    pub fn responder(h: LinkResponder) -> Self {
        Handshake::Responder(Box::new(h))
    }

    pub fn side(&self) -> LinkSide {
        match self {
            Handshake::Initiator(_) => LinkSide::Initiator,
            Handshake::Responder(_) => LinkSide::Responder,
        }
    }

    pub fn is_open(&self) -> bool {
        match self {
            Handshake::Initiator(h) => h.is_open(),
            Handshake::Responder(h) => h.is_open(),
        }
    }

    pub fn handle_frame(&mut self, frame: &[u8]) -> Result<(), ChannelError> {
        match self {
            Handshake::Initiator(h) => h.handle_frame(frame),
            Handshake::Responder(h) => h.handle_frame(frame),
        }
    }

    pub fn handle_signature(&mut self, signature: Vec<u8>) -> Result<(), ChannelError> {
        match self {
            Handshake::Initiator(h) => h.handle_signature(signature),
            Handshake::Responder(_) => Err(ChannelError::NoSignaturePending),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        match self {
            Handshake::Initiator(h) => h.poll_transmit(),
            Handshake::Responder(h) => h.poll_transmit(),
        }
    }

    pub fn poll_event(&mut self) -> Option<HandshakeEvent> {
        match self {
            Handshake::Initiator(h) => Some(match h.poll_event()? {
                InitiatorEvent::SignatureNeeded(m) => HandshakeEvent::SignatureNeeded(m),
                InitiatorEvent::Cell(c) => HandshakeEvent::Cell(c),
                InitiatorEvent::Open {
                    link_version,
                    our_address,
                    relay,
                    bridge,
                    ..
                } => {
                    let peer = h.peer_key().map(|key| AuthenticatedPeer {
                        id: key.id(),
                        key: key.clone(),
                        ntor_key: h.peer_ntor_key(),
                    });
                    HandshakeEvent::Open(Box::new(LinkOpened {
                        side: LinkSide::Initiator,
                        link_version,
                        our_address,
                        relay,
                        bridge,
                        peer,
                    }))
                }
            }),
            Handshake::Responder(h) => Some(match h.poll_event()? {
                ResponderEvent::Cell(c) => HandshakeEvent::Cell(c),
                ResponderEvent::Open { link_version, peer } => {
                    HandshakeEvent::Open(Box::new(LinkOpened {
                        side: LinkSide::Responder,
                        link_version,
                        our_address: None,
                        relay: None,
                        bridge: None,
                        peer,
                    }))
                }
            }),
        }
    }
}
