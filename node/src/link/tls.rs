//! TLS for Tor links (tor-spec §2): relays present self-signed certificates,
//! so the TLS layer accepts any certificate (still checking that the peer
//! holds its key) and hands the certificate up; the CERTS cell then proves
//! which relay it belongs to. A TLS link is a byte stream: `TlsRx` cuts
//! it into frames of whole cells (the first cell, VERSIONS, has a 2-byte
//! circuit id); `TlsTx` writes and flushes each batch.

use std::net::SocketAddr;
use std::sync::Arc;

use peersm_core::channel::whole_cells_len;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{FrameRx, FrameTx};
use crate::error::{NodeError, Result};

/// Largest read from the socket at once.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Identity comes from the CERTS cell, which must certify this very
        // certificate (channel::tor_certs).
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connector() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports the default TLS versions"))
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

pub type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;
pub type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;

/// Opens TCP + TLS to a relay; returns the stream and the relay's TLS
/// certificate (DER).
pub async fn connect(addr: SocketAddr) -> std::io::Result<(ClientTls, Vec<u8>)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    // An IP server name: rustls sends no SNI, like C tor clients' anonymous hellos.
    let stream = connector()
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await?;
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| std::io::Error::other("relay presented no TLS certificate"))?;
    Ok((stream, cert))
}

/// The reading half of a TLS link, cut into frames of whole cells.
pub struct TlsRx<S> {
    reader: ReadHalf<S>,
    buf: Vec<u8>,
    at_start: bool,
}

/// The writing half: each frame is written and flushed (TLS holds records
/// until flushed).
pub struct TlsTx<S> {
    writer: WriteHalf<S>,
}

/// Splits a TLS stream into a link's two halves.
pub fn split<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S) -> (TlsRx<S>, TlsTx<S>) {
    let (reader, writer) = tokio::io::split(stream);
    (
        TlsRx {
            reader,
            buf: Vec::new(),
            at_start: true,
        },
        TlsTx { writer },
    )
}

impl<S: AsyncRead + Send> FrameRx for TlsRx<S> {
    async fn recv(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            // A frame holds whole cells and at most MAX_FRAME_LEN bytes.
            let window = self.buf.len().min(peersm_core::channel::MAX_FRAME_LEN);
            let whole = whole_cells_len(self.buf.get(..window).unwrap_or_default(), self.at_start);
            if whole > 0 {
                self.at_start = false;
                let rest = self.buf.split_off(whole);
                return Ok(Some(std::mem::replace(&mut self.buf, rest)));
            }
            if self.buf.len() > peersm_core::channel::MAX_FRAME_LEN {
                return Err(NodeError::invalid("cell", "longer than any cell may be"));
            }
            // Read straight into the buffer (cancel-safe: nothing is lost
            // if this future is dropped while waiting).
            self.buf.reserve(READ_CHUNK);
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

impl<S: AsyncWrite + Send + 'static> FrameTx for TlsTx<S> {
    async fn send(&mut self, frame: Vec<u8>) -> Result<()> {
        self.writer.write_all(&frame).await?;
        self.writer.flush().await?;
        Ok(())
    }

    fn cells_per_frame(&self) -> Option<usize> {
        None
    }

    async fn close(&mut self, _: Option<super::LinkEnd>) {
        let _ = self.writer.shutdown().await;
    }
}
