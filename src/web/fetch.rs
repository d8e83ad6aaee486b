//! `peer.fetch(url, { onProgress, path, maxAttempts, singleOperator, ca })`: the core's
//! download (3 hops through the bridge's relays, resumed on a new circuit
//! when one breaks) with its body in IndexedDB, and the response the page
//! gets back. The decisions are the core's (`peer::tab::fetch`); this file
//! holds the page's side: options, the store, `FetchResponse`.

use std::rc::Rc;

use js_sys::{Array, Function, Object, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use super::driver::{now, pump, FetchSink, Shared};
use super::js::{js_error, set};
use super::store::DownloadStore;
use peersm_core::http::{certificates_from_pem, HttpUrl};
use peersm_core::peer::tab::{FetchOptions as CoreOptions, Outcome};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FetchOptions {
    /// Fingerprints (hex) of the middle and exit for the first attempt.
    #[serde(default)]
    path: Option<Vec<String>>,
    #[serde(default)]
    max_attempts: Option<u32>,
    /// Accept an exit run by the bridge (which then sees both ends).
    #[serde(default)]
    single_operator: bool,
    /// Extra trust anchors for https, as PEM text (each string may hold
    /// several certificates): for a server with a private CA.
    #[serde(default)]
    ca: Vec<String>,
    /// `peer.stream` of an address: a live stream, relayed by the tabs
    /// that watch it (`TabPeer::watch_web_live`).
    #[serde(default)]
    pub(crate) live: bool,
    /// With `live`: fetch the address without looking for tabs relaying it.
    #[serde(default)]
    pub(crate) direct: bool,
    /// With `live`: tabs in each circuit to an ORDB.
    #[serde(default)]
    pub(crate) hops: Option<u32>,
}

impl FetchOptions {
    /// The core's options: fingerprints and certificates read.
    pub(crate) fn to_core(&self) -> Result<CoreOptions, JsValue> {
        let path = match &self.path {
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
        let mut ca = Vec::new();
        for pem in &self.ca {
            ca.extend(certificates_from_pem(pem).map_err(|e| js_error(&format!("fetch: {e}")))?);
        }
        Ok(CoreOptions {
            path,
            max_attempts: self.max_attempts,
            through_tabs: None,
            single_operator: self.single_operator,
            ca,
        })
    }
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
    tls: Option<String>,
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

    /// For an https URL, the TLS version and cipher suite the server and
    /// the tab agreed ("TLS 1.3, TLS13_AES_128_GCM_SHA256"); undefined for
    /// http.
    #[wasm_bindgen(getter)]
    pub fn tls(&self) -> Option<String> {
        self.tls.clone()
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

/// A fresh key for a body's records in IndexedDB.
pub(crate) fn new_body_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

fn parse_fp(hex_id: &str) -> Result<[u8; 20], JsValue> {
    let mut id = [0u8; 20];
    hex::decode_to_slice(hex_id.trim(), &mut id)
        .map_err(|_| js_error(&format!("fetch: {hex_id:?} is not a 40-hex fingerprint")))?;
    Ok(id)
}

pub(crate) async fn fetch(
    shared: &Shared,
    url: &str,
    options: FetchOptions,
    on_progress: Option<Function>,
) -> Result<FetchResponse, JsValue> {
    fetch_with_player(shared, url, options, on_progress, None).await
}

/// `fetch`, its body also handed to a player as it comes.
pub(crate) async fn fetch_with_player(
    shared: &Shared,
    url: &str,
    options: FetchOptions,
    on_progress: Option<Function>,
    player: Option<super::stream::PlayerTx>,
) -> Result<FetchResponse, JsValue> {
    HttpUrl::parse(url).map_err(|e| js_error(&format!("fetch: {e}")))?;
    if options.live || options.direct || options.hops.is_some() {
        return Err(js_error(
            "fetch: `live`, `direct` and `hops` are options of peer.stream",
        ));
    }
    let core_options = options.to_core()?;
    let store = Rc::new(DownloadStore::open().await?);
    let started = js_sys::Date::now();
    let sink = FetchSink {
        store: store.clone(),
        id: new_body_id(),
        next_seq: 0,
        on_progress,
        started,
        player,
    };
    let (tx, rx) = futures_channel::oneshot::channel();
    let op = {
        let mut d = shared.borrow_mut();
        let op = d.tab.fetch(url, core_options, now());
        d.fetches.insert(op, sink);
        d.waiters.insert(op, tx);
        op
    };
    pump(shared);
    let outcome = rx.await.ok();
    let id = shared.borrow_mut().fetches.remove(&op).map(|s| s.id);
    match outcome {
        Some(Outcome::Fetched(Ok(f))) => {
            let content_type = f
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "application/octet-stream".into());
            Ok(FetchResponse {
                status: f.status,
                status_text: f.reason,
                headers: f.headers,
                url: f.url,
                size: f.size as f64,
                attempts: f.attempts,
                circuits: f.circuits,
                id: id.unwrap_or_default(),
                content_type,
                tls: f.tls,
                store,
            })
        }
        Some(Outcome::Fetched(Err(e))) => {
            if let Some(id) = id {
                let _ = store.delete(&id).await;
            }
            Err(js_error(&e.to_string()))
        }
        _ => Err(js_error("fetch: the peer stopped")),
    }
}
