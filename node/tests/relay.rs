//! Our own relays only: a client circuit through three `peersm-node relay`
//! instances (TLS, our CERTS, CREATE2/ntor, EXTEND2, an exit stream) carries
//! a file; the exit policy and BEGIN_DIR refusals come back as END reasons.

use std::net::SocketAddr;
use std::sync::Arc;

use peersm_core::circuit::StreamTarget;
use peersm_core::service::ExitPolicy;
use peersm_node::relay::keys::RelayKeys;
use peersm_node::relay::server::{self, Relay};
use peersm_node::tor::client::{self, StreamEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start_relay(policy: &str) -> (Arc<Relay>, SocketAddr) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or("info".into()))
        .with_test_writer()
        .try_init();
    let relay = Relay::new(
        RelayKeys::generate().unwrap(),
        policy.parse::<ExitPolicy>().unwrap(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(listener, relay.clone()));
    (relay, addr)
}

async fn serve_file(body: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let _ = sock.read(&mut req).await;
                let _ = sock
                    .write_all(
                        format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .as_bytes(),
                    )
                    .await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_of_our_relays_carry_a_stream() {
    let (r1, a1) = start_relay("reject *:*").await;
    let (r2, a2) = start_relay("reject *:*").await;
    let (r3, a3) = start_relay("accept 127.0.0.0/8:*, reject *:*").await;

    let ch = client::connect(a1, Some(r1.keys.rsa_id), Some(r1.keys.ed25519_id()))
        .await
        .expect("our relay's certificates verify");
    let circ = ch
        .create_ntor(r1.keys.ntor.public)
        .await
        .expect("CREATE2 to our relay");
    ch.extend(
        circ,
        server::link_specs(&r2, a2),
        r2.keys.rsa_id,
        r2.keys.ntor.public,
    )
    .await
    .expect("EXTEND2 to relay 2");
    ch.extend(
        circ,
        server::link_specs(&r3, a3),
        r3.keys.rsa_id,
        r3.keys.ntor.public,
    )
    .await
    .expect("EXTEND2 to relay 3");

    let payload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let web = serve_file(payload.clone()).await;
    let (stream, mut events) = ch
        .begin(
            circ,
            StreamTarget::Tcp {
                host: "127.0.0.1".into(),
                port: web.port(),
            },
        )
        .await
        .expect("exit connects");
    ch.send(circ, stream, b"GET / HTTP/1.0\r\n\r\n".to_vec())
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(e) = events.recv().await {
        match e {
            StreamEvent::Data(d) => got.extend_from_slice(&d),
            StreamEvent::Ended { .. } => break,
            StreamEvent::Connected => {}
        }
    }
    let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        got[split + 4..] == payload[..],
        "bytes through our relays differ ({} bytes)",
        got.len() - split - 4
    );

    // The exit refuses what its policy rejects, and BEGIN_DIR.
    let err = ch
        .begin(
            circ,
            StreamTarget::Tcp {
                host: "10.1.2.3".into(),
                port: 80,
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("reason 4"),
        "EXITPOLICY expected: {err}"
    );
    let err = ch.begin(circ, StreamTarget::Directory).await.unwrap_err();
    assert!(
        err.to_string().contains("reason 14"),
        "NOTDIRECTORY expected: {err}"
    );
    // The circuit still works after refusals.
    let (_, mut events) = ch
        .begin(
            circ,
            StreamTarget::Tcp {
                host: "127.0.0.1".into(),
                port: web.port(),
            },
        )
        .await
        .unwrap();
    assert!(matches!(events.recv().await, Some(StreamEvent::Connected)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_identity_in_extend2_is_refused() {
    let (r1, a1) = start_relay("reject *:*").await;
    let (r2, a2) = start_relay("reject *:*").await;
    let ch = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client::connect(a1, Some(r1.keys.rsa_id), None),
    )
    .await
    .expect("handshake in time")
    .unwrap();
    let circ = ch.create_ntor(r1.keys.ntor.public).await.unwrap();
    let mut wrong = r2.keys.rsa_id;
    wrong[3] ^= 0x40;
    let specs = vec![
        peersm_core::cell::LinkSpec::Addr(a2),
        peersm_core::cell::LinkSpec::LegacyId(wrong),
    ];
    let err = ch
        .extend(circ, specs, wrong, r2.keys.ntor.public)
        .await
        .unwrap_err();
    // The relay cannot prove that identity: the extend fails and the
    // circuit is destroyed with CONNECTFAILED (as C tor does; no TRUNCATED).
    assert!(err.to_string().contains("reason 6"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_cell_destroys_only_its_circuit() {
    use peersm_core::cell::{command, RawCell};
    let (r1, a1) = start_relay("accept 127.0.0.0/8:*, reject *:*").await;
    let ch = client::connect(a1, Some(r1.keys.rsa_id), None)
        .await
        .unwrap();
    let victim = ch.create_ntor(r1.keys.ntor.public).await.unwrap();
    let bystander = ch.create_fast().await.unwrap();
    // A RELAY cell no layer recognizes, at the last (only) hop: the relay
    // must destroy that circuit with reason PROTOCOL.
    ch.send_raw(RawCell::new(victim, command::RELAY, vec![0x42; 509]))
        .await
        .unwrap();
    for _ in 0..100 {
        if !ch.circuit_alive(victim).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        !ch.circuit_alive(victim).await,
        "the relay destroyed the circuit"
    );
    // The channel and its other circuit keep working.
    assert!(ch.circuit_alive(bystander).await);
    let web = serve_file(b"still here".to_vec()).await;
    let (stream, mut events) = ch
        .begin(
            bystander,
            StreamTarget::Tcp {
                host: "127.0.0.1".into(),
                port: web.port(),
            },
        )
        .await
        .expect("the other circuit still opens streams");
    ch.send(bystander, stream, b"GET / HTTP/1.0\r\n\r\n".to_vec())
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(e) = events.recv().await {
        match e {
            StreamEvent::Data(d) => got.extend_from_slice(&d),
            StreamEvent::Ended { .. } => break,
            StreamEvent::Connected => {}
        }
    }
    assert!(got.ends_with(b"still here"));
}

/// A server that reads nothing until told, then everything: what it got.
async fn slow_sink() -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<usize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let _ = go_rx.await;
        let mut all = Vec::new();
        let _ = sock.read_to_end(&mut all).await;
        let _ = got_tx.send(all.len());
    });
    (addr, go_tx, got_rx)
}

/// End-to-end backpressure on the exit side: a server that does not read
/// holds back the client's upload (the exit reads the circuit only as the
/// server takes bytes, so stream SENDMEs stop and the client's window
/// closes); once it reads, every byte arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_read_holds_back_the_upload() {
    let (r1, a1) = start_relay("accept 127.0.0.0/8:*, reject *:*").await;
    let ch = client::connect(a1, Some(r1.keys.rsa_id), None)
        .await
        .unwrap();
    let circ = ch.create_ntor(r1.keys.ntor.public).await.unwrap();
    let (addr, go, got) = slow_sink().await;
    let (stream, _events) = ch
        .begin(
            circ,
            StreamTarget::Tcp {
                host: "127.0.0.1".into(),
                port: addr.port(),
            },
        )
        .await
        .unwrap();
    // 16 MB: far more than a stream window (500 × 498 bytes), the exit's
    // queues and the sockets' buffers together.
    const TOTAL: usize = 16 * 1024 * 1024;
    let upload = {
        let ch = ch.clone();
        tokio::spawn(async move {
            let chunk = vec![7u8; 64 * 1024];
            let mut sent = 0;
            while sent < TOTAL {
                ch.send(circ, stream, chunk.clone()).await.unwrap();
                sent += chunk.len();
            }
            ch.end(circ, stream);
        })
    };
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        !upload.is_finished(),
        "the upload waits while the server reads nothing"
    );
    go.send(()).unwrap();
    upload.await.unwrap();
    let received = tokio::time::timeout(std::time::Duration::from_secs(30), got)
        .await
        .expect("the server gets everything in time")
        .unwrap();
    assert_eq!(received, TOTAL);
}

/// A TCP listener that accepts connections and never says a word.
async fn tarpit() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    addr
}

/// EXTEND2s to a tarpit (TCP answers, TLS never does), one naming an
/// unknown relay and one naming a real relay's identity at the tarpit's
/// address, do not hold up an extend to that real relay at its address
/// (before: one pending connection per identity, and none of TCP or TLS
/// timed out, so the real extend waited forever behind the tarpit). Once
/// the real relay proved its identity on a link, the extend that named it
/// at the wrong address goes out on that link too; the one naming an
/// unknown relay fails within the link setup timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extend2_to_a_tarpit_does_not_delay_other_extends() {
    use std::time::{Duration, Instant};
    let (r1, a1) = start_relay("reject *:*").await;
    let (r2, a2) = start_relay("reject *:*").await;
    let slow = tarpit().await;
    let ch = client::connect(a1, Some(r1.keys.rsa_id), None)
        .await
        .unwrap();
    let mut stuck = Vec::new();
    for id in [[0x5a; 20], r2.keys.rsa_id] {
        let circ = ch.create_ntor(r1.keys.ntor.public).await.unwrap();
        let specs = vec![
            peersm_core::cell::LinkSpec::Addr(slow),
            peersm_core::cell::LinkSpec::LegacyId(id),
        ];
        let ch = ch.clone();
        let key = r2.keys.ntor.public;
        stuck.push(tokio::spawn(async move {
            let began = Instant::now();
            let result = ch.extend(circ, specs, id, key).await;
            (result, began.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let circ = ch.create_ntor(r1.keys.ntor.public).await.unwrap();
    let began = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(5),
        ch.extend(
            circ,
            server::link_specs(&r2, a2),
            r2.keys.rsa_id,
            r2.keys.ntor.public,
        ),
    )
    .await
    .expect("the extend to the real address is not held up by the tarpit")
    .expect("extended to relay 2");
    println!("extend beside two tarpit extends: {:?}", began.elapsed());
    let mut stuck = stuck.into_iter();
    let (unknown, took) = stuck.next().unwrap().await.unwrap();
    let err = unknown.expect_err("the tarpit never completes a handshake");
    assert!(err.to_string().contains("reason 6"), "CONNECTFAILED: {err}");
    assert!(took < Duration::from_secs(14), "timed out in {took:?}");
    let (named_r2, _) = stuck.next().unwrap().await.unwrap();
    named_r2.expect("served by the link that proved relay 2's identity");
}
