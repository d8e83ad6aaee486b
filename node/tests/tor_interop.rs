//! Interoperability with real Tor: a private network of Debian `tor`
//! processes on 127.0.0.1 (tests/tornet/tornet.py). Our client verifies a
//! C tor relay's certificates over TLS, fetches the consensus and
//! microdescriptors over BEGIN_DIR, builds a 3-hop ntor circuit through
//! C tor relays and fetches a file from a local HTTP server through it.
//!
//! Set TORNET_DIR to reuse a running network (tornet.py start DIR).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use peersm_core::cell::LinkSpec;
use peersm_core::circuit::StreamTarget;
use peersm_core::dir::authority::{verify_consensus, AuthorityCert};
use peersm_core::dir::base64_encode;
use peersm_core::dir::consensus::{Consensus, RouterEntry};
use peersm_core::dir::microdesc::{self, Microdesc};
use peersm_node::proxy::Proxy;
use peersm_node::relay::descriptor;
use peersm_node::relay::keys::RelayKeys;
use peersm_node::relay::server::{self as relay_server, Relay};
use peersm_node::tor::client::{self, ChannelHandle, StreamEvent};
use peersm_node::tor::dirauth::DirAuthority;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Network {
    dir: PathBuf,
    owned: bool,
    info: serde_json::Value,
}

impl Network {
    fn start() -> Network {
        if let Ok(dir) = std::env::var("TORNET_DIR") {
            let info = serde_json::from_str(
                &std::fs::read_to_string(format!("{dir}/network.json")).unwrap(),
            )
            .unwrap();
            return Network {
                dir: dir.into(),
                owned: false,
                info,
            };
        }
        let dir = std::env::temp_dir().join(format!("peersm-tornet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/tornet/tornet.py");
        let status = Command::new("python3")
            .arg(script)
            .arg("start")
            .arg(&dir)
            .status()
            .expect("python3");
        assert!(status.success(), "the private Tor network did not come up");
        let info =
            serde_json::from_str(&std::fs::read_to_string(dir.join("network.json")).unwrap())
                .unwrap();
        Network {
            dir,
            owned: true,
            info,
        }
    }

    fn node(&self, name: &str) -> (SocketAddr, [u8; 20]) {
        let n = self.info["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap();
        let addr = format!("127.0.0.1:{}", n["or_port"]).parse().unwrap();
        let mut id = [0u8; 20];
        hex::decode_to_slice(n["fingerprint"].as_str().unwrap(), &mut id).unwrap();
        (addr, id)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if self.owned {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/tornet/tornet.py");
            let _ = Command::new("python3")
                .arg(script)
                .arg("stop")
                .arg(&self.dir)
                .status();
        }
    }
}

/// HTTP/1.0 GET over a stream; returns (status line, body).
async fn http_get(
    ch: &ChannelHandle,
    circ: u32,
    target: StreamTarget,
    path: &str,
) -> (String, Vec<u8>) {
    // A young network's exit may refuse the first streams (END MISC) until
    // it has fetched the directory it needs: retry for a while.
    let mut opened = Err(peersm_node::error::NodeError::Closed("not tried yet"));
    for _ in 0..30 {
        opened = ch.begin(circ, target.clone()).await;
        if opened.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let (stream, events) = opened.expect("stream opens");
    http_on_stream(ch, circ, stream, events, path).await
}

/// HTTP/1.0 GET on an opened stream: status line and body.
async fn http_on_stream(
    ch: &ChannelHandle,
    circ: u32,
    stream: u16,
    mut events: tokio::sync::mpsc::Receiver<StreamEvent>,
    path: &str,
) -> (String, Vec<u8>) {
    assert!(matches!(events.recv().await, Some(StreamEvent::Connected)));
    ch.send(
        circ,
        stream,
        format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").into_bytes(),
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    while let Some(e) = events.recv().await {
        match e {
            StreamEvent::Data(d) => response.extend_from_slice(&d),
            StreamEvent::Ended { .. } => break,
            StreamEvent::Connected => {}
        }
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP header end");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let body = response[split + 4..].to_vec();
    // Directory responses may be compressed only if asked; we did not ask.
    (head.lines().next().unwrap_or_default().to_string(), body)
}

/// A tiny HTTP server on 127.0.0.1 serving `body` for every request.
async fn serve_file(
    body: Vec<u8>,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<SocketAddr>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut sock, peer) = listener.accept().await.unwrap();
            let _ = seen_tx.send(peer);
            let body = body.clone();
            tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let _ = sock.read(&mut req).await;
                let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuits_through_c_tor_relays() {
    let net = Network::start();
    let (guard_addr, guard_id) = net.node("relay0");

    // 1. TLS + CERTS: the relay proves the identity we expect.
    let ch = client::connect(guard_addr, Some(guard_id), None)
        .await
        .expect("channel to a C tor relay");
    assert_eq!(ch.relay.rsa_id, guard_id);
    let mut wrong = guard_id;
    wrong[0] ^= 1;
    let err = client::connect(guard_addr, Some(wrong), None)
        .await
        .err()
        .expect("a wrong identity is refused");
    assert!(
        err.to_string().contains("not the one we asked for"),
        "{err}"
    );

    // 2. CREATE_FAST + BEGIN_DIR: consensus and microdescriptors.
    let dir_circ = ch.create_fast().await.expect("CREATE_FAST");
    // A relay's directory cache gets the consensus a little after the
    // authorities publish it, and may first serve an older one that lists
    // fewer relays: retry until it lists all six.
    let mut consensus_text = String::new();
    for _ in 0..60 {
        let fetched = dir_get_retry(
            &ch,
            dir_circ,
            "/tor/status-vote/current/consensus-microdesc",
        )
        .await;
        consensus_text = String::from_utf8(fetched).unwrap();
        if Consensus::parse(&consensus_text).is_ok_and(|c| c.routers.len() >= 6) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let consensus = Consensus::parse(&consensus_text).expect("consensus parses");
    // The authorities' certificates and signatures check out.
    let trusted: Vec<[u8; 20]> = net.info["dir_authorities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let v3 = l
                .as_str()
                .unwrap()
                .split(' ')
                .find_map(|w| w.strip_prefix("v3ident="))
                .unwrap();
            hex::decode(v3).unwrap().try_into().unwrap()
        })
        .collect();
    let body = dir_get_retry(&ch, dir_circ, "/tor/keys/all").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let certs = AuthorityCert::parse_many(&String::from_utf8(body).unwrap(), &trusted, now);
    assert_eq!(
        certs.len(),
        trusted.len(),
        "every authority certificate verifies"
    );
    let signers =
        verify_consensus(&consensus_text, &trusted, &certs).expect("consensus signatures verify");
    assert_eq!(signers, trusted.len());
    let forged = consensus_text.replacen("Running", "Ruining", 1);
    assert!(
        verify_consensus(&forged, &trusted, &certs).is_err(),
        "a modified consensus is refused"
    );
    assert!(
        consensus.routers.len() >= 6,
        "{} routers",
        consensus.routers.len()
    );
    let digests: Vec<String> = consensus
        .routers
        .iter()
        .map(|r| base64_encode(&r.microdesc_digest, false))
        .collect();
    let body = dir_get_retry(
        &ch,
        dir_circ,
        &format!("/tor/micro/d/{}", digests.join("-")),
    )
    .await;
    let mds = microdesc::parse_all(&String::from_utf8(body).unwrap());
    assert_eq!(
        mds.len(),
        consensus.routers.len(),
        "every microdescriptor arrives and hashes to its digest"
    );
    let md_of = |r: &RouterEntry| -> Microdesc {
        mds.iter()
            .find(|m| m.digest == r.microdesc_digest)
            .expect("digest matches")
            .clone()
    };
    let router = |name: &str| {
        consensus
            .routers
            .iter()
            .find(|r| r.nickname == name)
            .unwrap()
            .clone()
    };

    // 3. A 3-hop ntor circuit guard → middle → exit, and a 2 MiB download.
    let (guard, middle, exit) = (router("relay0"), router("relay1"), router("exit0"));
    let circ = ch
        .create_ntor(md_of(&guard).ntor_onion_key)
        .await
        .expect("CREATE2 ntor");
    for hop in [&middle, &exit] {
        let md = md_of(hop);
        let mut specs = vec![LinkSpec::Addr(hop.or_addr), LinkSpec::LegacyId(hop.rsa_id)];
        if let Some(ed) = md.ed25519_id {
            specs.push(LinkSpec::Ed25519Id(ed));
        }
        ch.extend(circ, specs, hop.rsa_id, md.ntor_onion_key)
            .await
            .expect("EXTEND2 ntor");
    }
    let payload: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| (i ^ (i >> 11)) as u8)
        .collect();
    let (server, mut seen) = serve_file(payload.clone()).await;
    let target = StreamTarget::Tcp {
        host: "127.0.0.1".into(),
        port: server.port(),
    };
    let (status, body) = http_get(&ch, circ, target, "/file").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.len(), payload.len());
    assert!(body == payload, "downloaded bytes differ");
    assert!(
        seen.recv().await.is_some(),
        "the server saw the exit's connection"
    );

    // 4. C tor relay → our relay → C tor exit: C tor extends to our relay
    // (named by address and identities) and our relay extends to C tor.
    let relay = Relay::new(
        RelayKeys::generate().unwrap(),
        "reject *:*".parse().unwrap(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours = listener.local_addr().unwrap();
    tokio::spawn(relay_server::serve(listener, relay.clone()));
    let mixed = ch
        .create_ntor(md_of(&guard).ntor_onion_key)
        .await
        .expect("CREATE2 to C tor");
    ch.extend(
        mixed,
        relay_server::link_specs(&relay, ours),
        relay.keys.rsa_id,
        relay.keys.ntor.public,
    )
    .await
    .expect("the C tor relay extends to our relay and accepts its certificates");
    let md = md_of(&exit);
    let mut specs = vec![
        LinkSpec::Addr(exit.or_addr),
        LinkSpec::LegacyId(exit.rsa_id),
    ];
    if let Some(ed) = md.ed25519_id {
        specs.push(LinkSpec::Ed25519Id(ed));
    }
    ch.extend(mixed, specs, exit.rsa_id, md.ntor_onion_key)
        .await
        .expect("our relay extends to the C tor exit");
    // Our relay's channel to the exit authenticated as a relay (AUTH0003),
    // so the exit refuses BEGIN only because that relay is not in its
    // consensus yet (END MISC); a client channel would get END TORPROTOCOL.
    // Step 5 votes our relay in and then carries an exit stream.
    let target = StreamTarget::Tcp {
        host: "127.0.0.1".into(),
        port: server.port(),
    };
    let refused = ch.begin(mixed, target).await.unwrap_err();
    assert!(refused.to_string().contains("reason 1)"), "{refused}");
    // A BEGIN_DIR stream to the exit works on the same circuit. The exit's
    // directory cache may not hold the consensus yet, or still hold an
    // older one of this young network: retry until it has the one we saw.
    let mut listed = 0;
    for _ in 0..60 {
        let body = dir_get_retry(&ch, mixed, "/tor/status-vote/current/consensus-microdesc").await;
        let via_ours = Consensus::parse(&String::from_utf8(body).unwrap())
            .expect("consensus through our relay");
        listed = via_ours.routers.len();
        if listed == consensus.routers.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert_eq!(listed, consensus.routers.len());

    // 4. The SOCKS5 proxy, bootstrapped from the same authorities.
    let authorities: Vec<DirAuthority> = net.info["dir_authorities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().parse().unwrap())
        .collect();
    let proxy = Proxy::bootstrap(&authorities)
        .await
        .expect("proxy bootstraps");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socks_addr = listener.local_addr().unwrap();
    tokio::spawn(peersm_node::proxy::serve(listener, proxy.clone()));
    for _ in 0..2 {
        let body = socks_get(socks_addr, "127.0.0.1", server.port())
            .await
            .expect("fetch through the proxy");
        assert!(body == payload, "bytes through the proxy differ");
    }
    assert_eq!(
        proxy.circuits_in_use().await,
        1,
        "the second request reuses the circuit"
    );
    // Different SOCKS credentials: a separate circuit (IsolateSOCKSAuth).
    let body = socks_get_as(socks_addr, "127.0.0.1", server.port(), Some(("alice", "x")))
        .await
        .expect("fetch with credentials");
    assert!(body == payload);
    assert_eq!(
        proxy.circuits_in_use().await,
        2,
        "other credentials get another circuit"
    );
    // A closed port: a SOCKS error reply, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = socks_get(socks_addr, "127.0.0.1", closed)
        .await
        .unwrap_err();
    assert!(err.starts_with("SOCKS reply"), "{err}");

    // 5. Our relay publishes its descriptor; once the authorities vote it
    // in, the C tor exit accepts exit streams arriving through it.
    let policy_lines = relay.policy.descriptor_lines();
    // A fresh nickname per run, so a consensus from an earlier run cannot pass.
    let nickname = format!("peersm{}", &hex::encode(relay.keys.rsa_id)[..8]);
    let descriptor =
        descriptor::server_descriptor(&relay.keys, &nickname, ours, &policy_lines).unwrap();
    for auth in net.info["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "authority")
    {
        let dir_port: SocketAddr = format!("127.0.0.1:{}", auth["dir_port"]).parse().unwrap();
        descriptor::upload(dir_port, &descriptor)
            .await
            .expect("an authority accepts our descriptor");
    }
    {
        let listed = |text: &str| {
            text.lines()
                .any(|l| l.starts_with(&format!("r {nickname} ")))
        };
        let auth0: SocketAddr = format!("127.0.0.1:{}", net.info["nodes"][0]["dir_port"])
            .parse()
            .unwrap();
        let mut found = false;
        for _ in 0..90 {
            if let Ok(text) =
                plain_http_get(auth0, "/tor/status-vote/current/consensus-microdesc").await
            {
                if listed(&text) {
                    found = true;
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        assert!(found, "our relay appears in a consensus");
    }
    // Once the exit has that consensus it serves exit streams arriving
    // through our relay: C tor relay → our relay → C tor exit → the server.
    let target = StreamTarget::Tcp {
        host: "127.0.0.1".into(),
        port: server.port(),
    };
    let mut opened = Err(peersm_node::error::NodeError::Closed("not tried yet"));
    for _ in 0..60 {
        opened = ch.begin(mixed, target.clone()).await;
        if opened.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    let (stream, events) = opened.expect("the exit serves BEGIN through our relay");
    let (status, body) = http_on_stream(&ch, mixed, stream, events, "/file").await;
    assert!(status.contains("200"), "{status}");
    assert!(body == payload, "bytes through the mixed circuit differ");
}

/// A minimal SOCKS5 client: CONNECT by domain name, HTTP/1.0 GET, body.
async fn socks_get(proxy: SocketAddr, host: &str, port: u16) -> Result<Vec<u8>, String> {
    socks_get_as(proxy, host, port, None).await
}

async fn socks_get_as(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    creds: Option<(&str, &str)>,
) -> Result<Vec<u8>, String> {
    let mut s = tokio::net::TcpStream::connect(proxy)
        .await
        .map_err(|e| e.to_string())?;
    let method = if creds.is_some() { 2 } else { 0 };
    s.write_all(&[5, 1, method]).await.unwrap();
    let mut two = [0u8; 2];
    s.read_exact(&mut two).await.unwrap();
    assert_eq!(two, [5, method]);
    if let Some((user, pass)) = creds {
        let mut auth = vec![1, user.len() as u8];
        auth.extend_from_slice(user.as_bytes());
        auth.push(pass.len() as u8);
        auth.extend_from_slice(pass.as_bytes());
        s.write_all(&auth).await.unwrap();
        s.read_exact(&mut two).await.unwrap();
        assert_eq!(two, [1, 0]);
    }
    let mut req = vec![5, 1, 0, 3, host.len() as u8];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await.map_err(|e| e.to_string())?;
    if reply[1] != 0 {
        return Err(format!("SOCKS reply {}", reply[1]));
    }
    s.write_all(b"GET /file HTTP/1.0\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP header")?;
    Ok(response[split + 4..].to_vec())
}

/// HTTP/1.0 GET straight to a DirPort.
async fn plain_http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&resp).to_string())
}

/// A BEGIN_DIR GET that retries for up to a minute while the relay's
/// directory cache answers 404 (a young network's caches fill late).
async fn dir_get_retry(ch: &ChannelHandle, circ: u32, path: &str) -> Vec<u8> {
    let mut last = String::new();
    for _ in 0..60 {
        let (status, body) = http_get(ch, circ, StreamTarget::Directory, path).await;
        if status.contains("200") {
            return body;
        }
        last = status;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    panic!("GET {path} never succeeded: {last}");
}
