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
use crate::content::live::{web_stream_name, LiveManifest, DEFAULT_CHUNK_MS};
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
    /// The initialization segment we published.
    init: Option<Vec<u8>>,
    chunks: u64,
}

impl WebSource {
    pub(super) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    pub(super) fn nobody_relays(&self, follower: &LiveFollower, now: u64) -> bool {
        self.direct_at_once
            || nobody_relays(
                &follower.stats(),
                follower.manifest().is_some(),
                self.since,
                now,
            )
    }

    pub(super) fn add_stats(&self, stats: &mut FollowStats) {
        if let Some(d) = &self.direct {
            stats.direct = true;
            stats.chunks += d.chunks;
        }
    }
}

impl TabPeer {
    /// Plays the live stream at web address `url`: from the tabs that
    /// relay it, or, when none does, fetched through three hops by this
    /// tab, which then relays it. Events and the end as `follow_live`'s.
    pub fn watch_web_live(&mut self, url: &str, options: WebLiveOptions, now: u64) -> u64 {
        self.now = now.max(self.now);
        let parsed = HttpUrl::parse(url).map(|u| u.to_string());
        let name = parsed
            .as_deref()
            .map_or(crate::content::HashName([0; 20]), web_stream_name);
        let mut task = LiveTask::new(name, options.hops, now);
        task.web = Some(Box::new(WebSource {
            url: parsed.clone().unwrap_or_default(),
            fetch: options.fetch,
            direct_at_once: options.direct,
            since: now,
            direct: None,
        }));
        let id = self.start_live_task(task);
        match parsed {
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
        let key = self.new_live_key()?;
        let manifest = LiveManifest::sign_web(now, DEFAULT_CHUNK_MS, mime, url, init, &key)
            .map_err(|e| OpError::Fetch(e.to_string()))?;
        let stream = self.start_publishing(manifest, key);
        self.after_input();
        Ok(stream)
    }

    /// Nobody relays the stream: fetch its address.
    pub(super) fn go_direct(&mut self, id: TaskId, t: &mut LiveTask) -> Option<TaskResult> {
        t.circuits.close_all(self);
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
        let cancelled = matches!(input, TaskInput::StoreFailed(_));
        let h = t.hash_name;
        let web = t.web.as_mut()?;
        let d = web.direct.as_mut()?;
        let ended = if cancelled {
            Some(TaskResult::Followed(FollowStats::default()))
        } else {
            self.fetch_step(id, &mut d.fetch, input)
        };
        let status = d
            .fetch
            .head()
            .map(|head| (head.status, head.reason.clone()));
        let outcome = match status {
            Some((status, reason)) if !(200..300).contains(&status) => Err(OpError::Fetch(
                format!("live: {} answered {status} {reason}", web.url),
            )),
            _ => self.direct_body(id, h, &web.url, d, ended.is_some()),
        };
        let due = d.batcher.due();
        let end = match (outcome, ended) {
            (Err(e), _) => Some(Err(e)),
            (Ok(()), Some(TaskResult::Failed(e))) => Some(Err(e)),
            (Ok(()), Some(_)) => Some(Ok(())),
            (Ok(()), None) => None,
        };
        match end {
            Some(result) => Some(t.end(self, result)),
            None => {
                if let Some(due) = due {
                    self.deadline_changes.push((id, Some(due)));
                }
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
            // The body starts again: so does the container.
            d.cutter = LiveCutter::default();
        }
        let pieces = std::mem::take(&mut inline.pieces);
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
                        let key = self.new_live_key()?;
                        let manifest = LiveManifest::sign_web(
                            now,
                            DEFAULT_CHUNK_MS,
                            &mse_type,
                            url,
                            &data,
                            &key,
                        )
                        .map_err(|e| OpError::Fetch(format!("live: {url}: {e}")))?;
                        let stream = self.start_publishing(manifest, key);
                        debug_assert_eq!(stream.hash_name, h);
                        d.init = Some(data);
                        self.events
                            .push_back(TabEvent::LiveManifest { op: id, stream });
                    }
                },
                Cut::Piece { data, key, .. } if d.init.is_some() => {
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
                gap: false,
                data,
            });
        }
        Ok(())
    }
}
