//! WebSocket links: each binary message is a frame of whole cells
//! (docs/PROTOCOL.md "Framing"); we send about 16 KiB per message (31
//! cells). Text frames are a protocol error; pings are answered by the
//! WebSocket layer. The server side (tabs and bridges linking to us) uses
//! axum's socket, the client side (federation) tungstenite's.

use axum::extract::ws::{CloseFrame, Message as AxumMessage, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as TungMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{EndKind, FrameRx, FrameTx, LinkEnd};
use crate::error::{NodeError, Result};

/// Cells per WebSocket message we send: about 16 KiB.
pub const CELLS_PER_FRAME: usize = 31;

const TEXT_FRAME: &str = "text frame: links carry binary frames of cells only";

/// Our side of a link a tab or bridge opened to us.
pub struct ServerRx {
    stream: SplitStream<WebSocket>,
    /// The other end sent a Close frame (not merely dropped).
    pub closed_by_peer: bool,
}

pub struct ServerTx {
    sink: SplitSink<WebSocket, AxumMessage>,
}

pub fn split_server(socket: WebSocket) -> (ServerRx, ServerTx) {
    let (sink, stream) = socket.split();
    (
        ServerRx {
            stream,
            closed_by_peer: false,
        },
        ServerTx { sink },
    )
}

impl FrameRx for ServerRx {
    async fn recv(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            match self.stream.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(NodeError::WebSocket(e.to_string())),
                Some(Ok(AxumMessage::Binary(b))) => return Ok(Some(b.to_vec())),
                Some(Ok(AxumMessage::Text(_))) => {
                    return Err(NodeError::invalid("frame", TEXT_FRAME))
                }
                Some(Ok(AxumMessage::Close(_))) => {
                    self.closed_by_peer = true;
                    return Ok(None);
                }
                Some(Ok(AxumMessage::Ping(_) | AxumMessage::Pong(_))) => continue,
            }
        }
    }
}

impl FrameTx for ServerTx {
    async fn send(&mut self, frame: Vec<u8>) -> Result<()> {
        self.sink
            .send(AxumMessage::Binary(frame.into()))
            .await
            .map_err(|e| NodeError::WebSocket(e.to_string()))
    }

    fn cells_per_frame(&self) -> Option<usize> {
        Some(CELLS_PER_FRAME)
    }

    async fn close(&mut self, end: Option<LinkEnd>) {
        use axum::extract::ws::close_code;
        let end = end.unwrap_or(LinkEnd::new(EndKind::Normal, ""));
        let code = match end.kind {
            EndKind::Normal => close_code::NORMAL,
            EndKind::Away => close_code::AWAY,
            EndKind::Protocol => close_code::PROTOCOL,
            EndKind::Unsupported => close_code::UNSUPPORTED,
            EndKind::Policy => close_code::POLICY,
            EndKind::Transport => close_code::SIZE,
        };
        let mut reason = end.why;
        // Close reasons must fit a control frame (123 bytes).
        let mut cut = reason.len().min(120);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        let _ = self
            .sink
            .send(AxumMessage::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
        let _ = self.sink.close().await;
    }
}

type ClientWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Our side of a link we opened to a bridge.
pub struct ClientRx {
    stream: SplitStream<ClientWs>,
}

pub struct ClientTx {
    sink: SplitSink<ClientWs, TungMessage>,
}

/// Opens a WebSocket to `url`.
pub async fn connect(url: &str) -> Result<(ClientRx, ClientTx)> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| NodeError::WebSocket(e.to_string()))?;
    let (sink, stream) = ws.split();
    Ok((ClientRx { stream }, ClientTx { sink }))
}

impl FrameRx for ClientRx {
    async fn recv(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            match self.stream.next().await {
                None | Some(Ok(TungMessage::Close(_))) => return Ok(None),
                Some(Err(e)) => return Err(NodeError::WebSocket(e.to_string())),
                Some(Ok(TungMessage::Binary(b))) => return Ok(Some(b.to_vec())),
                Some(Ok(TungMessage::Text(_))) => {
                    return Err(NodeError::invalid("frame", TEXT_FRAME))
                }
                Some(Ok(_)) => continue,
            }
        }
    }
}

impl FrameTx for ClientTx {
    async fn send(&mut self, frame: Vec<u8>) -> Result<()> {
        self.sink
            .send(TungMessage::Binary(frame.into()))
            .await
            .map_err(|e| NodeError::WebSocket(e.to_string()))
    }

    fn cells_per_frame(&self) -> Option<usize> {
        Some(CELLS_PER_FRAME)
    }

    async fn close(&mut self, _: Option<LinkEnd>) {
        let _ = self.sink.close().await;
    }
}
