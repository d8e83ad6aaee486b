//! Exit streams (tor-spec §6.2): resolve, check the exit policy, connect
//! (from the configured source address), then pump bytes both ways
//! between the TCP connection and the channel's actor.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use peersm_core::cell::end_reason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::exit_policy::ExitPolicy;
use super::inbound::ToInbound;

const EXIT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Connects to `addr`, from `bind` when given (so that servers, and tests,
/// see exit traffic come from one known address).
async fn connect_from(addr: SocketAddr, bind: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = bind else {
        return TcpStream::connect(addr).await;
    };
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// Resolves, checks the exit policy, connects, then pumps bytes both ways.
pub(super) async fn open_exit_stream(
    host: String,
    port: u16,
    policy: ExitPolicy,
    bind: Option<IpAddr>,
    tx: mpsc::UnboundedSender<ToInbound>,
    back_circ: u32,
    stream: u16,
) {
    let refuse = |reason| {
        let _ = tx.send(ToInbound::ExitRefused {
            back_circ,
            stream,
            reason,
        });
    };
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(a) => a.collect(),
        Err(_) => return refuse(end_reason::RESOLVEFAILED),
    };
    let Some(addr) = addrs.iter().copied().find(|a| policy.allows(a.ip(), port)) else {
        return refuse(if addrs.is_empty() {
            end_reason::RESOLVEFAILED
        } else {
            end_reason::EXITPOLICY
        });
    };
    let sock = match tokio::time::timeout(EXIT_CONNECT_TIMEOUT, connect_from(addr, bind)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return refuse(end_reason::CONNECTREFUSED)
        }
        Ok(Err(_)) => return refuse(end_reason::NOROUTE),
        Err(_) => return refuse(end_reason::TIMEOUT),
    };
    let _ = sock.set_nodelay(true);
    let (mut rd, mut wr) = sock.into_split();
    let (writer, mut to_write) = mpsc::unbounded_channel::<Vec<u8>>();
    let _ = tx.send(ToInbound::ExitConnected {
        back_circ,
        stream,
        peer: addr,
        writer,
    });
    tokio::spawn(async move {
        while let Some(data) = to_write.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send(ToInbound::ExitData {
                        back_circ,
                        stream,
                        data: buf[..n].to_vec(),
                    })
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = tx.send(ToInbound::ExitClosed { back_circ, stream });
}
