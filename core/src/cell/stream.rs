//! Stream relay messages (tor-spec §6.2–6.3, §7.4): BEGIN, CONNECTED, END
//! and SENDME.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{CellError, Reader};

/// RELAY_END reasons (tor-spec §6.3).
pub mod end_reason {
    pub const MISC: u8 = 1;
    pub const RESOLVEFAILED: u8 = 2;
    pub const CONNECTREFUSED: u8 = 3;
    pub const EXITPOLICY: u8 = 4;
    pub const DESTROY: u8 = 5;
    pub const DONE: u8 = 6;
    pub const TIMEOUT: u8 = 7;
    pub const NOROUTE: u8 = 8;
    pub const HIBERNATING: u8 = 9;
    pub const INTERNAL: u8 = 10;
    pub const RESOURCELIMIT: u8 = 11;
    pub const CONNRESET: u8 = 12;
    pub const TORPROTOCOL: u8 = 13;
    pub const NOTDIRECTORY: u8 = 14;

    /// What an END reason means, for error messages (tor-spec §6.3).
    pub fn describe(reason: u8) -> &'static str {
        match reason {
            MISC => "unspecified failure at the exit",
            RESOLVEFAILED => "the exit could not resolve the host name",
            CONNECTREFUSED => "the server refused the connection",
            EXITPOLICY => "the exit's policy does not allow this address and port",
            DESTROY => "the circuit was closed",
            DONE => "the stream was closed",
            TIMEOUT => "the connection timed out",
            NOROUTE => "no route to the host",
            HIBERNATING => "the relay is hibernating",
            INTERNAL => "internal error at the relay",
            RESOURCELIMIT => "the relay is out of resources",
            CONNRESET => "the connection was reset",
            TORPROTOCOL => "protocol violation",
            NOTDIRECTORY => "the relay is not a directory",
            _ => "unknown reason",
        }
    }
}

/// RELAY_BEGIN: "host:port\0" and optional 4-byte flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Begin {
    pub host: String,
    pub port: u16,
    pub flags: u32,
}

impl Begin {
    pub fn encode(&self) -> Vec<u8> {
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut out = format!("{}:{}", host, self.port).into_bytes();
        out.push(0);
        if self.flags != 0 {
            out.extend_from_slice(&self.flags.to_be_bytes());
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, CellError> {
        let bad = |why| CellError::Malformed { what: "BEGIN", why };
        let nul = body
            .iter()
            .position(|b| *b == 0)
            .ok_or(bad("no NUL after address"))?;
        let (addr, rest) = body.split_at(nul);
        let addr = std::str::from_utf8(addr).map_err(|_| bad("address is not UTF-8"))?;
        let (host, port) = addr.rsplit_once(':').ok_or(bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let mut r = Reader::new(rest.get(1..).unwrap_or_default());
        let flags = if r.remaining() >= 4 { r.u32()? } else { 0 };
        Ok(Begin {
            host: host.to_string(),
            port,
            flags,
        })
    }
}

/// RELAY_CONNECTED: empty (BEGIN_DIR) or the address connected to and a TTL.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Connected {
    pub addr: Option<(IpAddr, u32)>,
}

impl Connected {
    pub fn encode(&self) -> Vec<u8> {
        match self.addr {
            None => Vec::new(),
            Some((IpAddr::V4(a), ttl)) => {
                let mut out = a.octets().to_vec();
                out.extend_from_slice(&ttl.to_be_bytes());
                out
            }
            Some((IpAddr::V6(a), ttl)) => {
                let mut out = vec![0, 0, 0, 0, 6];
                out.extend_from_slice(&a.octets());
                out.extend_from_slice(&ttl.to_be_bytes());
                out
            }
        }
    }

    pub fn decode(body: &[u8]) -> Result<Self, CellError> {
        if body.is_empty() {
            return Ok(Connected::default());
        }
        let mut r = Reader::new(body);
        let v4 = Ipv4Addr::from(r.array::<4>()?);
        if !v4.is_unspecified() {
            return Ok(Connected {
                addr: Some((IpAddr::V4(v4), r.u32()?)),
            });
        }
        if r.u8()? != 6 {
            return Err(CellError::Malformed {
                what: "CONNECTED",
                why: "unknown address type",
            });
        }
        let v6 = Ipv6Addr::from(r.array::<16>()?);
        Ok(Connected {
            addr: Some((IpAddr::V6(v6), r.u32()?)),
        })
    }
}

/// RELAY_END: the reason (extra address data for EXITPOLICY is ignored).
pub fn end_reason_of(body: &[u8]) -> u8 {
    // tor-spec §6.3: an END with no reason means MISC.
    body.first().copied().unwrap_or(end_reason::MISC)
}

/// RELAY_SENDME (tor-spec §7.4, prop 289): version 0 is empty; version 1
/// carries the 20-byte digest of the cell that triggered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sendme {
    V0,
    V1 { digest: [u8; 20] },
}

impl Sendme {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Sendme::V0 => Vec::new(),
            Sendme::V1 { digest } => {
                let mut out = vec![1, 0, 20];
                out.extend_from_slice(digest);
                out
            }
        }
    }

    pub fn decode(body: &[u8]) -> Result<Self, CellError> {
        if body.is_empty() {
            return Ok(Sendme::V0);
        }
        let mut r = Reader::new(body);
        match r.u8()? {
            0 => Ok(Sendme::V0),
            1 => {
                let len = usize::from(r.u16()?);
                let data = r.take(len)?;
                let digest =
                    data.get(..20)
                        .and_then(|d| d.try_into().ok())
                        .ok_or(CellError::Malformed {
                            what: "SENDME",
                            why: "v1 digest shorter than 20 bytes",
                        })?;
                Ok(Sendme::V1 { digest })
            }
            _ => Err(CellError::Malformed {
                what: "SENDME",
                why: "unknown version",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_round_trips_including_ipv6_and_flags() {
        for (host, port, flags) in [
            ("example.com", 80, 0),
            ("127.0.0.1", 8080, 0),
            ("::1", 443, 5),
        ] {
            let b = Begin {
                host: host.into(),
                port,
                flags,
            };
            assert_eq!(Begin::decode(&b.encode()).unwrap(), b);
        }
        assert_eq!(
            Begin {
                host: "a".into(),
                port: 1,
                flags: 0
            }
            .encode(),
            b"a:1\0"
        );
        for bad in [&b"nohost"[..], b"host:99999\0", b":80\0", b"host:80"] {
            assert!(Begin::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn connected_and_sendme() {
        for c in [
            Connected::default(),
            Connected {
                addr: Some(("127.0.0.1".parse().unwrap(), 300)),
            },
            Connected {
                addr: Some(("::1".parse().unwrap(), 60)),
            },
        ] {
            assert_eq!(Connected::decode(&c.encode()).unwrap(), c);
        }
        let s = Sendme::V1 { digest: [4; 20] };
        assert_eq!(Sendme::decode(&s.encode()).unwrap(), s);
        assert_eq!(Sendme::decode(&[]).unwrap(), Sendme::V0);
        assert!(Sendme::decode(&[1, 0, 3, 1, 2, 3]).is_err());
        assert!(Sendme::decode(&[7]).is_err());
        assert_eq!(end_reason_of(&[]), end_reason::MISC);
    }
}
