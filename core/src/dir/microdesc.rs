//! Microdescriptors (dir-spec §3.3): the ntor onion key, the Ed25519
//! identity and the exit policy summary of a relay.

use sha2::{Digest, Sha256};

use super::base64_decode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Microdesc {
    /// SHA-256 of the document text; the consensus refers to it.
    pub digest: [u8; 32],
    pub ntor_onion_key: [u8; 32],
    pub ed25519_id: Option<[u8; 32]>,
    /// "accept"/"reject" and port ranges from the "p" line.
    pub policy: Option<PortPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPolicy {
    pub accept: bool,
    pub ranges: Vec<(u16, u16)>,
}

impl PortPolicy {
    pub fn allows(&self, port: u16) -> bool {
        self.ranges
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&port))
            == self.accept
    }
}

fn parse_policy(rest: &str) -> Option<PortPolicy> {
    let (kind, ports) = rest.split_once(' ')?;
    let accept = match kind {
        "accept" => true,
        "reject" => false,
        _ => return None,
    };
    let ranges = ports
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => r.parse().ok().map(|p| (p, p)),
        })
        .collect::<Option<Vec<_>>>()?;
    Some(PortPolicy { accept, ranges })
}

/// Splits a response of concatenated microdescriptors (each starts with
/// "onion-key") and parses each; unparsable ones are skipped.
pub fn parse_all(text: &str) -> Vec<Microdesc> {
    let mut starts: Vec<usize> = text
        .match_indices("onion-key\n")
        .map(|(i, _)| i)
        .filter(|i| *i == 0 || text.as_bytes().get(i - 1) == Some(&b'\n'))
        .collect();
    starts.push(text.len());
    starts
        .iter()
        .zip(starts.iter().skip(1))
        .filter_map(|(a, b)| text.get(*a..*b).and_then(parse_one))
        .collect()
}

fn parse_one(doc: &str) -> Option<Microdesc> {
    let mut ntor = None;
    let mut ed = None;
    let mut policy = None;
    for line in doc.lines() {
        if let Some(k) = line.strip_prefix("ntor-onion-key ") {
            ntor = base64_decode(k.trim()).and_then(|v| v.try_into().ok());
        } else if let Some(k) = line.strip_prefix("id ed25519 ") {
            ed = base64_decode(k.trim()).and_then(|v| v.try_into().ok());
        } else if let Some(p) = line.strip_prefix("p ") {
            policy = parse_policy(p);
        }
    }
    Some(Microdesc {
        digest: Sha256::digest(doc.as_bytes()).into(),
        ntor_onion_key: ntor?,
        ed25519_id: ed,
        policy,
    })
}
