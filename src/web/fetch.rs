//! `peer.fetch(url, { onProgress, path, maxAttempts })`: an HTTP GET
//! through a 3-hop circuit (bridge → middle → exit). The body goes to
//! IndexedDB as it arrives. When a circuit breaks mid-download (a relay
//! dies, the link drops), the download goes on over a new circuit that
//! avoids the relays of the broken one, asking for the missing bytes only
//! (`Range`), so nothing already received is fetched twice.

use std::rc::Rc;

use futures_util::StreamExt;
use js_sys::{Array, Function, Object, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use super::bridge_link::{StreamEvent, TorLink};
use super::circuits::{build_circuit, build_through, fetch_relay_list};
use super::js::{js_error, set};
use super::log;
use super::store::DownloadStore;
use peersm_core::circuit::StreamTarget;
use peersm_core::dir::relay_list::ListedRelay;
use peersm_core::http::{get_request, HttpUrl, ResponseHead, ResponseReader};

/// Body bytes kept in memory before they are written to IndexedDB.
const STORE_CHUNK: usize = 1 << 20;
/// Least time between two progress callbacks, in ms.
const PROGRESS_EVERY_MS: f64 = 100.0;
const MAX_REDIRECTS: usize = 5;
const DEFAULT_ATTEMPTS: u32 = 5;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FetchOptions {
    /// Fingerprints (hex) of the middle and exit for the first attempt.
    #[serde(default)]
    path: Option<Vec<String>>,
    #[serde(default)]
    max_attempts: Option<u32>,
}

/// What the page gets back: status, headers and the stored body.
#[wasm_bindgen]
pub struct FetchResponse {
    status: u16,
    status_text: String,
    headers: Vec<(String, String)>,
    url: String,
    size: f64,
    attempts: u32,
    circuits: Vec<String>,
    id: String,
    content_type: String,
    store: Rc<DownloadStore>,
}

#[wasm_bindgen]
impl FetchResponse {
    #[wasm_bindgen(getter)]
    pub fn status(&self) -> u16 {
        self.status
    }

    #[wasm_bindgen(getter, js_name = statusText)]
    pub fn status_text(&self) -> String {
        self.status_text.clone()
    }

    /// The response headers as an object (lower-case names).
    #[wasm_bindgen(getter)]
    pub fn headers(&self) -> Result<Object, JsValue> {
        let obj = Object::new();
        for (name, value) in &self.headers {
            set(&obj, &name.to_ascii_lowercase(), &JsValue::from_str(value))?;
        }
        Ok(obj)
    }

    /// The final URL, after redirects.
    #[wasm_bindgen(getter)]
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Body size in bytes.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.size
    }

    /// How many circuits the download took (1 when nothing broke).
    #[wasm_bindgen(getter)]
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Each circuit used, as "middle → exit" nicknames.
    #[wasm_bindgen(getter)]
    pub fn circuits(&self) -> Array {
        self.circuits.iter().map(|c| JsValue::from_str(c)).collect()
    }

    /// The body as a Blob, assembled from IndexedDB.
    pub async fn blob(&self) -> Result<web_sys::Blob, JsValue> {
        let chunks = self.store.chunks(&self.id).await?;
        let options = web_sys::BlobPropertyBag::new();
        options.set_type(&self.content_type);
        web_sys::Blob::new_with_u8_array_sequence_and_options(&chunks, &options)
    }

    /// The body as bytes (for small bodies and tests).
    pub async fn bytes(&self) -> Result<Uint8Array, JsValue> {
        let chunks = self.store.chunks(&self.id).await?;
        let out = Uint8Array::new_with_length(self.size as u32);
        let mut at = 0u32;
        for c in chunks.iter() {
            let c: Uint8Array = c.dyn_into()?;
            out.set(&c, at);
            at += c.length();
        }
        Ok(out)
    }

    /// Deletes the stored body.
    pub async fn remove(&self) -> Result<(), JsValue> {
        self.store.delete(&self.id).await
    }
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

struct Progress {
    callback: Option<Function>,
    started: f64,
    last: f64,
}

impl Progress {
    fn report(&mut self, received: u64, total: Option<u64>, attempt: u32, force: bool) {
        let Some(cb) = &self.callback else { return };
        let now = now_ms();
        if !force && now - self.last < PROGRESS_EVERY_MS {
            return;
        }
        self.last = now;
        let elapsed = ((now - self.started) / 1000.0).max(0.001);
        let obj = Object::new();
        let _ = set(&obj, "received", &JsValue::from(received as f64));
        let total = total.map_or(JsValue::NULL, |t| JsValue::from(t as f64));
        let _ = set(&obj, "total", &total);
        let _ = set(&obj, "speed", &JsValue::from(received as f64 / elapsed));
        let _ = set(&obj, "attempt", &JsValue::from(attempt));
        if let Err(e) = cb.call1(&JsValue::NULL, &obj) {
            log::warn(&format!("onProgress threw: {e:?}"));
        }
    }
}

/// Where a download stands between attempts.
struct Download {
    url: HttpUrl,
    redirects: usize,
    /// The first final head (what the page sees).
    head: Option<ResponseHead>,
    total: Option<u64>,
    received: u64,
    buffer: Vec<u8>,
    next_seq: u32,
    id: String,
    store: Rc<DownloadStore>,
}

impl Download {
    async fn flush(&mut self) -> Result<(), String> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buffer);
        self.store
            .put_chunk(&self.id, self.next_seq, &data)
            .await
            .map_err(|e| format!("{e:?}"))?;
        self.next_seq += 1;
        Ok(())
    }

    async fn restart_body(&mut self) -> Result<(), String> {
        self.store
            .delete(&self.id)
            .await
            .map_err(|e| format!("{e:?}"))?;
        self.buffer.clear();
        self.received = 0;
        self.next_seq = 0;
        Ok(())
    }
}

/// How one attempt ended.
enum Attempt {
    Done,
    /// Worth another circuit: the circuit or stream broke.
    Broken(String),
}

pub(crate) async fn fetch(
    tor: impl Fn() -> Option<TorLink>,
    url: &str,
    options: FetchOptions,
    on_progress: Option<Function>,
) -> Result<FetchResponse, JsValue> {
    let url = HttpUrl::parse(url).map_err(|e| js_error(&format!("fetch: {e}")))?;
    let forced = match &options.path {
        None => None,
        Some(p) => match p.as_slice() {
            [m, e] => Some((parse_fp(m)?, parse_fp(e)?)),
            _ => {
                return Err(js_error(
                    "fetch: `path` must be [middleFingerprint, exitFingerprint]",
                ))
            }
        },
    };
    let max_attempts = options.max_attempts.unwrap_or(DEFAULT_ATTEMPTS).max(1);
    let store = Rc::new(DownloadStore::open().await?);
    let mut dl = Download {
        url,
        redirects: 0,
        head: None,
        total: None,
        received: 0,
        buffer: Vec::new(),
        next_seq: 0,
        id: format!("{:016x}{:016x}", random(), random()),
        store: store.clone(),
    };
    let started = now_ms();
    let mut progress = Progress {
        callback: on_progress,
        started,
        last: 0.0,
    };
    let mut avoid: Vec<[u8; 20]> = Vec::new();
    let mut relays: Vec<ListedRelay> = Vec::new();
    let mut used = Vec::new();
    let mut last_error = String::new();
    for attempt in 1..=max_attempts {
        let Some(link) = tor() else {
            last_error = "not connected to a bridge".into();
            super::js::sleep_ms(500).await;
            continue;
        };
        if relays.is_empty() || attempt > 1 {
            match fetch_relay_list(&link).await {
                Ok(r) => relays = r,
                Err(e) => {
                    last_error = format!("relay list: {e}");
                    continue;
                }
            }
        }
        let built = match (forced.as_ref(), attempt) {
            (Some((m, e)), 1) => {
                let find = |fp: &[u8; 20]| relays.iter().find(|r| r.rsa_id == *fp).cloned();
                match (find(m), find(e)) {
                    (Some(m), Some(e)) => build_through(&link, m, e).await,
                    _ => Err("`path` names relays the bridge does not list".into()),
                }
            }
            _ => match build_circuit(&link, &relays, &avoid).await {
                // Avoiding every suspect may leave no path: forget them.
                Err(_) if !avoid.is_empty() => {
                    avoid.clear();
                    build_circuit(&link, &relays, &avoid).await
                }
                other => other,
            },
        };
        let circuit = match built {
            Ok(c) => c,
            Err(e) => {
                last_error = format!("building a circuit: {e}");
                log::warn(&last_error);
                continue;
            }
        };
        used.push(format!(
            "{} → {}",
            circuit.middle.nickname, circuit.exit.nickname
        ));
        let outcome = run_attempt(&link, circuit.id, &mut dl, &mut progress, attempt).await;
        link.destroy(circuit.id);
        dl.flush().await.map_err(|e| js_error(&e))?;
        match outcome {
            Ok(Attempt::Done) => {
                progress.report(dl.received, dl.total, attempt, true);
                let head = dl.head.clone().unwrap_or(ResponseHead {
                    status: 0,
                    reason: String::new(),
                    headers: Vec::new(),
                });
                let content_type = head
                    .header("content-type")
                    .unwrap_or("application/octet-stream")
                    .to_string();
                return Ok(FetchResponse {
                    status: head.status,
                    status_text: head.reason.clone(),
                    headers: head.headers.clone(),
                    url: dl.url.to_string(),
                    size: dl.received as f64,
                    attempts: attempt,
                    circuits: used,
                    id: dl.id.clone(),
                    content_type,
                    store,
                });
            }
            Ok(Attempt::Broken(why)) => {
                log::warn(&format!(
                    "download broke after {} bytes on {}: {why}; resuming on a new circuit",
                    dl.received,
                    used.last().map(String::as_str).unwrap_or_default()
                ));
                last_error = why;
                // The middle is the likeliest culprit (the exit is also the
                // one relay that reached the server).
                avoid.push(circuit.middle.rsa_id);
            }
            Err(fatal) => {
                let _ = store.delete(&dl.id).await;
                return Err(js_error(&format!("fetch {}: {fatal}", dl.url)));
            }
        }
    }
    let _ = store.delete(&dl.id).await;
    Err(js_error(&format!(
        "fetch {}: gave up after {max_attempts} attempts ({} of {} bytes); last error: {last_error}",
        dl.url,
        dl.received,
        dl.total.map_or("?".to_string(), |t| t.to_string())
    )))
}

fn parse_fp(hex_id: &str) -> Result<[u8; 20], JsValue> {
    let mut id = [0u8; 20];
    hex::decode_to_slice(hex_id.trim(), &mut id)
        .map_err(|_| js_error(&format!("fetch: {hex_id:?} is not a 40-hex fingerprint")))?;
    Ok(id)
}

fn random() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// One circuit's worth of the download: requests (following redirects on
/// the same circuit), reads, stores. `Err` is fatal (bad response, storage).
async fn run_attempt(
    tor: &TorLink,
    circ: u32,
    dl: &mut Download,
    progress: &mut Progress,
    attempt: u32,
) -> Result<Attempt, String> {
    loop {
        let target = StreamTarget::Tcp {
            host: dl.url.host.clone(),
            port: dl.url.port,
        };
        let (stream, mut events) = match tor.begin(circ, target).await {
            Ok(s) => s,
            Err(e) if tor.is_alive(circ) => return Err(format!("the exit refused: {e}")),
            Err(e) => return Ok(Attempt::Broken(e)),
        };
        let resuming_from = dl.received;
        if let Err(e) = tor.send(circ, stream, &get_request(&dl.url, resuming_from)) {
            return Ok(Attempt::Broken(e));
        }
        let mut reader = ResponseReader::new();
        let mut head_checked = false;
        let mut redirect = None;
        loop {
            let Some(event) = events.next().await else {
                return Ok(Attempt::Broken("stream lost".into()));
            };
            let data = match event {
                StreamEvent::Data(d) => d,
                StreamEvent::Ended { reason } => {
                    tor.end(circ, stream);
                    if redirect.is_some() {
                        break;
                    }
                    return match reader.finish() {
                        Ok(()) if dl.head.is_some() => {
                            if dl.total.is_none() {
                                dl.total = Some(dl.received);
                            }
                            Ok(Attempt::Done)
                        }
                        _ => Ok(Attempt::Broken(format!(
                            "stream ended (reason {reason}) before the response was complete"
                        ))),
                    };
                }
            };
            let body = reader.feed(&data).map_err(|e| e.to_string())?;
            if !head_checked {
                let Some(head) = reader.head() else { continue };
                head_checked = true;
                if head.is_redirect() {
                    let location = head.header("location").unwrap_or_default();
                    redirect = Some(dl.url.join(location).map_err(|e| e.to_string())?);
                    continue;
                }
                accept_head(dl, head, resuming_from).await?;
            }
            if redirect.is_some() {
                continue;
            }
            dl.received += body.len() as u64;
            dl.buffer.extend_from_slice(&body);
            if dl.buffer.len() >= STORE_CHUNK {
                dl.flush().await?;
            }
            progress.report(dl.received, dl.total, attempt, false);
            if reader.is_done() {
                tor.end(circ, stream);
                if dl.total.is_none() {
                    dl.total = Some(dl.received);
                }
                return Ok(Attempt::Done);
            }
        }
        let Some(next) = redirect else { continue };
        dl.redirects += 1;
        if dl.redirects > MAX_REDIRECTS {
            return Err(format!("more than {MAX_REDIRECTS} redirects"));
        }
        log::info(&format!("redirected to {next}"));
        dl.url = next;
        dl.head = None;
        dl.total = None;
        dl.restart_body().await?;
    }
}

/// Checks a response head against where the download stands.
async fn accept_head(dl: &mut Download, head: &ResponseHead, from: u64) -> Result<(), String> {
    if from == 0 {
        dl.total = head.total_size();
        dl.head = Some(head.clone());
        return Ok(());
    }
    match head.status {
        206 if head.content_range().map(|(first, _)| first) == Some(from) => Ok(()),
        // The server ignored Range: start over with this full answer.
        200 => {
            dl.restart_body().await?;
            dl.total = head.total_size();
            dl.head = Some(head.clone());
            Ok(())
        }
        status => Err(format!(
            "resuming at byte {from}: the server answered {status} {}",
            head.reason
        )),
    }
}
