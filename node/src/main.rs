//! `peersm-node`: the command line of the native node.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use peersm_core::service::{ExitPolicy, DEFAULT_EXIT_POLICY};
use peersm_node::bridge::relays::{start_embedded_relays, JOIN_REFRESH};
use peersm_node::bridge::{self, BridgeConfig};
use peersm_node::error::NodeError;
use peersm_node::proxy::{self, Proxy};
use peersm_node::relay::descriptor;
use peersm_node::relay::keys::RelayKeys;
use peersm_node::relay::own_addresses::own_addresses;
use peersm_node::relay::server::{self as relay_server, Relay, RelayOptions};
use peersm_node::tor::dirauth::{DirAuthority, PUBLIC_AUTHORITIES};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "peersm-node", version, about = "Peersm native node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Peersm page and act as a bridge on its WebSocket endpoint.
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Folder with the page (index.html, pkg/ with the wasm bundle).
        #[arg(long, default_value = "www")]
        www: PathBuf,
        /// Relays to run inside this process behind the bridge; the last
        /// one is an exit. 2 gives tabs a whole path: bridge → middle → exit.
        #[arg(long, default_value_t = 2)]
        relays: usize,
        /// Exit policy of the embedded exit (same syntax as `relay`).
        /// Default: public addresses on a reduced set of ports.
        #[arg(long = "exit-policy", default_value = DEFAULT_EXIT_POLICY, hide_default_value = true)]
        exit_policy: String,
        /// Source address of the embedded exit's connections.
        #[arg(long = "exit-bind")]
        exit_bind: Option<std::net::IpAddr>,
        /// Federate with the bridge at this WebSocket URL, which must prove
        /// the identity after `#` (its /status fingerprint):
        /// `ws://HOST:PORT/bridge#FINGERPRINT`. Tabs of both bridges learn
        /// of each other and are introduced; that bridge's operator must
        /// trust ours too (`--trust-bridge`). Repeat for each.
        #[arg(long = "peer-bridge", value_name = "URL#FINGERPRINT", value_parser = parse_peer_bridge)]
        peer_bridges: Vec<(String, [u8; 20])>,
        /// Take federation (BRIDGE_HELLO) from the bridge with this
        /// fingerprint, which links to us. Bridges named by `--peer-bridge`
        /// are trusted too; other bridges only when one of those vouches
        /// for them. Repeat for each.
        #[arg(long = "trust-bridge", value_name = "FINGERPRINT", value_parser = parse_fingerprint)]
        trusted_bridges: Vec<[u8; 20]>,
        /// Where tabs reach this bridge, as told to federated bridges
        /// (default ws://LISTEN/bridge).
        #[arg(long = "public-url", value_name = "URL")]
        public_url: Option<String>,
        /// Keep the bridge's and embedded relays' keys here, so their
        /// identities survive restarts (default: new keys each start).
        #[arg(long = "data-dir", value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Relays may join this bridge (`POST /relays`, listed to tabs) only
        /// with this token (`relay --join URL --join-token TOKEN`). Without
        /// it, no relay can join: only the embedded ones are listed.
        #[arg(long = "join-token", value_name = "TOKEN", env = "PEERSM_JOIN_TOKEN")]
        join_token: Option<String>,
        /// List every tab's ID and address on `GET /status` to anyone
        /// (default: only to requests from the loopback interface).
        #[arg(long = "status-details")]
        status_details: bool,
    },
    /// An onion router on a TLS ORPort: answers CREATE2/CREATE_FAST, extends
    /// circuits, and exits under its exit policy.
    Relay {
        /// ORPort listen address.
        #[arg(long = "or-port", default_value = "127.0.0.1:9001")]
        or_port: SocketAddr,
        /// Comma-separated `accept|reject ADDR[/BITS]:PORT[-PORT]` rules;
        /// ADDR may be `*` or `private` (also the relay's own addresses).
        /// First match wins. Default: public addresses on a reduced set of
        /// ports (web, mail retrieval, chat, SSH, DNS…; not 25).
        #[arg(long = "exit-policy", default_value = DEFAULT_EXIT_POLICY, hide_default_value = true)]
        exit_policy: String,
        /// Publish our descriptor to this directory authority (torrc
        /// DirAuthority syntax); repeat for each. Without it the relay is
        /// unlisted: clients can still name it in EXTEND2.
        #[arg(long = "publish-to", value_name = "LINE")]
        publish_to: Vec<String>,
        /// Nickname in the published descriptor (1–19 letters and digits).
        #[arg(long, default_value = "peersm")]
        nickname: String,
        /// Join the bridge at this URL (http://HOST:PORT): it lists us to
        /// its tabs once we prove our identity. Repeat for each bridge.
        #[arg(long = "join", value_name = "URL")]
        join: Vec<String>,
        /// The token the bridges' operators gave for `--join`.
        #[arg(long = "join-token", value_name = "TOKEN", env = "PEERSM_JOIN_TOKEN")]
        join_token: Option<String>,
        /// Source address of exit connections.
        #[arg(long = "exit-bind")]
        exit_bind: Option<std::net::IpAddr>,
        /// Keep the relay's keys here, so its identity survives restarts.
        #[arg(long = "data-dir", value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Print the bridge identity fingerprint kept in DIR (made if DIR has
    /// none), as `serve --data-dir DIR` will use it: what other operators
    /// give to `--peer-bridge` and `--trust-bridge`.
    Fingerprint {
        #[arg(long = "data-dir", value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// A SOCKS5 onion proxy over 3-hop Tor circuits.
    Proxy {
        /// SOCKS5 listen address.
        #[arg(long, default_value = "127.0.0.1:9150")]
        socks: SocketAddr,
        /// A directory authority in torrc's DirAuthority syntax; repeat for
        /// each. Default: the public Tor network's authorities.
        #[arg(long = "dir-authority", value_name = "LINE")]
        dir_authorities: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            www,
            relays,
            exit_policy,
            exit_bind,
            peer_bridges,
            trusted_bridges,
            public_url,
            join_token,
            status_details,
            data_dir,
        } => {
            if !www.join("index.html").is_file() {
                anyhow::bail!(
                    "{} has no index.html: pass --www with the page folder",
                    www.display()
                );
            }
            if !www.join("pkg/peersm.js").is_file() {
                tracing::warn!(
                    "{} has no pkg/peersm.js: build the wasm bundle first (scripts/build-wasm)",
                    www.display()
                );
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
            let addr = listener.local_addr()?;
            // Tests and scripts read this line to learn the port.
            println!("Peersm bridge listening: open http://{addr}/ (WebSocket ws://{addr}/bridge, status http://{addr}/status)");
            // The bridge's own addresses are off limits to its exit.
            let own = own_addresses(
                &[Some(addr.ip()), exit_bind]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>(),
            );
            let policy = exit_policy.parse::<ExitPolicy>()?.with_own_addresses(&own);
            let embedded =
                start_embedded_relays(relays, &policy, exit_bind, data_dir.as_deref()).await?;
            let keys = match &data_dir {
                Some(dir) => RelayKeys::load_or_generate(&dir.join("bridge-keys.json")),
                None => RelayKeys::generate(),
            }?;
            let mut config = BridgeConfig::with_keys(www, embedded, keys).await?;
            config.peer_bridges = peer_bridges;
            config.trusted_bridges = trusted_bridges;
            config.public_url = public_url;
            config.status_details = status_details;
            config.join_token = join_token;
            tracing::info!(
                fingerprint = %hex::encode_upper(config.relay.keys.rsa_id),
                relays,
                "bridge identity; embedded relays listening"
            );
            let server = bridge::serve(listener, config);
            tokio::select! {
                r = server => r?,
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, shutting down"),
            }
        }
        Command::Relay {
            or_port,
            exit_policy,
            publish_to,
            nickname,
            join,
            join_token,
            exit_bind,
            data_dir,
        } => {
            if nickname.is_empty()
                || nickname.len() > 19
                || !nickname.chars().all(|c| c.is_ascii_alphanumeric())
            {
                anyhow::bail!("--nickname must be 1–19 ASCII letters and digits");
            }
            let authorities = publish_to
                .iter()
                .map(|l| l.parse::<DirAuthority>())
                .collect::<Result<Vec<_>, _>>()?;
            let policy: ExitPolicy = exit_policy.parse()?;
            let own = own_addresses(
                &[Some(or_port.ip()), exit_bind]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>(),
            );
            let policy = policy.with_own_addresses(&own);
            let keys = match &data_dir {
                Some(dir) => RelayKeys::load_or_generate(&dir.join("relay-keys.json")),
                None => RelayKeys::generate(),
            }?;
            let options = RelayOptions {
                exit_bind,
                directory: false,
                mesh: false,
            };
            let relay = Relay::with_options(keys, policy, options)?;
            let listener = tokio::net::TcpListener::bind(or_port)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {or_port}: {e}"))?;
            let addr = listener.local_addr()?;
            // What a client needs to name this relay in EXTEND2 (JSON, one line).
            println!(
                "{}",
                serde_json::json!({
                    "or_port": addr.to_string(),
                    "fingerprint": hex::encode_upper(relay.keys.rsa_id),
                    "ed25519_id": hex::encode(relay.keys.ed25519_id()),
                    "ntor_onion_key": hex::encode(relay.keys.ntor.public),
                    "exit_policy": exit_policy,
                })
            );
            if !authorities.is_empty() {
                let (relay, nickname) = (relay.clone(), nickname.clone());
                tokio::spawn(async move {
                    // Authorities drop descriptors older than a day; republish hourly.
                    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
                    loop {
                        every.tick().await;
                        let lines = relay.policy.descriptor_lines();
                        match descriptor::server_descriptor(&relay.keys, &nickname, addr, &lines) {
                            Ok(desc) => {
                                for auth in &authorities {
                                    match descriptor::upload(auth.dir_addr, &desc).await {
                                        Ok(()) => {
                                            tracing::info!(authority = %auth.nickname, "descriptor published")
                                        }
                                        Err(e) => {
                                            tracing::warn!(authority = %auth.nickname, "descriptor not published: {e}")
                                        }
                                    }
                                }
                            }
                            Err(e) => tracing::warn!("cannot build our descriptor: {e}"),
                        }
                    }
                });
            }
            for url in join {
                let line = relay.listing(&nickname, addr).to_line();
                tokio::spawn(join_bridge(url, line, join_token.clone()));
            }
            tokio::select! {
                r = relay_server::serve(listener, relay) => r?,
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, shutting down"),
            }
        }
        Command::Fingerprint { data_dir } => {
            std::fs::create_dir_all(&data_dir)?;
            let keys = RelayKeys::load_or_generate(&data_dir.join("bridge-keys.json"))?;
            println!("{}", hex::encode_upper(keys.rsa_id));
        }
        Command::Proxy {
            socks,
            dir_authorities,
        } => {
            let lines: Vec<String> = if dir_authorities.is_empty() {
                PUBLIC_AUTHORITIES.iter().map(|s| s.to_string()).collect()
            } else {
                dir_authorities
            };
            let authorities = lines
                .iter()
                .map(|l| l.parse::<DirAuthority>())
                .collect::<Result<Vec<_>, _>>()?;
            let listener = tokio::net::TcpListener::bind(socks)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {socks}: {e}"))?;
            let proxy = Proxy::bootstrap(&authorities).await?;
            println!(
                "Peersm SOCKS5 proxy listening on {}",
                listener.local_addr()?
            );
            tokio::select! {
                r = proxy::serve(listener, proxy) => r?,
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, shutting down"),
            }
        }
    }
    Ok(())
}

/// Keeps this relay listed at the bridge at `url`: POSTs our relay-list
/// line now and every `JOIN_REFRESH`.
async fn join_bridge(url: String, line: String, token: Option<String>) {
    let endpoint = format!("{}/relays", url.trim_end_matches('/'));
    let mut every = tokio::time::interval(JOIN_REFRESH);
    loop {
        every.tick().await;
        match post_text(&endpoint, &line, token.as_deref()).await {
            Ok(status) if status.contains(" 200 ") => {
                tracing::info!(%endpoint, "listed by the bridge")
            }
            Ok(status) => tracing::warn!(%endpoint, "bridge refused us: {status}"),
            Err(e) => tracing::warn!(%endpoint, "cannot reach the bridge: {e}"),
        }
    }
}

/// A minimal HTTP/1.1 POST over plain TCP (bridges on loopback or a LAN);
/// returns the status line.
async fn post_text(url: &str, body: &str, token: Option<&str>) -> Result<String, NodeError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or(NodeError::invalid(
        "bridge URL",
        "it must start with http://",
    ))?;
    let (host, path) = rest.split_once('/').map_or((rest, "/"), |(h, p)| (h, p));
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut sock = tokio::net::TcpStream::connect(host).await?;
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{authorization}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    sock.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// A 40-hex-digit RSA identity fingerprint (spaces allowed, as tor prints them).
fn parse_fingerprint(text: &str) -> Result<[u8; 20], String> {
    let hex_digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = hex::decode(&hex_digits)
        .map_err(|_| format!("`{text}` is not a fingerprint: 40 hex digits expected"))?;
    <[u8; 20]>::try_from(bytes.as_slice())
        .map_err(|_| format!("`{text}` is not a fingerprint: 40 hex digits expected"))
}

/// `ws://HOST:PORT/bridge#FINGERPRINT`.
fn parse_peer_bridge(text: &str) -> Result<(String, [u8; 20]), String> {
    let (url, fingerprint) = text.rsplit_once('#').ok_or_else(|| {
        format!("`{text}`: add `#FINGERPRINT`, the bridge's identity (its /status `fingerprint`)")
    })?;
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(format!("`{url}` is not a ws:// or wss:// URL"));
    }
    Ok((url.to_string(), parse_fingerprint(fingerprint)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_bridge_names_its_identity() {
        let fp = "7F5CC6D8886049C9426F3EEF2579DDC4F9982728";
        let (url, id) = parse_peer_bridge(&format!("ws://127.0.0.1:9/bridge#{fp}")).unwrap();
        assert_eq!(url, "ws://127.0.0.1:9/bridge");
        assert_eq!(hex::encode_upper(id), fp);
        assert!(parse_peer_bridge("ws://127.0.0.1:9/bridge")
            .unwrap_err()
            .contains("#FINGERPRINT"));
        assert!(parse_peer_bridge(&format!("http://x/#{fp}")).is_err());
        assert!(parse_fingerprint("7F5C").is_err());
        assert_eq!(
            parse_fingerprint("7F5C C6D8 8860 49C9 426F 3EEF 2579 DDC4 F998 2728"),
            Ok(id)
        );
    }
}
