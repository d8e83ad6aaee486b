//! EXTEND2 / EXTENDED2 (tor-spec §5.1.2) and link specifiers: how a client
//! asks a relay to extend a circuit to the next hop.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::create::{Create2, Created2};
use super::{CellError, Reader};

/// Link specifier types (tor-spec §5.1.2).
pub mod link_spec_type {
    pub const IPV4: u8 = 0;
    pub const IPV6: u8 = 1;
    pub const LEGACY_ID: u8 = 2;
    pub const ED25519_ID: u8 = 3;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkSpec {
    Addr(SocketAddr),
    /// SHA-1 of the relay's RSA identity key (DER PKCS#1).
    LegacyId([u8; 20]),
    Ed25519Id([u8; 32]),
    /// A type we do not know, kept so it can be passed on unchanged.
    Unrecognized {
        kind: u8,
        body: Vec<u8>,
    },
}

impl LinkSpec {
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), CellError> {
        let (kind, body): (u8, Vec<u8>) = match self {
            LinkSpec::Addr(SocketAddr::V4(a)) => {
                let mut b = a.ip().octets().to_vec();
                b.extend_from_slice(&a.port().to_be_bytes());
                (link_spec_type::IPV4, b)
            }
            LinkSpec::Addr(SocketAddr::V6(a)) => {
                let mut b = a.ip().octets().to_vec();
                b.extend_from_slice(&a.port().to_be_bytes());
                (link_spec_type::IPV6, b)
            }
            LinkSpec::LegacyId(id) => (link_spec_type::LEGACY_ID, id.to_vec()),
            LinkSpec::Ed25519Id(id) => (link_spec_type::ED25519_ID, id.to_vec()),
            LinkSpec::Unrecognized { kind, body } => (*kind, body.clone()),
        };
        let len = u8::try_from(body.len()).map_err(|_| CellError::TooLong(body.len()))?;
        out.push(kind);
        out.push(len);
        out.extend_from_slice(&body);
        Ok(())
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, CellError> {
        let kind = r.u8()?;
        let len = usize::from(r.u8()?);
        let body = r.take(len)?;
        let mut b = Reader::new(body);
        let bad = CellError::Malformed {
            what: "link specifier",
            why: "length does not match its type",
        };
        let spec = match (kind, len) {
            (link_spec_type::IPV4, 6) => LinkSpec::Addr(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(b.array::<4>()?),
                b.u16()?,
            ))),
            (link_spec_type::IPV6, 18) => LinkSpec::Addr(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(b.array::<16>()?),
                b.u16()?,
                0,
                0,
            ))),
            (link_spec_type::LEGACY_ID, 20) => LinkSpec::LegacyId(b.array()?),
            (link_spec_type::ED25519_ID, 32) => LinkSpec::Ed25519Id(b.array()?),
            (link_spec_type::IPV4..=link_spec_type::ED25519_ID, _) => return Err(bad),
            _ => LinkSpec::Unrecognized {
                kind,
                body: body.to_vec(),
            },
        };
        Ok(spec)
    }
}

/// EXTEND2 relay message: NSPEC | specs | CREATE2 body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extend2 {
    pub link_specs: Vec<LinkSpec>,
    pub create: Create2,
}

impl Extend2 {
    pub fn encode(&self) -> Result<Vec<u8>, CellError> {
        let n = u8::try_from(self.link_specs.len())
            .map_err(|_| CellError::TooLong(self.link_specs.len()))?;
        let mut out = vec![n];
        for s in &self.link_specs {
            s.encode_into(&mut out)?;
        }
        self.create.encode_into(&mut out)?;
        Ok(out)
    }

    pub fn decode(body: &[u8]) -> Result<Self, CellError> {
        let mut r = Reader::new(body);
        let n = r.u8()?;
        let mut link_specs = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            link_specs.push(LinkSpec::read(&mut r)?);
        }
        Ok(Extend2 {
            link_specs,
            create: Create2::read(&mut r)?,
        })
    }

    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.link_specs.iter().filter_map(|s| match s {
            LinkSpec::Addr(a) => Some(*a),
            _ => None,
        })
    }

    pub fn legacy_id(&self) -> Option<[u8; 20]> {
        self.link_specs.iter().find_map(|s| match s {
            LinkSpec::LegacyId(id) => Some(*id),
            _ => None,
        })
    }

    pub fn ed25519_id(&self) -> Option<[u8; 32]> {
        self.link_specs.iter().find_map(|s| match s {
            LinkSpec::Ed25519Id(id) => Some(*id),
            _ => None,
        })
    }
}

/// EXTENDED2 has the CREATED2 body.
pub type Extended2 = Created2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::create::handshake_type;

    #[test]
    fn extend2_round_trip_with_every_specifier() {
        let e = Extend2 {
            link_specs: vec![
                LinkSpec::Addr("127.0.0.1:5000".parse().unwrap()),
                LinkSpec::Addr("[::1]:443".parse().unwrap()),
                LinkSpec::LegacyId([1; 20]),
                LinkSpec::Ed25519Id([2; 32]),
                LinkSpec::Unrecognized {
                    kind: 9,
                    body: vec![1, 2, 3],
                },
            ],
            create: Create2 {
                handshake_type: handshake_type::NTOR,
                handshake: vec![3; 84],
            },
        };
        let bytes = e.encode().unwrap();
        assert_eq!(&bytes[..9], &[5, 0, 6, 127, 0, 0, 1, 0x13, 0x88]);
        let back = Extend2::decode(&bytes).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.legacy_id(), Some([1; 20]));
        assert_eq!(back.addresses().count(), 2);
    }

    #[test]
    fn wrong_lengths_and_truncation_fail() {
        assert!(Extend2::decode(&[1, 0, 5, 1, 2, 3, 4, 5, 0, 2, 0, 0]).is_err());
        assert!(Extend2::decode(&[1, 2, 20, 1, 2]).is_err());
        assert!(Extend2::decode(&[]).is_err());
    }
}
