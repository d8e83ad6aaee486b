//! AUTH_CHALLENGE and AUTHENTICATE (tor-spec §4.3, §4.4): the responder's
//! random challenge and the initiator's proof that it holds its identity key.

use super::{command, CellError, RawCell, Reader};

pub const AUTH_CHALLENGE_LEN: usize = 32;

/// Authentication methods. Tor's are 1 (RSA-SHA256-TLSSecret) and 3
/// (Ed25519-SHA256-RFC5705); Peersm's own start at 0x8000 (docs/PROTOCOL.md).
pub mod auth_method {
    /// RSASSA-PKCS1-v1_5 with SHA-256 by the session identity key over
    /// the challenge (see `crate::channel::auth`).
    pub const PEERSM_RSA_SHA256: u16 = 0x8001;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthChallenge {
    pub challenge: [u8; AUTH_CHALLENGE_LEN],
    pub methods: Vec<u16>,
}

impl AuthChallenge {
    pub fn to_cell(&self) -> Result<RawCell, CellError> {
        let n = u16::try_from(self.methods.len())
            .map_err(|_| CellError::TooLong(self.methods.len()))?;
        let mut body = self.challenge.to_vec();
        body.extend_from_slice(&n.to_be_bytes());
        for m in &self.methods {
            body.extend_from_slice(&m.to_be_bytes());
        }
        Ok(RawCell::new(0, command::AUTH_CHALLENGE, body))
    }

    pub fn from_cell(cell: &RawCell) -> Result<Self, CellError> {
        cell.expect_command(command::AUTH_CHALLENGE)?;
        let mut r = Reader::new(&cell.body);
        let challenge = r.array::<AUTH_CHALLENGE_LEN>()?;
        let n = r.u16()?;
        let mut methods = Vec::with_capacity(usize::from(n).min(64));
        for _ in 0..n {
            methods.push(r.u16()?);
        }
        Ok(AuthChallenge { challenge, methods })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticate {
    pub method: u16,
    pub authentication: Vec<u8>,
}

impl Authenticate {
    pub fn to_cell(&self) -> Result<RawCell, CellError> {
        let len = u16::try_from(self.authentication.len())
            .map_err(|_| CellError::TooLong(self.authentication.len()))?;
        let mut body = self.method.to_be_bytes().to_vec();
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(&self.authentication);
        Ok(RawCell::new(0, command::AUTHENTICATE, body))
    }

    pub fn from_cell(cell: &RawCell) -> Result<Self, CellError> {
        cell.expect_command(command::AUTHENTICATE)?;
        let mut r = Reader::new(&cell.body);
        let method = r.u16()?;
        let len = usize::from(r.u16()?);
        let authentication = r.take(len)?.to_vec();
        Ok(Authenticate {
            method,
            authentication,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_round_trip() {
        let c = AuthChallenge {
            challenge: [7; 32],
            methods: vec![3, auth_method::PEERSM_RSA_SHA256],
        };
        assert_eq!(AuthChallenge::from_cell(&c.to_cell().unwrap()).unwrap(), c);
        let short = RawCell::new(0, command::AUTH_CHALLENGE, vec![0; 33]);
        assert!(AuthChallenge::from_cell(&short).is_err());
    }

    #[test]
    fn authenticate_round_trip() {
        let a = Authenticate {
            method: auth_method::PEERSM_RSA_SHA256,
            authentication: vec![9; 256],
        };
        assert_eq!(Authenticate::from_cell(&a.to_cell().unwrap()).unwrap(), a);
        let lying = RawCell::new(0, command::AUTHENTICATE, vec![0x80, 1, 1, 0, 5]);
        assert!(Authenticate::from_cell(&lying).is_err());
    }
}
