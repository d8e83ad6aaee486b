//! The relays behind this bridge, served to tabs as the relay list
//! (`peersm_core::dir::relay_list`, over BEGIN_DIR): relays embedded in this
//! process, and relays that joined with `POST /relays` (`peersm-node relay
//! --join`). A joining relay must prove the identities it claims in a link
//! handshake before it is listed, and must refresh its entry: an entry not
//! refreshed for `JOIN_TTL` is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peersm_core::dir::relay_list::{
    encode_relay_list, parse_relay_list, sign_relay_list, ListedRelay, RelayRoster, RELAY_LIST_PATH,
};
use peersm_core::router::ExtendTarget;
use peersm_core::service::ExitPolicy;

use crate::error::{Context, NodeError, Result};
use crate::link::now_ms;
use crate::relay::keys::RelayKeys;
use crate::relay::node::NodeHandle;
use crate::relay::outbound;
use crate::relay::server::{self as relay_server, Relay, RelayOptions};

/// How long a joined relay stays listed without refreshing.
pub const JOIN_TTL: Duration = Duration::from_secs(180);
/// How often joined relays refresh (`peersm-node relay --join`).
pub const JOIN_REFRESH: Duration = Duration::from_secs(60);

/// Join attempts one address may make per `JOIN_WINDOW` (a relay
/// refreshes once a minute; a few retries fit).
pub const JOINS_PER_WINDOW: u32 = 6;
pub const JOIN_WINDOW: Duration = Duration::from_secs(60);
/// Addresses the rate limiter remembers at once.
const MAX_JOIN_SOURCES: usize = 4096;

/// Why a join was refused before any work was done for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    #[error("this bridge takes no relays (its operator did not set --join-token)")]
    Closed,
    #[error("a join needs the bridge operator's token (relay --join-token)")]
    BadToken,
    #[error("too many joins from this address; try again in a minute")]
    TooOften,
}

impl JoinRefusal {
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            JoinRefusal::Closed | JoinRefusal::BadToken => StatusCode::FORBIDDEN,
            JoinRefusal::TooOften => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// The operator's consent to joins (a token) and a rate limit per source
/// address: a join makes the bridge open a TLS link and a handshake, and
/// lists the relay to every tab, so neither comes free.
pub struct JoinGate {
    token: Option<String>,
    /// Per source address: when its window began, joins in it.
    seen: Mutex<std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
}

impl JoinGate {
    pub fn new(token: Option<String>) -> Self {
        JoinGate {
            token,
            seen: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Whether a join from `from` with `token` may go on at `now`.
    pub fn admit(
        &self,
        from: std::net::IpAddr,
        token: Option<&str>,
        now: std::time::Instant,
    ) -> Result<(), JoinRefusal> {
        use subtle::ConstantTimeEq;
        let expected = self.token.as_deref().ok_or(JoinRefusal::Closed)?;
        let given = token.unwrap_or_default();
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            return Err(JoinRefusal::BadToken);
        }
        let mut seen = self.seen.lock().map_err(|_| JoinRefusal::TooOften)?;
        if seen.len() >= MAX_JOIN_SOURCES {
            seen.retain(|_, (began, _)| now.duration_since(*began) < JOIN_WINDOW);
        }
        if seen.len() >= MAX_JOIN_SOURCES && !seen.contains_key(&from) {
            return Err(JoinRefusal::TooOften);
        }
        let entry = seen.entry(from).or_insert((now, 0));
        if now.duration_since(entry.0) >= JOIN_WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= JOINS_PER_WINDOW {
            return Err(JoinRefusal::TooOften);
        }
        entry.1 += 1;
        Ok(())
    }
}

pub struct RelayDirectory {
    roster: Mutex<RelayRoster>,
    /// The bridge's core, whose directory serves the list.
    node: NodeHandle,
}

impl RelayDirectory {
    /// The list of `embedded` relays (and those that join later), served
    /// by the directory of the bridge whose core is `node`.
    pub async fn new(embedded: Vec<ListedRelay>, node: NodeHandle) -> Arc<Self> {
        let ttl = u64::try_from(JOIN_TTL.as_millis()).unwrap_or(u64::MAX);
        let dir = Arc::new(RelayDirectory {
            roster: Mutex::new(RelayRoster::new(embedded, ttl)),
            node,
        });
        dir.publish().await;
        let weak = Arc::downgrade(&dir);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(15));
            loop {
                every.tick().await;
                let Some(dir) = weak.upgrade() else { return };
                let changed = dir.roster.lock().is_ok_and(|mut r| r.prune(now_ms()));
                if changed {
                    dir.publish().await;
                }
            }
        });
        dir
    }

    /// Lists (or refreshes) the relay described by the relay-list line in
    /// `body`, once `bridge` reached it and it proved those identities.
    pub async fn join(&self, bridge: &Relay, body: &str) -> Result<ListedRelay> {
        let relays = parse_relay_list(body).map_err(|e| NodeError::invalid("relay line", e))?;
        let [relay] = relays.as_slice() else {
            return Err(NodeError::invalid(
                "relay line",
                "send exactly one `relay` line",
            ));
        };
        if relay.rsa_id == bridge.keys.rsa_id {
            return Err(NodeError::invalid(
                "relay line",
                "that is this bridge's own identity",
            ));
        }
        let target = ExtendTarget {
            id: relay.rsa_id,
            ed25519_id: Some(relay.ed25519_id),
            addresses: vec![relay.addr],
        };
        // A fresh link to the address given, whatever links we have: the
        // relay there must prove both identities the line claims (a link
        // to that identity elsewhere proves nothing about this address).
        // It is closed again; circuits open their own links on demand, so
        // refreshes do not pile links up.
        let proof = outbound::connect(&bridge.keys, &target)
            .await
            .context(format!("cannot verify the relay at {}", relay.addr))?;
        drop(proof);
        if let Ok(mut roster) = self.roster.lock() {
            roster.joined(relay.clone(), now_ms());
        }
        self.publish().await;
        Ok(relay.clone())
    }

    async fn publish(&self) {
        let body = encode_relay_list(&self.snapshot());
        let document = sign_relay_list(&body, &self.node.keys().ed_identity).into_bytes();
        self.node.set_document(RELAY_LIST_PATH, document).await;
    }

    pub fn snapshot(&self) -> Vec<ListedRelay> {
        self.roster.lock().map(|r| r.list()).unwrap_or_default()
    }
}

/// Starts `count` relays in this process on 127.0.0.1: the last one exits
/// under `exit_policy` (from `exit_bind` when given), the others are
/// middles. Their keys are kept in `data_dir` when given. Returns their
/// relay-list entries.
pub async fn start_embedded_relays(
    count: usize,
    exit_policy: &ExitPolicy,
    exit_bind: Option<std::net::IpAddr>,
    data_dir: Option<&std::path::Path>,
) -> Result<Vec<ListedRelay>> {
    let mut listed = Vec::new();
    for i in 0..count {
        let is_exit = i + 1 == count;
        let policy = if is_exit {
            exit_policy.clone()
        } else {
            ExitPolicy::reject_all()
        };
        let options = RelayOptions {
            exit_bind: if is_exit { exit_bind } else { None },
            directory: false,
            mesh: false,
        };
        let keys = match data_dir {
            Some(dir) => RelayKeys::load_or_generate(&dir.join(format!("relay-{i}-keys.json")))?,
            None => RelayKeys::generate()?,
        };
        let relay = Relay::with_options(keys, policy, options)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let nickname = if is_exit {
            "embeddedexit".to_string()
        } else {
            format!("embedded{i}")
        };
        listed.push(relay.listing(&nickname, addr));
        tokio::spawn(async move {
            if let Err(e) = relay_server::serve(listener, relay).await {
                tracing::warn!("embedded relay stopped: {e}");
            }
        });
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn joins_need_the_token_and_are_rate_limited_per_address() {
        let closed = JoinGate::new(None);
        let a = "127.0.0.5".parse().unwrap();
        let b = "127.0.0.6".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(closed.admit(a, Some("x"), t0), Err(JoinRefusal::Closed));
        let gate = JoinGate::new(Some("s3cret".into()));
        assert_eq!(gate.admit(a, None, t0), Err(JoinRefusal::BadToken));
        assert_eq!(gate.admit(a, Some("s3cre"), t0), Err(JoinRefusal::BadToken));
        for _ in 0..JOINS_PER_WINDOW {
            assert_eq!(gate.admit(a, Some("s3cret"), t0), Ok(()));
        }
        assert_eq!(
            gate.admit(a, Some("s3cret"), t0),
            Err(JoinRefusal::TooOften)
        );
        assert_eq!(gate.admit(b, Some("s3cret"), t0), Ok(()), "per address");
        let later = t0 + JOIN_WINDOW;
        assert_eq!(gate.admit(a, Some("s3cret"), later), Ok(()), "a new window");
    }
}
