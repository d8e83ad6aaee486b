//! Circuits from the tab: the relay list from the bridge's directory
//! (BEGIN_DIR on a one-hop circuit) and 3-hop circuits bridge → middle →
//! exit, every hop with ntor.

use super::bridge_link::TorLink;
use super::circuit_host as host;
use peersm_core::dir::relay_list::{
    choose_middle_and_exit, parse_relay_list, ListedRelay, RELAY_LIST_PATH,
};

/// Fetches the relays behind the bridge.
pub(crate) async fn fetch_relay_list(tor: &TorLink) -> Result<Vec<ListedRelay>, String> {
    let circ = tor.create().await?;
    let result = relay_list_on(tor, circ).await;
    tor.destroy(circ);
    result
}

async fn relay_list_on(tor: &TorLink, circ: u32) -> Result<Vec<ListedRelay>, String> {
    let (status, body) = host::dir_get(tor, circ, RELAY_LIST_PATH).await?;
    if status != 200 {
        return Err(format!("the bridge answered {status} for its relay list"));
    }
    let text = String::from_utf8(body).map_err(|_| "relay list is not UTF-8".to_string())?;
    parse_relay_list(&text).map_err(|e| e.to_string())
}

/// A circuit through the bridge, `middle` and `exit`.
pub(crate) struct Circuit {
    pub(crate) id: u32,
    pub(crate) middle: ListedRelay,
    pub(crate) exit: ListedRelay,
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// Picks a path avoiding `avoid` (and the bridge) and builds it.
pub(crate) async fn build_circuit(
    tor: &TorLink,
    relays: &[ListedRelay],
    avoid: &[[u8; 20]],
) -> Result<Circuit, String> {
    let mut excluded = avoid.to_vec();
    excluded.push(tor.bridge.relay.rsa_id);
    let (middle, exit) =
        choose_middle_and_exit(relays, &excluded, random_u64()).ok_or_else(|| {
            format!(
                "no path: the bridge lists {} relays ({} exits) and {} are avoided",
                relays.len(),
                relays.iter().filter(|r| r.exit).count(),
                avoid.len()
            )
        })?;
    build_through(tor, middle.clone(), exit.clone()).await
}

pub(crate) async fn build_through(
    tor: &TorLink,
    middle: ListedRelay,
    exit: ListedRelay,
) -> Result<Circuit, String> {
    let id = tor.create().await?;
    let extended = async {
        tor.extend(id, &middle)
            .await
            .map_err(|e| format!("extending to {}: {e}", middle.nickname))?;
        tor.extend(id, &exit)
            .await
            .map_err(|e| format!("extending to {}: {e}", exit.nickname))
    };
    if let Err(e) = extended.await {
        tor.destroy(id);
        return Err(e);
    }
    Ok(Circuit { id, middle, exit })
}
