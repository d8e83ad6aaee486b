//! Peers linked to this bridge, by peer ID. Only peers that proved their
//! identity during the link handshake are listed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use peersm_core::crypto::PeerId;
use tokio::sync::oneshot;

#[derive(Clone, Debug, serde::Serialize)]
pub struct RegisteredPeer {
    /// 40 hex characters.
    pub id: String,
    pub address: SocketAddr,
    /// Seconds since the Unix epoch.
    pub since: u64,
}

struct Entry {
    peer: RegisteredPeer,
    link_no: u64,
    /// Fired to close the link when a newer link of the same ID replaces it.
    evict: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
pub struct PeerRegistry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    peers: HashMap<PeerId, Entry>,
    open_links: usize,
    next_link_no: u64,
}

impl PeerRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the map half-updated: every update
        // below is a single insert or remove.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new link; returns its number for `register`/`link_closed`.
    pub fn link_opened(&self) -> u64 {
        let mut i = self.lock();
        i.open_links += 1;
        i.next_link_no += 1;
        i.next_link_no
    }

    pub fn link_closed(&self, link_no: u64, id: Option<PeerId>) {
        let mut i = self.lock();
        i.open_links = i.open_links.saturating_sub(1);
        if let Some(id) = id {
            if i.peers.get(&id).is_some_and(|e| e.link_no == link_no) {
                i.peers.remove(&id);
            }
        }
    }

    /// Registers an authenticated peer. A second link proving the same ID
    /// replaces the first (a tab that reconnected before its old socket
    /// timed out); the old link is told to close through `evict`.
    pub fn register(
        &self,
        id: PeerId,
        address: SocketAddr,
        link_no: u64,
        evict: oneshot::Sender<()>,
    ) {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let entry = Entry {
            peer: RegisteredPeer {
                id: id.to_hex(),
                address,
                since,
            },
            link_no,
            evict: Some(evict),
        };
        let old = self.lock().peers.insert(id, entry);
        if let Some(mut old) = old {
            tracing::info!(peer = %id, "peer linked again; closing its older link");
            if let Some(tx) = old.evict.take() {
                let _ = tx.send(());
            }
        }
    }

    pub fn snapshot(&self) -> (Vec<RegisteredPeer>, usize) {
        let i = self.lock();
        let mut peers: Vec<RegisteredPeer> = i.peers.values().map(|e| e.peer.clone()).collect();
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        (peers, i.open_links)
    }
}
