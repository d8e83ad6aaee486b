//! Circuits a tab builds through other tabs: the first hop is a linked
//! peer (CREATE2 with the ntor key its link CERTS published); each next
//! hop is chosen from the FOUND_NODE answer of the current last hop (its
//! linked peers, each with an ntor key signed by its identity) and reached
//! with EXTEND2 naming it by ID.

use futures_util::StreamExt;

use super::circuit_host::{self as host, CircuitHost, MuxDriver};
use super::js::sleep_ms;
use super::log;
use super::mesh::SharedMesh;
use super::tab_relay::send_all;
use peersm_core::cell::{ControlMessage, LinkSpec};
use peersm_core::crypto::PeerId;

const FOUND_NODE_TIMEOUT_MS: i32 = 10_000;

/// A circuit this tab built through tabs.
#[derive(Debug, Clone)]
pub(crate) struct OwnCircuit {
    pub(crate) circ: u32,
    pub(crate) hops: Vec<PeerId>,
}

/// Our circuits whose first hop is `peer`.
#[derive(Clone)]
pub(crate) struct TabHost {
    mesh: SharedMesh,
    peer: PeerId,
}

impl CircuitHost for TabHost {
    fn with_driver<R>(&self, f: impl FnOnce(&mut MuxDriver) -> R) -> Result<R, String> {
        let mut m = self.mesh.borrow_mut();
        let link = m
            .links
            .get_mut(&self.peer)
            .filter(|l| l.state == "open")
            .ok_or("the link to the first hop closed")?;
        Ok(f(&mut link.circuits))
    }

    fn flush(&self) -> Result<(), String> {
        send_all(&self.mesh);
        Ok(())
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

fn random_id() -> PeerId {
    let mut b = [0u8; 20];
    let _ = getrandom::fill(&mut b);
    PeerId(b)
}

/// Builds a circuit of `hops` tabs; `me` is never one of them.
pub(crate) async fn build(
    mesh: &SharedMesh,
    me: PeerId,
    hops: usize,
) -> Result<OwnCircuit, String> {
    let firsts: Vec<(PeerId, [u8; 32])> = mesh
        .borrow()
        .links
        .iter()
        .filter(|(_, l)| l.state == "open")
        .filter_map(|(id, l)| Some((*id, l.ntor.as_ref()?.0)))
        .collect();
    let pick = (random_u64() % firsts.len().max(1) as u64) as usize;
    let (first, ntor) = *firsts.get(pick).ok_or("no open link to another tab")?;
    let link = TabHost {
        mesh: mesh.clone(),
        peer: first,
    };
    let circ = host::create(&link, first.0, ntor).await?;
    let mut path = vec![first];
    while path.len() < hops {
        match next_hop(&link, circ, me, &path).await {
            Ok((id, key)) => {
                host::extend(&link, circ, vec![LinkSpec::LegacyId(id.0)], id.0, key).await?;
                path.push(id);
            }
            Err(e) => {
                host::destroy(&link, circ);
                return Err(format!("after {} hops: {e}", path.len()));
            }
        }
    }
    let own = OwnCircuit { circ, hops: path };
    mesh.borrow_mut().own_circuits.push(own.clone());
    Ok(own)
}

/// Asks the circuit's last hop for its linked peers and picks one not
/// already on the path, whose ntor key its identity signed.
async fn next_hop(
    link: &TabHost,
    circ: u32,
    me: PeerId,
    path: &[PeerId],
) -> Result<(PeerId, [u8; 32]), String> {
    let mut answers = host::control_messages(link, circ)?;
    host::send_control(
        link,
        circ,
        &ControlMessage::FindNode {
            target: random_id(),
        },
    )?;
    let answer = {
        let timeout = sleep_ms(FOUND_NODE_TIMEOUT_MS);
        futures_util::pin_mut!(timeout);
        match futures_util::future::select(answers.next(), timeout).await {
            futures_util::future::Either::Left((Some(m), _)) => m,
            _ => return Err("no FOUND_NODE answer".into()),
        }
    };
    let ControlMessage::FoundNode { nodes } = answer else {
        return Err("unexpected answer to FIND_NODE".into());
    };
    let candidates: Vec<(PeerId, [u8; 32])> = nodes
        .iter()
        .filter_map(|n| Some((n.verify().ok()?, n.ntor_key)))
        .filter(|(id, _)| *id != me && !path.contains(id))
        .collect();
    let pick = (random_u64() % candidates.len().max(1) as u64) as usize;
    candidates
        .get(pick)
        .copied()
        .ok_or_else(|| format!("the last hop knows no new peer ({} offered)", nodes.len()))
}

fn host_for(mesh: &SharedMesh, circ: u32) -> Result<(TabHost, OwnCircuit), String> {
    let own = mesh
        .borrow()
        .own_circuits
        .iter()
        .find(|c| c.circ == circ)
        .cloned()
        .ok_or("no such circuit")?;
    let first = *own.hops.first().ok_or("empty circuit")?;
    Ok((
        TabHost {
            mesh: mesh.clone(),
            peer: first,
        },
        own,
    ))
}

/// GET `path` from the last hop's directory (BEGIN_DIR); returns the
/// status and the body.
pub(crate) async fn get(
    mesh: &SharedMesh,
    circ: u32,
    path: &str,
) -> Result<(u16, Vec<u8>), String> {
    let (link, _) = host_for(mesh, circ)?;
    host::dir_get(&link, circ, path).await
}

pub(crate) fn close(mesh: &SharedMesh, circ: u32) {
    if let Ok((link, _)) = host_for(mesh, circ) {
        host::destroy(&link, circ);
    }
    mesh.borrow_mut().own_circuits.retain(|c| c.circ != circ);
}

/// `(circuit, hops, alive)` of our circuits through tabs.
pub(crate) fn list(mesh: &SharedMesh) -> Vec<(OwnCircuit, bool)> {
    let own = mesh.borrow().own_circuits.clone();
    own.into_iter()
        .map(|c| {
            let alive = host_for(mesh, c.circ)
                .map(|(link, _)| host::is_alive(&link, c.circ))
                .unwrap_or(false);
            (c, alive)
        })
        .collect()
}

/// Longest route a lookup query takes through tabs.
const MAX_QUERY_ROUTE: usize = 5;

/// A lookup's outcome: the closest peers found, closest first.
pub(crate) struct LookupOutcome {
    pub(crate) closest: Vec<PeerId>,
    pub(crate) rounds: u32,
    pub(crate) queries: usize,
    /// How each peer was reached: the route ending at it, through the
    /// peers that named it (its introducers).
    pub(crate) routes: std::collections::HashMap<PeerId, Vec<(PeerId, [u8; 32])>>,
}

/// A circuit along `route` (each hop with its ntor key); the first hop
/// must be linked to us.
async fn build_route(
    mesh: &SharedMesh,
    route: &[(PeerId, [u8; 32])],
) -> Result<(TabHost, u32), String> {
    let (first, key) = *route.first().ok_or("empty route")?;
    let link = TabHost {
        mesh: mesh.clone(),
        peer: first,
    };
    let circ = host::create(&link, first.0, key).await?;
    for (id, key) in route.iter().skip(1) {
        if let Err(e) = host::extend(&link, circ, vec![LinkSpec::LegacyId(id.0)], id.0, *key).await
        {
            host::destroy(&link, circ);
            return Err(e);
        }
    }
    Ok((link, circ))
}

/// FIND_NODE at the end of `route`: the verified peers it names.
async fn query(
    mesh: &SharedMesh,
    route: &[(PeerId, [u8; 32])],
    target: PeerId,
) -> Result<Vec<(PeerId, [u8; 32])>, String> {
    let (link, circ) = build_route(mesh, route).await?;
    let result = async {
        let mut answers = host::control_messages(&link, circ)?;
        host::send_control(&link, circ, &ControlMessage::FindNode { target })?;
        let timeout = sleep_ms(FOUND_NODE_TIMEOUT_MS);
        futures_util::pin_mut!(timeout);
        match futures_util::future::select(answers.next(), timeout).await {
            futures_util::future::Either::Left((Some(ControlMessage::FoundNode { nodes }), _)) => {
                Ok(nodes
                    .iter()
                    .filter_map(|n| Some((n.verify().ok()?, n.ntor_key)))
                    .collect())
            }
            _ => Err("no FOUND_NODE answer".to_string()),
        }
    }
    .await;
    host::destroy(&link, circ);
    result
}

/// A Kademlia lookup of `target` through tabs: our linked peers are asked
/// first (one-hop circuits); a peer learned from another's answer is
/// asked through a circuit via the peer that named it (its introducer,
/// which is linked to it).
pub(crate) async fn find_node(
    mesh: &SharedMesh,
    me: PeerId,
    target: PeerId,
) -> Result<LookupOutcome, String> {
    use peersm_core::dht::{Lookup, LookupAction, K};
    use std::collections::HashMap;
    let mut routes: HashMap<PeerId, Vec<(PeerId, [u8; 32])>> = HashMap::new();
    let seeds: Vec<PeerId> = {
        let m = mesh.borrow();
        for (id, l) in m.links.iter().filter(|(_, l)| l.state == "open") {
            if let Some((key, _)) = &l.ntor {
                routes.insert(*id, vec![(*id, *key)]);
            }
        }
        m.routing
            .as_ref()
            .map(|t| t.closest(&target, K).into_iter().map(|e| e.id).collect())
            .unwrap_or_default()
    };
    let mut lookup = Lookup::new(me, target, seeds);
    let mut pending = Vec::new();
    loop {
        match lookup.next_action() {
            LookupAction::Query(p) => pending.push(p),
            LookupAction::Wait => {
                for p in std::mem::take(&mut pending) {
                    let Some(route) = routes.get(&p).cloned() else {
                        lookup.on_failure(&p);
                        continue;
                    };
                    match query(mesh, &route, target).await {
                        Ok(nodes) => {
                            for (id, key) in &nodes {
                                let fresh = *id != me && !route.iter().any(|(r, _)| r == id);
                                if fresh && route.len() < MAX_QUERY_ROUTE {
                                    let mut via = route.clone();
                                    via.push((*id, *key));
                                    routes.entry(*id).or_insert(via);
                                }
                            }
                            lookup.on_answer(&p, nodes.into_iter().map(|(id, _)| id));
                        }
                        Err(e) => {
                            log::info(&format!("lookup: {p} did not answer: {e}"));
                            lookup.on_failure(&p);
                        }
                    }
                }
            }
            LookupAction::Done => break,
        }
    }
    Ok(LookupOutcome {
        closest: lookup.result(),
        rounds: lookup.rounds(),
        queries: lookup.queries(),
        routes,
    })
}

/// Waits for a RELAY_INTRODUCED from `target` on a control receiver.
async fn introduced_by(
    answers: &mut futures_channel::mpsc::UnboundedReceiver<ControlMessage>,
    target: PeerId,
) -> Result<String, String> {
    let timeout = sleep_ms(FOUND_NODE_TIMEOUT_MS * 2);
    futures_util::pin_mut!(timeout);
    loop {
        let next = answers.next();
        futures_util::pin_mut!(next);
        match futures_util::future::select(next, timeout.as_mut()).await {
            futures_util::future::Either::Left((
                Some(ControlMessage::RelayIntroduced { from, sdp, .. }),
                _,
            )) if from == target => {
                return if sdp.is_empty() {
                    Err("the introducer could not introduce us".into())
                } else {
                    Ok(sdp)
                };
            }
            futures_util::future::Either::Left((Some(_), _)) => continue,
            _ => return Err("no answer to the introduction".into()),
        }
    }
}

/// Asks the last tab of `route` to introduce `asker` (us, or the tab we
/// introduce) to `target`: as asker, the last tab is linked to `target`;
/// as introducer, the route is `target` itself. Returns the answer SDP.
pub(crate) async fn ask_introduction(
    mesh: &SharedMesh,
    route: &[(PeerId, [u8; 32])],
    asker: PeerId,
    target: PeerId,
    sdp: String,
) -> Result<String, String> {
    let (link, circ) = build_route(mesh, route).await?;
    let result = async {
        let mut answers = host::control_messages(&link, circ)?;
        let ask = ControlMessage::RelayIntroduce {
            from: asker,
            to: target,
            sdp,
        };
        host::send_control(&link, circ, &ask)?;
        introduced_by(&mut answers, target).await
    }
    .await;
    host::destroy(&link, circ);
    result
}

/// As introducer: carries `asker`'s offer to `target`, a tab we are linked
/// to, on a one-hop circuit (the same request, on its behalf); returns its
/// answer.
pub(crate) async fn introduce(
    mesh: &SharedMesh,
    asker: PeerId,
    target: PeerId,
    sdp: String,
) -> Result<String, String> {
    let key = mesh
        .borrow()
        .links
        .get(&target)
        .and_then(|l| l.ntor.as_ref().map(|(k, _)| *k))
        .ok_or("not linked to the target")?;
    ask_introduction(mesh, &[(target, key)], asker, target, sdp).await
}
