//! Native crypto benchmark: `cargo run --release --example bench_crypto`.
//! Relay crypto per hop against bare AES-128-CTR in the same run, and the
//! ntor handshake time. The browser figures come from `benchRelayCrypto`.

use std::time::Instant;

fn main() {
    let start = Instant::now();
    let now = move || start.elapsed().as_secs_f64() * 1000.0;
    let r = peersm_core::bench::relay_crypto(200, &now).expect("relay crypto runs");
    let ntor = peersm_core::bench::ntor_handshake_ms(2000, &now).expect("ntor runs");
    println!("relay crypto, one hop, native:");
    println!("  client seal + encrypt   {:8.1} MB/s", r.client_encrypt);
    println!("  relay decrypt + check   {:8.1} MB/s", r.relay_decrypt);
    println!(
        "  bare AES-128-CTR        {:8.1} MB/s (baseline)",
        r.aes_ctr_only
    );
    println!(
        "  ratio relay/baseline    {:8.2}",
        r.relay_decrypt / r.aes_ctr_only
    );
    println!("ntor handshake (client + relay + client), native: {ntor:.3} ms");
}
