//! File sharing on the simulated network (docs/PROTOCOL.md "ORDB"): tabs
//! seed, others download by hash_name through circuits to ORDBs, which
//! serve or relay. Figures are printed (`--nocapture`).

use super::tests::{network, open_links, tabs, wait};
use super::*;
use crate::content::HashName;
use crate::peer::tab::{DownloadOptions, Outcome};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

fn download(net: &mut Net, n: NodeId, h: HashName, hops: usize) -> u64 {
    let now = net.now;
    let options = DownloadOptions {
        hops: Some(hops),
        ..Default::default()
    };
    net.tab_mut(n).unwrap().peer.download(h, options, now)
}

#[test]
fn a_file_seeded_in_one_tab_is_downloaded_in_another_through_ordbs() {
    let mut net = network(11, 1, 10, |_| {});
    let all = tabs(&net);
    assert!(net.run_while(30_000, |net| all.iter().all(|n| open_links(net, *n) >= 5)));
    let data = pattern(1_000_000, 3);
    let now = net.now;
    let h = net.tab_mut(all[0]).unwrap().seed(&data, "a.bin", now);
    net.run_until(net.now + 2_000);
    let op = download(&mut net, all[9], h, 2);
    let begun = net.now;
    let result = wait(&mut net, all[9], op, 120_000);
    let Some(Outcome::Downloaded(Ok(d))) = result else {
        panic!("download: {result:?}");
    };
    println!(
        "one file of {} bytes through 2-hop circuits to ORDBs: {} ms virtual, {} circuits, {:?}",
        data.len(),
        net.now - begun,
        d.circuits,
        d.stats
    );
    assert_eq!(d.file.size, data.len() as u64);
    assert_eq!(d.file.name, "a.bin");
    assert!(
        net.tab(all[9]).unwrap().file(&h) == data,
        "the stored file is the seeded one"
    );
}
