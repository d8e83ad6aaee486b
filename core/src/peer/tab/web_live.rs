//! `watch_web_live`: a live stream from a web address (docs/PROTOCOL.md
//! "Live streams from a web address"; the seed's "connection to the
//! stream: http://mytv.fr, hash_name efgh — direct download if nobody has
//! chunks for efgh").
//!
//! The stream is named by its address (`content::live::web_stream_name`).
//! The tab first follows that name like any live stream. When no ORDB has
//! it (`content::web_live::nobody_relays`), the tab fetches the address
//! itself through three hops — the bridge first, as `peer.fetch` does — and
//! cuts the body into chunks (`media::live::LiveCutter`, then
//! `ChunkBatcher` at the stream's cadence). It plays them, and publishes
//! them under the address's name with a key made for the stream, so the
//! next viewers get the stream from this tab rather than from the web.
//! The address's server sees one exit, once.

use crate::content::follow::{FollowStats, LiveFollower};
use crate::content::live::{web_stream_name, LiveManifest, DEFAULT_CHUNK_MS, MAX_LIVE_NAME};
use crate::content::web_live::{nobody_relays, ChunkBatcher};
use crate::http::HttpUrl;
use crate::media::live::{Cut, LiveCutter};

use super::fetch::{FetchOptions, FetchTask, InlineBody};
use super::live::LiveTask;
use super::tasks::{TaskId, TaskInput, TaskResult};
use super::{OpError, TabEvent, TabPeer};

#[derive(Debug, Clone, Default)]
pub struct WebLiveOptions {
    /// Tabs in each circuit to an ORDB, the ORDB last (default 2).
    pub hops: Option<usize>,
    /// Fetch the address at once, without looking for tabs relaying it:
    /// for a viewer who trusts no tab with what the address serves.
    pub direct: bool,
    /// How the address is fetched when it is (`peer.fetch`'s options).
    pub fetch: FetchOptions,
}

/// Whether a mux event is the direct fetch's (not a stale one of the
/// circuits to ORDBs closed when looking ended).
fn direct_fetch_concerns(
    t: &LiveTask,
    link: super::LinkId,
    event: &crate::client::MuxEvent,
) -> bool {
    t.web
        .as_ref()
        .and_then(|w| w.direct.as_ref())
        .is_some_and(|d| d.fetch.concerns(link, event))
}

/// The web side of a live task.
pub(super) struct WebSource {
    url: String,
    fetch: FetchOptions,
    direct_at_once: bool,
    /// When the tab began looking for tabs relaying the stream.
    since: u64,
    direct: Option<Direct>,
}

/// Fetching the address ourselves, and publishing what comes.
struct Direct {
    fetch: Box<FetchTask>,
    cutter: LiveCutter,
    batcher: ChunkBatcher,
    /// The initialization segment we published (then the stream is ours).
    init: Option<Vec<u8>>,
    chunks: u64,
    /// The first cluster's time (s) and when it came (ms): the body may
    /// not run further ahead of this clock than `MAX_AHEAD_MS`.
    clock: Option<(f64, u64)>,
    /// The newest cluster's time since the first, ms.
    media_ms: i64,
    /// When the fetch wants to be woken (waiting for a bridge).
    fetch_deadline: Option<u64>,
    last_body_at: u64,
    /// The next chunk follows a break in the body.
    gap: bool,
}

impl Direct {
    /// How far the body's newest cluster is ahead of real time, ms.
    fn ahead_ms(&self, now: u64) -> i64 {
        self.clock
            .map_or(0, |(_, w0)| self.media_ms - now.saturating_sub(w0) as i64)
    }
}

/// A body may run this far ahead of real time before reading pauses: a
/// server that sends faster than the media plays (or a file sent whole)
/// must not spin the ring of chunks past every follower.
const MAX_AHEAD_MS: i64 = 3_000;
/// A body that brings nothing for this long ends the stream.
const DIRECT_IDLE_MS: u64 = 30_000;

impl WebSource {
    pub(super) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    pub(super) fn nobody_relays(&self, follower: &LiveFollower, now: u64) -> bool {
        self.direct_at_once
            || nobody_relays(
                follower.not_found_by(),
                follower.manifest().is_some(),
                self.since,
                now,
            )
    }

    /// Whether this task published the stream (then it takes it down).
    pub(super) fn published(&self) -> bool {
        self.direct.as_ref().is_some_and(|d| d.init.is_some())
    }

    pub(super) fn add_stats(&self, stats: &mut FollowStats) {
        if let Some(d) = &self.direct {
            stats.direct = true;
            stats.chunks += d.chunks;
        }
    }
}

/// The address as a live stream's name carries it (`HttpUrl`'s form), and
/// that name; refused before any fetch when it cannot be one.
pub fn web_live_name(url: &str) -> Result<(String, crate::content::HashName), String> {
    let u = HttpUrl::parse(url).map_err(|e| e.to_string())?.to_string();
    if u.len() > MAX_LIVE_NAME || !u.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "a live stream's address must be printable ASCII of at most {MAX_LIVE_NAME} bytes"
        ));
    }
    let h = web_stream_name(&u);
    Ok((u, h))
}

impl TabPeer {
    /// Plays the live stream at web address `url`: from the tabs that
    /// relay it, or, when none does, fetched through three hops by this
    /// tab, which then relays it. Events and the end as `follow_live`'s.
    pub fn watch_web_live(&mut self, url: &str, options: WebLiveOptions, now: u64) -> u64 {
        self.now = now.max(self.now);
        let parsed = web_live_name(url);
        let name = parsed
            .as_ref()
            .map_or(crate::content::HashName([0; 20]), |(_, h)| *h);
        let mut task = LiveTask::new(name, options.hops, now);
        task.web = Some(Box::new(WebSource {
            url: parsed.as_ref().map(|(u, _)| u.clone()).unwrap_or_default(),
            fetch: options.fetch,
            direct_at_once: options.direct,
            since: now,
            direct: None,
        }));
        let held = self.ordb.live(&name).is_some() || self.publishing.contains_key(&name);
        let id = self.start_live_task(task);
        match parsed {
            Ok(_) if held => self.finish(
                id,
                TaskResult::Failed(OpError::Fetch(
                    "live: this tab already plays that address".into(),
                )),
            ),
            Ok(_) => self.task_input(id, TaskInput::Timeout),
            Err(e) => self.finish(id, TaskResult::Failed(OpError::Fetch(format!("live: {e}")))),
        }
        self.after_input();
        id
    }

    /// Tests: publishes the stream of web address `url` as if this tab had
    /// fetched it (the simulation has no web servers).
    #[cfg(test)]
    pub(crate) fn publish_web_live(
        &mut self,
        url: &str,
        mime: &str,
        init: &[u8],
        now: u64,
    ) -> Result<super::LiveStream, OpError> {
        self.now = now.max(self.now);
        let stream = self.publish_web(url, mime, init, now)?;
        self.after_input();
        Ok(stream)
    }

    /// Signs, holds and announces the stream of web address `url` under a
    /// key made for it.
    fn publish_web(
        &mut self,
        url: &str,
        mime: &str,
        init: &[u8],
        now: u64,
    ) -> Result<super::LiveStream, OpError> {
        let key = self.new_live_key()?;
        let manifest = LiveManifest::sign_web(now, DEFAULT_CHUNK_MS, mime, url, init, &key)
            .map_err(|e| OpError::Fetch(format!("live: {url}: {e}")))?;
        Ok(self.start_publishing(manifest, key))
    }

    /// Nobody relays the stream: fetch its address.
    pub(super) fn go_direct(&mut self, id: TaskId, t: &mut LiveTask) -> Option<TaskResult> {
        t.circuits.close_all(self);
        if self.ordb.live(&t.hash_name).is_some() {
            // Another of this tab's players got it meanwhile.
            let e = OpError::Fetch("live: this tab already plays that address".into());
            return Some(t.end(self, Err(e)));
        }
        let web = t.web.as_mut()?;
        tracing::info!("live: nobody relays {}; fetching it", web.url);
        let (mut fetch, ready) = FetchTask::new(&web.url, web.fetch.clone());
        if let Err(e) = ready {
            return Some(t.end(self, Err(OpError::Fetch(format!("live: {e}")))));
        }
        fetch.inline = Some(InlineBody::default());
        web.direct = Some(Direct {
            fetch: Box::new(fetch),
            cutter: LiveCutter::default(),
            batcher: ChunkBatcher::new(DEFAULT_CHUNK_MS),
            init: None,
            chunks: 0,
            clock: None,
            media_ms: 0,
            fetch_deadline: None,
            last_body_at: self.now,
            gap: false,
        });
        self.direct_step(id, t, TaskInput::Timeout)
    }

    pub(super) fn direct_step(
        &mut self,
        id: TaskId,
        t: &mut LiveTask,
        input: TaskInput,
    ) -> Option<TaskResult> {
        // Circuits to ORDBs asked for while looking: not needed any more.
        let input = match input {
            TaskInput::Child(child, result) if t.circuits.is_building(child) => {
                if let Ok(Some(source)) = t.circuits.child_done(self, id, child, *result) {
                    t.circuits.drop(self, source);
                }
                return None;
            }
            TaskInput::Mux(link, event) if !direct_fetch_concerns(t, link, &event) => return None,
            other => other,
        };
        let now = self.now;
        let cancelled = matches!(input, TaskInput::StoreFailed(_));
        let h = t.hash_name;
        let web = t.web.as_mut()?;
        let d = web.direct.as_mut()?;
        // Reading waits while the body runs ahead of real time; once real
        // time has caught up, it goes on.
        let paused = d.fetch.inline.as_ref().is_some_and(|i| i.paused);
        let input = match input {
            TaskInput::Timeout if paused && d.ahead_ms(now) <= MAX_AHEAD_MS => {
                if let Some(inline) = d.fetch.inline.as_mut() {
                    inline.paused = false;
                }
                TaskInput::Stored
            }
            other => other,
        };
        let ended = if cancelled {
            // The viewer stopped: what is gathered is not worth a chunk.
            d.batcher.discard();
            Some(TaskResult::Followed(FollowStats::default()))
        } else {
            let before = self.deadline_changes.len();
            let ended = self.fetch_step(id, &mut d.fetch, input);
            // The fetch's own wish (waiting for a bridge), kept beside ours.
            if let Some((_, wish)) = self
                .deadline_changes
                .get(before..)
                .unwrap_or_default()
                .iter()
                .rev()
                .find(|(t, _)| *t == id)
            {
                d.fetch_deadline = *wish;
            }
            ended
        };
        let status = d
            .fetch
            .head()
            .map(|head| (head.status, head.reason.clone()));
        let outcome = match status {
            Some((status, reason)) if !(200..300).contains(&status) => Err(OpError::Fetch(
                format!("live: {} answered {status} {reason}", web.url),
            )),
            _ if cancelled => Ok(()),
            _ => self.direct_body(id, h, &web.url, d, ended.is_some()),
        };
        let idle = now.saturating_sub(d.last_body_at) >= DIRECT_IDLE_MS;
        let ahead = d.ahead_ms(now);
        if let Some(inline) = d.fetch.inline.as_mut() {
            inline.paused = ahead > MAX_AHEAD_MS;
        }
        let end = match (outcome, ended) {
            (Err(e), _) => Some(Err(e)),
            (Ok(()), Some(TaskResult::Failed(e))) => Some(Err(e)),
            (Ok(()), Some(_)) => Some(Ok(())),
            (Ok(()), None) if idle => Some(Err(OpError::Fetch(format!(
                "live: {} sent nothing for {} s",
                web.url,
                DIRECT_IDLE_MS / 1000
            )))),
            (Ok(()), None) => None,
        };
        // One deadline for all: the fetch's, the chunk being gathered, the
        // end of a pause, and the idle limit. (A deadline that passed is
        // not cleared by itself: always set one.)
        let resume =
            (ahead > MAX_AHEAD_MS).then(|| now + (ahead - MAX_AHEAD_MS).unsigned_abs().max(50));
        let wake = [
            d.fetch_deadline,
            d.batcher.due(),
            resume,
            Some(d.last_body_at + DIRECT_IDLE_MS),
        ]
        .into_iter()
        .flatten()
        .min();
        match end {
            Some(result) => Some(t.end(self, result)),
            None => {
                self.deadline_changes.push((id, wake));
                None
            }
        }
    }

    /// Cuts what the fetch read, publishes and plays the chunks complete.
    fn direct_body(
        &mut self,
        id: TaskId,
        h: crate::content::HashName,
        url: &str,
        d: &mut Direct,
        body_over: bool,
    ) -> Result<(), OpError> {
        let now = self.now;
        let Some(inline) = d.fetch.inline.as_mut() else {
            return Ok(());
        };
        if std::mem::take(&mut inline.restarted) {
            // The body starts again (a circuit broke; the server ignored
            // the range): so does the container. What was gathered would
            // not decode, and followers skip to the next key chunk.
            d.cutter = LiveCutter::default();
            d.batcher.discard();
            d.clock = None;
            if d.init.is_some() {
                self.skip_live_seq(&h);
                d.gap = true;
            }
        }
        let pieces = std::mem::take(&mut inline.pieces);
        if !pieces.is_empty() {
            d.last_body_at = now;
            d.fetch.progressed();
        }
        let mut cuts = Vec::new();
        for piece in pieces {
            let more = d
                .cutter
                .push(&piece)
                .map_err(|e| OpError::Fetch(format!("live: {url} is not a WebM stream: {e}")))?;
            cuts.extend(more);
        }
        if body_over {
            cuts.extend(d.cutter.finish());
        }
        let mut chunks = Vec::new();
        for cut in cuts {
            match cut {
                Cut::Init { data, mse_type } => match &d.init {
                    Some(published) if *published == data => {}
                    Some(_) => {
                        return Err(OpError::Fetch(format!(
                            "live: {url} started its stream again with other media"
                        )))
                    }
                    None => {
                        let stream = self.publish_web(url, &mse_type, &data, now)?;
                        debug_assert_eq!(stream.hash_name, h);
                        d.init = Some(data);
                        self.events
                            .push_back(TabEvent::LiveManifest { op: id, stream });
                    }
                },
                // After a break, nothing until a cluster a decoder can
                // start from.
                Cut::Piece { key: false, .. } if d.gap => {}
                Cut::Piece { data, key, time } if d.init.is_some() => {
                    if let Some(time) = time {
                        let (t0, _) = *d.clock.get_or_insert((time, now));
                        d.media_ms = ((time - t0) * 1000.0) as i64;
                    }
                    chunks.extend(d.batcher.push(&data, key, now));
                }
                Cut::Piece { .. } => {}
            }
        }
        chunks.extend(d.batcher.tick(now));
        if body_over {
            chunks.extend(d.batcher.flush());
        }
        for (data, key) in chunks {
            let seq = self.sign_live_chunks(&h, &data, key, now)?;
            d.chunks += 1;
            self.events.push_back(TabEvent::LiveChunk {
                op: id,
                seq,
                timestamp_ms: now,
                key,
                gap: std::mem::take(&mut d.gap),
                data,
            });
        }
        Ok(())
    }
}
