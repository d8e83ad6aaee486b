//! Bootstrapping: fetch and verify the consensus and microdescriptors from
//! a directory authority over BEGIN_DIR (dir-spec §4, §5).

use std::time::{SystemTime, UNIX_EPOCH};

use peersm_core::circuit::StreamTarget;
use peersm_core::dir::authority::{verify_consensus, AuthorityCert};
use peersm_core::dir::base64_encode;
use peersm_core::dir::consensus::Consensus;
use peersm_core::dir::microdesc;
use peersm_core::dir::path::NetDir;

use super::client::{self, ChannelHandle, StreamEvent};
use super::dirauth::DirAuthority;
use crate::error::{NodeError, Result};

/// Microdescriptors per request, keeping URLs reasonably short.
const MICRODESCS_PER_REQUEST: usize = 90;

/// An HTTP/1.0 GET over a BEGIN_DIR stream; returns the body of a 200.
pub async fn dir_get(ch: &ChannelHandle, circ: u32, path: &str) -> Result<Vec<u8>> {
    let (stream, mut events) = ch.begin(circ, StreamTarget::Directory).await?;
    ch.send(
        circ,
        stream,
        format!("GET {path} HTTP/1.0\r\n\r\n").into_bytes(),
    )
    .await?;
    let mut response = Vec::new();
    while let Some(e) = events.recv().await {
        match e {
            StreamEvent::Data(d) => response.extend_from_slice(&d),
            StreamEvent::Ended { .. } => break,
            StreamEvent::Connected => {}
        }
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            NodeError::invalid("directory answer", format!("GET {path}: no HTTP header"))
        })?;
    let status = String::from_utf8_lossy(response.get(..split).unwrap_or_default())
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    if !status.contains(" 200") {
        return Err(NodeError::invalid(
            "directory answer",
            format!("GET {path}: {status}"),
        ));
    }
    Ok(response.split_off(split + 4))
}

/// Fetches a verified NetDir from the first authority that answers.
pub async fn bootstrap(authorities: &[DirAuthority]) -> Result<NetDir> {
    let trusted: Vec<[u8; 20]> = authorities.iter().map(|a| a.v3ident).collect();
    let mut errors = Vec::new();
    for auth in authorities {
        match bootstrap_from(auth, &trusted).await {
            Ok(dir) => return Ok(dir),
            Err(e) => {
                tracing::warn!(authority = %auth.nickname, "bootstrap failed: {e}");
                errors.push(format!("{}: {e}", auth.nickname));
            }
        }
    }
    Err(NodeError::invalid(
        "directory",
        format!(
            "no authority gave a usable directory ({})",
            errors.join("; ")
        ),
    ))
}

async fn bootstrap_from(auth: &DirAuthority, trusted: &[[u8; 20]]) -> Result<NetDir> {
    let ch = client::connect(auth.or_addr, Some(auth.fingerprint), None).await?;
    let circ = ch.create_fast().await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let keys = String::from_utf8_lossy(&dir_get(&ch, circ, "/tor/keys/all").await?).to_string();
    let certs = AuthorityCert::parse_many(&keys, trusted, now);
    let text = String::from_utf8_lossy(
        &dir_get(&ch, circ, "/tor/status-vote/current/consensus-microdesc").await?,
    )
    .to_string();
    let signers =
        verify_consensus(&text, trusted, &certs).map_err(|e| NodeError::invalid("consensus", e))?;
    let consensus = Consensus::parse(&text).map_err(|e| NodeError::invalid("consensus", e))?;
    let mut mds = Vec::new();
    for batch in consensus.routers.chunks(MICRODESCS_PER_REQUEST) {
        let list: Vec<String> = batch
            .iter()
            .map(|r| base64_encode(&r.microdesc_digest, false))
            .collect();
        let body = dir_get(&ch, circ, &format!("/tor/micro/d/{}", list.join("-"))).await?;
        mds.extend(microdesc::parse_all(&String::from_utf8_lossy(&body)));
    }
    ch.destroy(circ);
    let dir = NetDir::new(&consensus, &mds);
    tracing::info!(
        authority = %auth.nickname,
        signers,
        relays = consensus.routers.len(),
        usable = dir.relays.len(),
        "directory bootstrapped"
    );
    Ok(dir)
}
