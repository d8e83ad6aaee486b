//! CERTS (tor-spec §4.2): a list of typed certificates. This module only
//! frames the list; `crate::crypto` interprets each certificate type.

use super::{command, CellError, RawCell, Reader};

/// Certificate types carried in CERTS. Tor's own types (tor-spec §4.2,
/// cert-spec §A.1) come with the Tor protocol work; Peersm adds its own from
/// 0x80 up (docs/PROTOCOL.md).
pub mod cert_type {
    /// The DER SubjectPublicKeyInfo of a Peersm session identity key (RSA).
    pub const PEERSM_RSA_SPKI: u8 = 0x80;
    /// A bridge's ntor onion key, certified by its Ed25519 signing key in
    /// cert-spec's Ed25519 certificate format (key type
    /// `PEERSM_NTOR_KEY_TYPE`): over a WebSocket there is no TLS
    /// certificate to bind, so tabs authenticate the bridge through an
    /// ntor handshake with this key instead.
    pub const PEERSM_BRIDGE_NTOR: u8 = 0x81;
    /// The certified-key type of `PEERSM_BRIDGE_NTOR`: a Curve25519 key.
    pub const PEERSM_NTOR_KEY_TYPE: u8 = 0x81;
    /// A tab's DTLS certificate fingerprint on a WebRTC link, signed by
    /// its identity key (`crate::channel::dtls_binding`).
    pub const PEERSM_DTLS_BINDING: u8 = 0x82;
    /// A tab's ntor onion key, signed by its identity key
    /// (`crate::channel::ntor_key_cert`): other tabs build circuits
    /// through it with ntor.
    pub const PEERSM_NTOR_KEY: u8 = 0x83;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertEntry {
    pub cert_type: u8,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Certs {
    pub certs: Vec<CertEntry>,
}

impl Certs {
    pub fn to_cell(&self) -> Result<RawCell, CellError> {
        let n = u8::try_from(self.certs.len()).map_err(|_| CellError::TooLong(self.certs.len()))?;
        let mut body = vec![n];
        for c in &self.certs {
            let len = u16::try_from(c.body.len()).map_err(|_| CellError::TooLong(c.body.len()))?;
            body.push(c.cert_type);
            body.extend_from_slice(&len.to_be_bytes());
            body.extend_from_slice(&c.body);
        }
        Ok(RawCell::new(0, command::CERTS, body))
    }

    pub fn from_cell(cell: &RawCell) -> Result<Self, CellError> {
        cell.expect_command(command::CERTS)?;
        let mut r = Reader::new(&cell.body);
        let n = r.u8()?;
        let mut certs = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let cert_type = r.u8()?;
            let len = usize::from(r.u16()?);
            let body = r.take(len)?.to_vec();
            if certs.iter().any(|c: &CertEntry| c.cert_type == cert_type) {
                // tor-spec §4.2: a certificate type may appear only once.
                return Err(CellError::Malformed {
                    what: "CERTS",
                    why: "duplicate certificate type",
                });
            }
            certs.push(CertEntry { cert_type, body });
        }
        Ok(Certs { certs })
    }

    pub fn get(&self, cert_type: u8) -> Option<&[u8]> {
        self.certs
            .iter()
            .find(|c| c.cert_type == cert_type)
            .map(|c| c.body.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let certs = Certs {
            certs: vec![
                CertEntry {
                    cert_type: 4,
                    body: vec![1; 10],
                },
                CertEntry {
                    cert_type: cert_type::PEERSM_RSA_SPKI,
                    body: vec![2; 300],
                },
            ],
        };
        let back = Certs::from_cell(&certs.to_cell().unwrap()).unwrap();
        assert_eq!(back, certs);
        assert_eq!(back.get(cert_type::PEERSM_RSA_SPKI).unwrap().len(), 300);
        assert_eq!(back.get(7), None);
    }

    #[test]
    fn duplicates_and_truncation_are_errors() {
        let dup = RawCell::new(0, command::CERTS, vec![2, 4, 0, 1, 9, 4, 0, 1, 9]);
        assert!(Certs::from_cell(&dup).is_err());
        let short = RawCell::new(0, command::CERTS, vec![1, 4, 0, 9, 1]);
        assert!(Certs::from_cell(&short).is_err());
    }
}
