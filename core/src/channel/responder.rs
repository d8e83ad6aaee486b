//! The responder side of the link handshake (tor-spec §4): answers VERSIONS
//! with VERSIONS, AUTH_CHALLENGE and NETINFO in one frame, then accepts the
//! initiator's optional CERTS + AUTHENTICATE and its NETINFO.

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::cell::{
    auth_method, cert_type, command, AuthChallenge, Authenticate, Certs, CircIdLen, Netinfo,
    RawCell, Versions, AUTH_CHALLENGE_LEN,
};
use crate::crypto::{PeerId, RsaIdentityKey};

use super::{
    decode_frame, encode_cells, peersm_auth_message, responder_certs_digest, ChannelError,
    LINK_VERSIONS,
};

/// An initiator that proved it holds the identity key it presented.
#[derive(Debug, Clone)]
pub struct AuthenticatedPeer {
    pub id: PeerId,
    pub key: RsaIdentityKey,
    /// Its ntor key and the identity's signature over it, when its CERTS
    /// published one (`PEERSM_NTOR_KEY`).
    pub ntor_key: Option<([u8; 32], Vec<u8>)>,
}

#[derive(Debug, Clone)]
pub enum ResponderEvent {
    Open {
        link_version: u16,
        /// `None` when the initiator chose not to authenticate.
        peer: Option<AuthenticatedPeer>,
    },
    Cell(RawCell),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitVersions,
    AwaitInitiatorNetinfo,
    Open,
    Failed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::AwaitVersions => "awaiting VERSIONS",
            State::AwaitInitiatorNetinfo => "awaiting the initiator's NETINFO",
            State::Open => "open",
            State::Failed => "failed",
        }
    }
}

pub struct LinkResponder {
    state: State,
    challenge: [u8; AUTH_CHALLENGE_LEN],
    unix_time: u32,
    peer_addr: Option<IpAddr>,
    my_addrs: Vec<IpAddr>,
    link_version: u16,
    presented_key: Option<RsaIdentityKey>,
    authenticated: Option<AuthenticatedPeer>,
    /// Our own certificates, for Tor relays (sent after VERSIONS).
    our_certs: Option<Certs>,
    /// Digest of the CERTS cell we sent, which the initiator signs.
    our_certs_digest: [u8; 32],
    /// On a WebRTC link: the initiator must be this peer and bind its
    /// identity to this DTLS fingerprint (from the remote SDP).
    expected_peer: Option<(PeerId, String)>,
    /// The initiator's PEERSM_DTLS_BINDING, checked at AUTHENTICATE.
    presented_binding: Option<Vec<u8>>,
    presented_ntor: Option<Vec<u8>>,
    outbox: VecDeque<Vec<u8>>,
    events: VecDeque<ResponderEvent>,
}

impl LinkResponder {
    /// `challenge` must be fresh random bytes; `unix_time` goes in NETINFO;
    /// `peer_addr` is the initiator's address as we see it.
    pub fn new(
        challenge: [u8; AUTH_CHALLENGE_LEN],
        unix_time: u32,
        peer_addr: Option<IpAddr>,
        my_addrs: Vec<IpAddr>,
    ) -> Self {
        LinkResponder {
            state: State::AwaitVersions,
            challenge,
            unix_time,
            peer_addr,
            my_addrs,
            link_version: 0,
            presented_key: None,
            authenticated: None,
            our_certs: None,
            our_certs_digest: responder_certs_digest(None),
            expected_peer: None,
            presented_binding: None,
            presented_ntor: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Presents `certs` (a Tor relay's CERTS) in the handshake.
    pub fn with_certs(mut self, certs: Certs) -> Self {
        self.our_certs = Some(certs);
        self
    }

    /// Requires the initiator to authenticate as `peer` and to bind that
    /// identity to `dtls_fingerprint` (WebRTC links between tabs).
    pub fn expect_peer(mut self, peer: PeerId, dtls_fingerprint: String) -> Self {
        self.expected_peer = Some((peer, dtls_fingerprint));
        self
    }

    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ResponderEvent> {
        self.events.pop_front()
    }

    pub fn handle_frame(&mut self, frame: &[u8]) -> Result<(), ChannelError> {
        if self.state == State::Failed {
            return Err(ChannelError::Closed);
        }
        let result = self.process_frame(frame);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn process_frame(&mut self, frame: &[u8]) -> Result<(), ChannelError> {
        let width = if self.state == State::AwaitVersions {
            CircIdLen::Two
        } else {
            CircIdLen::Four
        };
        let cells = decode_frame(frame, width, |_| CircIdLen::Four)?;
        for cell in cells {
            self.process_cell(cell)?;
        }
        Ok(())
    }

    fn process_cell(&mut self, cell: RawCell) -> Result<(), ChannelError> {
        match (self.state, cell.command) {
            (State::AwaitVersions, command::VERSIONS) => {
                let theirs = Versions::from_cell(&cell)?;
                self.link_version = theirs
                    .best_common(LINK_VERSIONS)
                    .ok_or_else(|| ChannelError::NoCommonVersion(theirs.versions.clone()))?;
                self.send_handshake()?;
                self.state = State::AwaitInitiatorNetinfo;
            }
            (State::AwaitInitiatorNetinfo, command::VPADDING) => {}
            (State::AwaitInitiatorNetinfo, command::CERTS) if self.presented_key.is_none() => {
                // Only a Peersm identity certificate matters here; a Tor
                // relay's certificates are ignored and it stays anonymous.
                let certs = Certs::from_cell(&cell)?;
                if let Some(spki) = certs.get(cert_type::PEERSM_RSA_SPKI) {
                    self.presented_key = Some(RsaIdentityKey::from_spki(spki)?);
                }
                self.presented_binding = certs
                    .get(cert_type::PEERSM_DTLS_BINDING)
                    .map(<[u8]>::to_vec);
                self.presented_ntor = certs.get(cert_type::PEERSM_NTOR_KEY).map(<[u8]>::to_vec);
            }
            (State::AwaitInitiatorNetinfo, command::AUTHENTICATE)
                if self.authenticated.is_none() =>
            {
                self.authenticate(&cell)?;
            }
            (State::AwaitInitiatorNetinfo, command::NETINFO) => {
                // Parsed for validity; a client's NETINFO carries nothing we use.
                Netinfo::from_cell(&cell)?;
                if self.presented_key.is_some() && self.authenticated.is_none() {
                    // CERTS without AUTHENTICATE proves nothing (tor-spec §4.4).
                    return Err(ChannelError::MissingIdentity);
                }
                if self.expected_peer.is_some() && self.authenticated.is_none() {
                    return Err(ChannelError::MissingIdentity);
                }
                self.state = State::Open;
                self.events.push_back(ResponderEvent::Open {
                    link_version: self.link_version,
                    peer: self.authenticated.clone(),
                });
            }
            (State::Open, _) => self.events.push_back(ResponderEvent::Cell(cell)),
            (state, command) => {
                return Err(ChannelError::UnexpectedCell {
                    state: state.name(),
                    command,
                })
            }
        }
        Ok(())
    }

    fn send_handshake(&mut self) -> Result<(), ChannelError> {
        let mut frame = Versions::new(LINK_VERSIONS)
            .to_cell()
            .to_bytes(CircIdLen::Two)?;
        if let Some(certs) = &self.our_certs {
            let cell = certs.to_cell()?;
            self.our_certs_digest = responder_certs_digest(Some(&cell.body));
            cell.encode_into(CircIdLen::Four, &mut frame)?;
        }
        let challenge = AuthChallenge {
            challenge: self.challenge,
            methods: vec![auth_method::PEERSM_RSA_SHA256],
        };
        let netinfo = Netinfo {
            timestamp: self.unix_time,
            other_addr: self.peer_addr,
            my_addrs: self.my_addrs.clone(),
        };
        frame.extend(encode_cells(
            &[challenge.to_cell()?, netinfo.to_cell()?],
            CircIdLen::Four,
        )?);
        self.outbox.push_back(frame);
        Ok(())
    }

    fn authenticate(&mut self, cell: &RawCell) -> Result<(), ChannelError> {
        let auth = Authenticate::from_cell(cell)?;
        if auth.method != auth_method::PEERSM_RSA_SHA256 {
            return Err(ChannelError::UnsupportedAuthMethod(auth.method));
        }
        let key = self
            .presented_key
            .clone()
            .ok_or(ChannelError::MissingIdentity)?;
        let message = peersm_auth_message(&self.challenge, &key.id(), &self.our_certs_digest);
        key.verify_pkcs1v15_sha256(&message, &auth.authentication)?;
        if let Some((peer, fingerprint)) = &self.expected_peer {
            if key.id() != *peer {
                return Err(ChannelError::WrongPeer(key.id().to_hex()));
            }
            let binding = self
                .presented_binding
                .as_deref()
                .ok_or(ChannelError::DtlsBinding("missing"))?;
            super::verify_dtls_binding(binding, fingerprint, &key)?;
        }
        let ntor_key = match &self.presented_ntor {
            Some(body) => Some((
                super::verify_ntor_key_cert(body, &key)?,
                body.get(32..).unwrap_or_default().to_vec(),
            )),
            None => None,
        };
        self.authenticated = Some(AuthenticatedPeer {
            id: key.id(),
            key,
            ntor_key,
        });
        Ok(())
    }

    /// Queues cells to send on the open link, as one frame.
    pub fn send_cells(&mut self, cells: &[RawCell]) -> Result<(), ChannelError> {
        if self.state != State::Open {
            return Err(ChannelError::Closed);
        }
        self.outbox.push_back(encode_cells(cells, CircIdLen::Four)?);
        Ok(())
    }
}
