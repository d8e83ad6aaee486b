//! The tab as onion router over its WebRTC links: it answers CREATE2 with
//! its own ntor key, relays cells, extends circuits to the peers it is
//! linked to (EXTEND2 naming them by ID as the legacy identity), answers
//! FIND_NODE with its linked peers, and serves a small directory on
//! BEGIN_DIR (`/peersm/info`, `/peersm/bytes?n=N`) so a circuit through
//! tabs can be checked and measured end to end. Tabs never exit to the
//! Internet: BEGIN is refused (END EXITPOLICY).

use peersm_core::http::text_response as response;
use std::collections::HashMap;

use peersm_core::cell::peersm::{NodeInfo, MAX_FOUND_PEERS};
use peersm_core::cell::{
    command, create::destroy_cell, destroy_reason, end_reason, CircIdLen, ControlMessage, Created2,
    RawCell,
};
use peersm_core::channel::encode_cells;
use peersm_core::circuit::{RelayCircuit, RelayEvent, StreamTarget};
use peersm_core::crypto::PeerId;
use peersm_core::dht::Distance;

use super::log;
use super::mesh::{IntroJob, Mesh, SharedMesh};

/// Cells per data-channel message: about 16 KiB (docs/PROTOCOL.md "Framing").
const CELLS_PER_FRAME: usize = 31;
/// The most `/peersm/bytes` serves in one answer.
const MAX_TEST_BYTES: usize = 256 * 1024 * 1024;
const MAX_REQUEST: usize = 4096;

/// A BEGIN_DIR stream at this tab.
#[derive(Default)]
struct DirStream {
    request: Vec<u8>,
    /// The answer not yet taken by the circuit's windows.
    unsent: Vec<u8>,
    /// Bytes of `/peersm/bytes` still to generate.
    to_generate: usize,
    answered: bool,
}

/// The circuits one linked peer runs through us.
#[derive(Default)]
pub(crate) struct LinkRelay {
    circuits: HashMap<u32, RelayCircuit>,
    dir: HashMap<(u32, u16), DirStream>,
    /// Cells for this link that belong to no circuit object here (CREATE2
    /// and DESTROY we send when extending, cells relayed onward).
    direct: Vec<RawCell>,
}

/// A cell from linked peer `from`. The events it causes are acted on in
/// `send_all`, once per frame (the caller always sends after a frame).
pub(super) fn on_cell(m: &mut Mesh, from: PeerId, cell: RawCell) {
    let circ = cell.circ_id;
    if circ == 0 {
        return; // PADDING, VPADDING.
    }
    // A circuit we extended to `from` on someone's behalf: toward its origin.
    if let Some(&(back, back_circ)) = m.backward.get(&(from, circ)) {
        if cell.command == command::DESTROY {
            m.backward.remove(&(from, circ));
            m.forward.remove(&(back, back_circ));
        }
        if let Some(rc) = m
            .links
            .get_mut(&back)
            .and_then(|l| l.relay.circuits.get_mut(&back_circ))
        {
            let result = if cell.command == command::CREATED2 {
                match Created2::from_cell(&cell) {
                    Ok(created) => rc.next_hop_created(circ, created),
                    Err(e) => Err(e.into()),
                }
            } else {
                rc.handle_cell_from_forward(cell)
            };
            if let Err(e) = result {
                log::info(&format!("relayed circuit {back_circ}: {e}"));
            }
        }
        return;
    }
    let Some(link) = m.links.get_mut(&from) else {
        return;
    };
    if let Some(rc) = link.relay.circuits.get_mut(&circ) {
        if let Err(e) = rc.handle_cell_from_back(cell) {
            log::info(&format!("circuit {circ} from {from}: {e}"));
        }
    } else if link.circuits.mux.has_circuit(circ) {
        link.circuits.mux.handle_cell(cell);
    } else if matches!(cell.command, command::CREATE2 | command::CREATE_FAST) {
        let Some(me) = &m.me else { return };
        match RelayCircuit::accept_create(&cell, std::slice::from_ref(&me.ntor)) {
            Ok(rc) => drop(link.relay.circuits.insert(circ, rc)),
            Err(e) => {
                log::info(&format!("CREATE from {from} refused: {e}"));
                link.relay.circuits.remove(&circ);
                if let Some(dc) = &link.dc {
                    if let Ok(frame) = encode_cells(
                        &[destroy_cell(circ, destroy_reason::PROTOCOL)],
                        CircIdLen::Four,
                    ) {
                        let _ = dc.send_with_u8_array(&frame);
                    }
                }
            }
        }
    }
}

/// Acts on what the relayed circuits asked for.
fn after_relay(m: &mut Mesh) {
    let mut events = Vec::new();
    for (peer, link) in m.links.iter_mut() {
        for (circ, rc) in link.relay.circuits.iter_mut() {
            events.extend(std::iter::from_fn(|| rc.poll_event()).map(|e| (*peer, *circ, e)));
        }
    }
    for (peer, circ, event) in events {
        on_relay_event(m, peer, circ, event);
    }
}

fn on_relay_event(m: &mut Mesh, peer: PeerId, circ: u32, event: RelayEvent) {
    match event {
        RelayEvent::Extend(extend) => {
            let target = extend.legacy_id().map(PeerId);
            let next =
                target.filter(|t| *t != peer && m.links.get(t).is_some_and(|l| l.state == "open"));
            let Some(next) = next else {
                if let Some(rc) = relay_circuit(m, &peer, circ) {
                    let _ = rc.extend_failed(destroy_reason::CONNECTFAILED);
                }
                return;
            };
            let next_circ = new_circ_id(m, &next);
            if let Ok(cell) = extend.create.to_cell(next_circ) {
                m.forward.insert((peer, circ), (next, next_circ));
                m.backward.insert((next, next_circ), (peer, circ));
                queue_direct(m, &next, cell);
            }
        }
        RelayEvent::Begin { stream_id, target } => {
            let Some(rc) = relay_circuit(m, &peer, circ) else {
                return;
            };
            match target {
                StreamTarget::Directory => {
                    if rc.stream_connected(stream_id, None).is_ok() {
                        if let Some(l) = m.links.get_mut(&peer) {
                            l.relay.dir.insert((circ, stream_id), DirStream::default());
                        }
                    }
                }
                StreamTarget::Tcp { .. } => {
                    let _ = rc.stream_refused(stream_id, end_reason::EXITPOLICY);
                }
            }
        }
        RelayEvent::StreamData { stream_id, data } => {
            let me = m.me.as_ref().map(|k| k.id);
            if let Some(l) = m.links.get_mut(&peer) {
                if let Some(s) = l.relay.dir.get_mut(&(circ, stream_id)) {
                    if !s.answered {
                        s.request.extend_from_slice(&data);
                        answer_request(s, me);
                    }
                }
            }
            push_dir(m, &peer, circ, stream_id);
        }
        RelayEvent::StreamWritable { stream_id } => push_dir(m, &peer, circ, stream_id),
        RelayEvent::StreamEnded { stream_id, .. } => {
            if let Some(l) = m.links.get_mut(&peer) {
                l.relay.dir.remove(&(circ, stream_id));
            }
        }
        RelayEvent::Control(ControlMessage::FindNode { target }) => {
            let mut nodes: Vec<(Distance, NodeInfo)> = m
                .links
                .iter()
                .filter(|(id, l)| **id != peer && l.state == "open")
                .filter_map(|(id, l)| {
                    let (ntor_key, signature) = l.ntor.clone()?;
                    let info = NodeInfo {
                        spki: l.spki.clone()?,
                        ntor_key,
                        signature,
                    };
                    Some((Distance::between(id, &target), info))
                })
                .collect();
            nodes.sort_by_key(|(d, _)| *d);
            nodes.truncate(MAX_FOUND_PEERS.min(peersm_core::dht::K));
            let reply = ControlMessage::FoundNode {
                nodes: nodes.into_iter().map(|(_, n)| n).collect(),
            };
            if let Some(rc) = relay_circuit(m, &peer, circ) {
                let _ = rc.send_control(&reply);
            }
        }
        RelayEvent::Control(ControlMessage::RelayIntroduce { from, to, sdp }) => {
            let me = m.me.as_ref().map(|k| k.id);
            if Some(to) == me {
                m.intro_jobs.push(IntroJob::Answer {
                    via: peer,
                    circ,
                    asker: from,
                    sdp,
                });
            } else if m.links.get(&to).is_some_and(|l| l.state == "open") && to != peer {
                m.intro_jobs.push(IntroJob::Forward {
                    asker_link: peer,
                    circ,
                    asker: from,
                    target: to,
                    sdp,
                });
            } else if let Some(rc) = relay_circuit(m, &peer, circ) {
                let _ = rc.send_control(&ControlMessage::RelayIntroduced {
                    from: to,
                    to: from,
                    sdp: String::new(),
                });
            }
        }
        RelayEvent::Control(_) => {}
        RelayEvent::Destroyed { .. } => {
            if let Some((next, next_circ)) = m.forward.remove(&(peer, circ)) {
                m.backward.remove(&(next, next_circ));
            }
            if let Some(l) = m.links.get_mut(&peer) {
                l.relay.dir.retain(|(c, _), _| *c != circ);
            }
        }
    }
}

fn relay_circuit<'a>(m: &'a mut Mesh, peer: &PeerId, circ: u32) -> Option<&'a mut RelayCircuit> {
    m.links.get_mut(peer)?.relay.circuits.get_mut(&circ)
}

/// Parses the HTTP request once complete and prepares the answer.
fn answer_request(s: &mut DirStream, me: Option<PeerId>) {
    let Some(end) = s.request.windows(4).position(|w| w == b"\r\n\r\n") else {
        if s.request.len() > MAX_REQUEST {
            s.answered = true;
            s.unsent = response("400 Bad Request", b"request too long\n");
        }
        return;
    };
    s.answered = true;
    let head = String::from_utf8_lossy(s.request.get(..end).unwrap_or_default()).to_string();
    let path = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_default()
        .to_string();
    if path == "/peersm/info" {
        let body = format!(
            "peersm tab {}\n",
            me.map(|i| i.to_hex()).unwrap_or_default()
        );
        s.unsent = response("200 OK", body.as_bytes());
    } else if let Some(n) = path
        .strip_prefix("/peersm/bytes?n=")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let n = n.min(MAX_TEST_BYTES);
        s.unsent = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n"
        )
        .into_bytes();
        s.to_generate = n;
    } else {
        s.unsent = response("404 Not Found", b"not found\n");
    }
}

/// Moves a BEGIN_DIR answer into the circuit as its windows allow; END
/// after the last byte.
fn push_dir(m: &mut Mesh, peer: &PeerId, circ: u32, stream: u16) {
    let Some(l) = m.links.get_mut(peer) else {
        return;
    };
    let (Some(s), Some(rc)) = (
        l.relay.dir.get_mut(&(circ, stream)),
        l.relay.circuits.get_mut(&circ),
    ) else {
        return;
    };
    if !s.answered {
        return;
    }
    loop {
        if s.unsent.len() < 64 * 1024 && s.to_generate > 0 {
            let n = s.to_generate.min(64 * 1024);
            s.unsent.extend((0..n).map(|i| (i % 251) as u8));
            s.to_generate -= n;
        }
        if s.unsent.is_empty() {
            break;
        }
        match rc.send(stream, &s.unsent) {
            Ok(0) | Err(_) => break,
            Ok(n) => drop(s.unsent.drain(..n)),
        }
    }
    if s.unsent.is_empty() && s.to_generate == 0 {
        let _ = rc.end_stream(stream, end_reason::DONE);
        l.relay.dir.remove(&(circ, stream));
    }
}

/// A circuit id for a circuit we open on the link to `peer`: the high bit
/// by which side of the link we are, unused on that link.
fn new_circ_id(m: &Mesh, peer: &PeerId) -> u32 {
    let initiated = m.links.get(peer).is_some_and(|l| l.we_initiated);
    loop {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        let raw = u32::from_be_bytes(b);
        let id = if initiated {
            raw | 0x8000_0000
        } else {
            raw & 0x7fff_ffff
        };
        let used = m.backward.contains_key(&(*peer, id))
            || m.links.get(peer).is_some_and(|l| {
                l.circuits.mux.has_circuit(id) || l.relay.circuits.contains_key(&id)
            });
        if id != 0 && !used {
            return id;
        }
    }
}

/// Cells queued for a link outside any circuit object (CREATE2 we send
/// when extending).
fn queue_direct(m: &mut Mesh, peer: &PeerId, cell: RawCell) {
    if let Some(l) = m.links.get_mut(peer) {
        l.relay.direct.push(cell);
    }
}

/// `peer`'s link is gone: circuits through it die in both directions (the
/// caller's `send_all` acts on the events and sends the DESTROYs).
pub(super) fn link_gone(m: &mut Mesh, peer: &PeerId) {
    let out: Vec<((PeerId, u32), (PeerId, u32))> = m
        .forward
        .iter()
        .filter(|((b, _), (n, _))| b == peer || n == peer)
        .map(|(k, v)| (*k, *v))
        .collect();
    for ((back, back_circ), (next, next_circ)) in out {
        m.forward.remove(&(back, back_circ));
        m.backward.remove(&(next, next_circ));
        if back == *peer {
            // The origin's side vanished: tear down the rest.
            queue_direct(
                m,
                &next,
                destroy_cell(next_circ, destroy_reason::CHANNEL_CLOSED),
            );
        } else if let Some(rc) = relay_circuit(m, &back, back_circ) {
            let _ = rc
                .handle_cell_from_forward(destroy_cell(next_circ, destroy_reason::CHANNEL_CLOSED));
        }
    }
}

/// Sends a control message back on the relay circuit `circ` that `via`
/// built through us.
pub(super) fn reply_on(
    m: &mut Mesh,
    via: PeerId,
    circ: u32,
    message: &ControlMessage,
) -> Result<(), String> {
    relay_circuit(m, &via, circ)
        .ok_or("the circuit is gone")?
        .send_control(message)
        .map_err(|e| e.to_string())
}

/// Sends every queued cell on every open link, batched per link.
pub(super) fn send_all(mesh: &SharedMesh) {
    if !mesh.borrow().intro_jobs.is_empty() {
        super::mesh::run_intro_jobs(mesh);
    }
    let mut m = mesh.borrow_mut();
    after_relay(&mut m);
    // Cells our relayed circuits send onward go to the next link.
    let mut onward: Vec<(PeerId, RawCell)> = Vec::new();
    let Mesh { links, forward, .. } = &mut *m;
    for (peer, link) in links.iter_mut() {
        for (circ, rc) in link.relay.circuits.iter_mut() {
            if let Some((next, _)) = forward.get(&(*peer, *circ)) {
                onward.extend(std::iter::from_fn(|| rc.poll_cell_forward()).map(|c| (*next, c)));
            } else {
                // Nowhere to go yet (not extended): dropped, as a relay would.
                while rc.poll_cell_forward().is_some() {}
            }
        }
        link.relay.circuits.retain(|_, rc| !rc.is_destroyed());
    }
    for (next, cell) in onward {
        if let Some(l) = m.links.get_mut(&next) {
            l.relay.direct.push(cell);
        }
    }
    for (peer, link) in m.links.iter_mut() {
        let mut cells = std::mem::take(&mut link.relay.direct);
        for rc in link.relay.circuits.values_mut() {
            cells.extend(std::iter::from_fn(|| rc.poll_cell_back()));
        }
        cells.extend(link.circuits.drive());
        if cells.is_empty() {
            continue;
        }
        let Some(dc) = link.dc.as_ref().filter(|_| link.state == "open") else {
            continue;
        };
        for batch in cells.chunks(CELLS_PER_FRAME) {
            match encode_cells(batch, CircIdLen::Four) {
                Ok(frame) => {
                    if let Err(e) = dc.send_with_u8_array(&frame) {
                        log::warn(&format!("send to {peer} failed: {e:?}"));
                    }
                }
                Err(e) => log::warn(&format!("encode for {peer}: {e}")),
            }
        }
    }
}
