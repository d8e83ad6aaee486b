//! Circuits a tab originates over one link (to its bridge, or to another
//! tab): the core's `ClientMux` plus the futures waiting on it, and async
//! operations (create, extend, begin, control messages) usable with any
//! link that can send the mux's cells (`CircuitHost`).

use std::collections::HashMap;

use futures_channel::{mpsc, oneshot};

use futures_util::StreamExt;

use peersm_core::cell::{ControlMessage, LinkSpec, RawCell};
use peersm_core::circuit::{CircuitError, ClientMux, MuxEvent, StreamTarget};
use peersm_core::http::{get_request, HttpUrl, ResponseReader};

/// What a stream's reader hears.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    Data(Vec<u8>),
    /// END (reason), or the circuit or link died (reason DESTROY).
    Ended {
        reason: u8,
    },
}

pub(crate) struct MuxDriver {
    pub(crate) mux: ClientMux,
    hop_waiters: HashMap<u32, oneshot::Sender<Result<(), String>>>,
    open_waiters: HashMap<(u32, u16), oneshot::Sender<Result<(), String>>>,
    streams: HashMap<(u32, u16), mpsc::UnboundedSender<StreamEvent>>,
    control: HashMap<u32, mpsc::UnboundedSender<ControlMessage>>,
}

impl MuxDriver {
    pub(crate) fn new(mux: ClientMux) -> Self {
        MuxDriver {
            mux,
            hop_waiters: HashMap::new(),
            open_waiters: HashMap::new(),
            streams: HashMap::new(),
            control: HashMap::new(),
        }
    }

    /// The cells to send now; events go to whoever waits for them.
    pub(crate) fn drive(&mut self) -> Vec<RawCell> {
        let cells = self.mux.poll_cells();
        while let Some(event) = self.mux.poll_event() {
            self.route(event);
        }
        cells
    }

    /// The link is gone: every waiter hears it.
    pub(crate) fn link_closed(&mut self) {
        self.mux.link_closed();
        self.drive();
        self.control.clear();
    }

    fn route(&mut self, event: MuxEvent) {
        match event {
            MuxEvent::HopAdded { circ, .. } => {
                if let Some(w) = self.hop_waiters.remove(&circ) {
                    let _ = w.send(Ok(()));
                }
            }
            MuxEvent::HopFailed { circ, why } => {
                if let Some(w) = self.hop_waiters.remove(&circ) {
                    let _ = w.send(Err(why));
                }
            }
            MuxEvent::StreamOpened { circ, stream } => {
                if let Some(w) = self.open_waiters.remove(&(circ, stream)) {
                    let _ = w.send(Ok(()));
                }
            }
            MuxEvent::StreamData { circ, stream, data } => {
                if let Some(tx) = self.streams.get(&(circ, stream)) {
                    let _ = tx.unbounded_send(StreamEvent::Data(data));
                }
            }
            MuxEvent::StreamEnded {
                circ,
                stream,
                reason,
                ..
            } => {
                if let Some(w) = self.open_waiters.remove(&(circ, stream)) {
                    let _ = w.send(Err(format!(
                        "stream refused: {} (END reason {reason})",
                        peersm_core::cell::end_reason::describe(reason)
                    )));
                }
                if let Some(tx) = self.streams.remove(&(circ, stream)) {
                    let _ = tx.unbounded_send(StreamEvent::Ended { reason });
                }
            }
            MuxEvent::Control { circ, message } => {
                if let Some(tx) = self.control.get(&circ) {
                    let _ = tx.unbounded_send(message);
                }
            }
            MuxEvent::CircuitClosed { circ, reason } => {
                // Dropping the sender ends the control receiver's stream.
                self.control.remove(&circ);
                if let Some(w) = self.hop_waiters.remove(&circ) {
                    let _ = w.send(Err(format!("circuit closed (reason {reason})")));
                }
            }
        }
    }
}

/// A link a tab's circuits ride on.
pub(crate) trait CircuitHost {
    /// Runs `f` on the link's driver; `Err` once the link closed.
    fn with_driver<R>(&self, f: impl FnOnce(&mut MuxDriver) -> R) -> Result<R, String>;
    /// Sends what the driver queued.
    fn flush(&self) -> Result<(), String>;
}

fn gone<T>(_: T) -> String {
    "the link closed".to_string()
}

fn run<H: CircuitHost, T>(
    host: &H,
    op: impl FnOnce(&mut ClientMux) -> Result<T, CircuitError>,
) -> Result<T, String> {
    let result = host.with_driver(|d| op(&mut d.mux).map_err(|e| e.to_string()))?;
    host.flush()?;
    result
}

/// A first hop with CREATE2/ntor to `relay_id` whose ntor key is `key`.
pub(crate) async fn create<H: CircuitHost>(
    host: &H,
    relay_id: [u8; 20],
    key: [u8; 32],
) -> Result<u32, String> {
    let (tx, rx) = oneshot::channel();
    let circ = host.with_driver(|d| {
        let circ = d
            .mux
            .create_ntor(relay_id, key)
            .map_err(|e| e.to_string())?;
        d.hop_waiters.insert(circ, tx);
        Ok::<_, String>(circ)
    })??;
    host.flush()?;
    rx.await.map_err(gone)??;
    Ok(circ)
}

pub(crate) async fn extend<H: CircuitHost>(
    host: &H,
    circ: u32,
    specs: Vec<LinkSpec>,
    relay_id: [u8; 20],
    key: [u8; 32],
) -> Result<(), String> {
    let (tx, rx) = oneshot::channel();
    host.with_driver(|d| {
        d.mux
            .extend(circ, specs, relay_id, key)
            .map_err(|e| e.to_string())?;
        d.hop_waiters.insert(circ, tx);
        Ok::<_, String>(())
    })??;
    host.flush()?;
    rx.await.map_err(gone)?
}

/// Opens a stream at the circuit's last hop; resolves once CONNECTED.
pub(crate) async fn begin<H: CircuitHost>(
    host: &H,
    circ: u32,
    target: StreamTarget,
) -> Result<(u16, mpsc::UnboundedReceiver<StreamEvent>), String> {
    let (open_tx, open_rx) = oneshot::channel();
    let (events_tx, events_rx) = mpsc::unbounded();
    let stream = host.with_driver(|d| {
        let stream = d.mux.begin(circ, target).map_err(|e| e.to_string())?;
        d.open_waiters.insert((circ, stream), open_tx);
        d.streams.insert((circ, stream), events_tx);
        Ok::<_, String>(stream)
    })??;
    host.flush()?;
    open_rx.await.map_err(gone)??;
    Ok((stream, events_rx))
}

pub(crate) fn send<H: CircuitHost>(
    host: &H,
    circ: u32,
    stream: u16,
    data: &[u8],
) -> Result<(), String> {
    run(host, |m| {
        m.send(circ, stream, data);
        Ok(())
    })
}

pub(crate) fn end<H: CircuitHost>(host: &H, circ: u32, stream: u16) {
    let _ = host.with_driver(|d| d.streams.remove(&(circ, stream)));
    let _ = run(host, |m| {
        m.end(circ, stream);
        Ok(())
    });
}

pub(crate) fn destroy<H: CircuitHost>(host: &H, circ: u32) {
    let _ = run(host, |m| {
        m.destroy(circ);
        Ok(())
    });
}

/// Control messages that arrive on `circ` from now on.
pub(crate) fn control_messages<H: CircuitHost>(
    host: &H,
    circ: u32,
) -> Result<mpsc::UnboundedReceiver<ControlMessage>, String> {
    let (tx, rx) = mpsc::unbounded();
    host.with_driver(|d| d.control.insert(circ, tx))?;
    Ok(rx)
}

pub(crate) fn send_control<H: CircuitHost>(
    host: &H,
    circ: u32,
    message: &ControlMessage,
) -> Result<(), String> {
    run(host, |m| m.send_control(circ, message))
}

pub(crate) fn is_alive<H: CircuitHost>(host: &H, circ: u32) -> bool {
    host.with_driver(|d| d.mux.is_alive(circ)).unwrap_or(false)
}

/// `GET path` from the directory of the circuit's last hop (BEGIN_DIR):
/// the status and the whole body.
pub(crate) async fn dir_get<H: CircuitHost>(
    host: &H,
    circ: u32,
    path: &str,
) -> Result<(u16, Vec<u8>), String> {
    let (stream, mut events) = begin(host, circ, StreamTarget::Directory).await?;
    let url = HttpUrl {
        host: "directory".into(),
        port: 80,
        path_and_query: path.to_string(),
    };
    send(host, circ, stream, &get_request(&url, 0))?;
    let mut reader = ResponseReader::new();
    let mut body = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            StreamEvent::Data(d) => body.extend(reader.feed(&d).map_err(|e| e.to_string())?),
            StreamEvent::Ended { .. } => break,
        }
        if reader.is_done() {
            end(host, circ, stream);
            break;
        }
    }
    reader.finish().map_err(|e| e.to_string())?;
    Ok((reader.head().map_or(0, |h| h.status), body))
}
