//! SOCKS5 (RFC 1928) as the proxy speaks it: no authentication, CONNECT
//! only, IPv4, IPv6 and domain-name targets (so names are resolved at the
//! exit, as with `curl --socks5-hostname`). Parsing is sans-IO: feed the
//! bytes read so far, get `Incomplete`, a request, or an error.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const VERSION: u8 = 5;
pub const METHOD_NO_AUTH: u8 = 0;
/// RFC 1929. Any credentials are accepted: like C tor's IsolateSOCKSAuth,
/// they only keep streams with different credentials on different circuits.
pub const METHOD_USERNAME_PASSWORD: u8 = 2;
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xff;
pub const CMD_CONNECT: u8 = 1;

/// Reply codes (RFC 1928 §6).
pub mod reply {
    pub const SUCCEEDED: u8 = 0;
    pub const GENERAL_FAILURE: u8 = 1;
    pub const NOT_ALLOWED: u8 = 2;
    pub const NETWORK_UNREACHABLE: u8 = 3;
    pub const HOST_UNREACHABLE: u8 = 4;
    pub const CONNECTION_REFUSED: u8 = 5;
    pub const TTL_EXPIRED: u8 = 6;
    pub const COMMAND_NOT_SUPPORTED: u8 = 7;
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 8;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Not enough bytes yet.
    Incomplete,
    /// The value and how many bytes it used.
    Done(T, usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocksError {
    #[error("not SOCKS version 5")]
    Version,
    #[error("client offers no acceptable authentication method")]
    NoAcceptableMethod,
    #[error("command {0} not supported (CONNECT only)")]
    Command(u8),
    #[error("address type {0} not supported")]
    AddressType(u8),
    #[error("bad domain name")]
    BadName,
}

impl SocksError {
    /// The reply code to send before closing.
    pub fn reply_code(&self) -> u8 {
        match self {
            SocksError::Command(_) => reply::COMMAND_NOT_SUPPORTED,
            SocksError::AddressType(_) => reply::ADDRESS_TYPE_NOT_SUPPORTED,
            _ => reply::GENERAL_FAILURE,
        }
    }
}

/// The greeting: VER, NMETHODS, METHODS. Returns the method we choose:
/// username/password when offered (for isolation), else no authentication.
pub fn parse_greeting(buf: &[u8]) -> Result<Parsed<u8>, SocksError> {
    let (Some(&ver), Some(&n)) = (buf.first(), buf.get(1)) else {
        return Ok(Parsed::Incomplete);
    };
    if ver != VERSION {
        return Err(SocksError::Version);
    }
    let Some(methods) = buf.get(2..2 + usize::from(n)) else {
        return Ok(Parsed::Incomplete);
    };
    let method = if methods.contains(&METHOD_USERNAME_PASSWORD) {
        METHOD_USERNAME_PASSWORD
    } else if methods.contains(&METHOD_NO_AUTH) {
        METHOD_NO_AUTH
    } else {
        return Err(SocksError::NoAcceptableMethod);
    };
    Ok(Parsed::Done(method, 2 + usize::from(n)))
}

/// RFC 1929 sub-negotiation: VER(1) ULEN UNAME PLEN PASSWD. Returns the
/// credentials as one isolation key.
pub fn parse_credentials(buf: &[u8]) -> Result<Parsed<Vec<u8>>, SocksError> {
    let Some([ver, ulen]) = bytes_at::<2>(buf, 0) else {
        return Ok(Parsed::Incomplete);
    };
    if ver != 1 {
        return Err(SocksError::Version);
    }
    let ulen = usize::from(ulen);
    let Some([plen]) = bytes_at::<1>(buf, 2 + ulen) else {
        return Ok(Parsed::Incomplete);
    };
    let total = 3 + ulen + usize::from(plen);
    let Some(all) = buf.get(..total) else {
        return Ok(Parsed::Incomplete);
    };
    let mut key = all.get(1..).unwrap_or_default().to_vec();
    key.shrink_to_fit();
    Ok(Parsed::Done(key, total))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub host: String,
    pub port: u16,
}

/// `N` bytes at `at`, if there are that many.
fn bytes_at<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at + N).and_then(|s| s.try_into().ok())
}

/// The request: VER CMD RSV ATYP DST.ADDR DST.PORT.
pub fn parse_request(buf: &[u8]) -> Result<Parsed<ConnectRequest>, SocksError> {
    let Some([ver, cmd, _rsv, atyp]) = bytes_at::<4>(buf, 0) else {
        return Ok(Parsed::Incomplete);
    };
    if ver != VERSION {
        return Err(SocksError::Version);
    }
    let (host, addr_len) = match atyp {
        1 => match bytes_at::<4>(buf, 4) {
            Some(a) => (Ipv4Addr::from(a).to_string(), 4),
            None => return Ok(Parsed::Incomplete),
        },
        3 => {
            let Some([len]) = bytes_at::<1>(buf, 4) else {
                return Ok(Parsed::Incomplete);
            };
            let Some(name) = buf.get(5..5 + usize::from(len)) else {
                return Ok(Parsed::Incomplete);
            };
            let name = std::str::from_utf8(name).map_err(|_| SocksError::BadName)?;
            if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == b':' || b == 0x7f) {
                return Err(SocksError::BadName);
            }
            (name.to_string(), 1 + usize::from(len))
        }
        4 => match bytes_at::<16>(buf, 4) {
            Some(a) => (Ipv6Addr::from(a).to_string(), 16),
            None => return Ok(Parsed::Incomplete),
        },
        other => return Err(SocksError::AddressType(other)),
    };
    let Some(port) = bytes_at::<2>(buf, 4 + addr_len) else {
        return Ok(Parsed::Incomplete);
    };
    if cmd != CMD_CONNECT {
        return Err(SocksError::Command(cmd));
    }
    Ok(Parsed::Done(
        ConnectRequest {
            host,
            port: u16::from_be_bytes(port),
        },
        6 + addr_len,
    ))
}

/// A reply with bound address 0.0.0.0:0 (we do not reveal the exit's).
pub fn reply_bytes(code: u8) -> [u8; 10] {
    [VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_and_requests() {
        assert_eq!(parse_greeting(&[5]), Ok(Parsed::Incomplete));
        assert_eq!(
            parse_greeting(&[5, 2, 2, 0]),
            Ok(Parsed::Done(METHOD_USERNAME_PASSWORD, 4))
        );
        assert_eq!(
            parse_greeting(&[5, 1, 0]),
            Ok(Parsed::Done(METHOD_NO_AUTH, 3))
        );
        let creds = [1, 1, b'a', 2, b'x', b'y', 9];
        assert_eq!(parse_credentials(&creds[..5]), Ok(Parsed::Incomplete));
        assert_eq!(
            parse_credentials(&creds),
            Ok(Parsed::Done(vec![1, b'a', 2, b'x', b'y'], 6))
        );
        assert_eq!(
            parse_greeting(&[5, 1, 3]),
            Err(SocksError::NoAcceptableMethod)
        );
        assert_eq!(parse_greeting(&[4, 1, 0]), Err(SocksError::Version));

        let domain = [
            5, 1, 0, 3, 9, b'l', b'o', b'c', b'a', b'l', b'h', b'o', b's', b't', 0, 80,
        ];
        for n in 0..domain.len() {
            assert_eq!(parse_request(&domain[..n]), Ok(Parsed::Incomplete));
        }
        assert_eq!(
            parse_request(&domain),
            Ok(Parsed::Done(
                ConnectRequest {
                    host: "localhost".into(),
                    port: 80
                },
                domain.len()
            ))
        );
        let v4 = [5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90];
        assert_eq!(
            parse_request(&v4).unwrap(),
            Parsed::Done(
                ConnectRequest {
                    host: "127.0.0.1".into(),
                    port: 8080
                },
                10
            )
        );
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 22]);
        assert_eq!(
            parse_request(&v6).unwrap(),
            Parsed::Done(
                ConnectRequest {
                    host: "::1".into(),
                    port: 22
                },
                22
            )
        );
        assert_eq!(
            parse_request(&[5, 2, 0, 1, 1, 2, 3, 4, 0, 1]),
            Err(SocksError::Command(2))
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 9]),
            Err(SocksError::AddressType(9))
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 2, b'a', b':', 0, 1]),
            Err(SocksError::BadName)
        );
        assert_eq!(
            SocksError::Command(2).reply_code(),
            reply::COMMAND_NOT_SUPPORTED
        );
    }
}
