//! `peer.fetch`: an HTTP GET through a 3-hop circuit (bridge → middle →
//! exit). The body goes to the platform's store as it arrives, in chunks,
//! and reading waits for the store (so a slow disk holds back the exit,
//! not our memory). When a circuit breaks mid-download, the download goes
//! on over a new circuit that avoids the broken one's middle, asking for
//! the missing bytes only (`client::Download`).

use crate::circuit::StreamTarget;
use crate::client::{Download, DownloadError, Fed, MuxEvent, StreamEnd};
use crate::dir::relay_list::{choose_middle_and_exit, ListedRelay};
use crate::http::HttpUrl;

use super::tasks::{
    no_path, relays_from, HopSpec, Kind, OpKind, Parent, Purpose, TaskId, TaskInput, TaskResult,
};
use super::{OpError, TabEvent, TabPeer};

/// Body bytes gathered before they go to the store.
const STORE_CHUNK: usize = 1 << 20;
/// Chunks handed to the store and not yet stored before reading pauses.
const MAX_UNSTORED: usize = 2;
const PROGRESS_EVERY_MS: u64 = 100;
const READ_CHUNK: usize = 64 * 1024;
/// TLS bytes waiting for room on the stream beyond which reading pauses:
/// a server that makes us answer (key updates) while the exit holds back
/// our window cannot grow this buffer.
const MAX_UNSENT: usize = 16 * 1024;
/// TLS failures (bad record, certificate refused) tolerated before the
/// fetch fails: the first may be the exit's doing, so the next circuit
/// avoids that exit; a second, through another exit, is the server's.
const MAX_TLS_FAILURES: u32 = 1;
/// Wait before trying again when no bridge is linked.
const NO_BRIDGE_RETRY_MS: u64 = 500;
pub const DEFAULT_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// The first circuit's middle and exit (RSA fingerprints).
    pub path: Option<([u8; 20], [u8; 20])>,
    /// Circuits to try when one breaks (default 5).
    pub max_attempts: Option<u32>,
    /// Download from the directory of the last of this many tabs (a
    /// circuit through tabs, BEGIN_DIR) instead of through the bridge's
    /// relays and an exit.
    pub through_tabs: Option<usize>,
    /// Accept an exit run by the bridge (the first hop), which then sees
    /// both ends: the user's choice, for a network of one operator such
    /// as `npm start`'s. Off by default.
    pub single_operator: bool,
    /// Trust anchors for https beyond the web PKI roots (DER certificates;
    /// `http::certificates_from_pem` reads them from PEM).
    pub ca: Vec<Vec<u8>>,
}

/// Why a fetch is refused on a network whose exits are all the bridge's.
pub const SINGLE_OPERATOR_REFUSED: &str =
    "every exit behind this bridge is run by the bridge itself, \
which would see both who fetches and what: allow it with { singleOperator: true } \
(the page's \"relays run by this bridge\" box) or join exits of other operators";

/// A finished download (the body is in the platform's store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// The final URL, after redirects.
    pub url: String,
    pub size: u64,
    /// Circuits the download took (1 when nothing broke).
    pub attempts: u32,
    /// Each circuit used, as "middle → exit" nicknames.
    pub circuits: Vec<String>,
    /// For https: the TLS version and cipher suite ("TLS 1.3, …").
    pub tls: Option<String>,
}

enum State {
    /// No bridge: try again at the deadline.
    WaitingBridge,
    GettingRelays,
    Building,
    Streaming {
        link: u32,
        circ: u32,
        stream: u16,
    },
    /// The body is complete; the store still has chunks to take.
    Finishing,
}

pub(super) struct FetchTask {
    download: Download,
    through_tabs: Option<usize>,
    max_attempts: u32,
    forced: Option<([u8; 20], [u8; 20])>,
    single_operator: bool,
    attempt: u32,
    relays: Vec<ListedRelay>,
    avoid: Vec<[u8; 20]>,
    used: Vec<String>,
    current: Option<(ListedRelay, ListedRelay)>,
    state: State,
    last_error: String,
    buffer: Vec<u8>,
    /// Bytes for the stream its queue had no room for yet (TLS).
    unsent: Vec<u8>,
    tls_failures: u32,
    unstored: usize,
    last_progress: u64,
    /// The body as it is read, for a task that runs this download inside
    /// itself (a web live stream): `None` sends it to the platform's store.
    pub(super) inline: Option<InlineBody>,
}

/// A download's body kept for the task that runs it, read by read.
#[derive(Debug, Default)]
pub(super) struct InlineBody {
    pub(super) pieces: Vec<Vec<u8>>,
    /// The body started again (a server that ignored the range).
    pub(super) restarted: bool,
    /// Reading stops (the stream's queue fills, and flow control holds
    /// the exit) until the task resumes it with `TaskInput::Stored`.
    pub(super) paused: bool,
}

impl FetchTask {
    /// A download of `url`, and whether it can start (a bad URL or `ca` is
    /// refused before any circuit).
    pub(super) fn new(url: &str, options: FetchOptions) -> (FetchTask, Result<(), DownloadError>) {
        let parsed = HttpUrl::parse(url);
        let url = parsed.clone().unwrap_or(HttpUrl {
            scheme: crate::http::Scheme::Http,
            host: String::new(),
            port: 0,
            path_and_query: String::new(),
        });
        let mut download = match options.through_tabs {
            Some(_) => Download::from_directory(url),
            None => Download::new(url).with_anchors(options.ca),
        };
        let ready = parsed
            .map_err(DownloadError::from)
            .and_then(|_| download.check_anchors());
        let task = FetchTask {
            download,
            through_tabs: options.through_tabs,
            max_attempts: options.max_attempts.unwrap_or(DEFAULT_ATTEMPTS).max(1),
            forced: options.path,
            single_operator: options.single_operator,
            attempt: 0,
            relays: Vec::new(),
            avoid: Vec::new(),
            used: Vec::new(),
            current: None,
            state: State::WaitingBridge,
            last_error: String::new(),
            buffer: Vec::new(),
            unsent: Vec::new(),
            tls_failures: 0,
            unstored: 0,
            last_progress: 0,
            inline: None,
        };
        (task, ready)
    }

    /// Whether a mux event is about the stream this download reads (a task
    /// that runs it inside itself may own other circuits).
    pub(super) fn concerns(&self, on: u32, event: &MuxEvent) -> bool {
        let State::Streaming { link, circ, stream } = self.state else {
            return false;
        };
        let (c, s) = match event {
            MuxEvent::StreamReadable { circ, stream }
            | MuxEvent::StreamWritable { circ, stream }
            | MuxEvent::StreamEnded { circ, stream, .. } => (*circ, Some(*stream)),
            MuxEvent::CircuitClosed { circ, .. } => (*circ, None),
            _ => return false,
        };
        on == link && c == circ && s.is_none_or(|s| s == stream)
    }

    /// The body moved on: an endless body (a live stream) may lose many
    /// circuits over hours; `max_attempts` counts those in a row.
    pub(super) fn progressed(&mut self) {
        self.attempt = self.attempt.min(1);
    }

    /// The response's head, once read.
    pub(super) fn head(&self) -> Option<&crate::http::ResponseHead> {
        self.download.head()
    }
}

impl TabPeer {
    /// Downloads `url` through a 3-hop circuit; progress, body chunks and
    /// the end come as events for the returned operation.
    pub fn fetch(&mut self, url: &str, options: FetchOptions, now: u64) -> u64 {
        self.now = now.max(self.now);
        let (task, ready) = FetchTask::new(url, options);
        let id = self.tasks_new_fetch(task);
        match ready {
            Ok(()) => self.task_input(id, TaskInput::Timeout),
            Err(e) => self.finish(id, TaskResult::Failed(OpError::Fetch(e.to_string()))),
        }
        self.after_input();
        id
    }

    /// The platform stored a body chunk of download `op`.
    pub fn handle_stored(&mut self, op: u64, now: u64) {
        self.now = now.max(self.now);
        self.task_input(op, TaskInput::Stored);
        self.after_input();
    }

    fn tasks_new_fetch(&mut self, task: FetchTask) -> TaskId {
        let id = self.next_task;
        self.next_task += 1;
        self.tasks.insert(
            id,
            super::tasks::Task {
                parent: Parent::Op(OpKind::Fetch),
                deadline: None,
                kind: Kind::Fetch(Box::new(task)),
            },
        );
        id
    }

    pub(super) fn fetch_step(
        &mut self,
        id: TaskId,
        f: &mut FetchTask,
        input: TaskInput,
    ) -> Option<TaskResult> {
        let step = match input {
            TaskInput::Timeout => match f.state {
                State::WaitingBridge => self.next_attempt(id, f),
                _ => Ok(None),
            },
            TaskInput::Child(_, result) => self.fetch_child(id, f, *result),
            TaskInput::Mux(_, event) => self.fetch_event(id, f, event),
            TaskInput::BlockStored(_)
            | TaskInput::StoreFailed(_)
            | TaskInput::Prioritize(_)
            | TaskInput::WantAlso(_)
            | TaskInput::Focus { .. }
            | TaskInput::Unfocus => Ok(None),
            TaskInput::Stored => {
                f.unstored = f.unstored.saturating_sub(1);
                match f.state {
                    State::Streaming { link, circ, stream } => {
                        self.read_body(id, f, link, circ, stream)
                    }
                    State::Finishing if f.unstored == 0 => Ok(Some(self.fetched(id, f))),
                    _ => Ok(None),
                }
            }
        };
        match step {
            Ok(done) => done,
            Err(e) => {
                self.body_restart(id, f);
                Some(TaskResult::Failed(e))
            }
        }
    }

    fn fetch_child(
        &mut self,
        id: TaskId,
        f: &mut FetchTask,
        result: TaskResult,
    ) -> Result<Option<TaskResult>, OpError> {
        match result {
            TaskResult::Dir(status, body) => {
                match relays_from(status, &body, self.bridge_ed25519_id()) {
                    Ok(relays) => {
                        f.relays = relays;
                        self.build(id, f)
                    }
                    Err(e) => self.broken(id, f, format!("relay list: {e}")),
                }
            }
            TaskResult::Circuit { link, circ } => {
                self.own_circuit(id, link, circ);
                self.request(id, f, link, circ)
            }
            TaskResult::Own(c) => {
                f.used.push(
                    c.hops
                        .iter()
                        .map(|h| h.to_hex().get(..8).unwrap_or_default().to_string())
                        .collect::<Vec<_>>()
                        .join(" → "),
                );
                self.own_circuit(id, c.link, c.circ);
                self.request(id, f, c.link, c.circ)
            }
            TaskResult::Failed(e) => {
                let what = match f.state {
                    State::GettingRelays => "relay list",
                    _ => "building a circuit",
                };
                self.broken(id, f, format!("{what}: {e}"))
            }
            _ => Ok(None),
        }
    }

    /// The next circuit, or giving up.
    fn next_attempt(
        &mut self,
        id: TaskId,
        f: &mut FetchTask,
    ) -> Result<Option<TaskResult>, OpError> {
        if f.attempt >= f.max_attempts {
            return Err(OpError::Fetch(format!(
                "fetch {}: gave up after {} attempts ({} of {} bytes); last error: {}",
                f.download.url(),
                f.max_attempts,
                f.download.received(),
                f.download
                    .total()
                    .map_or("?".to_string(), |t| t.to_string()),
                f.last_error
            )));
        }
        f.attempt += 1;
        if let Some(hops) = f.through_tabs {
            f.state = State::Building;
            self.spawn_build_tab(hops, Parent::Task(id), false);
            return Ok(None);
        }
        if self.bridge_hop().is_none() {
            f.last_error = "not connected to a bridge".into();
            f.state = State::WaitingBridge;
            self.set_deadline(id, Some(self.now + NO_BRIDGE_RETRY_MS));
            return Ok(None);
        }
        self.set_deadline(id, None);
        if f.relays.is_empty() || f.attempt > 1 {
            f.state = State::GettingRelays;
            self.get_relay_list(id);
            return Ok(None);
        }
        self.build(id, f)
    }

    fn set_deadline(&mut self, id: TaskId, deadline: Option<u64>) {
        // The task is being stepped: its deadline is set when it returns.
        self.deadline_changes.push((id, deadline));
    }

    fn build(&mut self, id: TaskId, f: &mut FetchTask) -> Result<Option<TaskResult>, OpError> {
        let Some(bridge) = self.bridge_hop() else {
            return self.broken(id, f, "not connected to a bridge".into());
        };
        let find = |fp: &[u8; 20]| f.relays.iter().find(|r| r.rsa_id == *fp).cloned();
        let chosen = match (f.forced, f.attempt) {
            (Some((m, e)), 1) => match (find(&m), find(&e)) {
                (Some(m), Some(e)) => Some((m, e)),
                _ => {
                    return Err(OpError::Fetch(
                        "`path` names relays the bridge does not list".into(),
                    ))
                }
            },
            _ => {
                let random = self.random_u64();
                let mut excluded = f.avoid.clone();
                excluded.push(bridge.id);
                let independent = !f.single_operator;
                let pick = choose_middle_and_exit(&f.relays, &excluded, random, independent)
                    .or_else(|| {
                        // Avoiding every suspect may leave no path: forget them.
                        f.avoid.clear();
                        choose_middle_and_exit(&f.relays, &[bridge.id], random, independent)
                    })
                    .map(|(m, e)| (m.clone(), e.clone()));
                let only_the_bridges = independent
                    && pick.is_none()
                    && choose_middle_and_exit(&f.relays, &[bridge.id], random, false).is_some();
                if only_the_bridges {
                    return Err(OpError::NoPath(SINGLE_OPERATOR_REFUSED.into()));
                }
                pick
            }
        };
        let Some((middle, exit)) = chosen else {
            return self.broken(id, f, no_path(&f.relays, f.avoid.len()).to_string());
        };
        f.used
            .push(format!("{} → {}", middle.nickname, exit.nickname));
        let hops = vec![bridge, HopSpec::relay(&middle), HopSpec::relay(&exit)];
        f.current = Some((middle, exit));
        f.state = State::Building;
        self.spawn_route_on(self.bridge_link(), hops, Purpose::Hold, Parent::Task(id));
        Ok(None)
    }

    /// The GET (from the first missing byte) on a new stream of `circ`.
    fn request(
        &mut self,
        id: TaskId,
        f: &mut FetchTask,
        link: u32,
        circ: u32,
    ) -> Result<Option<TaskResult>, OpError> {
        let (target, request): (StreamTarget, Vec<u8>) = f
            .download
            .request(self.now)
            .map_err(|e| OpError::Fetch(format!("fetch {}: {e}", f.download.url())))?;
        let opened = self.core.mux(link).map(|m| m.begin(circ, target));
        match opened {
            Some(Ok(stream)) => {
                self.own_stream(id, link, circ, stream);
                f.state = State::Streaming { link, circ, stream };
                f.unsent = request;
                self.send_unsent(f, link, circ, stream);
                Ok(None)
            }
            Some(Err(e)) => self.broken(id, f, e.to_string()),
            None => self.broken(id, f, "the bridge link closed".into()),
        }
    }

    fn fetch_event(
        &mut self,
        id: TaskId,
        f: &mut FetchTask,
        event: MuxEvent,
    ) -> Result<Option<TaskResult>, OpError> {
        let State::Streaming { link, circ, stream } = f.state else {
            return Ok(None);
        };
        match event {
            MuxEvent::StreamReadable { .. } => self.read_body(id, f, link, circ, stream),
            MuxEvent::StreamWritable { .. } => {
                self.send_unsent(f, link, circ, stream);
                // Reading may have paused on a full `unsent`.
                self.read_body(id, f, link, circ, stream)
            }
            MuxEvent::StreamEnded { reason, opened, .. } => {
                if !opened {
                    // The exit refused: another circuit will not help.
                    return Err(OpError::Fetch(format!(
                        "fetch {}: the exit refused: {} (END reason {reason})",
                        f.download.url(),
                        crate::cell::end_reason::describe(reason)
                    )));
                }
                self.stream_over(id, f, link, circ, reason)
            }
            MuxEvent::CircuitClosed { reason, .. } => self.broken(
                id,
                f,
                format!(
                    "the circuit closed ({})",
                    crate::cell::destroy_reason::describe(reason)
                ),
            ),
            _ => Ok(None),
        }
    }

    /// Reads what the stream holds while the store keeps up.
    fn read_body(
        &mut self,
        id: TaskId,
        f: &mut FetchTask,
        link: u32,
        circ: u32,
        stream: u16,
    ) -> Result<Option<TaskResult>, OpError> {
        let paused = |f: &FetchTask| f.inline.as_ref().is_some_and(|i| i.paused);
        while f.unstored < MAX_UNSTORED && f.unsent.len() < MAX_UNSENT && !paused(f) {
            let data = match self
                .core
                .mux(link)
                .map(|m| m.read(circ, stream, READ_CHUNK))
            {
                Some(Ok(d)) if !d.is_empty() => d,
                _ => break,
            };
            let fed = match f.download.feed(&data) {
                Ok(fed) => fed,
                Err(e) if e.is_tls() && f.tls_failures < MAX_TLS_FAILURES => {
                    // Maybe the exit's doing (a forged certificate, a
                    // flipped byte): resume through another exit (taking
                    // `current` keeps `broken` from blaming the middle).
                    f.tls_failures += 1;
                    if let Some((_, exit)) = f.current.take() {
                        f.avoid.push(exit.rsa_id);
                    }
                    return self.broken(id, f, e.to_string());
                }
                Err(e) => return Err(OpError::Fetch(format!("fetch {}: {e}", f.download.url()))),
            };
            let reply = f.download.take_outgoing();
            if !reply.is_empty() {
                f.unsent.extend_from_slice(&reply);
                self.send_unsent(f, link, circ, stream);
            }
            for piece in fed {
                match piece {
                    Fed::Body(b) => f.buffer.extend_from_slice(&b),
                    Fed::Restart => {
                        f.buffer.clear();
                        self.body_restart(id, f);
                    }
                }
            }
            // A body kept inline goes on read by read: it is played as it
            // comes.
            if f.buffer.len() >= STORE_CHUNK || f.inline.is_some() {
                self.store(id, f);
            }
            self.progress(id, f, false);
            if f.download.redirecting() {
                if let Some(m) = self.core.mux(link) {
                    m.end(circ, stream);
                }
                self.stream_owners.remove(&(link, circ, stream));
                return self.stream_over(id, f, link, circ, crate::cell::end_reason::DONE);
            }
            if f.download.is_done() {
                if let Some(m) = self.core.mux(link) {
                    m.end(circ, stream);
                }
                self.stream_owners.remove(&(link, circ, stream));
                return Ok(self.body_complete(id, f));
            }
        }
        Ok(None)
    }

    /// Writes what the stream's queue takes of `f.unsent`; the rest waits
    /// for `StreamWritable`.
    fn send_unsent(&mut self, f: &mut FetchTask, link: u32, circ: u32, stream: u16) {
        if f.unsent.is_empty() {
            return;
        }
        if let Some(Ok(taken)) = self
            .core
            .mux(link)
            .map(|m| m.write(circ, stream, &f.unsent))
        {
            f.unsent.drain(..taken.min(f.unsent.len()));
        }
    }

    fn store(&mut self, id: TaskId, f: &mut FetchTask) {
        if f.buffer.is_empty() {
            return;
        }
        let data = std::mem::take(&mut f.buffer);
        if let Some(inline) = &mut f.inline {
            inline.pieces.push(data);
            return;
        }
        f.unstored += 1;
        self.events.push_back(TabEvent::FetchBody { op: id, data });
    }

    /// What was kept of the body is void: it starts again.
    fn body_restart(&mut self, id: TaskId, f: &mut FetchTask) {
        match &mut f.inline {
            Some(inline) => {
                inline.pieces.clear();
                inline.restarted = true;
            }
            None => self.events.push_back(TabEvent::FetchRestart { op: id }),
        }
    }

    fn progress(&mut self, id: TaskId, f: &mut FetchTask, force: bool) {
        if f.inline.is_some() {
            return;
        }
        if !force && self.now.saturating_sub(f.last_progress) < PROGRESS_EVERY_MS {
            return;
        }
        f.last_progress = self.now;
        self.events.push_back(TabEvent::FetchProgress {
            op: id,
            received: f.download.received(),
            total: f.download.total(),
            attempt: f.attempt,
        });
    }

    fn stream_over(
        &mut self,
        id: TaskId,
        f: &mut FetchTask,
        link: u32,
        circ: u32,
        reason: u8,
    ) -> Result<Option<TaskResult>, OpError> {
        let (end, restart) = f
            .download
            .stream_ended(reason)
            .map_err(|e| OpError::Fetch(format!("fetch {}: {e}", f.download.url())))?;
        if restart.is_some() {
            f.buffer.clear();
            self.body_restart(id, f);
        }
        match end {
            StreamEnd::Done => Ok(self.body_complete(id, f)),
            StreamEnd::Redirected => {
                tracing::info!("redirected to {}", f.download.url());
                self.request(id, f, link, circ)
            }
            StreamEnd::Broken(why) => self.broken(id, f, why),
        }
    }

    fn body_complete(&mut self, id: TaskId, f: &mut FetchTask) -> Option<TaskResult> {
        self.store(id, f);
        self.progress(id, f, true);
        if f.unstored == 0 {
            return Some(self.fetched(id, f));
        }
        f.state = State::Finishing;
        None
    }

    /// The circuit or stream broke: resume on another circuit, avoiding
    /// the middle (the likeliest culprit: the exit also reached the
    /// server).
    fn broken(
        &mut self,
        id: TaskId,
        f: &mut FetchTask,
        why: String,
    ) -> Result<Option<TaskResult>, OpError> {
        tracing::warn!(
            "download broke after {} bytes on {}: {why}; resuming on a new circuit",
            f.download.received(),
            f.used.last().map(String::as_str).unwrap_or("no circuit")
        );
        f.last_error = why;
        if let Some((middle, _)) = f.current.take() {
            f.avoid.push(middle.rsa_id);
        }
        // Our streams and circuits of the broken attempt go.
        let mine: Vec<(u32, u32)> = self
            .circ_owners
            .iter()
            .filter(|(_, t)| **t == id)
            .map(|(k, _)| *k)
            .collect();
        for (link, circ) in mine {
            self.circ_owners.remove(&(link, circ));
            if let Some(m) = self.core.mux(link) {
                m.destroy(circ);
            }
        }
        self.stream_owners.retain(|_, t| *t != id);
        self.next_attempt(id, f)
    }

    fn fetched(&mut self, _id: TaskId, f: &mut FetchTask) -> TaskResult {
        let head = f.download.head().cloned();
        TaskResult::Fetched(Fetched {
            status: head.as_ref().map_or(0, |h| h.status),
            reason: head.as_ref().map(|h| h.reason.clone()).unwrap_or_default(),
            headers: head.map(|h| h.headers).unwrap_or_default(),
            url: f.download.url().to_string(),
            size: f.download.received(),
            attempts: f.attempt,
            circuits: f.used.clone(),
            tls: f.download.tls().map(str::to_string),
        })
    }
}
