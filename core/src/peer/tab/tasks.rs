//! The tab's multi-step work as tasks: each waits for events of the
//! circuits and streams it owns (or for its children, or its deadline)
//! and finishes with a result for whoever started it: the adapter (an
//! operation), another task, a link waiting for an introduction.
//!
//! - `Route`: a circuit along known hops (on a tab link or the bridge
//!   link), then one purpose: keep it, ask FIND_NODE, carry an
//!   introduction, or GET from the last hop's directory.
//! - `BuildTab`: a circuit through tabs, each next hop picked from the
//!   last hop's FOUND_NODE answer.
//! - `Get`: a GET on one of our kept circuits.
//! - `Lookup`: a Kademlia lookup with `ALPHA` queries in flight, each a
//!   `Route` to the peer asked (through the peer that named it): FIND_NODE,
//!   or FIND_VALUE, which ends at the first answer with values.
//! - `Relays`, `BridgeCircuit`: the bridge's relay list, a 3-hop circuit.
//! - `Fetch` (fetch.rs): a download through the bridge's relays.

use std::collections::BTreeMap;

use crate::cell::{ControlMessage, LinkSpec};
use crate::circuit::StreamTarget;
use crate::client::{ClientMux, MuxEvent};
use crate::content::HashName;
use crate::crypto::PeerId;
use crate::dht::{Lookup, LookupAction, K};
use crate::dir::relay_list::{
    choose_middle_and_exit, parse_relay_list, verify_relay_list, ListedRelay, RELAY_LIST_PATH,
};
use crate::http::{get_request, HttpUrl, ResponseReader, Scheme};
use crate::router::CircuitKey;

use super::fetch::FetchTask;
use super::links::Introducer;
use super::{LinkId, OpError, Outcome, TabPeer};

pub(super) type TaskId = u64;

/// How long a FIND_NODE, an introduction or a GET may take, circuit
/// included.
const ROUTE_MS: u64 = 20_000;
/// Longest route a lookup query takes through tabs.
const MAX_QUERY_ROUTE: usize = 5;
/// Buckets refreshed per period (the farthest stale ones first).
const REFRESH_BUCKETS: usize = 3;
/// Bytes read out of a stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// One hop of a route: its identity digest, ntor key, and how EXTEND2
/// names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopSpec {
    pub id: [u8; 20],
    pub ntor: [u8; 32],
    pub specs: Vec<LinkSpec>,
}

impl HopSpec {
    /// A tab, named by its peer ID.
    pub fn tab(peer: PeerId, ntor: [u8; 32]) -> Self {
        HopSpec {
            id: peer.0,
            ntor,
            specs: vec![LinkSpec::LegacyId(peer.0)],
        }
    }

    /// A relay behind the bridge, named by address and both identities.
    pub fn relay(r: &ListedRelay) -> Self {
        HopSpec {
            id: r.rsa_id,
            ntor: r.ntor_key,
            specs: vec![
                LinkSpec::Addr(r.addr),
                LinkSpec::LegacyId(r.rsa_id),
                LinkSpec::Ed25519Id(r.ed25519_id),
            ],
        }
    }
}

/// A circuit this tab built through tabs and keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCircuit {
    /// Its id for the page.
    pub id: u32,
    pub hops: Vec<PeerId>,
    pub(super) link: LinkId,
    pub(super) circ: u32,
}

/// A lookup's outcome: the closest peers found, closest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupOutcome {
    pub closest: Vec<PeerId>,
    pub rounds: u32,
    pub queries: usize,
    /// How each peer was reached: the route ending at it, through the
    /// peers that named it (its introducers).
    pub routes: BTreeMap<PeerId, Vec<HopSpec>>,
    /// FIND_VALUE: the peers named as able to answer for the value, with
    /// their ntor keys (signatures checked).
    pub values: Vec<(PeerId, [u8; 32])>,
}

/// What a route does once built.
#[derive(Debug, Clone)]
pub(super) enum Purpose {
    /// Keep it (the result is the circuit).
    Hold,
    /// Ask the last hop FIND_NODE(target).
    FindNode(PeerId),
    /// Ask the last hop to introduce `asker` to `target` (when the last
    /// hop is `target`, it answers itself).
    Introduce {
        asker: PeerId,
        target: PeerId,
        sdp: String,
    },
    /// GET a path from the last hop's directory.
    Get(String),
    /// Ask the last hop FIND_VALUE(hash_name).
    FindValue(HashName),
    /// Tell the last hop STORE(hash_name, us); the route then closes.
    Store(HashName),
}

/// Who a task reports to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Parent {
    /// An operation of the adapter's: `TabEvent::Done`.
    Op(OpKind),
    Task(TaskId),
    /// An offer waiting for its introduction's answer.
    Offer(LinkId),
    /// We introduce `asker` to `target` for the circuit through us.
    Forward {
        circuit: CircuitKey<LinkId>,
        asker: PeerId,
        target: PeerId,
    },
    /// A bucket refresh lookup: link to what it finds.
    Refresh,
    /// A question to a linked tab that took much (the freerider rule).
    Probe(LinkId),
    /// FIND_VALUE for the ORDB: who can answer for this file.
    Sources(HashName),
    /// A lookup of a peer found by FIND_VALUE, for a route to it.
    SourceRoute(HashName, PeerId),
    /// A circuit to a peer that can answer for this file.
    SourceCircuit(HashName),
    /// The lookup of the peers closest to a file, to STORE us there.
    Store(HashName),
    /// A circuit of this many tabs built ahead (`warm.rs`).
    Warm(usize),
    /// Nobody waits for the result.
    Nobody,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum OpKind {
    TabCircuit,
    DirGet,
    Lookup,
    Relays,
    BridgeCircuit,
    Fetch,
    Download,
    Live,
}

pub(super) enum TaskInput {
    Mux(LinkId, MuxEvent),
    Timeout,
    Child(TaskId, Box<TaskResult>),
    /// The platform stored body bytes (fetch).
    Stored,
    /// The platform stored a block (download).
    BlockStored(u32),
    /// The platform could not store a block (or the download is cancelled).
    StoreFailed(String),
    /// A player needs this block and those after it first (download).
    Prioritize(u32),
    /// A player needs these blocks soon, besides (download).
    WantAlso(Vec<u32>),
    /// A seek needs blocks `from..=last` alone until it plays (download).
    Focus {
        from: u32,
        last: u32,
    },
    /// The seek plays: the rest of the file again (download).
    Unfocus,
}

pub(super) enum TaskResult {
    /// A circuit kept for the parent.
    Circuit {
        link: LinkId,
        circ: u32,
    },
    Nodes(Vec<(PeerId, [u8; 32])>),
    /// A FOUND_VALUE: the values, then the nodes closest to the key.
    Values {
        values: Vec<(PeerId, [u8; 32])>,
        nodes: Vec<(PeerId, [u8; 32])>,
    },
    /// A message went out (a route that only tells).
    Sent,
    Sdp(String),
    Dir(u16, Vec<u8>),
    Own(OwnCircuit),
    Lookup(LookupOutcome),
    Relays(Vec<ListedRelay>),
    BridgeCircuit(Box<super::BridgeCircuitBuilt>),
    Fetched(super::Fetched),
    Downloaded(Box<super::Downloaded>),
    /// A live stream no longer followed (cancelled).
    Followed(crate::content::follow::FollowStats),
    Failed(OpError),
}

/// A task. What it owns is in `TabPeer::circ_owners` and
/// `stream_owners`: destroyed or ended when it ends.
pub(super) struct Task {
    pub(super) parent: Parent,
    pub(super) deadline: Option<u64>,
    pub(super) kind: Kind,
}

pub(super) enum Kind {
    Route(Route),
    BuildTab(BuildTab),
    Get(HttpGet),
    Lookup(Box<LookupTask>),
    Relays,
    BridgeCircuit(BridgeCircuit),
    Fetch(Box<FetchTask>),
    Download(Box<super::share::DownloadTask>),
    Live(Box<super::live::LiveTask>),
}

pub(super) struct Route {
    link: LinkId,
    circ: u32,
    hops: Vec<HopSpec>,
    purpose: Purpose,
    get: Option<HttpGet>,
    /// A message that has no answer went out (STORE): the route ends at
    /// its deadline.
    told: bool,
}

/// How long a route that only tells (STORE) stays open after the
/// message: a DESTROY right behind it could overtake it at a hop that
/// still queues it for the next link.
const TELL_LINGER_MS: u64 = 3_000;

pub(super) struct BuildTab {
    link: LinkId,
    circ: u32,
    want: usize,
    path: Vec<PeerId>,
    /// The hop asked FIND_NODE and chosen, waiting for EXTENDED2.
    extending: Option<PeerId>,
    /// Listed in `peer.circuits()` (not when built for a download).
    listed: bool,
    /// FIND_NODE questions put to the current last hop.
    asked: usize,
}

/// FIND_NODE questions put to one hop for a next hop this tab knows.
const ASKS_PER_HOP: usize = 6;

pub(super) struct LookupTask {
    lookup: Lookup,
    routes: BTreeMap<PeerId, Vec<HopSpec>>,
    queries: BTreeMap<TaskId, PeerId>,
    /// FIND_VALUE of this key (FIND_NODE when `None`), and what it found.
    value: Option<HashName>,
    values: Vec<(PeerId, [u8; 32])>,
    /// When it ends with what it has, if it has a deadline.
    ends_at: Option<u64>,
}

enum LookupInput {
    Nodes(TaskId, Vec<(PeerId, [u8; 32])>),
    Failed(TaskId),
    Advance,
}

/// Verified IDs and ntor keys of the nodes an answer lists.
fn verified(nodes: &[crate::cell::peersm::NodeInfo]) -> Vec<(PeerId, [u8; 32])> {
    nodes
        .iter()
        .filter_map(|n| Some((n.verify().ok()?, n.ntor_key)))
        .collect()
}

pub(super) enum BridgeCircuit {
    GettingRelays,
    /// Building through the middle and exit since `started`.
    Building(Box<super::BridgeCircuitBuilt>),
}

/// A GET on a stream of one of our circuits (BEGIN_DIR).
pub(super) struct HttpGet {
    pub(super) link: LinkId,
    pub(super) circ: u32,
    pub(super) stream: u16,
    reader: ResponseReader,
    body: Vec<u8>,
}

impl HttpGet {
    fn start(mux: &mut ClientMux, link: LinkId, circ: u32, path: &str) -> Result<Self, OpError> {
        let stream = mux
            .begin(circ, StreamTarget::Directory)
            .map_err(|e| OpError::Circuit(e.to_string()))?;
        let url = HttpUrl {
            scheme: Scheme::Http,
            host: "directory".into(),
            port: 80,
            path_and_query: path.to_string(),
        };
        // Written before CONNECTED: it leaves after it.
        mux.write(circ, stream, &get_request(&url, 0, None))
            .map_err(|e| OpError::Circuit(e.to_string()))?;
        Ok(HttpGet {
            link,
            circ,
            stream,
            reader: ResponseReader::new(),
            body: Vec::new(),
        })
    }

    /// `Some` once the answer is complete (or broken).
    fn on_event(
        &mut self,
        mux: Option<&mut ClientMux>,
        event: &MuxEvent,
    ) -> Option<Result<(u16, Vec<u8>), OpError>> {
        match event {
            MuxEvent::StreamReadable { .. } => {
                let mux = mux?;
                loop {
                    let data = match mux.read(self.circ, self.stream, READ_CHUNK) {
                        Ok(d) if !d.is_empty() => d,
                        _ => return None,
                    };
                    match self.reader.feed(&data) {
                        Ok(body) => self.body.extend(body),
                        Err(e) => return Some(Err(OpError::BadAnswer(e.to_string()))),
                    }
                    if self.reader.is_done() {
                        mux.end(self.circ, self.stream);
                        return Some(Ok(self.answer()));
                    }
                }
            }
            MuxEvent::StreamEnded { reason, opened, .. } => Some(match self.reader.finish() {
                Ok(()) => Ok(self.answer()),
                Err(_) if !opened => Err(OpError::Circuit(format!(
                    "stream refused: {} (END reason {reason})",
                    crate::cell::end_reason::describe(*reason)
                ))),
                Err(e) => Err(OpError::BadAnswer(e.to_string())),
            }),
            _ => None,
        }
    }

    fn answer(&mut self) -> (u16, Vec<u8>) {
        let status = self.reader.head().map_or(0, |h| h.status);
        (status, std::mem::take(&mut self.body))
    }
}

impl TabPeer {
    fn new_task(&mut self, parent: Parent, deadline: Option<u64>, kind: Kind) -> TaskId {
        let id = self.next_task;
        self.next_task += 1;
        self.tasks.insert(
            id,
            Task {
                parent,
                deadline,
                kind,
            },
        );
        id
    }

    pub(super) fn own_circuit(&mut self, id: TaskId, link: LinkId, circ: u32) {
        self.circ_owners.insert((link, circ), id);
    }

    pub(super) fn own_stream(&mut self, id: TaskId, link: LinkId, circ: u32, stream: u16) {
        self.stream_owners.insert((link, circ, stream), id);
    }

    /// A circuit through tabs along `hops` (the first one linked to us).
    pub(super) fn spawn_route(
        &mut self,
        hops: Vec<HopSpec>,
        purpose: Purpose,
        parent: Parent,
    ) -> TaskId {
        let link = hops.first().and_then(|h| self.link_of(&PeerId(h.id)));
        self.spawn_route_on(link, hops, purpose, parent)
    }

    /// A circuit along `hops` on `link` (`None`: no such link).
    pub(super) fn spawn_route_on(
        &mut self,
        link: Option<LinkId>,
        hops: Vec<HopSpec>,
        purpose: Purpose,
        parent: Parent,
    ) -> TaskId {
        let deadline = match purpose {
            Purpose::Hold => self.now + ROUTE_MS * 3 / 2,
            _ => self.now + ROUTE_MS,
        };
        let route = Route {
            link: link.unwrap_or(0),
            circ: 0,
            hops,
            purpose,
            get: None,
            told: false,
        };
        let id = self.new_task(parent, Some(deadline), Kind::Route(route));
        let first = self.tasks.get(&id).and_then(|t| match &t.kind {
            Kind::Route(r) => r.hops.first().cloned(),
            _ => None,
        });
        let created = match (link, first) {
            (Some(link), Some(hop)) => self
                .core
                .mux(link)
                .ok_or(OpError::NoCircuit)
                .and_then(|m| {
                    m.create_ntor(hop.id, hop.ntor)
                        .map_err(|e| OpError::Circuit(e.to_string()))
                })
                .map(|c| (link, c)),
            _ => Err(OpError::NoPath("the first hop is not linked to us".into())),
        };
        match created {
            Ok((link, circ)) => {
                if let Some(Task {
                    kind: Kind::Route(r),
                    ..
                }) = self.tasks.get_mut(&id)
                {
                    r.circ = circ;
                }
                self.own_circuit(id, link, circ);
            }
            Err(e) => self.finish(id, TaskResult::Failed(e)),
        }
        id
    }

    /// Feeds a task; it may finish (and report to its parent). A task
    /// being stepped is out of the map: what reaches it meanwhile (a
    /// child that failed at once) waits and follows.
    pub(super) fn task_input(&mut self, id: TaskId, input: TaskInput) {
        if self.stepping.contains(&id) {
            self.deferred.push_back((id, input));
            return;
        }
        let Some(mut task) = self.tasks.remove(&id) else {
            return;
        };
        self.stepping.insert(id);
        let result = match &mut task.kind {
            Kind::Route(r) => self.route_step(id, r, input),
            Kind::BuildTab(b) => self.build_tab_step(id, b, input),
            Kind::Get(g) => match input {
                TaskInput::Mux(link, e) => {
                    let mux = self.core.mux(link);
                    g.on_event(mux, &e).map(|r| match r {
                        Ok((status, body)) => TaskResult::Dir(status, body),
                        Err(e) => TaskResult::Failed(e),
                    })
                }
                TaskInput::Timeout => Some(TaskResult::Failed(OpError::Timeout("GET"))),
                _ => None,
            },
            Kind::Lookup(l) => self.lookup_step(id, l, input),
            Kind::Relays => match input {
                TaskInput::Child(_, result) => match *result {
                    TaskResult::Dir(status, body) => Some(
                        relays_from(status, &body, self.bridge_ed25519_id())
                            .map_or_else(TaskResult::Failed, TaskResult::Relays),
                    ),
                    TaskResult::Failed(e) => Some(TaskResult::Failed(e)),
                    _ => None,
                },
                TaskInput::Timeout => Some(TaskResult::Failed(OpError::Timeout("relay list"))),
                _ => None,
            },
            Kind::BridgeCircuit(b) => self.bridge_circuit_step(id, b, input),
            Kind::Fetch(f) => self.fetch_step(id, f, input),
            Kind::Download(d) => self.download_step(id, d, input),
            Kind::Live(t) => self.live_step(id, t, input),
        };
        self.stepping.remove(&id);
        for (t, deadline) in std::mem::take(&mut self.deadline_changes) {
            if t == id {
                task.deadline = deadline;
            } else {
                self.deadline_changes.push((t, deadline));
            }
        }
        self.tasks.insert(id, task);
        if let Some(result) = result {
            self.finish(id, result);
        }
        // What came while it was out, in order.
        let waiting: Vec<TaskInput> = {
            let mut mine = Vec::new();
            let mut others = std::collections::VecDeque::new();
            while let Some((t, input)) = self.deferred.pop_front() {
                if t == id {
                    mine.push(input);
                } else {
                    others.push_back((t, input));
                }
            }
            self.deferred = others;
            mine
        };
        for input in waiting {
            self.task_input(id, input);
        }
    }

    /// A task is done: what it owns is released, its parent hears.
    pub(super) fn finish(&mut self, id: TaskId, result: TaskResult) {
        let Some(task) = self.tasks.remove(&id) else {
            return;
        };
        let kept = match &result {
            TaskResult::Circuit { link, circ } => Some((*link, *circ)),
            TaskResult::Own(c) => Some((c.link, c.circ)),
            _ => None,
        };
        let streams: Vec<(LinkId, u32, u16)> = self
            .stream_owners
            .iter()
            .filter(|(_, t)| **t == id)
            .map(|(k, _)| *k)
            .collect();
        for key in streams {
            self.stream_owners.remove(&key);
            if let Some(m) = self.core.mux(key.0) {
                m.end(key.1, key.2);
            }
        }
        let circuits: Vec<(LinkId, u32)> = self
            .circ_owners
            .iter()
            .filter(|(_, t)| **t == id)
            .map(|(k, _)| *k)
            .collect();
        for key in circuits {
            self.circ_owners.remove(&key);
            if Some(key) != kept {
                if let Some(m) = self.core.mux(key.0) {
                    m.destroy(key.1);
                }
            }
        }
        // Children still running report to nobody.
        let children: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.parent, Parent::Task(p) if p == id))
            .map(|(c, _)| *c)
            .collect();
        for c in children {
            if let Some(t) = self.tasks.get_mut(&c) {
                t.parent = Parent::Refresh;
                t.deadline = Some(self.now);
            }
        }
        self.report(id, task.parent, result);
    }

    fn report(&mut self, id: TaskId, parent: Parent, result: TaskResult) {
        match parent {
            Parent::Op(kind) => {
                let outcome = op_outcome(kind, result);
                self.done(id, outcome);
            }
            Parent::Task(p) => self.task_input(p, TaskInput::Child(id, Box::new(result))),
            Parent::Offer(link) => {
                let sdp = match result {
                    TaskResult::Sdp(s) => s,
                    _ => String::new(),
                };
                self.answered(link, sdp);
            }
            Parent::Forward {
                circuit,
                asker,
                target,
            } => {
                let sdp = match result {
                    TaskResult::Sdp(s) => s,
                    _ => String::new(),
                };
                self.forward_answer(circuit, asker, target, sdp);
            }
            Parent::Refresh => {
                if let TaskResult::Lookup(found) = result {
                    self.link_found(found);
                }
            }
            Parent::Probe(link) => self.probe_result(link, &result),
            Parent::Sources(h) => self.sources_found(h, result),
            Parent::SourceRoute(h, peer) => self.source_route_found(h, peer, result),
            Parent::SourceCircuit(h) => self.source_circuit(h, result),
            Parent::Store(h) => self.store_at_closest(h, result),
            Parent::Warm(hops) => self.warm_built(id, hops, result),
            Parent::Nobody => {}
        }
    }

    fn route_step(&mut self, id: TaskId, r: &mut Route, input: TaskInput) -> Option<TaskResult> {
        let event = match input {
            TaskInput::Mux(_, e) => e,
            TaskInput::Timeout if r.told => return Some(TaskResult::Sent),
            TaskInput::Timeout => return Some(TaskResult::Failed(OpError::Timeout("circuit"))),
            _ => return None,
        };
        if let Some(g) = r.get.as_mut() {
            let mux = self.core.mux(r.link);
            if let Some(done) = g.on_event(mux, &event) {
                return Some(done.map_or_else(TaskResult::Failed, |(s, b)| TaskResult::Dir(s, b)));
            }
        }
        match event {
            MuxEvent::HopAdded { hops, .. } => {
                if let Some(next) = r.hops.get(hops).cloned() {
                    let extended = self
                        .core
                        .mux(r.link)
                        .map(|m| m.extend(r.circ, next.specs, next.id, next.ntor));
                    return match extended {
                        Some(Ok(())) => None,
                        Some(Err(e)) => Some(TaskResult::Failed(OpError::Circuit(e.to_string()))),
                        None => Some(TaskResult::Failed(OpError::NoCircuit)),
                    };
                }
                self.route_built(id, r)
            }
            MuxEvent::HopFailed { why, .. } => Some(TaskResult::Failed(OpError::Circuit(why))),
            MuxEvent::CircuitClosed { reason, .. } => {
                Some(TaskResult::Failed(OpError::Circuit(format!(
                    "circuit closed ({}, reason {reason})",
                    crate::cell::destroy_reason::describe(reason)
                ))))
            }
            MuxEvent::Control { message, .. } => match (&r.purpose, message) {
                (Purpose::FindNode(_), ControlMessage::FoundNode { nodes }) => {
                    Some(TaskResult::Nodes(verified(&nodes)))
                }
                (Purpose::FindValue(_), ControlMessage::FoundValue { values, nodes }) => {
                    Some(TaskResult::Values {
                        values: verified(&values),
                        nodes: verified(&nodes),
                    })
                }
                (
                    Purpose::Introduce { target, .. },
                    ControlMessage::RelayIntroduced { from, sdp, .. },
                ) if from == *target => Some(TaskResult::Sdp(sdp)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Every hop answered: the route does what it was built for.
    fn route_built(&mut self, id: TaskId, r: &mut Route) -> Option<TaskResult> {
        let (link, circ) = (r.link, r.circ);
        let message = match &r.purpose {
            Purpose::Hold => return Some(TaskResult::Circuit { link, circ }),
            Purpose::FindNode(target) => ControlMessage::FindNode { target: *target },
            Purpose::Introduce { asker, target, sdp } => ControlMessage::RelayIntroduce {
                from: *asker,
                to: *target,
                sdp: sdp.clone(),
            },
            Purpose::FindValue(h) => ControlMessage::FindValue {
                hash_name: h.0,
                kind: 0,
            },
            Purpose::Store(h) => match self.own_node_info() {
                Some(node) => ControlMessage::Store {
                    hash_name: h.0,
                    kind: 0,
                    node,
                },
                None => return Some(TaskResult::Failed(OpError::NoCircuit)),
            },
            Purpose::Get(path) => {
                let path = path.clone();
                let mux = self.core.mux(link)?;
                return match HttpGet::start(mux, link, circ, &path) {
                    Ok(g) => {
                        self.own_stream(id, link, circ, g.stream);
                        r.get = Some(g);
                        None
                    }
                    Err(e) => Some(TaskResult::Failed(e)),
                };
            }
        };
        let sent = self.core.mux(link).map(|m| m.send_control(circ, &message));
        match sent {
            // A STORE has no answer: the circuit closes a little later.
            Some(Ok(())) if matches!(r.purpose, Purpose::Store(_)) => {
                r.told = true;
                self.deadline_changes
                    .push((id, Some(self.now + TELL_LINGER_MS)));
                None
            }
            Some(Ok(())) => None,
            Some(Err(e)) => Some(TaskResult::Failed(OpError::Circuit(e.to_string()))),
            None => Some(TaskResult::Failed(OpError::NoCircuit)),
        }
    }

    // --- circuits through tabs ---

    /// Builds a circuit through `hops` tabs (never through us), each next
    /// hop chosen from the last hop's FOUND_NODE answer.
    pub fn build_tab_circuit(&mut self, hops: usize, now: u64) -> u64 {
        self.now = now.max(self.now);
        let id = self.spawn_build_tab(hops, Parent::Op(OpKind::TabCircuit), true);
        self.after_input();
        id
    }

    pub(super) fn spawn_build_tab(&mut self, hops: usize, parent: Parent, listed: bool) -> TaskId {
        self.spawn_build_tab_avoiding(hops, parent, listed, &[])
    }

    /// The link a circuit being built through tabs starts on.
    pub(super) fn first_link_of_build(&self, task: TaskId) -> Option<LinkId> {
        match &self.tasks.get(&task)?.kind {
            Kind::BuildTab(b) => Some(b.link),
            _ => None,
        }
    }

    /// `spawn_build_tab`, starting on a link not in `avoid` when there is
    /// one (a follower's or download's circuits then begin, and with one
    /// tab end, at different tabs).
    pub(super) fn spawn_build_tab_avoiding(
        &mut self,
        hops: usize,
        parent: Parent,
        listed: bool,
        avoid: &[LinkId],
    ) -> TaskId {
        let all = self.open_links();
        let fresh: Vec<_> = all
            .iter()
            .filter(|(_, l, _)| !avoid.contains(l))
            .cloned()
            .collect();
        let open = if fresh.is_empty() { all } else { fresh };
        let pick = self.random_below(open.len());
        let id = self.new_task(
            parent,
            Some(self.now + ROUTE_MS * 3 / 2),
            Kind::BuildTab(BuildTab {
                link: 0,
                circ: 0,
                want: hops.clamp(1, 8),
                path: Vec::new(),
                extending: None,
                listed,
                asked: 0,
            }),
        );
        let Some(&(first, link, ntor)) = open.get(pick) else {
            self.finish(id, TaskResult::Failed(OpError::NoLinks));
            return id;
        };
        let created = self.core.mux(link).map(|m| m.create_ntor(first.0, ntor));
        match created {
            Some(Ok(circ)) => {
                if let Some(Task {
                    kind: Kind::BuildTab(b),
                    ..
                }) = self.tasks.get_mut(&id)
                {
                    b.link = link;
                    b.circ = circ;
                    b.extending = Some(first);
                }
                self.own_circuit(id, link, circ);
            }
            _ => self.finish(id, TaskResult::Failed(OpError::NoLinks)),
        }
        id
    }

    fn build_tab_step(
        &mut self,
        _id: TaskId,
        b: &mut BuildTab,
        input: TaskInput,
    ) -> Option<TaskResult> {
        let event = match input {
            TaskInput::Mux(_, e) => e,
            TaskInput::Timeout => {
                return Some(TaskResult::Failed(OpError::Timeout(
                    "building a circuit through tabs",
                )))
            }
            _ => return None,
        };
        match event {
            MuxEvent::HopAdded { .. } => {
                if let Some(peer) = b.extending.take() {
                    b.path.push(peer);
                }
                if b.path.len() >= b.want {
                    let own = OwnCircuit {
                        id: self.next_own,
                        hops: b.path.clone(),
                        link: b.link,
                        circ: b.circ,
                    };
                    self.next_own += 1;
                    if b.listed {
                        self.own_circuits.insert(own.id, own.clone());
                    }
                    return Some(TaskResult::Own(own));
                }
                b.asked = 0;
                self.ask_next_hop(b)
            }
            MuxEvent::Control {
                message: ControlMessage::FoundNode { nodes },
                ..
            } => {
                // The next hop must be a peer the last hop is linked to
                // (tabs open no links on demand) *and* one this tab knows
                // itself: a peer in its own routing table, whose ID it
                // proved on its own link. A malicious hop can name only
                // peers we already trust that much, never Sybils of its own.
                let candidates: Vec<(PeerId, [u8; 32])> = nodes
                    .iter()
                    .filter_map(|n| Some((n.verify().ok()?, n.ntor_key)))
                    .filter(|(id, _)| *id != self.me && !b.path.contains(id))
                    .filter(|(id, _)| self.routing.contains(id))
                    .collect();
                let pick = self.random_below(candidates.len());
                let Some(&(next, key)) = candidates.get(pick) else {
                    if b.asked < ASKS_PER_HOP {
                        return self.ask_next_hop(b);
                    }
                    return Some(TaskResult::Failed(OpError::NoPath(format!(
                        "after {} hops: the last hop named no peer this tab knows ({} offered to {} questions)",
                        b.path.len(),
                        nodes.len(),
                        b.asked
                    ))));
                };
                let hop = HopSpec::tab(next, key);
                b.extending = Some(next);
                match self
                    .core
                    .mux(b.link)
                    .map(|m| m.extend(b.circ, hop.specs, hop.id, hop.ntor))
                {
                    Some(Ok(())) => None,
                    _ => Some(TaskResult::Failed(OpError::NoCircuit)),
                }
            }
            MuxEvent::HopFailed { why, .. } => Some(TaskResult::Failed(OpError::Circuit(format!(
                "after {} hops: {why}",
                b.path.len()
            )))),
            MuxEvent::CircuitClosed { reason, .. } => Some(TaskResult::Failed(OpError::Circuit(
                format!("circuit closed (reason {reason})"),
            ))),
            _ => None,
        }
    }

    /// Asks the circuit's last hop FIND_NODE for a target from our own
    /// routing table. Kademlia tables are densest near their owner's ID,
    /// so the peers we know that are closest to the last hop are the ones
    /// it is most likely linked to: the questions go through them (the
    /// first among the 3 closest at random), and one is our own ID.
    fn ask_next_hop(&mut self, b: &mut BuildTab) -> Option<TaskResult> {
        let last = b.path.last().copied().unwrap_or(self.me);
        let mut known: Vec<PeerId> = self
            .routing
            .entries()
            .map(|e| e.id)
            .filter(|id| !b.path.contains(id))
            .collect();
        known.sort_by_key(|id| crate::dht::Distance::between(id, &last));
        let target = match b.asked {
            0 => {
                let pick = self.random_below(known.len().min(3));
                known.get(pick).copied()
            }
            1 => Some(self.me),
            n => known.get(n - 1).copied(),
        }
        .unwrap_or(self.me);
        b.asked += 1;
        let ask = ControlMessage::FindNode { target };
        match self.core.mux(b.link).map(|m| m.send_control(b.circ, &ask)) {
            Some(Ok(())) => None,
            _ => Some(TaskResult::Failed(OpError::NoCircuit)),
        }
    }

    /// GET `path` from the directory of the last hop of our circuit `id`.
    pub fn tab_circuit_get(&mut self, id: u32, path: &str, now: u64) -> u64 {
        self.now = now.max(self.now);
        let started = match self.own_circuits.get(&id).cloned() {
            Some(own) => self
                .core
                .mux(own.link)
                .ok_or(OpError::NoCircuit)
                .and_then(|m| HttpGet::start(m, own.link, own.circ, path)),
            None => Err(OpError::NoCircuit),
        };
        let task = match started {
            Ok(g) => {
                let (link, circ, stream) = (g.link, g.circ, g.stream);
                let task = self.new_task(Parent::Op(OpKind::DirGet), None, Kind::Get(g));
                self.own_stream(task, link, circ, stream);
                task
            }
            Err(e) => {
                let task = self.new_task(Parent::Op(OpKind::DirGet), None, Kind::Relays);
                self.finish(task, TaskResult::Failed(e));
                task
            }
        };
        self.after_input();
        task
    }

    /// Closes one of our circuits through tabs.
    pub fn close_tab_circuit(&mut self, id: u32) {
        if let Some(own) = self.own_circuits.remove(&id) {
            if let Some(m) = self.core.mux(own.link) {
                m.destroy(own.circ);
            }
        }
        self.after_input();
    }

    /// Our circuits through tabs and whether each is still alive.
    pub fn tab_circuits(&self) -> Vec<(OwnCircuit, bool)> {
        self.own_circuits
            .values()
            .map(|c| {
                let alive = self
                    .core
                    .mux_ref(&c.link)
                    .is_some_and(|m| m.is_alive(c.circ));
                (c.clone(), alive)
            })
            .collect()
    }

    // --- lookups ---

    /// A Kademlia lookup of `target` through tabs.
    pub fn find_node(&mut self, target: PeerId, now: u64) -> u64 {
        self.now = now.max(self.now);
        let id = self.start_lookup(target, Parent::Op(OpKind::Lookup));
        self.after_input();
        id
    }

    pub(super) fn start_lookup(&mut self, target: PeerId, parent: Parent) -> TaskId {
        self.start_lookup_of(target, parent, None, K, None)
    }

    /// A lookup of `target` ending once its `k` closest answered (or at
    /// `ends_at`, with what it found): FIND_NODE, or FIND_VALUE of `value`
    /// (which ends at the first values found).
    pub(super) fn start_lookup_of(
        &mut self,
        target: PeerId,
        parent: Parent,
        value: Option<HashName>,
        k: usize,
        ends_at: Option<u64>,
    ) -> TaskId {
        let routes: BTreeMap<PeerId, Vec<HopSpec>> = self
            .open_links()
            .into_iter()
            .map(|(peer, _, ntor)| (peer, vec![HopSpec::tab(peer, ntor)]))
            .collect();
        let seeds: Vec<PeerId> = self
            .routing
            .closest(&target, K)
            .into_iter()
            .map(|e| e.id)
            .collect();
        let lookup = Lookup::with_k(self.me, target, seeds, k);
        let id = self.new_task(
            parent,
            ends_at,
            Kind::Lookup(Box::new(LookupTask {
                lookup,
                routes,
                queries: BTreeMap::new(),
                value,
                values: Vec::new(),
                ends_at,
            })),
        );
        self.task_input(id, TaskInput::Timeout);
        id
    }

    fn lookup_step(
        &mut self,
        id: TaskId,
        l: &mut LookupTask,
        input: TaskInput,
    ) -> Option<TaskResult> {
        let input = match input {
            TaskInput::Child(child, result) => match *result {
                TaskResult::Nodes(nodes) => LookupInput::Nodes(child, nodes),
                TaskResult::Values { values, nodes } => {
                    // The hop that keeps a value is not linked to its peer
                    // (it was STOREd along a route): only a peer that names
                    // itself comes with a route, the one we asked it on.
                    for (peer, key) in values {
                        if peer != self.me && !l.values.iter().any(|(p, _)| *p == peer) {
                            l.values.push((peer, key));
                        }
                    }
                    LookupInput::Nodes(child, nodes)
                }
                _ => LookupInput::Failed(child),
            },
            // Past its deadline, a lookup ends with what it has.
            TaskInput::Timeout if l.ends_at.is_some_and(|t| self.now >= t) => {
                return Some(TaskResult::Lookup(LookupOutcome {
                    closest: l.lookup.result(),
                    rounds: l.lookup.rounds(),
                    queries: l.lookup.queries(),
                    routes: std::mem::take(&mut l.routes),
                    values: std::mem::take(&mut l.values),
                }));
            }
            TaskInput::Timeout => LookupInput::Advance,
            _ => return None,
        };
        match input {
            LookupInput::Nodes(child, nodes) => {
                let asked = l.queries.remove(&child)?;
                let route = l.routes.get(&asked).cloned().unwrap_or_default();
                for (peer, key) in &nodes {
                    let fresh = *peer != self.me && !route.iter().any(|h| h.id == peer.0);
                    if fresh && route.len() < MAX_QUERY_ROUTE {
                        let mut via = route.clone();
                        via.push(HopSpec::tab(*peer, *key));
                        l.routes.entry(*peer).or_insert(via);
                    }
                }
                l.lookup
                    .on_answer(&asked, nodes.into_iter().map(|(p, _)| p));
            }
            LookupInput::Failed(child) => {
                if let Some(asked) = l.queries.remove(&child) {
                    tracing::debug!("lookup: {asked} did not answer");
                    l.lookup.on_failure(&asked);
                }
            }
            // Started: ask the lookup what to do.
            LookupInput::Advance => {}
        }
        // Every query the lookup allows goes out now: `ALPHA` in flight.
        // FIND_VALUE ends at the first values.
        let found_value = l.value.is_some() && !l.values.is_empty();
        loop {
            let action = if found_value {
                LookupAction::Done
            } else {
                l.lookup.next_action()
            };
            match action {
                LookupAction::Query(peer) => {
                    let Some(route) = l.routes.get(&peer).cloned() else {
                        l.lookup.on_failure(&peer);
                        continue;
                    };
                    let purpose = match l.value {
                        Some(h) => Purpose::FindValue(h),
                        None => Purpose::FindNode(*l.lookup.target()),
                    };
                    let child = self.spawn_route(route, purpose, Parent::Task(id));
                    if self.tasks.contains_key(&child) {
                        l.queries.insert(child, peer);
                    } else {
                        // It failed at once (it reported to us while we
                        // were out of the map: the report was lost).
                        l.lookup.on_failure(&peer);
                    }
                }
                LookupAction::Wait => return None,
                LookupAction::Done => {
                    return Some(TaskResult::Lookup(LookupOutcome {
                        closest: l.lookup.result(),
                        rounds: l.lookup.rounds(),
                        queries: l.lookup.queries(),
                        routes: std::mem::take(&mut l.routes),
                        values: std::mem::take(&mut l.values),
                    }))
                }
            }
        }
    }

    /// Bucket refresh: look up a random ID in each stale bucket (farthest
    /// first); link to the peers found whose bucket has room.
    pub(super) fn refresh(&mut self) {
        let period = self.config.refresh_ms.max(1000);
        let mut targets = {
            let rng = &mut self.rng;
            self.routing.refresh_targets(self.now, period, || {
                crate::rng::random_bytes(rng).unwrap_or([0; 20])
            })
        };
        targets.reverse();
        targets.truncate(REFRESH_BUCKETS);
        for target in targets {
            self.start_lookup(target, Parent::Refresh);
        }
    }

    fn link_found(&mut self, found: LookupOutcome) {
        for id in found.closest.iter().copied() {
            if !self.may_offer_to(&id) || !self.routing.has_room_for(&id) {
                continue;
            }
            // The route to the peer without its last hop ends at the tab
            // that named it.
            let via = found
                .routes
                .get(&id)
                .and_then(|r| r.split_last())
                .map(|(_, before)| before.to_vec())
                .filter(|before| !before.is_empty());
            let introducer = match via {
                Some(route) if self.config.introduce_via_peers => Introducer::Route(route),
                _ => Introducer::Bridge,
            };
            tracing::info!("refresh: linking to {id}");
            self.offer(id, introducer);
        }
    }

    // --- through the bridge ---

    /// The relays behind the bridge (its directory, on a one-hop circuit).
    pub fn relays(&mut self, now: u64) -> u64 {
        self.now = now.max(self.now);
        let id = self.new_task(
            Parent::Op(OpKind::Relays),
            Some(self.now + ROUTE_MS),
            Kind::Relays,
        );
        self.get_relay_list(id);
        self.after_input();
        id
    }

    /// Starts the GET of the relay list for task `parent`.
    pub(super) fn get_relay_list(&mut self, parent: TaskId) {
        let (link, hop) = (self.bridge_link(), self.bridge_hop());
        let Some(hop) = hop else {
            return self.task_input(
                parent,
                TaskInput::Child(0, Box::new(TaskResult::Failed(OpError::NotConnected))),
            );
        };
        self.spawn_route_on(
            link,
            vec![hop],
            Purpose::Get(RELAY_LIST_PATH.into()),
            Parent::Task(parent),
        );
    }

    /// Builds (and closes) a 3-hop circuit through the bridge, timing it.
    pub fn build_bridge_circuit(&mut self, now: u64) -> u64 {
        self.now = now.max(self.now);
        let id = self.new_task(
            Parent::Op(OpKind::BridgeCircuit),
            Some(self.now + ROUTE_MS * 3),
            Kind::BridgeCircuit(BridgeCircuit::GettingRelays),
        );
        self.get_relay_list(id);
        self.after_input();
        id
    }

    fn bridge_circuit_step(
        &mut self,
        id: TaskId,
        b: &mut BridgeCircuit,
        input: TaskInput,
    ) -> Option<TaskResult> {
        let result = match input {
            TaskInput::Child(_, result) => *result,
            TaskInput::Timeout => {
                return Some(TaskResult::Failed(OpError::Timeout("building a circuit")))
            }
            _ => return None,
        };
        match (result, &*b) {
            (TaskResult::Dir(status, body), BridgeCircuit::GettingRelays) => {
                let relays = match relays_from(status, &body, self.bridge_ed25519_id()) {
                    Ok(r) => r,
                    Err(e) => return Some(TaskResult::Failed(e)),
                };
                let bridge = self.bridge_hop()?;
                let random = self.random_u64();
                let (middle, exit) =
                    match choose_middle_and_exit(&relays, &[bridge.id], random, false) {
                        Some((m, e)) => (m.clone(), e.clone()),
                        None => return Some(TaskResult::Failed(no_path(&relays, 0))),
                    };
                let hops = vec![bridge, HopSpec::relay(&middle), HopSpec::relay(&exit)];
                *b = BridgeCircuit::Building(Box::new(super::BridgeCircuitBuilt {
                    ms: self.now,
                    middle,
                    exit,
                }));
                self.spawn_route_on(self.bridge_link(), hops, Purpose::Hold, Parent::Task(id));
                None
            }
            (TaskResult::Circuit { link, circ }, BridgeCircuit::Building(built)) => {
                if let Some(m) = self.core.mux(link) {
                    m.destroy(circ);
                }
                let mut built = built.clone();
                built.ms = self.now.saturating_sub(built.ms);
                Some(TaskResult::BridgeCircuit(built))
            }
            (TaskResult::Failed(e), _) => Some(TaskResult::Failed(e)),
            _ => None,
        }
    }

    pub(super) fn random_below(&mut self, n: usize) -> usize {
        crate::rng::random_below(&mut self.rng, n).unwrap_or(0)
    }
}

/// The relay list out of a directory answer, signed by the bridge whose
/// Ed25519 identity is `bridge`.
pub(super) fn relays_from(
    status: u16,
    body: &[u8],
    bridge: Option<[u8; 32]>,
) -> Result<Vec<ListedRelay>, OpError> {
    if status != 200 {
        return Err(OpError::BadAnswer(format!(
            "the bridge answered {status} for its relay list"
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| OpError::BadAnswer("the relay list is not UTF-8".into()))?;
    let bridge =
        bridge.ok_or_else(|| OpError::BadAnswer("no bridge to check the relay list".into()))?;
    let signed = verify_relay_list(text, &bridge).map_err(|e| OpError::BadAnswer(e.to_string()))?;
    parse_relay_list(signed).map_err(|e| OpError::BadAnswer(e.to_string()))
}

pub(super) fn no_path(relays: &[ListedRelay], avoided: usize) -> OpError {
    OpError::NoPath(format!(
        "the bridge lists {} relays ({} exits) and {avoided} are avoided",
        relays.len(),
        relays.iter().filter(|r| r.exit).count(),
    ))
}

fn op_outcome(kind: OpKind, result: TaskResult) -> Outcome {
    fn err<T>(r: TaskResult) -> Result<T, OpError> {
        Err(match r {
            TaskResult::Failed(e) => e,
            _ => OpError::BadAnswer("unexpected result".into()),
        })
    }
    match (kind, result) {
        (OpKind::TabCircuit, TaskResult::Own(c)) => Outcome::TabCircuit(Ok(c)),
        (OpKind::TabCircuit, r) => Outcome::TabCircuit(err(r)),
        (OpKind::DirGet, TaskResult::Dir(s, b)) => Outcome::DirGot(Ok((s, b))),
        (OpKind::DirGet, r) => Outcome::DirGot(err(r)),
        (OpKind::Lookup, TaskResult::Lookup(l)) => Outcome::Found(Ok(l)),
        (OpKind::Lookup, r) => Outcome::Found(err(r)),
        (OpKind::Relays, TaskResult::Relays(r)) => Outcome::Relays(Ok(r)),
        (OpKind::Relays, r) => Outcome::Relays(err(r)),
        (OpKind::BridgeCircuit, TaskResult::BridgeCircuit(b)) => Outcome::BridgeCircuit(Ok(b)),
        (OpKind::BridgeCircuit, r) => Outcome::BridgeCircuit(err(r)),
        (OpKind::Fetch, TaskResult::Fetched(f)) => Outcome::Fetched(Ok(f)),
        (OpKind::Fetch, r) => Outcome::Fetched(err(r)),
        (OpKind::Download, TaskResult::Downloaded(d)) => Outcome::Downloaded(Ok(d)),
        (OpKind::Download, r) => Outcome::Downloaded(err(r)),
        (OpKind::Live, TaskResult::Followed(s)) => Outcome::Followed(Ok(s)),
        (OpKind::Live, r) => Outcome::Followed(err(r)),
    }
}
