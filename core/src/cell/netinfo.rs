//! NETINFO (tor-spec §4.5): timestamp, the address the sender sees for the
//! receiver, and the sender's own addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{command, CellError, RawCell, Reader};

const ADDR_TYPE_IPV4: u8 = 4;
const ADDR_TYPE_IPV6: u8 = 6;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netinfo {
    /// Seconds since the Unix epoch; clients send 0 to avoid fingerprinting.
    pub timestamp: u32,
    /// The receiver's address as the sender sees it, when it is an IP.
    pub other_addr: Option<IpAddr>,
    pub my_addrs: Vec<IpAddr>,
}

fn encode_addr(addr: Option<&IpAddr>, out: &mut Vec<u8>) {
    match addr {
        Some(IpAddr::V4(a)) => {
            out.extend_from_slice(&[ADDR_TYPE_IPV4, 4]);
            out.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            out.extend_from_slice(&[ADDR_TYPE_IPV6, 16]);
            out.extend_from_slice(&a.octets());
        }
        // Type 4, length 4, 0.0.0.0: "no address known", as C tor clients send.
        None => out.extend_from_slice(&[ADDR_TYPE_IPV4, 4, 0, 0, 0, 0]),
    }
}

/// Reads one address; unknown types are skipped (`None`), per tor-spec §4.5.
fn decode_addr(r: &mut Reader<'_>) -> Result<Option<IpAddr>, CellError> {
    let atype = r.u8()?;
    let len = usize::from(r.u8()?);
    Ok(match (atype, len) {
        (ADDR_TYPE_IPV4, 4) => {
            let a = Ipv4Addr::from(r.array::<4>()?);
            (!a.is_unspecified()).then_some(IpAddr::V4(a))
        }
        (ADDR_TYPE_IPV6, 16) => Some(IpAddr::V6(Ipv6Addr::from(r.array::<16>()?))),
        (ADDR_TYPE_IPV4, _) | (ADDR_TYPE_IPV6, _) => {
            return Err(CellError::Malformed {
                what: "NETINFO",
                why: "address length does not match its type",
            })
        }
        _ => {
            r.take(len)?;
            None
        }
    })
}

impl Netinfo {
    pub fn to_cell(&self) -> Result<RawCell, CellError> {
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(&self.timestamp.to_be_bytes());
        encode_addr(self.other_addr.as_ref(), &mut body);
        let n = u8::try_from(self.my_addrs.len())
            .map_err(|_| CellError::TooLong(self.my_addrs.len()))?;
        body.push(n);
        for a in &self.my_addrs {
            encode_addr(Some(a), &mut body);
        }
        Ok(RawCell::new(0, command::NETINFO, body))
    }

    pub fn from_cell(cell: &RawCell) -> Result<Self, CellError> {
        cell.expect_command(command::NETINFO)?;
        let mut r = Reader::new(&cell.body);
        let timestamp = r.u32()?;
        let other_addr = decode_addr(&mut r)?;
        let n = r.u8()?;
        let mut my_addrs = Vec::new();
        for _ in 0..n {
            if let Some(a) = decode_addr(&mut r)? {
                my_addrs.push(a);
            }
        }
        Ok(Netinfo {
            timestamp,
            other_addr,
            my_addrs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::CircIdLen;

    #[test]
    fn round_trip_through_wire_form() {
        let n = Netinfo {
            timestamp: 0x5f5e_1000,
            other_addr: Some("127.0.0.1".parse().unwrap()),
            my_addrs: vec!["127.0.0.2".parse().unwrap(), "::1".parse().unwrap()],
        };
        let bytes = n.to_cell().unwrap().to_bytes(CircIdLen::Four).unwrap();
        let mut input = &bytes[..];
        let cell = RawCell::decode(&mut input, CircIdLen::Four).unwrap();
        assert_eq!(Netinfo::from_cell(&cell).unwrap(), n);
    }

    #[test]
    fn unknown_address_types_are_skipped_and_bad_lengths_refused() {
        // timestamp, other = type 9 len 2, one my-addr of type 4 len 4.
        let body = vec![0, 0, 0, 1, 9, 2, 0xaa, 0xbb, 1, 4, 4, 10, 0, 0, 1];
        let n = Netinfo::from_cell(&RawCell::new(0, command::NETINFO, body)).unwrap();
        assert_eq!(n.other_addr, None);
        assert_eq!(n.my_addrs, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        let bad = vec![0, 0, 0, 1, 4, 3, 1, 2, 3, 0];
        assert!(Netinfo::from_cell(&RawCell::new(0, command::NETINFO, bad)).is_err());
    }
}
