//! The initiator side of the link handshake (tor-spec §4): sends VERSIONS,
//! reads the responder's VERSIONS, CERTS, AUTH_CHALLENGE and NETINFO, then
//! (when the responder offers the Peersm method) proves its identity with
//! CERTS + AUTHENTICATE before its own NETINFO. A relay opening a channel to
//! another relay proves its relay identities instead (`tor_auth`).

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::cell::{
    auth_method, cert_type, command, AuthChallenge, Authenticate, CertEntry, Certs, CircIdLen,
    Netinfo, RawCell, Versions,
};
use crate::crypto::PeerId;
use sha2::{Digest, Sha256};

use super::tor_auth::{
    authenticate_body, RelayAuthConfig, ResponderFacts, Transcript,
    AUTH_METHOD_ED25519_SHA256_RFC5705,
};
use super::tor_certs::{verify_bridge_certs, verify_relay_certs, BridgeIdentity, RelayIdentity};
use super::{
    decode_frame, encode_cells, peersm_auth_message, responder_certs_digest, ChannelError,
    LINK_VERSIONS,
};

/// What the initiator requires of the responder's CERTS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponderCheck {
    /// Nothing: the responder stays unverified.
    None,
    /// A Tor relay over TLS: its certificates must prove its identities and
    /// certify `tls_cert` (DER), the certificate of this TLS connection.
    TorRelay {
        tls_cert: Vec<u8>,
        /// Unix seconds, for expiry checks.
        now: i64,
        rsa_id: Option<[u8; 20]>,
        ed25519_id: Option<[u8; 32]>,
    },
    /// A Peersm bridge over WebSocket: identity certificates plus its
    /// certified ntor key (`verify_bridge_certs`), optionally a known RSA
    /// identity.
    Bridge { now: i64, rsa_id: Option<[u8; 20]> },
    /// Another tab over WebRTC: its CERTS must hold the identity `id`
    /// (PEERSM_RSA_SPKI) and bind it to `dtls_fingerprint`, the remote
    /// fingerprint of this connection's SDP (PEERSM_DTLS_BINDING).
    Peer {
        id: PeerId,
        dtls_fingerprint: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitiatorEvent {
    /// Sign these bytes with the identity key (RSASSA-PKCS1-v1_5, SHA-256)
    /// and pass the result to `handle_signature`.
    SignatureNeeded(Vec<u8>),
    /// The handshake is complete; the link carries cells from now on.
    Open {
        link_version: u16,
        /// Our address as the responder sees it (its NETINFO).
        our_address: Option<IpAddr>,
        authenticated: bool,
        /// The responder's proven identities (with `ResponderCheck::TorRelay`).
        relay: Option<RelayIdentity>,
        /// The bridge's proven identities and ntor key (with
        /// `ResponderCheck::Bridge`), boxed to keep events small.
        bridge: Option<Box<BridgeIdentity>>,
    },
    /// A cell on the open link.
    Cell(RawCell),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitVersions,
    AwaitResponderNetinfo,
    AwaitSignature,
    Open,
    Failed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::AwaitVersions => "awaiting VERSIONS",
            State::AwaitResponderNetinfo => "awaiting the responder's NETINFO",
            State::AwaitSignature => "awaiting our signature",
            State::Open => "open",
            State::Failed => "failed",
        }
    }
}

pub struct LinkInitiator {
    state: State,
    identity_spki: Option<Vec<u8>>,
    check: ResponderCheck,
    relay: Option<RelayIdentity>,
    bridge: Option<BridgeIdentity>,
    link_version: u16,
    challenge: Option<AuthChallenge>,
    /// Digest of the responder's CERTS cell (one only), bound into our
    /// signature.
    responder_certs: Option<[u8; 32]>,
    responder_netinfo: Option<Netinfo>,
    /// Set when we authenticate as a Tor relay (a relay's outbound channels).
    relay_auth: Option<RelayAuthConfig>,
    /// What the responder sent, and its digest once AUTH_CHALLENGE came
    /// (AUTH0003's SLOG); what we sent (CLOG).
    slog: Transcript,
    slog_at_challenge: Option<[u8; 32]>,
    clog: Transcript,
    /// Certificates sent along with ours when we authenticate (a tab's DTLS
    /// binding on WebRTC links).
    extra_certs: Vec<CertEntry>,
    /// The responder's proven identity (`ResponderCheck::Peer`).
    peer_key: Option<crate::crypto::RsaIdentityKey>,
    /// The responder's ntor key and its signature, when its CERTS
    /// published one (tabs).
    peer_ntor: Option<([u8; 32], Vec<u8>)>,
    /// Cells that arrived while we waited for our signature.
    held: Vec<RawCell>,
    outbox: VecDeque<Vec<u8>>,
    events: VecDeque<InitiatorEvent>,
}

impl LinkInitiator {
    /// Starts a handshake; `identity_spki` is our identity's DER SPKI when we
    /// want to authenticate (tabs do), `None` to stay anonymous (an OP);
    /// `check` says what the responder must prove.
    pub fn new(
        identity_spki: Option<Vec<u8>>,
        check: ResponderCheck,
    ) -> Result<Self, ChannelError> {
        let versions = Versions::new(LINK_VERSIONS)
            .to_cell()
            .to_bytes(CircIdLen::Two)?;
        let mut clog = Transcript::default();
        clog.record(&versions);
        Ok(LinkInitiator {
            state: State::AwaitVersions,
            identity_spki,
            check,
            relay: None,
            bridge: None,
            link_version: 0,
            challenge: None,
            responder_certs: None,
            responder_netinfo: None,
            relay_auth: None,
            extra_certs: Vec::new(),
            peer_key: None,
            peer_ntor: None,
            slog: Transcript::default(),
            slog_at_challenge: None,
            clog,
            held: Vec::new(),
            outbox: VecDeque::from([versions]),
            events: VecDeque::new(),
        })
    }

    /// Sends `certs` with our identity certificate when we authenticate.
    pub fn with_extra_certs(mut self, certs: Vec<CertEntry>) -> Self {
        self.extra_certs = certs;
        self
    }

    /// The responder's ntor key (`PEERSM_NTOR_KEY`), once verified.
    pub fn peer_ntor_key(&self) -> Option<([u8; 32], Vec<u8>)> {
        self.peer_ntor.clone()
    }

    /// The responder's identity key, once proven (`ResponderCheck::Peer`).
    pub fn peer_key(&self) -> Option<&crate::crypto::RsaIdentityKey> {
        self.peer_key.as_ref()
    }

    /// Authenticate as a Tor relay (AUTH0003) when the responder offers it;
    /// needs `ResponderCheck::TorRelay`.
    pub fn with_relay_auth(mut self, cfg: RelayAuthConfig) -> Self {
        self.relay_auth = Some(cfg);
        self
    }

    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    pub fn link_version(&self) -> Option<u16> {
        (self.link_version != 0).then_some(self.link_version)
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<InitiatorEvent> {
        self.events.pop_front()
    }

    /// Feeds one frame received from the responder. An error means the link
    /// must be closed; the state machine refuses further input.
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
        let mut cell_width = width;
        for cell in cells {
            if self.slog_at_challenge.is_none() {
                // A decoded cell re-encodes to its exact wire bytes.
                self.slog.record(&cell.to_bytes(cell_width)?);
            }
            cell_width = CircIdLen::Four;
            let is_challenge = cell.command == command::AUTH_CHALLENGE;
            self.process_cell(cell)?;
            if is_challenge && self.slog_at_challenge.is_none() {
                self.slog_at_challenge = Some(self.slog.digest());
            }
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
                self.state = State::AwaitResponderNetinfo;
            }
            (State::AwaitResponderNetinfo, command::VPADDING) => {}
            (State::AwaitResponderNetinfo, command::CERTS) if self.responder_certs.is_none() => {
                let certs = Certs::from_cell(&cell)?;
                self.responder_certs = Some(responder_certs_digest(Some(&cell.body)));
                match &self.check {
                    ResponderCheck::TorRelay {
                        tls_cert,
                        now,
                        rsa_id,
                        ed25519_id,
                    } => {
                        self.relay = Some(verify_relay_certs(
                            &certs,
                            tls_cert,
                            *now,
                            rsa_id.as_ref(),
                            ed25519_id.as_ref(),
                        )?);
                    }
                    ResponderCheck::Bridge { now, rsa_id } => {
                        self.bridge = Some(verify_bridge_certs(&certs, *now, rsa_id.as_ref())?);
                    }
                    ResponderCheck::Peer {
                        id,
                        dtls_fingerprint,
                    } => {
                        let spki = certs
                            .get(cert_type::PEERSM_RSA_SPKI)
                            .ok_or(ChannelError::MissingIdentity)?;
                        let key = crate::crypto::RsaIdentityKey::from_spki(spki)?;
                        if key.id() != *id {
                            return Err(ChannelError::WrongPeer(key.id().to_hex()));
                        }
                        let binding = certs
                            .get(cert_type::PEERSM_DTLS_BINDING)
                            .ok_or(ChannelError::DtlsBinding("missing"))?;
                        super::verify_dtls_binding(binding, dtls_fingerprint, &key)?;
                        if let Some(body) = certs.get(cert_type::PEERSM_NTOR_KEY) {
                            let ntor = super::verify_ntor_key_cert(body, &key)?;
                            let sig = body.get(32..).unwrap_or_default().to_vec();
                            self.peer_ntor = Some((ntor, sig));
                        }
                        self.peer_key = Some(key);
                    }
                    ResponderCheck::None => {}
                }
            }
            (State::AwaitResponderNetinfo, command::AUTH_CHALLENGE) => {
                self.challenge = Some(AuthChallenge::from_cell(&cell)?);
            }
            (State::AwaitResponderNetinfo, command::NETINFO) => {
                let unproven = match self.check {
                    ResponderCheck::TorRelay { .. } => self.relay.is_none(),
                    ResponderCheck::Bridge { .. } => self.bridge.is_none(),
                    ResponderCheck::Peer { .. } => self.peer_key.is_none(),
                    ResponderCheck::None => false,
                };
                if unproven {
                    return Err(ChannelError::MissingIdentity);
                }
                self.responder_netinfo = Some(Netinfo::from_cell(&cell)?);
                self.after_responder_netinfo()?;
            }
            (State::AwaitSignature, _) => self.held.push(cell),
            (State::Open, _) => self.events.push_back(InitiatorEvent::Cell(cell)),
            (state, command) => {
                return Err(ChannelError::UnexpectedCell {
                    state: state.name(),
                    command,
                })
            }
        }
        Ok(())
    }

    fn after_responder_netinfo(&mut self) -> Result<(), ChannelError> {
        let relay_auth_offered = self
            .challenge
            .as_ref()
            .is_some_and(|c| c.methods.contains(&AUTH_METHOD_ED25519_SHA256_RFC5705));
        if let (Some(cfg), Some(relay), true) =
            (self.relay_auth.clone(), self.relay, relay_auth_offered)
        {
            return self.authenticate_as_relay(&cfg, &relay);
        }
        let offered = self
            .challenge
            .as_ref()
            .is_some_and(|c| c.methods.contains(&auth_method::PEERSM_RSA_SHA256));
        match (&self.identity_spki, &self.challenge) {
            (Some(spki), Some(challenge)) if offered => {
                let message = peersm_auth_message(
                    &challenge.challenge,
                    &PeerId::from_spki(spki),
                    &self
                        .responder_certs
                        .unwrap_or_else(|| responder_certs_digest(None)),
                );
                self.state = State::AwaitSignature;
                self.events
                    .push_back(InitiatorEvent::SignatureNeeded(message));
                Ok(())
            }
            _ => self.finish(Vec::new(), false),
        }
    }

    /// tor-spec §4.4.2: CERTS, then AUTHENTICATE over both transcripts.
    fn authenticate_as_relay(
        &mut self,
        cfg: &RelayAuthConfig,
        relay: &RelayIdentity,
    ) -> Result<(), ChannelError> {
        let certs = cfg.certs.to_cell()?;
        self.clog.record(&certs.to_bytes(CircIdLen::Four)?);
        let ResponderCheck::TorRelay { tls_cert, .. } = &self.check else {
            return Err(ChannelError::MissingIdentity);
        };
        let facts = ResponderFacts {
            sid: relay.rsa_key_sha256,
            sid_ed: relay.ed25519_id,
            slog: self
                .slog_at_challenge
                .ok_or(ChannelError::MissingIdentity)?,
            clog: self.clog.digest(),
            scert: Sha256::digest(tls_cert).into(),
        };
        let mut rand = [0u8; 24];
        getrandom::fill(&mut rand).map_err(|_| ChannelError::NoRandomness)?;
        let auth = Authenticate {
            method: AUTH_METHOD_ED25519_SHA256_RFC5705,
            authentication: authenticate_body(cfg, &facts, rand),
        };
        self.finish(vec![certs, auth.to_cell()?], true)
    }

    /// Supplies the signature asked for by `SignatureNeeded`.
    pub fn handle_signature(&mut self, signature: Vec<u8>) -> Result<(), ChannelError> {
        if self.state != State::AwaitSignature {
            return Err(ChannelError::NoSignaturePending);
        }
        let spki = self
            .identity_spki
            .clone()
            .ok_or(ChannelError::MissingIdentity)?;
        let mut certs = Certs {
            certs: vec![CertEntry {
                cert_type: cert_type::PEERSM_RSA_SPKI,
                body: spki,
            }],
        };
        certs.certs.extend(self.extra_certs.iter().cloned());
        let auth = Authenticate {
            method: auth_method::PEERSM_RSA_SHA256,
            authentication: signature,
        };
        let result = self.finish(vec![certs.to_cell()?, auth.to_cell()?], true);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn finish(&mut self, mut cells: Vec<RawCell>, authenticated: bool) -> Result<(), ChannelError> {
        // Clients send a zero timestamp and no addresses of their own
        // (tor-spec §4.5), so NETINFO reveals nothing about this tab.
        cells.push(
            Netinfo {
                timestamp: 0,
                other_addr: None,
                my_addrs: Vec::new(),
            }
            .to_cell()?,
        );
        self.outbox
            .push_back(encode_cells(&cells, CircIdLen::Four)?);
        self.state = State::Open;
        let our_address = self.responder_netinfo.as_ref().and_then(|n| n.other_addr);
        self.events.push_back(InitiatorEvent::Open {
            link_version: self.link_version,
            our_address,
            authenticated,
            relay: self.relay,
            bridge: self.bridge.map(Box::new),
        });
        for cell in std::mem::take(&mut self.held) {
            self.events.push_back(InitiatorEvent::Cell(cell));
        }
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
