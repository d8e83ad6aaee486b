//! Directory authorities, configured as torrc's `DirAuthority` lines:
//! `nickname [flags] orport=PORT [v3ident=HEX] [ipv6=[ADDR]:PORT] IP:DIRPORT FINGERPRINT`.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The public Tor network's directory authorities (C tor's auth_dirs.inc,
/// without the bridge authority).
pub const PUBLIC_AUTHORITIES: &[&str] = &[
    "moria1 orport=9201 v3ident=F533C81CEF0BC0267857C99B2F471ADF249FA232 128.31.0.39:9231 1A25C6358DB91342AA51720A5038B72742732498",
    "tor26 orport=443 v3ident=2F3DF9CA0E5D36F2685A2DA67184EB8DCB8CBA8C ipv6=[2a02:16a8:662:2203::1]:443 217.196.147.77:80 FAA4 BCA4 A6AC 0FB4 CA2F 8AD5 A11D 9E12 2BA8 94F6",
    "dizum orport=443 v3ident=E8A9C45EDE6D711294FADF8E7951F4DE6CA56B58 45.66.35.11:80 7EA6 EAD6 FD83 083C 538F 4403 8BBF A077 587D D755",
    "gabelmoo orport=443 v3ident=ED03BB616EB2F60BEC80151114BB25CEF515B226 ipv6=[2001:638:a000:4140::ffff:189]:443 131.188.40.189:80 F204 4413 DAC2 E02E 3D6B CF47 35A1 9BCA 1DE9 7281",
    "dannenberg orport=443 v3ident=0232AF901C31A04EE9848595AF9BB7620D4C5B2E ipv6=[2001:678:558:1000::244]:443 193.23.244.244:80 7BE6 83E6 5D48 1413 21C5 ED92 F075 C553 64AC 7123",
    "maatuska orport=80 v3ident=49015F787433103580E3B66A1707A00E60F2D15B ipv6=[2001:67c:289c::9]:80 171.25.193.9:443 BD6A 8292 55CB 08E6 6FBE 7D37 4836 3586 E46B 3810",
    "longclaw orport=443 v3ident=23D15D965BC35114467363C165C4F724B64B4F66 199.58.81.140:80 74A9 1064 6BCE EFBC D2E8 74FC 1DC9 9743 0F96 8145",
    "bastet orport=443 v3ident=27102BC123E7AF1D4741AE047E160C91ADC76B21 ipv6=[2620:13:4000:6000::1000:118]:443 204.13.164.118:80 24E2 F139 121D 4394 C54B 5BCC 368B 3B41 1857 C413",
    "faravahar orport=443 v3ident=70849B868D606BAECFB6128C5E3D782029AA394F 216.218.219.41:80 E3E4 2D35 F801 C9D5 AB23 584E 0025 D56F E2B3 3396",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirAuthority {
    pub nickname: String,
    pub or_addr: SocketAddr,
    pub dir_addr: SocketAddr,
    /// The authority's relay identity (SHA-1 of its RSA identity key).
    pub fingerprint: [u8; 20],
    /// Its v3 directory identity, which signs key certificates.
    pub v3ident: [u8; 20],
}

fn hex20(s: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

impl FromStr for DirAuthority {
    type Err = crate::error::NodeError;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| {
            crate::error::NodeError::invalid("DirAuthority line", format!("{line:?}: {why}"))
        };
        let mut words = line.split_whitespace();
        let nickname = words.next().ok_or_else(|| err("empty"))?.to_string();
        let (mut or_port, mut v3ident, mut dir_addr) = (None, None, None);
        let mut fingerprint = String::new();
        for w in words {
            if let Some(p) = w.strip_prefix("orport=") {
                or_port = Some(p.parse::<u16>().map_err(|_| err("bad orport"))?);
            } else if let Some(v) = w.strip_prefix("v3ident=") {
                v3ident = Some(hex20(v).ok_or_else(|| err("bad v3ident"))?);
            } else if dir_addr.is_none() && w.contains(':') && !w.contains('=') {
                dir_addr = Some(w.parse::<SocketAddr>().map_err(|_| err("bad address"))?);
            } else if dir_addr.is_some() {
                fingerprint.push_str(w);
            }
            // Other flags (no-v2, ipv6=, bridge…) do not matter to a client.
        }
        let dir_addr: SocketAddr = dir_addr.ok_or_else(|| err("no IP:DIRPORT"))?;
        let ip: IpAddr = dir_addr.ip();
        Ok(DirAuthority {
            nickname,
            or_addr: SocketAddr::new(ip, or_port.ok_or_else(|| err("no orport="))?),
            dir_addr,
            fingerprint: hex20(&fingerprint).ok_or_else(|| err("bad fingerprint"))?,
            v3ident: v3ident.ok_or_else(|| err("no v3ident= (not a v3 authority)"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_torrc_syntax_including_the_public_list() {
        for line in PUBLIC_AUTHORITIES {
            line.parse::<DirAuthority>().unwrap();
        }
        let a: DirAuthority = PUBLIC_AUTHORITIES[1].parse().unwrap();
        assert_eq!(a.nickname, "tor26");
        assert_eq!(a.or_addr, "217.196.147.77:443".parse().unwrap());
        assert_eq!(
            hex::encode_upper(a.fingerprint),
            "FAA4BCA4A6AC0FB4CA2F8AD5A11D9E122BA894F6"
        );
        assert!("x orport=1 1.2.3.4:5 ABCD".parse::<DirAuthority>().is_err());
        assert!("x v3ident=F533C81CEF0BC0267857C99B2F471ADF249FA232 1.2.3.4:5 1A25C6358DB91342AA51720A5038B72742732498"
            .parse::<DirAuthority>()
            .is_err());
    }
}
