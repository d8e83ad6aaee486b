//! VERSIONS (tor-spec §4.1): the list of link protocol versions a side
//! speaks. Always sent with a 2-byte circuit id 0.

use super::{command, CellError, RawCell, Reader};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    pub versions: Vec<u16>,
}

impl Versions {
    pub fn new(versions: &[u16]) -> Self {
        Versions {
            versions: versions.to_vec(),
        }
    }

    pub fn to_cell(&self) -> RawCell {
        let body = self.versions.iter().flat_map(|v| v.to_be_bytes()).collect();
        RawCell::new(0, command::VERSIONS, body)
    }

    pub fn from_cell(cell: &RawCell) -> Result<Self, CellError> {
        cell.expect_command(command::VERSIONS)?;
        if cell.body.len() % 2 != 0 {
            return Err(CellError::Malformed {
                what: "VERSIONS",
                why: "odd body length",
            });
        }
        let mut r = Reader::new(&cell.body);
        let mut versions = Vec::with_capacity(cell.body.len() / 2);
        while r.remaining() > 0 {
            versions.push(r.u16()?);
        }
        Ok(Versions { versions })
    }

    /// The highest version both lists contain (tor-spec §4.1).
    pub fn best_common(&self, ours: &[u16]) -> Option<u16> {
        self.versions
            .iter()
            .copied()
            .filter(|v| ours.contains(v))
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_negotiation() {
        let v = Versions::new(&[3, 4, 5]);
        let back = Versions::from_cell(&v.to_cell()).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.best_common(&[4, 5]), Some(5));
        assert_eq!(Versions::new(&[1, 2, 3]).best_common(&[4, 5]), None);
    }

    #[test]
    fn odd_body_is_malformed() {
        let cell = RawCell::new(0, command::VERSIONS, vec![0, 4, 0]);
        assert!(Versions::from_cell(&cell).is_err());
    }
}
