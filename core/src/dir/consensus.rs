//! The microdescriptor-flavoured consensus (dir-spec §3.4.1, §3.9.2): one
//! entry per relay from its "r", "m", "s" and "w" lines.

use std::net::{IpAddr, SocketAddr};

use super::base64_decode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterEntry {
    pub nickname: String,
    /// SHA-1 of the relay's RSA identity key.
    pub rsa_id: [u8; 20],
    pub or_addr: SocketAddr,
    pub dir_port: u16,
    /// SHA-256 of its microdescriptor.
    pub microdesc_digest: [u8; 32],
    pub flags: Vec<String>,
    pub bandwidth: u64,
}

impl RouterEntry {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("consensus line {line}: {why}")]
pub struct ConsensusError {
    pub line: usize,
    pub why: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct Consensus {
    pub routers: Vec<RouterEntry>,
    pub valid_after: String,
    pub valid_until: String,
}

impl Consensus {
    /// Parses the routers of a microdesc consensus. Signatures are checked
    /// separately.
    pub fn parse(text: &str) -> Result<Consensus, ConsensusError> {
        let mut c = Consensus::default();
        let mut saw_header = false;
        for (i, line) in text.lines().enumerate() {
            let err = |why| ConsensusError { line: i + 1, why };
            let mut words = line.split(' ');
            let keyword = words.next().unwrap_or_default();
            match keyword {
                "network-status-version" => {
                    if words.next() != Some("3") || words.next() != Some("microdesc") {
                        return Err(err("not a version 3 microdesc consensus"));
                    }
                    saw_header = true;
                }
                "valid-after" => c.valid_after = words.collect::<Vec<_>>().join(" "),
                "valid-until" => c.valid_until = words.collect::<Vec<_>>().join(" "),
                "r" => {
                    // r nickname identity published-date published-time IP ORPort DirPort
                    let f: Vec<&str> = words.collect();
                    let [nickname, id, _date, _time, ip, or_port, dir_port] = f[..] else {
                        return Err(err("r line needs 7 fields"));
                    };
                    let rsa_id = base64_decode(id)
                        .and_then(|v| v.try_into().ok())
                        .ok_or_else(|| err("bad identity"))?;
                    let ip: IpAddr = ip.parse().map_err(|_| err("bad address"))?;
                    let or_port: u16 = or_port.parse().map_err(|_| err("bad ORPort"))?;
                    c.routers.push(RouterEntry {
                        nickname: nickname.to_string(),
                        rsa_id,
                        or_addr: SocketAddr::new(ip, or_port),
                        dir_port: dir_port.parse().map_err(|_| err("bad DirPort"))?,
                        microdesc_digest: [0; 32],
                        flags: Vec::new(),
                        bandwidth: 0,
                    });
                }
                "m" | "s" | "w" => {
                    let r = c
                        .routers
                        .last_mut()
                        .ok_or_else(|| err("entry line before any r line"))?;
                    match keyword {
                        "m" => {
                            r.microdesc_digest = words
                                .next()
                                .and_then(base64_decode)
                                .and_then(|v| v.try_into().ok())
                                .ok_or_else(|| err("bad microdesc digest"))?
                        }
                        "s" => r.flags = words.map(str::to_string).collect(),
                        _ => {
                            r.bandwidth = words
                                .find_map(|w| w.strip_prefix("Bandwidth="))
                                .and_then(|b| b.parse().ok())
                                .unwrap_or(0)
                        }
                    }
                }
                _ => {}
            }
        }
        if !saw_header {
            return Err(ConsensusError {
                line: 1,
                why: "no network-status-version line",
            });
        }
        Ok(c)
    }
}
