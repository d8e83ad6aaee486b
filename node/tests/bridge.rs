//! The bridge over real sockets: tabs (played here by the same core the
//! browser runs, signing natively) link, authenticate and appear in
//! `/status`; garbage, oversized and text frames close only their own link.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use peersm_core::channel::{InitiatorEvent, LinkInitiator, ResponderCheck, MAX_FRAME_LEN};
use peersm_core::crypto::PeerId;
use peersm_node::bridge::{self, BridgeConfig};
use rsa::pkcs8::EncodePublicKey;
use rsa::sha2::Sha256;
use rsa::{Generate, PrivateKey};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn start_bridge() -> SocketAddr {
    let www = std::env::temp_dir().join(format!("peersm-www-{}", std::process::id()));
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(
        www.join("index.html"),
        "<!doctype html><title>Peersm</title>",
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(bridge::serve(
        listener,
        BridgeConfig::new(www, Vec::new()).await.unwrap(),
    ));
    addr
}

async fn open_ws(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/bridge"))
        .await
        .unwrap();
    ws
}

/// A tab's side of the link, with a natively held identity key.
async fn link_tab(addr: SocketAddr) -> (Ws, PeerId) {
    let private = PrivateKey::generate();
    let spki = private
        .to_public_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    let id = PeerId::from_spki(&spki);
    let mut ws = open_ws(addr).await;
    let mut link = LinkInitiator::new(Some(spki), ResponderCheck::None).unwrap();
    loop {
        while let Some(f) = link.poll_transmit() {
            ws.send(Message::Binary(f.into())).await.unwrap();
        }
        match link.poll_event() {
            Some(InitiatorEvent::SignatureNeeded(m)) => {
                link.handle_signature(private.pkcs1v15_sign::<Sha256>(&m).unwrap())
                    .unwrap();
                continue;
            }
            Some(InitiatorEvent::Open { authenticated, .. }) => {
                assert!(authenticated);
                while let Some(f) = link.poll_transmit() {
                    ws.send(Message::Binary(f.into())).await.unwrap();
                }
                return (ws, id);
            }
            Some(InitiatorEvent::Cell(_)) => continue,
            None => {}
        }
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => link.handle_frame(&b).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[derive(serde::Deserialize)]
struct Status {
    peers: Vec<StatusPeer>,
    links: usize,
}
#[derive(serde::Deserialize)]
struct StatusPeer {
    id: String,
}

async fn status(addr: SocketAddr) -> Status {
    reqwest::get(format!("http://{addr}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `/status` until `pred` holds (the bridge registers a peer when it
/// has processed the tab's NETINFO, just after the tab considers itself open).
async fn wait_status(addr: SocketAddr, pred: impl Fn(&Status) -> bool) -> Status {
    for _ in 0..100 {
        let s = status(addr).await;
        if pred(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("bridge status never reached the expected state");
}

fn listed(s: &Status, id: &PeerId) -> bool {
    s.peers.iter().any(|p| p.id == id.to_hex())
}

/// Reads until the bridge closes the link; returns the close code.
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("bridge did not close the link"),
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test]
async fn authenticated_tabs_are_listed_and_leave_when_closed() {
    let addr = start_bridge().await;
    let (mut a, id_a) = link_tab(addr).await;
    let (_b, id_b) = link_tab(addr).await;
    let s = wait_status(addr, |s| listed(s, &id_a) && listed(s, &id_b)).await;
    assert_eq!(s.links, 2);
    a.close(None).await.unwrap();
    let s = wait_status(addr, |s| !listed(s, &id_a)).await;
    assert!(listed(&s, &id_b));
    assert_eq!(s.links, 1);
}

#[tokio::test]
async fn bad_frames_close_only_their_own_link() {
    let addr = start_bridge().await;
    let (mut good, good_id) = link_tab(addr).await;
    wait_status(addr, |s| listed(s, &good_id)).await;

    // Garbage: not a VERSIONS cell.
    let mut ws = open_ws(addr).await;
    ws.send(Message::Binary(
        vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3].into(),
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Protocol));

    // Garbage after a valid VERSIONS: a truncated cell.
    let mut ws = open_ws(addr).await;
    ws.send(Message::Binary(vec![0, 0, 7, 0, 2, 0, 4].into()))
        .await
        .unwrap();
    ws.send(Message::Binary(vec![0, 0, 0, 0, 8, 1].into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Protocol));

    // Text frames are not links.
    let mut ws = open_ws(addr).await;
    ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Unsupported));

    // Oversized frame.
    let mut ws = open_ws(addr).await;
    let _ = ws
        .send(Message::Binary(vec![0u8; MAX_FRAME_LEN + 1].into()))
        .await;
    let code = close_code(&mut ws).await;
    assert!(code.is_none() || code == Some(CloseCode::Size), "{code:?}");

    // The good link is untouched and still works; new tabs still link.
    let s = wait_status(addr, |s| listed(s, &good_id) && s.links == 1).await;
    assert_eq!(s.peers.len(), 1);
    good.send(Message::Binary(vec![0u8; 514].into()))
        .await
        .unwrap(); // a PADDING cell
    let (_c, id_c) = link_tab(addr).await;
    let s = wait_status(addr, |s| listed(s, &id_c)).await;
    assert!(listed(&s, &good_id));
}

#[tokio::test]
async fn forged_authentication_is_refused_and_not_listed() {
    use peersm_core::cell::{
        auth_method, cert_type, Authenticate, CertEntry, Certs, CircIdLen, Netinfo,
    };
    use peersm_core::channel::encode_cells;

    let addr = start_bridge().await;
    let victim = PrivateKey::generate();
    let victim_spki = victim
        .to_public_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    let attacker = PrivateKey::generate();
    let mut ws = open_ws(addr).await;
    ws.send(Message::Binary(vec![0, 0, 7, 0, 2, 0, 4].into()))
        .await
        .unwrap();
    let _challenge_frame = ws.next().await.unwrap().unwrap();
    // Claim the victim's SPKI but sign with another key.
    let cells = [
        Certs {
            certs: vec![CertEntry {
                cert_type: cert_type::PEERSM_RSA_SPKI,
                body: victim_spki.clone(),
            }],
        }
        .to_cell()
        .unwrap(),
        Authenticate {
            method: auth_method::PEERSM_RSA_SHA256,
            authentication: attacker.pkcs1v15_sign::<Sha256>(b"anything").unwrap(),
        }
        .to_cell()
        .unwrap(),
        Netinfo {
            timestamp: 0,
            other_addr: None,
            my_addrs: vec![],
        }
        .to_cell()
        .unwrap(),
    ];
    ws.send(Message::Binary(
        encode_cells(&cells, CircIdLen::Four).unwrap().into(),
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Protocol));
    let s = wait_status(addr, |s| s.links == 0).await;
    assert!(!listed(&s, &PeerId::from_spki(&victim_spki)));
}

#[tokio::test]
async fn page_is_served_with_cross_origin_headers() {
    let addr = start_bridge().await;
    let resp = reqwest::get(format!("http://{addr}/index.html"))
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval';"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert!(resp.text().await.unwrap().contains("Peersm"));
    let missing = reqwest::get(format!("http://{addr}/nope.js"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// A relay on the ORPort of a fresh listener.
async fn start_relay() -> (
    std::sync::Arc<peersm_node::relay::server::Relay>,
    SocketAddr,
) {
    use peersm_node::relay::{keys::RelayKeys, server};
    let relay = server::Relay::new(
        RelayKeys::generate().unwrap(),
        "reject *:*".parse().unwrap(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(listener, relay.clone()));
    (relay, addr)
}

/// Joins need the operator's token, and a join must prove the identities
/// it names *at the address it gives*: naming a listed relay's identity
/// at another relay's address is refused, even though the bridge already
/// holds a link to that identity (before, that link was taken as proof).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_must_prove_its_identity_at_the_address_it_gives() {
    let www = std::env::temp_dir().join(format!("peersm-www-join-{}", std::process::id()));
    std::fs::create_dir_all(&www).unwrap();
    let mut config = BridgeConfig::new(www, Vec::new()).await.unwrap();
    config.join_token = Some("operator-token".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bridge = listener.local_addr().unwrap();
    tokio::spawn(bridge::serve(listener, config));
    let (honest, honest_addr) = start_relay().await;
    let (_other, other_addr) = start_relay().await;
    let client = reqwest::Client::new();
    let join = |line: String, token: &'static str| {
        client
            .post(format!("http://{bridge}/relays"))
            .bearer_auth(token)
            .body(line)
            .send()
    };
    let line = honest.listing("honest", honest_addr);
    assert_eq!(join(line.to_line(), "guess").await.unwrap().status(), 403);
    assert_eq!(
        join(line.to_line(), "operator-token")
            .await
            .unwrap()
            .status(),
        200
    );
    let mut forged = line.clone();
    forged.addr = other_addr;
    let refused = join(forged.to_line(), "operator-token").await.unwrap();
    assert_eq!(refused.status(), 400);
    let listed: serde_json::Value = reqwest::get(format!("http://{bridge}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let relays = listed["relays"].as_array().unwrap();
    assert_eq!(relays.len(), 1);
    assert!(relays[0]
        .as_str()
        .unwrap()
        .contains(&honest_addr.to_string()));
}
