//! Tests only: a private CA (rcgen) and an in-memory TLS server (rustls)
//! to run `https` downloads against, without sockets.

use std::io::{Read, Write};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};

pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().as_ref().to_vec()
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server whose certificate, issued by this CA, names `names`
    /// (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> TestServer {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let leaf = params.signed_by(&key, &self.issuer).unwrap();
        let chain = vec![leaf.der().clone(), CertificateDer::from(self.der())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        TestServer {
            conn: ServerConnection::new(Arc::new(config)).unwrap(),
            received: Vec::new(),
        }
    }
}

pub(crate) struct TestServer {
    conn: ServerConnection,
    /// Plaintext the client sent.
    pub received: Vec<u8>,
}

impl TestServer {
    /// Ciphertext from the client; a TLS error is returned as text.
    pub fn feed(&mut self, mut cipher: &[u8]) -> Result<(), String> {
        while !cipher.is_empty() {
            self.conn.read_tls(&mut cipher).map_err(|e| e.to_string())?;
            self.conn.process_new_packets().map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4096];
            while let Ok(n) = self.conn.reader().read(&mut buf) {
                if n == 0 {
                    break;
                }
                self.received.extend_from_slice(&buf[..n]);
            }
        }
        Ok(())
    }

    pub fn send(&mut self, plain: &[u8]) {
        self.conn.writer().write_all(plain).unwrap();
    }

    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    pub fn take_outgoing(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut out).unwrap();
        }
        out
    }
}
