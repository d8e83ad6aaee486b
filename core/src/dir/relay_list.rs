//! A bridge's relay list: the relays a tab may use behind that bridge
//! (the bridge's embedded relays and those that joined it), served on the
//! bridge's directory port at `RELAY_LIST_PATH` through BEGIN_DIR. Tabs
//! reach a Peersm network without Tor directory authorities this way; the
//! circuit it travels on is authenticated to the bridge by ntor. Layout in
//! docs/PROTOCOL.md "Relay list".
//!
//! One line per relay:
//! `relay NICKNAME IP:PORT RSA-ID-HEX ED25519-ID-B64 NTOR-KEY-B64 exit|middle`,
//! then `signature SIG-B64`: the bridge's Ed25519 identity key over
//! `"peersm relay list v1\0"` and every byte before that line
//! (`sign_relay_list`, `verify_relay_list`). Tabs take only a list that
//! verifies against the identity their bridge proved in its CERTS, so a
//! list copied, cached or relayed by anyone else cannot be altered.
//! `bridge-run RSA-ID-HEX` marks a relay the bridge runs itself.
//! Unknown lines are skipped, so later versions can add keywords.

use std::net::SocketAddr;

use super::{base64_decode, base64_encode};

pub const RELAY_LIST_PATH: &str = "/peersm/relays";

/// At most this many relays are read from one list.
pub const MAX_LISTED_RELAYS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRelay {
    pub nickname: String,
    pub addr: SocketAddr,
    pub rsa_id: [u8; 20],
    pub ed25519_id: [u8; 32],
    pub ntor_key: [u8; 32],
    /// Whether its exit policy lets it open streams to the Internet (or,
    /// in tests, to 127.0.0.0/8).
    pub exit: bool,
    /// Run by the bridge itself (embedded in its process): a circuit whose
    /// every hop is the bridge's would let it see both ends. Listed as a
    /// `bridge-run RSA-ID-HEX` line.
    pub bridge_run: bool,
}

/// A bridge's relays: its own (embedded) ones and those that joined,
/// each joined one listed until `ttl_ms` passes without a refresh. What
/// it lists is the relay list tabs are served. Verifying a joining relay
/// (it must prove the identities it claims) is the adapter's, before
/// `joined`.
#[derive(Debug, Clone)]
pub struct RelayRoster {
    embedded: Vec<ListedRelay>,
    /// Joined relays by RSA identity, with when they last joined (ms).
    joined: std::collections::BTreeMap<[u8; 20], (ListedRelay, u64)>,
    ttl_ms: u64,
}

impl RelayRoster {
    pub fn new(embedded: Vec<ListedRelay>, ttl_ms: u64) -> Self {
        RelayRoster {
            embedded,
            joined: Default::default(),
            ttl_ms,
        }
    }

    /// A verified relay joined (or refreshed its entry) at `now`.
    pub fn joined(&mut self, relay: ListedRelay, now: u64) {
        self.joined.insert(relay.rsa_id, (relay, now));
    }

    /// Drops joined relays not refreshed in time; `true` when the list
    /// changed.
    pub fn prune(&mut self, now: u64) -> bool {
        let before = self.joined.len();
        let ttl = self.ttl_ms;
        self.joined
            .retain(|_, (_, seen)| now.saturating_sub(*seen) < ttl);
        self.joined.len() != before
    }

    /// The list: embedded relays first, then joined ones by nickname.
    pub fn list(&self) -> Vec<ListedRelay> {
        let mut extra: Vec<ListedRelay> = self
            .joined
            .values()
            .map(|(r, _)| ListedRelay {
                bridge_run: false,
                ..r.clone()
            })
            .collect();
        extra.sort_by(|a, b| a.nickname.cmp(&b.nickname));
        let mut all: Vec<ListedRelay> = self
            .embedded
            .iter()
            .map(|r| ListedRelay {
                bridge_run: true,
                ..r.clone()
            })
            .collect();
        all.extend(extra);
        all
    }
}

const SIGNATURE_CONTEXT: &[u8] = b"peersm relay list v1\0";
const SIGNATURE_KEYWORD: &str = "signature ";

/// `body` (relay lines) followed by its signature line, made with the
/// bridge's Ed25519 identity key.
pub fn sign_relay_list(body: &str, identity: &ed25519_dalek::SigningKey) -> String {
    use ed25519_dalek::Signer;
    let mut body = body.to_string();
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    let mut message = SIGNATURE_CONTEXT.to_vec();
    message.extend_from_slice(body.as_bytes());
    let signature = identity.sign(&message);
    format!(
        "{body}{SIGNATURE_KEYWORD}{}\n",
        base64_encode(&signature.to_bytes(), false)
    )
}

/// Checks a signed list against the bridge's Ed25519 identity; returns
/// the signed part (what to parse).
pub fn verify_relay_list<'a>(
    text: &'a str,
    bridge_ed25519_id: &[u8; 32],
) -> Result<&'a str, RelayListError> {
    let at = if text.starts_with(SIGNATURE_KEYWORD) {
        0
    } else {
        text.rfind(&format!("\n{SIGNATURE_KEYWORD}"))
            .map(|i| i + 1)
            .ok_or(RelayListError::Unsigned)?
    };
    let (body, line) = text.split_at(at);
    let encoded = line
        .strip_prefix(SIGNATURE_KEYWORD)
        .map(|l| l.trim_end_matches('\n'))
        .ok_or(RelayListError::Unsigned)?;
    let signature = base64_decode(encoded)
        .and_then(|v| <[u8; 64]>::try_from(v).ok())
        .map(|b| ed25519_dalek::Signature::from_bytes(&b))
        .ok_or(RelayListError::BadSignature)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(bridge_ed25519_id)
        .map_err(|_| RelayListError::BadSignature)?;
    let mut message = SIGNATURE_CONTEXT.to_vec();
    message.extend_from_slice(body.as_bytes());
    key.verify_strict(&message, &signature)
        .map_err(|_| RelayListError::BadSignature)?;
    Ok(body)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayListError {
    #[error("the relay list is not signed")]
    Unsigned,
    #[error("the relay list's signature is not the bridge's")]
    BadSignature,
    #[error("line {line}: {what}")]
    BadLine { line: usize, what: &'static str },
    #[error("more than {MAX_LISTED_RELAYS} relays")]
    TooMany,
}

impl ListedRelay {
    pub fn to_line(&self) -> String {
        format!(
            "relay {} {} {} {} {} {}",
            self.nickname,
            self.addr,
            hex::encode(self.rsa_id),
            base64_encode(&self.ed25519_id, false),
            base64_encode(&self.ntor_key, false),
            if self.exit { "exit" } else { "middle" }
        )
    }
}

pub fn encode_relay_list(relays: &[ListedRelay]) -> String {
    relays
        .iter()
        .map(|r| {
            let mut line = r.to_line() + "\n";
            if r.bridge_run {
                line += &format!("bridge-run {}\n", hex::encode(r.rsa_id));
            }
            line
        })
        .collect()
}

pub fn parse_relay_list(text: &str) -> Result<Vec<ListedRelay>, RelayListError> {
    let mut relays = Vec::new();
    let mut bridge_run = std::collections::BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |what| RelayListError::BadLine { line: i + 1, what };
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let [keyword, rest @ ..] = fields.as_slice() else {
            continue;
        };
        if *keyword == "bridge-run" {
            let [rsa] = rest else {
                return Err(bad("expected 1 field after `bridge-run`"));
            };
            let mut rsa_id = [0u8; 20];
            hex::decode_to_slice(rsa, &mut rsa_id).map_err(|_| bad("bad RSA identity"))?;
            bridge_run.insert(rsa_id);
            continue;
        }
        if *keyword != "relay" {
            continue;
        }
        let [nickname, addr, rsa, ed, ntor, role] = rest else {
            return Err(bad("expected 6 fields after `relay`"));
        };
        if nickname.is_empty() || nickname.len() > 19 {
            return Err(bad("bad nickname"));
        }
        let addr: SocketAddr = addr.parse().map_err(|_| bad("bad address"))?;
        let mut rsa_id = [0u8; 20];
        hex::decode_to_slice(rsa, &mut rsa_id).map_err(|_| bad("bad RSA identity"))?;
        let key32 = |s: &str, what| -> Result<[u8; 32], RelayListError> {
            base64_decode(s)
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or(bad(what))
        };
        let exit = match *role {
            "exit" => true,
            "middle" => false,
            _ => return Err(bad("role must be exit or middle")),
        };
        if relays.len() == MAX_LISTED_RELAYS {
            return Err(RelayListError::TooMany);
        }
        relays.push(ListedRelay {
            nickname: (*nickname).to_string(),
            addr,
            rsa_id,
            ed25519_id: key32(ed, "bad Ed25519 identity")?,
            ntor_key: key32(ntor, "bad ntor key")?,
            exit,
            bridge_run: false,
        });
    }
    for r in &mut relays {
        r.bridge_run = bridge_run.contains(&r.rsa_id);
    }
    Ok(relays)
}

/// Picks a middle and an exit for a circuit behind a bridge: distinct
/// relays, neither in `avoid` (the bridge itself, relays that just
/// failed); `random` drives the choice. With `independent`, the exit is
/// not one the bridge runs: the bridge is the first hop and sees who
/// fetches, so it must not also be the hop that sees what. `None` when
/// the list cannot make such a path.
pub fn choose_middle_and_exit<'a>(
    relays: &'a [ListedRelay],
    avoid: &[[u8; 20]],
    random: u64,
    independent: bool,
) -> Option<(&'a ListedRelay, &'a ListedRelay)> {
    let usable: Vec<&ListedRelay> = relays
        .iter()
        .filter(|r| !avoid.contains(&r.rsa_id))
        .collect();
    let exits: Vec<&&ListedRelay> = usable
        .iter()
        .filter(|r| r.exit && !(independent && r.bridge_run))
        .collect();
    let exit = **exits.get(pick(random, exits.len())?)?;
    let middles: Vec<&&ListedRelay> = usable.iter().filter(|r| r.rsa_id != exit.rsa_id).collect();
    let middle = **middles.get(pick(random >> 32, middles.len())?)?;
    Some((middle, exit))
}

fn pick(random: u64, len: usize) -> Option<usize> {
    (len > 0).then(|| (random % len as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(n: u8, exit: bool) -> ListedRelay {
        ListedRelay {
            nickname: format!("r{n}"),
            addr: format!("127.0.0.1:{}", 9000 + u16::from(n))
                .parse()
                .unwrap(),
            rsa_id: [n; 20],
            ed25519_id: [n; 32],
            ntor_key: [n.wrapping_add(1); 32],
            exit,
            bridge_run: false,
        }
    }

    #[test]
    fn round_trip_and_unknown_lines() {
        let list = vec![relay(1, false), relay(2, true)];
        let text = format!("# comment\nfuture-keyword x\n{}", encode_relay_list(&list));
        assert_eq!(parse_relay_list(&text).unwrap(), list);
    }

    #[test]
    fn bad_lines_are_errors() {
        let good = relay(1, true).to_line();
        for bad in [
            good.replace(" exit", " gateway"),
            good.replace("127.0.0.1:9001", "nowhere"),
            good.replacen("relay r1", "relay", 1),
            good.replace(&hex::encode([1u8; 20]), "zz"),
        ] {
            assert!(parse_relay_list(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn joined_relays_expire_unless_refreshed() {
        let mut roster = RelayRoster::new(vec![relay(1, false)], 1000);
        roster.joined(relay(3, true), 0);
        roster.joined(relay(2, false), 500);
        let names: Vec<String> = roster.list().into_iter().map(|r| r.nickname).collect();
        assert_eq!(names, ["r1", "r2", "r3"]);
        assert!(!roster.prune(999));
        roster.joined(relay(3, true), 900);
        assert!(roster.prune(1500), "r2 expired");
        let names: Vec<String> = roster.list().into_iter().map(|r| r.nickname).collect();
        assert_eq!(names, ["r1", "r3"]);
    }

    #[test]
    fn path_choice() {
        let list = vec![relay(1, false), relay(2, true), relay(3, false)];
        for random in 0..64u64 {
            let (m, e) =
                choose_middle_and_exit(&list, &[[3; 20]], random * 0x1_0000_0001, true).unwrap();
            assert!(e.exit);
            assert_ne!(m.rsa_id, e.rsa_id);
            assert_ne!(m.rsa_id, [3; 20]);
        }
        // Only one relay besides the avoided ones: no path.
        assert!(choose_middle_and_exit(&list, &[[1; 20], [3; 20]], 0, true).is_none());
        assert!(choose_middle_and_exit(&list[..1], &[], 0, true).is_none());
    }

    /// A list signed by the bridge verifies against its identity; a list
    /// altered after signing (a relay added, a key swapped), signed by
    /// another key or not signed at all is refused.
    #[test]
    fn the_list_is_signed_by_the_bridge_identity() {
        let bridge = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
        let id = bridge.verifying_key().to_bytes();
        let body = encode_relay_list(&[relay(1, false), relay(2, true)]);
        let signed = sign_relay_list(&body, &bridge);
        let verified = verify_relay_list(&signed, &id).unwrap();
        assert_eq!(parse_relay_list(verified).unwrap().len(), 2);
        let added = signed.replacen(
            "relay ",
            &format!("{}\nrelay ", relay(3, true).to_line()),
            1,
        );
        assert_eq!(
            verify_relay_list(&added, &id),
            Err(RelayListError::BadSignature)
        );
        let swapped = signed.replacen(&relay(2, true).to_line(), &relay(4, true).to_line(), 1);
        assert_eq!(
            verify_relay_list(&swapped, &id),
            Err(RelayListError::BadSignature)
        );
        let by_other = sign_relay_list(&body, &other);
        assert_eq!(
            verify_relay_list(&by_other, &id),
            Err(RelayListError::BadSignature)
        );
        assert_eq!(verify_relay_list(&body, &id), Err(RelayListError::Unsigned));
        // An empty list signs and verifies too.
        let empty = sign_relay_list("", &bridge);
        assert_eq!(verify_relay_list(&empty, &id), Ok(""));
    }

    /// The bridge's own relays are marked; a tab that wants a path the
    /// bridge does not see both ends of gets an exit the bridge does not
    /// run (whatever the middle), or no path when every exit is the
    /// bridge's, even with an independent middle.
    #[test]
    fn paths_independent_of_the_bridge() {
        let mut own_middle = relay(1, false);
        own_middle.bridge_run = true;
        let mut own_exit = relay(2, true);
        own_exit.bridge_run = true;
        let joined_middle = relay(3, false);
        let joined_exit = relay(4, true);
        let all = [
            own_middle.clone(),
            own_exit.clone(),
            joined_middle.clone(),
            joined_exit.clone(),
        ];
        let parsed = parse_relay_list(&encode_relay_list(&all)).unwrap();
        assert_eq!(parsed, all);
        for random in 0..64u64 {
            let random = random.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let (m, e) = choose_middle_and_exit(&parsed, &[], random, true).unwrap();
            assert_eq!(e.rsa_id, joined_exit.rsa_id);
            assert_ne!(m.rsa_id, e.rsa_id);
        }
        // A joined middle does not make the bridge's exit acceptable.
        let own_exits_only = [own_middle.clone(), own_exit.clone(), joined_middle];
        assert!(choose_middle_and_exit(&own_exits_only, &[], 7, true).is_none());
        assert!(choose_middle_and_exit(&own_exits_only, &[], 7, false).is_some());
    }
}
