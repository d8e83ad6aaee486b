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
    encode_relay_list, parse_relay_list, ListedRelay, RelayRoster, RELAY_LIST_PATH,
};
use peersm_core::router::ExtendTarget;
use peersm_core::service::ExitPolicy;

use crate::error::{Context, NodeError, Result};
use crate::link::now_ms;
use crate::relay::keys::RelayKeys;
use crate::relay::node::NodeHandle;
use crate::relay::server::{self as relay_server, Relay, RelayOptions};

/// How long a joined relay stays listed without refreshing.
pub const JOIN_TTL: Duration = Duration::from_secs(180);
/// How often joined relays refresh (`peersm-node relay --join`).
pub const JOIN_REFRESH: Duration = Duration::from_secs(60);

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
        bridge
            .node
            .link_to(target)
            .await
            .context(format!("cannot verify the relay at {}", relay.addr))?;
        if let Ok(mut roster) = self.roster.lock() {
            roster.joined(relay.clone(), now_ms());
        }
        self.publish().await;
        Ok(relay.clone())
    }

    async fn publish(&self) {
        let document = encode_relay_list(&self.snapshot()).into_bytes();
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
