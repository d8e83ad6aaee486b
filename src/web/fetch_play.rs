//! `peer.stream(url, element)`: a web address fetched through three hops
//! (`peer.fetch`, its body stored in IndexedDB as usual) and played as its
//! bytes come. The fetch is sequential, so the player appends the body in
//! order from its first byte (a WebM or fragmented MP4 file is a valid
//! MediaSource byte stream from its start); a seek plays within what has
//! come. The type comes from the bytes (the core's `media::probe` on the
//! head, the container told by its magic); a file MediaSource cannot take
//! as it comes plays once fetched, from a blob, and says why.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use js_sys::{Function, Uint8Array};
use peersm_core::media::{self, Probe};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{HtmlMediaElement, MediaSource, MediaSourceReadyState, SourceBuffer};

use super::driver::Shared;
use super::fetch::FetchOptions;
use super::js::{get, js_error};
use super::log;
use super::stream::{
    done_promise, error_text, listen, send_ready, Player, PlayerEvent, PlayerTx, Ready, Stats,
};

/// Bytes the player keeps in memory ahead of MediaSource; beyond, it
/// stops and the file plays once fetched (the body is in IndexedDB).
const MAX_QUEUED: usize = 256 << 20;
/// On a full SourceBuffer, what is this far behind the play position goes.
const KEEP_BEHIND_SECS: f64 = 10.0;

/// The container a body's first bytes name, as a MIME type for the probe.
fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        Some("video/webm")
    } else if head.get(4..8) == Some(b"ftyp") {
        Some("video/mp4")
    } else {
        None
    }
}

pub(crate) async fn play_fetch(
    shared: &Shared,
    url: &str,
    element: JsValue,
    options: FetchOptions,
    on_progress: Option<Function>,
) -> Result<Player, JsValue> {
    let element: HtmlMediaElement = element.dyn_into().map_err(|_| {
        js_error("stream: the second argument must be a <video> or <audio> element")
    })?;
    let (tx, rx) = mpsc::unbounded();
    let (done, resolve, reject) = done_promise()?;
    // The response, once whole, settles `done`; a blob of it is what an
    // after-fetch player plays.
    let (body_tx, body_rx) = oneshot::channel::<web_sys::Blob>();
    {
        let (shared, tx, url) = (shared.clone(), tx.clone(), url.to_string());
        wasm_bindgen_futures::spawn_local(async move {
            let r = super::fetch::fetch_with_player(
                &shared,
                &url,
                options,
                on_progress,
                Some(tx.clone()),
            )
            .await;
            match r {
                Ok(response) => {
                    let _ = tx.unbounded_send(PlayerEvent::Done(Ok(())));
                    if let Ok(blob) = response.blob().await {
                        let _ = body_tx.send(blob);
                    }
                    let _ = resolve.call1(&JsValue::NULL, &JsValue::from(response));
                }
                Err(e) => {
                    let _ = tx.unbounded_send(PlayerEvent::Done(Err(error_text(&e))));
                    let _ = reject.call1(&JsValue::NULL, &e);
                }
            }
        });
    }
    let stats = Rc::new(RefCell::new(Stats::default()));
    let (ready_tx, ready_rx) = oneshot::channel();
    {
        let (tx, stats) = (tx.clone(), stats.clone());
        wasm_bindgen_futures::spawn_local(async move {
            let mut ready = Some(ready_tx);
            let r = play(rx, &tx, &element, &mut ready, &stats, body_rx).await;
            if let Err(e) = r {
                match ready.take() {
                    Some(r) => {
                        let _ = r.send(Err(e));
                    }
                    None => log::warn(&format!("stream: {}", error_text(&e))),
                }
            }
        });
    }
    let ready = ready_rx
        .await
        .map_err(|_| js_error("stream: the player stopped"))??;
    Ok(Player::new(url.to_string(), ready, done, tx, stats, None))
}

async fn play(
    mut rx: mpsc::UnboundedReceiver<PlayerEvent>,
    tx: &PlayerTx,
    element: &HtmlMediaElement,
    ready: &mut Option<oneshot::Sender<Result<Ready, JsValue>>>,
    stats: &Rc<RefCell<Stats>>,
    body: oneshot::Receiver<web_sys::Blob>,
) -> Result<(), JsValue> {
    // The head, until the probe knows the type.
    let mut head: Vec<u8> = Vec::new();
    let mut done = false;
    let probed = loop {
        let mime = sniff(&head);
        if let Some(mime) = mime {
            match media::probe(mime, u64::MAX, &head, None) {
                Probe::Ready(index) => break Ok(index),
                Probe::Failed(e) => break Err(e.to_string()),
                Probe::Need { .. } if done => break Err("the file ended inside its headers".into()),
                Probe::Need { .. } => {}
            }
        } else if head.len() >= 12 || done {
            return Err(js_error(
                "stream: this address is not a WebM or MP4 file (only they play as they come)",
            ));
        }
        match rx.next().await {
            Some(PlayerEvent::Body(b)) => head.extend_from_slice(&b),
            Some(PlayerEvent::BodyRestart) => head.clear(),
            Some(PlayerEvent::Done(Ok(()))) => done = true,
            Some(PlayerEvent::Done(Err(e))) => return Err(js_error(&e)),
            None | Some(PlayerEvent::Stop) => return Ok(()),
            Some(_) => {}
        }
    };
    let index = match probed {
        Ok(i) if MediaSource::is_type_supported(&i.mse_type) => i,
        Ok(i) => {
            return after_fetch(
                rx,
                element,
                ready,
                format!("this browser cannot play {} as it comes", i.mse_type),
                body,
            )
            .await
        }
        Err(why) => return after_fetch(rx, element, ready, why, body).await,
    };
    let source = MediaSource::new()?;
    let url = web_sys::Url::create_object_url_with_source(&source)?;
    let _open = listen(&source, "sourceopen", tx, || PlayerEvent::SourceOpen)?;
    element.set_src(&url);
    let mut queue: VecDeque<Vec<u8>> = VecDeque::from([head]);
    let mut queued: usize = queue.iter().map(Vec::len).sum();
    loop {
        match rx.next().await {
            Some(PlayerEvent::SourceOpen) => break,
            Some(PlayerEvent::Body(b)) => {
                queued += b.len();
                queue.push_back(b);
            }
            Some(PlayerEvent::Done(Ok(()))) => done = true,
            Some(PlayerEvent::Done(Err(e))) => return Err(js_error(&e)),
            None | Some(PlayerEvent::Stop) => return Ok(()),
            _ => {}
        }
    }
    web_sys::Url::revoke_object_url(&url)?;
    let buffer: SourceBuffer = source.add_source_buffer(&index.mse_type)?;
    let _listeners = [
        listen(&buffer, "updateend", tx, || PlayerEvent::UpdateEnd)?,
        listen(element, "timeupdate", tx, || PlayerEvent::TimeUpdate)?,
        listen(element, "error", tx, || PlayerEvent::ElementError)?,
        listen(element, "emptied", tx, || PlayerEvent::Stop)?,
    ];
    send_ready(
        ready,
        Ok(Ready {
            mse_type: index.mse_type.clone(),
            mode: "mediasource",
            message: None,
        }),
    );
    loop {
        if !buffer.updating() && source.ready_state() == MediaSourceReadyState::Open {
            if let Some(data) = queue.pop_front() {
                match buffer.append_buffer_with_array_buffer_view(&Uint8Array::from(&data[..])) {
                    Ok(()) => {
                        queued -= data.len();
                        stats.borrow_mut().appended += data.len() as f64;
                    }
                    Err(_) => {
                        // Full: make room behind the play position, or wait
                        // for playback to move.
                        queue.push_front(data);
                        let behind = element.current_time() - KEEP_BEHIND_SECS;
                        if behind > 0.0 {
                            let _ = buffer.remove(0.0, behind);
                        }
                    }
                }
            } else if done {
                let _ = source.end_of_stream();
            }
        }
        if queued > MAX_QUEUED {
            return Err(js_error(
                "stream: the file comes much faster than it plays; play it once fetched",
            ));
        }
        match rx.next().await {
            None | Some(PlayerEvent::Stop) => return Ok(()),
            Some(PlayerEvent::Body(b)) => {
                queued += b.len();
                queue.push_back(b);
            }
            Some(PlayerEvent::BodyRestart) => {
                return Err(js_error(
                    "stream: the server sent the file again from its start; play it once fetched",
                ))
            }
            Some(PlayerEvent::Done(Ok(()))) => done = true,
            Some(PlayerEvent::Done(Err(e))) => return Err(js_error(&e)),
            Some(PlayerEvent::ElementError) => {
                let why = get(&get(element, "error")?, "message")?;
                return Err(js_error(&format!("stream: the element failed: {why:?}")));
            }
            Some(_) => {}
        }
    }
}

/// Plays the body once fetched, from a blob.
async fn after_fetch(
    mut rx: mpsc::UnboundedReceiver<PlayerEvent>,
    element: &HtmlMediaElement,
    ready: &mut Option<oneshot::Sender<Result<Ready, JsValue>>>,
    why: String,
    body: oneshot::Receiver<web_sys::Blob>,
) -> Result<(), JsValue> {
    send_ready(
        ready,
        Ok(Ready {
            mse_type: String::new(),
            mode: "after-download",
            message: Some(why),
        }),
    );
    // Events are not needed any more; the blob comes once fetched.
    wasm_bindgen_futures::spawn_local(async move { while rx.next().await.is_some() {} });
    let Ok(blob) = body.await else {
        return Ok(());
    };
    element.set_src(&web_sys::Url::create_object_url_with_blob(&blob)?);
    Ok(())
}
