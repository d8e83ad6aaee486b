//! Live streams in the page (docs/PROTOCOL.md "Live streams").
//!
//! `peer.live(source)` publishes: a MediaStream (a camera, a canvas) is
//! recorded with MediaRecorder, or a WebM file is replayed at the pace of
//! its clusters; the core's cutter (`media::live`) finds the init segment
//! and the keyframes, and the core signs and serves each chunk.
//!
//! The live player (`peer.stream` of a live stream) follows it with
//! `TabPeer::follow_live` and appends the chunks to MediaSource as they
//! come, in order, and shows how far behind the capture it plays.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use js_sys::{Object, Uint8Array};
use peersm_core::content::HashName;
use peersm_core::media::live::{Cut, LiveCutter};
use peersm_core::media::live_play::{live_delay_ms, LivePosition};
use peersm_core::peer::tab::{web_live_name, LiveOptions, LiveStream, Outcome, WebLiveOptions};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{HtmlMediaElement, MediaSource, MediaSourceReadyState, SourceBuffer};

use super::driver::{input, now, Shared};
use super::js::{get, js_error, set, sleep_ms};
use super::log;
use super::stream::{
    done_promise, error_text, listen, Player, PlayerEvent, PlayerTx, Ready, Stats,
};

/// How often the recorder hands over data, ms (a chunk each).
const DEFAULT_CHUNK_MS: u32 = 250;
/// A keyframe this often, so a joiner can start within it.
const KEYFRAME_EVERY_MS: u32 = 1000;
/// What is more than this far behind the play position is removed.
const KEEP_BEHIND_SECS: f64 = 30.0;
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LiveOptionsJs {
    /// MediaRecorder's type (default WebM: VP8, with Opus when the stream
    /// has sound).
    #[serde(default, rename = "type")]
    mime: Option<String>,
    #[serde(default)]
    name: Option<String>,
    /// ms between chunks (default 250).
    #[serde(default)]
    chunk_ms: Option<u32>,
}

/// What stops a publisher (once).
type StopOnce = Rc<RefCell<Option<Box<dyn FnOnce()>>>>;

#[derive(Default)]
struct PublishStats {
    chunks: u64,
    bytes: f64,
    keys: u64,
    newest_seq: Option<u64>,
    ended: bool,
}

/// A live stream this tab publishes (`peer.live`'s result).
#[wasm_bindgen]
pub struct LivePublisher {
    hash_name: String,
    link: String,
    mse_type: String,
    stats: Rc<RefCell<PublishStats>>,
    stop: StopOnce,
}

#[wasm_bindgen]
impl LivePublisher {
    #[wasm_bindgen(getter, js_name = hashName)]
    pub fn hash_name(&self) -> String {
        self.hash_name.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn link(&self) -> String {
        self.link.clone()
    }

    #[wasm_bindgen(getter, js_name = "type")]
    pub fn mse_type(&self) -> String {
        self.mse_type.clone()
    }

    /// `{ chunks, bytes, keys, seq, ended }`: chunks published, the newest
    /// sequence number, whether the source ended.
    pub fn stats(&self) -> Result<Object, JsValue> {
        let s = self.stats.borrow();
        let o = Object::new();
        set(&o, "chunks", &JsValue::from(s.chunks as f64))?;
        set(&o, "bytes", &JsValue::from(s.bytes))?;
        set(&o, "keys", &JsValue::from(s.keys as f64))?;
        set(
            &o,
            "seq",
            &s.newest_seq
                .map_or(JsValue::NULL, |q| JsValue::from(q as f64)),
        )?;
        set(&o, "ended", &JsValue::from(s.ended))?;
        Ok(o)
    }

    /// Stops recording (or replaying) and publishing.
    pub fn stop(&self) {
        if let Some(stop) = self.stop.borrow_mut().take() {
            stop();
        }
    }
}

/// What feeds the cutter: bytes of the recording, in order.
enum Input {
    Blob(web_sys::Blob),
    End,
}

/// Publishes `source` (a MediaStream, or a WebM File or Blob replayed as
/// live); resolves once the first data gave the stream its name.
pub(crate) async fn publish(
    shared: &Shared,
    source: JsValue,
    options: LiveOptionsJs,
) -> Result<LivePublisher, JsValue> {
    let chunk_ms = options
        .chunk_ms
        .unwrap_or(DEFAULT_CHUNK_MS)
        .clamp(20, 10_000);
    let name = options.name.clone().unwrap_or_else(|| "live".into());
    let stats = Rc::new(RefCell::new(PublishStats::default()));
    let stopped = Rc::new(RefCell::new(false));
    let (named_tx, named_rx) = oneshot::channel::<Result<LiveStream, JsValue>>();
    let stop: Box<dyn FnOnce()>;
    if let Ok(stream) = source.clone().dyn_into::<web_sys::MediaStream>() {
        let (tx, rx) = mpsc::unbounded();
        let handlers = recorder(&stream, options.mime.as_deref(), &tx)?;
        let recorder = handlers.recorder.clone();
        recorder.start_with_time_slice(chunk_ms as i32)?;
        let stopped2 = stopped.clone();
        stop = Box::new(move || {
            *stopped2.borrow_mut() = true;
            let _ = recorder.stop();
        });
        let task = record(
            shared.clone(),
            rx,
            name,
            chunk_ms,
            named_tx,
            stats.clone(),
            stopped.clone(),
        );
        wasm_bindgen_futures::spawn_local(async move {
            task.await;
            // The recorder's handlers go with the recording.
            drop(handlers);
        });
    } else if let Ok(blob) = source.dyn_into::<web_sys::Blob>() {
        let stopped2 = stopped.clone();
        stop = Box::new(move || *stopped2.borrow_mut() = true);
        wasm_bindgen_futures::spawn_local(replay(
            shared.clone(),
            blob,
            name,
            chunk_ms,
            named_tx,
            stats.clone(),
            stopped.clone(),
        ));
    } else {
        return Err(js_error(
            "live: the source must be a MediaStream (a camera, a canvas) or a WebM File",
        ));
    }
    let stream = match named_rx.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            stop();
            return Err(e);
        }
        Err(_) => {
            stop();
            return Err(js_error("live: the source ended before its first data"));
        }
    };
    let h = stream.hash_name;
    let stop_all: Box<dyn FnOnce()> = {
        let shared = shared.clone();
        Box::new(move || {
            stop();
            input(&shared, |tab, _| tab.stop_live(&h));
        })
    };
    Ok(LivePublisher {
        hash_name: h.to_hex(),
        link: super::share::link_for(&h.to_hex()),
        mse_type: stream.mime,
        stats,
        stop: Rc::new(RefCell::new(Some(stop_all))),
    })
}

/// A MediaRecorder and its event handlers, removed when dropped.
struct Recorder {
    recorder: web_sys::MediaRecorder,
    _on_data: Closure<dyn FnMut(web_sys::BlobEvent)>,
    _on_stop: Closure<dyn FnMut()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.recorder.set_ondataavailable(None);
        self.recorder.set_onstop(None);
    }
}

/// A MediaRecorder on `stream`, its data going to `tx`.
fn recorder(
    stream: &web_sys::MediaStream,
    mime: Option<&str>,
    tx: &mpsc::UnboundedSender<Input>,
) -> Result<Recorder, JsValue> {
    let audio = stream.get_audio_tracks().length() > 0;
    let default = if audio {
        "video/webm;codecs=vp8,opus"
    } else {
        "video/webm;codecs=vp8"
    };
    let mime = mime.unwrap_or(default);
    if !web_sys::MediaRecorder::is_type_supported(mime) {
        return Err(js_error(&format!(
            "live: this browser cannot record {mime}"
        )));
    }
    let options = web_sys::MediaRecorderOptions::new();
    options.set_mime_type(mime);
    // Chromium makes one keyframe at the start unless asked (a joiner
    // starts on one).
    set(
        options.unchecked_ref(),
        "videoKeyFrameIntervalDuration",
        &JsValue::from(KEYFRAME_EVERY_MS),
    )?;
    let recorder =
        web_sys::MediaRecorder::new_with_media_stream_and_media_recorder_options(stream, &options)?;
    let data_tx = tx.clone();
    let on_data = Closure::<dyn FnMut(web_sys::BlobEvent)>::new(move |e: web_sys::BlobEvent| {
        if let Some(blob) = e.data() {
            let _ = data_tx.unbounded_send(Input::Blob(blob));
        }
    });
    recorder.set_ondataavailable(Some(on_data.as_ref().unchecked_ref()));
    let end_tx = tx.clone();
    let on_stop = Closure::<dyn FnMut()>::new(move || {
        let _ = end_tx.unbounded_send(Input::End);
    });
    recorder.set_onstop(Some(on_stop.as_ref().unchecked_ref()));
    Ok(Recorder {
        recorder,
        _on_data: on_data,
        _on_stop: on_stop,
    })
}

/// The publisher's side of one piece of the cutter's output.
fn publish_cut(
    shared: &Shared,
    cut: Cut,
    name: &str,
    chunk_ms: u32,
    stream: &mut Option<LiveStream>,
    stats: &RefCell<PublishStats>,
) -> Result<Option<LiveStream>, JsValue> {
    match cut {
        Cut::Init { data, mse_type } => {
            if stream.is_some() {
                return Ok(None);
            }
            let published =
                shared
                    .borrow_mut()
                    .tab
                    .publish_live(&mse_type, name, &data, Some(chunk_ms), now());
            super::driver::pump(shared);
            let s = published.map_err(|e| js_error(&format!("live: {e}")))?;
            *stream = Some(s.clone());
            Ok(Some(s))
        }
        Cut::Piece { data, key, .. } => {
            let Some(s) = stream else {
                return Ok(None);
            };
            let len = data.len();
            let seq = shared
                .borrow_mut()
                .tab
                .push_live_chunk(&s.hash_name, &data, key, now());
            super::driver::pump(shared);
            let seq = seq.map_err(|e| js_error(&format!("live: {e}")))?;
            let mut st = stats.borrow_mut();
            st.chunks += 1;
            st.bytes += len as f64;
            st.keys += u64::from(key);
            st.newest_seq = Some(seq + (len.saturating_sub(1) / MAX_CHUNK) as u64);
            Ok(None)
        }
    }
}

const MAX_CHUNK: usize = peersm_core::content::live::MAX_CHUNK;

async fn record(
    shared: Shared,
    mut rx: mpsc::UnboundedReceiver<Input>,
    name: String,
    chunk_ms: u32,
    named: oneshot::Sender<Result<LiveStream, JsValue>>,
    stats: Rc<RefCell<PublishStats>>,
    stopped: Rc<RefCell<bool>>,
) {
    let mut named = Some(named);
    let mut cutter = LiveCutter::default();
    let mut stream = None;
    while let Some(Input::Blob(blob)) = rx.next().await {
        let bytes = match JsFuture::from(blob.array_buffer()).await {
            Ok(b) => Uint8Array::new(&b).to_vec(),
            Err(e) => {
                log::warn(&format!("live: the recording could not be read: {e:?}"));
                break;
            }
        };
        let cuts = match cutter.push(&bytes) {
            Ok(c) => c,
            Err(e) => {
                fail(&mut named, &format!("live: the recording: {e}"));
                break;
            }
        };
        for cut in cuts {
            match publish_cut(&shared, cut, &name, chunk_ms, &mut stream, &stats) {
                Ok(Some(s)) => {
                    if let Some(n) = named.take() {
                        let _ = n.send(Ok(s));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    fail(&mut named, &error_text(&e));
                    break;
                }
            }
        }
        if *stopped.borrow() && stream.is_none() {
            break;
        }
    }
    for cut in cutter.finish() {
        let _ = publish_cut(&shared, cut, &name, chunk_ms, &mut stream, &stats);
    }
    stats.borrow_mut().ended = true;
}

fn fail(named: &mut Option<oneshot::Sender<Result<LiveStream, JsValue>>>, why: &str) {
    log::warn(why);
    if let Some(n) = named.take() {
        let _ = n.send(Err(js_error(why)));
    }
}

/// Replays a WebM file as live: its clusters go out at their times.
async fn replay(
    shared: Shared,
    blob: web_sys::Blob,
    name: String,
    chunk_ms: u32,
    named: oneshot::Sender<Result<LiveStream, JsValue>>,
    stats: Rc<RefCell<PublishStats>>,
    stopped: Rc<RefCell<bool>>,
) {
    let mut named = Some(named);
    let bytes = match JsFuture::from(blob.array_buffer()).await {
        Ok(b) => Uint8Array::new(&b).to_vec(),
        Err(e) => {
            return fail(
                &mut named,
                &format!("live: the file could not be read: {e:?}"),
            )
        }
    };
    let mut cutter = LiveCutter::default();
    let mut cuts = match cutter.push(&bytes) {
        Ok(c) => c,
        Err(e) => return fail(&mut named, &format!("live: the file: {e}")),
    };
    cuts.extend(cutter.finish());
    let mut stream = None;
    let started = now() as f64;
    let mut first_time: Option<f64> = None;
    for cut in cuts {
        if *stopped.borrow() {
            break;
        }
        if let Cut::Piece { time: Some(t), .. } = &cut {
            // On the file's clock: a cluster goes out at its time.
            let base = *first_time.get_or_insert(*t);
            let due = started + (t - base) * 1000.0;
            let wait = due - now() as f64;
            if wait > 0.0 {
                sleep_ms(wait as i32).await;
            }
        }
        match publish_cut(&shared, cut, &name, chunk_ms, &mut stream, &stats) {
            Ok(Some(s)) => {
                if let Some(n) = named.take() {
                    let _ = n.send(Ok(s));
                }
            }
            Ok(None) => {}
            Err(e) => return fail(&mut named, &error_text(&e)),
        }
    }
    if stream.is_none() {
        fail(&mut named, "live: the file has no WebM clusters to replay");
    }
    stats.borrow_mut().ended = true;
}

/// Follows live stream `h` and plays it in `element`.
pub(crate) async fn play_live(
    shared: &Shared,
    h: HashName,
    element: HtmlMediaElement,
    hops: Option<u32>,
) -> Result<Player, JsValue> {
    let options = LiveOptions {
        hops: hops.map(|h| h as usize),
    };
    play_op(shared, h.to_hex(), element, |tab| {
        tab.follow_live(h, options, now())
    })
    .await
}

/// Plays the live stream of web address `url`: from the tabs relaying it,
/// or fetched by this tab when none does (`TabPeer::watch_web_live`).
pub(crate) async fn play_web_live(
    shared: &Shared,
    url: &str,
    element: HtmlMediaElement,
    options: WebLiveOptions,
) -> Result<Player, JsValue> {
    let (_, h) = web_live_name(url).map_err(|e| js_error(&format!("stream: {e}")))?;
    play_op(shared, h.to_hex(), element, |tab| {
        tab.watch_web_live(url, options, now())
    })
    .await
}

/// Plays the chunks of live operation `start` gives in `element`.
async fn play_op(
    shared: &Shared,
    label: String,
    element: HtmlMediaElement,
    start: impl FnOnce(&mut peersm_core::peer::tab::TabPeer) -> u64,
) -> Result<Player, JsValue> {
    let (tx, rx) = mpsc::unbounded();
    let (done, resolve, reject) = done_promise()?;
    let op = {
        let mut d = shared.borrow_mut();
        let op = start(&mut d.tab);
        d.lives.insert(op, tx.clone());
        op
    };
    super::driver::pump(shared);
    // The follow's end: `done` settles, and the player hears it.
    {
        let (shared, tx) = (shared.clone(), tx.clone());
        let (wtx, wrx) = oneshot::channel();
        shared.borrow_mut().waiters.insert(op, wtx);
        wasm_bindgen_futures::spawn_local(async move {
            let outcome = wrx.await;
            shared.borrow_mut().lives.remove(&op);
            match outcome {
                Ok(Outcome::Followed(Ok(_))) => {
                    let _ = tx.unbounded_send(PlayerEvent::Done(Ok(())));
                    let _ = resolve.call0(&JsValue::NULL);
                }
                other => {
                    let why = match other {
                        Ok(Outcome::Followed(Err(e))) => format!("live: {e}"),
                        _ => "live: the follow ended".into(),
                    };
                    let _ = tx.unbounded_send(PlayerEvent::Done(Err(why.clone())));
                    let _ = reject.call1(&JsValue::NULL, &js_error(&why));
                }
            }
        });
    }
    let stats = Rc::new(RefCell::new(Stats::default()));
    let (ready_tx, ready_rx) = oneshot::channel();
    {
        let (shared, tx, stats) = (shared.clone(), tx.clone(), stats.clone());
        wasm_bindgen_futures::spawn_local(async move {
            let mut ready = Some(ready_tx);
            let r = live_loop(rx, &tx, &element, &mut ready, &stats).await;
            // However the player ends, the follow ends with it.
            input(&shared, |tab, now| tab.cancel_download(op, now));
            if let Err(e) = r {
                match ready.take() {
                    Some(r) => {
                        let _ = r.send(Err(e));
                    }
                    None => log::warn(&format!("live: {}", error_text(&e))),
                }
            }
        });
    }
    let ready: Ready = ready_rx
        .await
        .map_err(|_| js_error("live: the player stopped"))??;
    Ok(Player::new(
        label,
        ready,
        done,
        tx,
        stats,
        Some((shared.clone(), op)),
    ))
}

async fn live_loop(
    mut rx: mpsc::UnboundedReceiver<PlayerEvent>,
    tx: &PlayerTx,
    element: &HtmlMediaElement,
    ready: &mut Option<oneshot::Sender<Result<Ready, JsValue>>>,
    stats: &Rc<RefCell<Stats>>,
) -> Result<(), JsValue> {
    let stream = loop {
        match rx.next().await {
            Some(PlayerEvent::LiveManifest(s)) => break s,
            Some(PlayerEvent::Done(Err(e))) => return Err(js_error(&e)),
            None | Some(PlayerEvent::Stop) | Some(PlayerEvent::Done(Ok(()))) => return Ok(()),
            Some(_) => {}
        }
    };
    if !MediaSource::is_type_supported(&stream.mime) {
        return Err(js_error(&format!(
            "live: this browser cannot play {}",
            stream.mime
        )));
    }
    let source = MediaSource::new()?;
    let url = web_sys::Url::create_object_url_with_source(&source)?;
    let _open = listen(&source, "sourceopen", tx, || PlayerEvent::SourceOpen)?;
    element.set_src(&url);
    // Bytes to append, their chunk's timestamp, and whether chunks were
    // skipped before them (the parser then starts afresh: what came before
    // may end inside a block).
    let mut queue: VecDeque<(Vec<u8>, Option<u64>, bool)> = VecDeque::new();
    queue.push_back((stream.init.clone(), None, false));
    // Chunks that come while MediaSource opens wait in the queue.
    let stats_chunk = |s: &Rc<RefCell<Stats>>, seq: u64, gap: bool| {
        let mut s = s.borrow_mut();
        s.chunks += 1;
        s.first_seq.get_or_insert(seq);
        s.last_seq = Some(seq);
        s.gaps += u32::from(gap);
    };
    loop {
        match rx.next().await {
            Some(PlayerEvent::SourceOpen) => break,
            None | Some(PlayerEvent::Stop) => return Ok(()),
            Some(PlayerEvent::Done(Err(e))) => return Err(js_error(&e)),
            Some(PlayerEvent::LiveChunk {
                seq,
                timestamp_ms,
                gap,
                data,
            }) => {
                stats_chunk(stats, seq, gap);
                queue.push_back((data, Some(timestamp_ms), gap));
            }
            _ => {}
        }
    }
    web_sys::Url::revoke_object_url(&url)?;
    let buffer: SourceBuffer = source.add_source_buffer(&stream.mime)?;
    let _listeners = [
        listen(&buffer, "updateend", tx, || PlayerEvent::UpdateEnd)?,
        listen(element, "timeupdate", tx, || PlayerEvent::TimeUpdate)?,
        listen(element, "error", tx, || PlayerEvent::ElementError)?,
        listen(element, "emptied", tx, || PlayerEvent::Stop)?,
    ];
    super::stream::send_ready(
        ready,
        Ok(Ready {
            mse_type: stream.mime.clone(),
            mode: "live",
            message: None,
        }),
    );
    // The chunk being appended: its timestamp.
    let mut appending: Option<Option<u64>> = None;
    let mut position = LivePosition::new();
    loop {
        if appending.is_none() && !buffer.updating() {
            if let Some((data, ts, gap)) = queue.pop_front() {
                if gap {
                    // Not updating: this resets the parser, nothing else.
                    let _ = buffer.abort();
                }
                match buffer.append_buffer_with_array_buffer_view(&Uint8Array::from(&data[..])) {
                    Ok(()) => {
                        stats.borrow_mut().appended += data.len() as f64;
                        appending = Some(ts);
                    }
                    Err(_) => {
                        // Full: make room behind the play position.
                        queue.push_front((data, ts, gap));
                        let behind = element.current_time() - KEEP_BEHIND_SECS / 3.0;
                        if behind <= 0.0 || buffer.remove(0.0, behind).is_err() {
                            return Err(js_error("live: MediaSource took no more data"));
                        }
                        appending = Some(None);
                    }
                }
            }
        }
        let event = match rx.next().await {
            None | Some(PlayerEvent::Stop) => return Ok(()),
            Some(e) => e,
        };
        match event {
            PlayerEvent::LiveChunk {
                seq,
                timestamp_ms,
                gap,
                data,
            } => {
                stats_chunk(stats, seq, gap);
                queue.push_back((data, Some(timestamp_ms), gap));
            }
            PlayerEvent::UpdateEnd => {
                let Some(ts) = appending.take() else {
                    continue;
                };
                let ranges = buffered_ranges(element);
                if let (Some(ts), Some(&(_, end))) = (ts, ranges.last()) {
                    stats.borrow_mut().edge = Some((ts, end));
                    let placed = position.after_append(now(), element.current_time(), &ranges);
                    if let Some(t) = placed.seek_to {
                        element.set_current_time(t);
                    }
                    if placed.play {
                        let _ = element.play();
                    }
                }
                trim(element, &buffer, &source);
                update_delay(element, stats);
            }
            PlayerEvent::TimeUpdate => update_delay(element, stats),
            PlayerEvent::Done(r) => {
                if source.ready_state() == MediaSourceReadyState::Open && !buffer.updating() {
                    let _ = source.end_of_stream();
                }
                return r.map_err(|e| js_error(&e));
            }
            PlayerEvent::ElementError => {
                let why = get(&get(element, "error")?, "message")?;
                return Err(js_error(&format!("live: the element failed: {why:?}")));
            }
            _ => {}
        }
    }
}

/// What the element has buffered, seconds, ascending.
fn buffered_ranges(element: &HtmlMediaElement) -> Vec<(f64, f64)> {
    let r = element.buffered();
    (0..r.length())
        .filter_map(|i| Some((r.start(i).ok()?, r.end(i).ok()?)))
        .collect()
}

/// Removes what is far behind the play position (a live stream never
/// ends; the buffer must not grow forever).
fn trim(element: &HtmlMediaElement, buffer: &SourceBuffer, source: &MediaSource) {
    let behind = element.current_time() - KEEP_BEHIND_SECS;
    let first = element.buffered().start(0).unwrap_or(0.0);
    if behind > first + 10.0
        && !buffer.updating()
        && source.ready_state() == MediaSourceReadyState::Open
    {
        let _ = buffer.remove(0.0, behind);
    }
}

/// Capture to display: when the newest appended chunk was made, plus how
/// far the play position is behind its end.
fn update_delay(element: &HtmlMediaElement, stats: &Rc<RefCell<Stats>>) {
    let mut s = stats.borrow_mut();
    if let Some((ts, end)) = s.edge {
        if let Some(d) = live_delay_ms(now(), ts, end, element.current_time()) {
            s.delay_ms = Some(d);
        }
    }
}
