//! The relays behind this bridge, served to tabs as the relay list
//! (`peersm_core::dir::relay_list`, over BEGIN_DIR): relays embedded in this
//! process, and relays that joined with `POST /relays` (`peersm-node relay
//! --join`). A joining relay must prove the identities it claims in a link
//! handshake before it is listed, and must refresh its entry: an entry not
//! refreshed for `JOIN_TTL` is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use peersm_core::dir::relay_list::{parse_relay_list, ListedRelay};

use crate::relay::exit_policy::ExitPolicy;
use crate::relay::keys::RelayKeys;
use crate::relay::server::{self as relay_server, Relay, RelayOptions};

/// How long a joined relay stays listed without refreshing.
pub const JOIN_TTL: Duration = Duration::from_secs(180);
/// How often joined relays refresh (`peersm-node relay --join`).
pub const JOIN_REFRESH: Duration = Duration::from_secs(60);

pub struct RelayDirectory {
    /// What tabs are served; shared with the bridge's `Relay`.
    pub list: Arc<RwLock<Vec<ListedRelay>>>,
    embedded: Vec<ListedRelay>,
    joined: Mutex<HashMap<[u8; 20], (ListedRelay, Instant)>>,
}

impl RelayDirectory {
    pub fn new(embedded: Vec<ListedRelay>) -> Arc<Self> {
        let dir = Arc::new(RelayDirectory {
            list: Arc::new(RwLock::new(embedded.clone())),
            embedded,
            joined: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&dir);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(15));
            loop {
                every.tick().await;
                let Some(dir) = weak.upgrade() else { return };
                dir.prune();
            }
        });
        dir
    }

    /// Lists (or refreshes) the relay described by the relay-list line in
    /// `body`, once `bridge` reached it and it proved those identities.
    pub async fn join(&self, bridge: &Relay, body: &str) -> Result<ListedRelay, String> {
        let relays = parse_relay_list(body).map_err(|e| e.to_string())?;
        let [relay] = relays.as_slice() else {
            return Err("send exactly one `relay` line".into());
        };
        if relay.rsa_id == bridge.keys.rsa_id {
            return Err("that is this bridge's own identity".into());
        }
        bridge
            .link_to(relay.addr, relay.rsa_id, Some(relay.ed25519_id))
            .await
            .map_err(|e| format!("cannot verify the relay at {}: {e}", relay.addr))?;
        if let Ok(mut joined) = self.joined.lock() {
            joined.insert(relay.rsa_id, (relay.clone(), Instant::now()));
        }
        self.publish();
        Ok(relay.clone())
    }

    fn prune(&self) {
        if let Ok(mut joined) = self.joined.lock() {
            let before = joined.len();
            joined.retain(|_, (_, seen)| seen.elapsed() < JOIN_TTL);
            if joined.len() == before {
                return;
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let mut all = self.embedded.clone();
        if let Ok(joined) = self.joined.lock() {
            let mut extra: Vec<ListedRelay> = joined.values().map(|(r, _)| r.clone()).collect();
            extra.sort_by(|a, b| a.nickname.cmp(&b.nickname));
            all.extend(extra);
        }
        if let Ok(mut list) = self.list.write() {
            *list = all;
        }
    }

    pub fn snapshot(&self) -> Vec<ListedRelay> {
        self.list.read().map(|l| l.clone()).unwrap_or_default()
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
) -> Result<Vec<ListedRelay>, String> {
    let mut listed = Vec::new();
    for i in 0..count {
        let is_exit = i + 1 == count;
        let policy = if is_exit {
            exit_policy.clone()
        } else {
            "reject *:*".parse()?
        };
        let options = RelayOptions {
            exit_bind: if is_exit { exit_bind } else { None },
            relay_list: None,
            mesh: None,
        };
        let keys = match data_dir {
            Some(dir) => RelayKeys::load_or_generate(&dir.join(format!("relay-{i}-keys.json")))?,
            None => RelayKeys::generate()?,
        };
        let relay = Relay::with_options(keys, policy, options)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
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
