//! `peersm-node`: the command line of the native node.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use peersm_node::bridge::{self, BridgeConfig};
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
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { listen, www } => {
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
            let server = bridge::serve(listener, BridgeConfig { www });
            tokio::select! {
                r = server => r?,
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, shutting down"),
            }
        }
    }
    Ok(())
}
