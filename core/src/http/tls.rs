//! TLS inside a stream, for `https://` fetches: the client speaks TLS
//! (rustls, RFC 8446 and RFC 5246) end to end with the server, so the exit
//! relays ciphertext and learns only the host name it connects to (and the
//! SNI, which every client sends). Certificates are checked against the
//! web PKI roots (webpki-roots, Mozilla's list) and any anchors the caller
//! adds (`peer.fetch(url, { ca: [pem] })`).
//!
//! Sans IO: ciphertext goes in with `feed`, plaintext comes out, and the
//! bytes to send are taken with `take_outgoing`. The wall clock that
//! certificates are checked against is given by the caller (`set_time`),
//! so the core reads no clock of its own.
//!
//! Every session is independent: no session tickets or resumption, so two
//! fetches (on different circuits, by design) cannot be linked by the
//! server through TLS state.

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::HttpError;

/// Trust and time for the TLS sessions of one download: the configuration
/// (roots, protocol versions) is built once and shared by its sessions.
#[derive(Clone)]
pub struct TlsSettings {
    config: Arc<ClientConfig>,
    clock: Arc<WallClock>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSettings")
    }
}

/// The time certificates are checked against: set by the caller before a
/// session starts (seconds since the Unix epoch).
#[derive(Debug, Default)]
struct WallClock(AtomicU64);

impl rustls::time_provider::TimeProvider for WallClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            self.0.load(Ordering::Relaxed),
        )))
    }
}

/// Parses PEM text holding one or more certificates (`-----BEGIN
/// CERTIFICATE-----`) into DER.
pub fn certificates_from_pem(pem: &str) -> Result<Vec<Vec<u8>>, HttpError> {
    let mut out = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| HttpError::Tls(format!("ca: unreadable PEM ({e})")))?;
        out.push(cert.as_ref().to_vec());
    }
    if out.is_empty() {
        return Err(HttpError::Tls(
            "ca: no \"-----BEGIN CERTIFICATE-----\" block in the PEM text".into(),
        ));
    }
    Ok(out)
}

impl TlsSettings {
    /// The web PKI roots plus `extra_anchors` (DER certificates, used as
    /// trust anchors as they are).
    pub fn new(extra_anchors: &[Vec<u8>]) -> Result<TlsSettings, HttpError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for (i, der) in extra_anchors.iter().enumerate() {
            roots.add(CertificateDer::from(der.clone())).map_err(|e| {
                HttpError::Tls(format!(
                    "ca: certificate {} cannot be a trust anchor ({e})",
                    i + 1
                ))
            })?;
        }
        let clock = Arc::new(WallClock::default());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_details(provider, clock.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsSettings {
            config: Arc::new(config),
            clock,
        })
    }

    /// Sets the wall clock (ms since the Unix epoch) for the sessions to
    /// come.
    pub fn set_time(&self, now_ms: u64) {
        self.clock.0.store(now_ms / 1000, Ordering::Relaxed);
    }

    /// A new session with `host` (a DNS name or an IP address literal).
    pub fn connect(&self, host: &str) -> Result<TlsStream, HttpError> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| HttpError::Tls(format!("{host:?} is not a name TLS can check")))?;
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| HttpError::Tls(e.to_string()))?;
        Ok(TlsStream {
            conn,
            host: host.to_string(),
            closed: false,
        })
    }
}

/// One TLS session over one stream.
pub struct TlsStream {
    conn: ClientConnection,
    host: String,
    /// The server sent close_notify: what came before is all there is.
    closed: bool,
}

impl TlsStream {
    /// Plaintext to send once the handshake allows (buffered until then).
    pub fn write(&mut self, plain: &[u8]) -> Result<(), HttpError> {
        self.conn
            .writer()
            .write_all(plain)
            .map_err(|e| HttpError::Tls(e.to_string()))
    }

    /// Ciphertext to put on the stream now.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut out).is_err() {
                break;
            }
        }
        out
    }

    /// Ciphertext from the stream; returns the plaintext it carried. An
    /// error (a bad certificate, a bad record) ends the session.
    pub fn feed(&mut self, mut cipher: &[u8]) -> Result<Vec<u8>, HttpError> {
        let mut plain = Vec::new();
        // `read_tls` takes what its buffer holds and advances `cipher`;
        // processing after each call makes room for the next.
        while !cipher.is_empty() {
            match self.conn.read_tls(&mut cipher) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(HttpError::Tls(e.to_string())),
            }
            self.conn
                .process_new_packets()
                .map_err(|e| self.explain(e))?;
            self.drain_plaintext(&mut plain)?;
        }
        Ok(plain)
    }

    fn drain_plaintext(&mut self, plain: &mut Vec<u8>) -> Result<(), HttpError> {
        let mut buf = [0u8; 8192];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    return Ok(());
                }
                Ok(n) => plain.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                // EOF without close_notify is judged at the stream's end.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(HttpError::Tls(e.to_string())),
            }
        }
    }

    /// Whether the server closed the session properly (close_notify): a
    /// response framed by the end of the connection is complete only then,
    /// or the exit could cut it short unnoticed.
    pub fn closed_cleanly(&self) -> bool {
        self.closed
    }

    /// "TLS 1.3, TLS13_AES_128_GCM_SHA256" once the handshake is done.
    pub fn describe(&self) -> Option<String> {
        let version = self.conn.protocol_version()?;
        let suite = self.conn.negotiated_cipher_suite()?;
        let version = match version {
            rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".to_string(),
            rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".to_string(),
            v => format!("{v:?}"),
        };
        Some(format!("{version}, {:?}", suite.suite()))
    }

    /// A rustls error, in words for the user.
    fn explain(&self, e: rustls::Error) -> HttpError {
        use rustls::CertificateError as C;
        let host = &self.host;
        let why = match &e {
            rustls::Error::InvalidCertificate(C::UnknownIssuer) => format!(
                "the certificate of {host} is not signed by a trusted authority \
(for a private CA, pass it with {{ ca: [pem] }})"
            ),
            rustls::Error::InvalidCertificate(C::NotValidForName)
            | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
                format!("the certificate presented is not valid for {host}")
            }
            rustls::Error::InvalidCertificate(C::Expired)
            | rustls::Error::InvalidCertificate(C::ExpiredContext { .. }) => {
                format!("the certificate of {host} has expired")
            }
            rustls::Error::InvalidCertificate(C::NotValidYet)
            | rustls::Error::InvalidCertificate(C::NotValidYetContext { .. }) => {
                format!("the certificate of {host} is not valid yet")
            }
            rustls::Error::InvalidCertificate(other) => {
                format!("the certificate of {host} is refused ({other:?})")
            }
            other => format!("TLS with {host} failed: {other}"),
        };
        HttpError::Tls(why)
    }
}
