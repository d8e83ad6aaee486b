//! File sharing on the simulated network (docs/PROTOCOL.md "ORDB"): tabs
//! seed, others download by hash_name through circuits to ORDBs, which
//! serve or relay. Figures are printed (`--nocapture`).

use super::tests::{network, open_links, tabs, wait};
use std::collections::BTreeMap;

use super::*;
use crate::content::HashName;
use crate::peer::tab::{DownloadOptions, Outcome};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

/// `tabs` tabs on one bridge (set up by `config`), run until each has
/// `links` open links.
fn linked_tabs(
    seed: u64,
    tabs_wanted: usize,
    links: usize,
    config: impl Fn(&mut crate::peer::tab::TabConfig),
) -> (Net, Vec<NodeId>) {
    let mut net = network(seed, 1, tabs_wanted, config);
    let all = tabs(&net);
    assert!(net.run_while(30_000, |net| all
        .iter()
        .all(|n| open_links(net, *n) >= links)));
    (net, all)
}

/// Tab `n` seeds `len` bytes of a pattern as `name`; the network runs 2 s
/// (its DB_INFO spreads). The bytes and their hash_name.
fn seed_pattern(net: &mut Net, n: NodeId, len: usize, seed: u8, name: &str) -> (Vec<u8>, HashName) {
    let data = pattern(len, seed);
    let now = net.now;
    let h = net.tab_mut(n).unwrap().seed(&data, name, now);
    net.run_until(net.now + 2_000);
    (data, h)
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
    let (mut net, all) = linked_tabs(11, 10, 5, |_| {});
    let (data, h) = seed_pattern(&mut net, all[0], 1_000_000, 3, "a.bin");
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

/// The web adapter stops handing a data channel frames once 48 KiB wait
/// in it (Chromium drops packets past ~64 KB), until it drains: the
/// tab's frames then wait in the core, and a download through three tabs
/// still completes, byte-equal, with nothing lost. Without that, a
/// seeder leaves hundreds of KB waiting on one link.
#[test]
fn a_congested_link_holds_frames_in_the_tab_and_loses_none() {
    const HIGH: u64 = 48 * 1024;
    const FRAME: u64 = 16 * 1024;
    let run = |send_buffer: Option<(u64, u64)>| {
        let (mut net, all) = linked_tabs(13, 8, 4, |_| {});
        // Slow wires (1 MB/s), so that queues form.
        net.config.bytes_per_ms = 1_000;
        net.config.send_buffer = send_buffer;
        let (data, h) = seed_pattern(&mut net, all[0], 2_000_000, 5, "c.bin");
        net.stats.max_tab_link_backlog = 0;
        let op = download(&mut net, all[7], h, 3);
        let begun = net.now;
        let result = wait(&mut net, all[7], op, 300_000);
        assert!(
            matches!(result, Some(Outcome::Downloaded(Ok(_)))),
            "{result:?}"
        );
        assert!(net.tab(all[7]).unwrap().file(&h) == data);
        (net.now - begun, net.stats.max_tab_link_backlog)
    };
    let (free_ms, free_backlog) = run(None);
    let (held_ms, held_backlog) = run(Some((HIGH, 16 * 1024)));
    println!(
        "2 MB through 3 tabs at 1 MB/s a wire: unbounded {free_ms} ms virtual, at most \
         {free_backlog} B waiting on a link; with a 48 KiB send buffer {held_ms} ms, {held_backlog} B"
    );
    assert!(
        free_backlog > HIGH + FRAME,
        "the check can fail: {free_backlog}"
    );
    assert!(held_backlog <= HIGH + FRAME, "{held_backlog}");
}

/// A peer that stops reading: the tab's data channels to it never drain.
/// What waits in the tab for such a link is bounded: once more than
/// `max_link_backlog` bytes wait, the link is dropped (here the seeder's
/// every link gets stuck in the middle of a download). Without that bound,
/// the backlog stays past it until the link has not drained for
/// `CONGESTED_MS`, which drops it too.
#[test]
fn a_link_that_never_drains_is_dropped_once_its_backlog_passes_the_bound() {
    const BOUND: usize = 64 * 1024;
    let run = |bound: usize, limit: u64| {
        let (mut net, all) = linked_tabs(17, 8, 4, |c| c.max_link_backlog = bound);
        let (_, h) = seed_pattern(&mut net, all[0], 4_000_000, 9, "d.bin");
        // 1 MB/s wires: the download is well under way after 1.5 s.
        net.config.bytes_per_ms = 1_000;
        let op = download(&mut net, all[7], h, 3);
        net.run_until(net.now + 1_500);
        assert!(!net.tab(all[7]).unwrap().results.contains_key(&op));
        let seeder = &mut net.tab_mut(all[0]).unwrap().peer;
        let stuck = seeder.link_ids();
        for &link in &stuck {
            // The simulation never says they drained.
            seeder.handle_link_congested(link, true);
        }
        let mut most = 0;
        net.run_while(limit, |net| {
            let t = &net.tab(all[0]).unwrap().peer;
            let waiting = stuck.iter().map(|l| t.waiting_bytes(*l)).max().unwrap_or(0);
            most = most.max(waiting);
            net.tab(all[7]).is_some_and(|t| t.results.contains_key(&op))
        });
        let t = &net.tab(all[0]).unwrap().peer;
        let dropped = stuck.iter().filter(|l| !t.link_ids().contains(l)).count();
        (most, dropped)
    };
    let (most, dropped) = run(usize::MAX, 25_000);
    println!("unbounded, 25 s: at most {most} B waiting on a stuck link, {dropped} dropped");
    assert!(most > BOUND && dropped == 0, "the check can fail");
    let (_, dropped) = run(usize::MAX, 40_000);
    println!("unbounded, 40 s: {dropped} stuck links dropped");
    assert!(dropped >= 1, "links that do not drain for 30 s are dropped");
    let (most, dropped) = run(BOUND, 25_000);
    println!("bounded at {BOUND} B: at most {most} B seen waiting, {dropped} links dropped");
    assert!(dropped >= 1);
    // Seen between steps: one step may queue a circuit window at most.
    assert!(most <= BOUND + 520_000, "{most}");
}

/// With circuits built ahead, a download's first query goes on one at
/// once (its first block comes a circuit build sooner), and another is
/// built in its place.
#[test]
fn a_download_starts_on_a_circuit_built_ahead() {
    let (mut net, all) = linked_tabs(12, 10, 5, |c| c.warm_circuits = true);
    net.run_until(net.now + 2_000);
    let warm: Vec<usize> = all
        .iter()
        .map(|n| net.tab(*n).unwrap().peer.warm_circuits())
        .collect();
    assert!(
        warm.iter().all(|w| *w == 1),
        "every tab keeps one circuit of the default length ready: {warm:?}"
    );
    let (data, h) = seed_pattern(&mut net, all[0], 300_000, 5, "w.bin");
    let op = download(&mut net, all[9], h, crate::peer::tab::DEFAULT_DOWNLOAD_HOPS);
    assert_eq!(
        net.tab(all[9]).unwrap().peer.warm_circuits(),
        0,
        "the download took the circuit built ahead"
    );
    let result = wait(&mut net, all[9], op, 60_000);
    assert!(
        matches!(result, Some(Outcome::Downloaded(Ok(_)))),
        "{result:?}"
    );
    assert!(net.tab(all[9]).unwrap().file(&h) == data);
    net.run_until(net.now + 2_000);
    assert_eq!(
        net.tab(all[9]).unwrap().peer.warm_circuits(),
        1,
        "another is built in its place"
    );
}

/// Starts downloads of `files` (hash_name, seeded data index) from tabs
/// in `from`, one file each.
fn start_downloads(
    net: &mut Net,
    from: &[NodeId],
    files: &[HashName],
    hops: usize,
) -> Vec<(NodeId, u64, HashName)> {
    from.iter()
        .zip(files.iter().cycle())
        .map(|(n, h)| (*n, download(net, *n, *h, hops), *h))
        .collect()
}

fn downloads_done(net: &Net, ops: &[(NodeId, u64, HashName)]) -> bool {
    ops.iter().all(|(n, op, _)| {
        net.tab(*n)
            .is_none_or(|t| !t.alive || t.results.contains_key(op))
    })
}

/// Figures of finished downloads: (virtual ms, circuits, stats) each;
/// panics on a failed one or a stored file that differs.
fn check_downloads(
    net: &Net,
    ops: &[(NodeId, u64, HashName)],
    data: &BTreeMap<HashName, Vec<u8>>,
) -> Vec<(u64, u64, crate::content::ScheduleStats)> {
    ops.iter()
        .map(|(n, op, h)| {
            let t = net.tab(*n).unwrap();
            match t.results.get(op) {
                Some(Outcome::Downloaded(Ok(d))) => {
                    assert!(t.file(h) == data[h], "tab {n}: the stored file differs");
                    (d.ms, d.circuits, d.stats)
                }
                other => panic!("tab {n}: {other:?}"),
            }
        })
        .collect()
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// 200 tabs, 20 files seeded by 20 tabs: downloads through ORDBs complete;
/// 30 % of the tabs leave mid-download and the downloads still complete;
/// a tampering ORDB is caught every time.
#[test]
fn two_hundred_tabs_share_twenty_files() {
    const TABS: usize = 200;
    const FILES: usize = 20;
    const SIZE: usize = 600_000;
    let started = std::time::Instant::now();
    let mut net = network(0x5ead, 3, TABS, |c| c.refresh_ms = 15_000);
    net.run_until(net.now + 40_000);
    let seeders = super::tests::pick(&mut net, FILES, &[]);
    let mut data = BTreeMap::new();
    let mut files = Vec::new();
    for (i, s) in seeders.iter().enumerate() {
        let bytes = pattern(SIZE + i * 1000, i as u8);
        let now = net.now;
        let h = net
            .tab_mut(*s)
            .unwrap()
            .seed(&bytes, &format!("file{i}"), now);
        data.insert(h, bytes);
        files.push(h);
    }
    net.run_until(net.now + 3_000);
    let knowing: usize = files
        .iter()
        .map(|h| {
            tabs(&net)
                .iter()
                .filter(|n| {
                    net.tab(**n)
                        .unwrap()
                        .peer
                        .shared()
                        .iter()
                        .any(|(x, _)| x == h)
                })
                .count()
        })
        .sum();
    println!(
        "seeding: {FILES} files; DB_INFO reached {:.0} tabs per file on average",
        knowing as f64 / FILES as f64
    );

    // Downloads through 2-hop circuits to ORDBs.
    let downloaders = super::tests::pick(&mut net, FILES, &seeders);
    let ops = start_downloads(&mut net, &downloaders, &files, 2);
    let begun = net.now;
    assert!(
        net.run_while(300_000, |net| downloads_done(net, &ops)),
        "downloads finish"
    );
    let mut total = crate::service::ordb::OrdbStats::default();
    for n in tabs(&net) {
        let s = net.tab(n).unwrap().peer.ordb_stats();
        total.blocks_served += s.blocks_served;
        total.queries_relayed += s.queries_relayed;
        total.unavailable += s.unavailable;
        total.loops_stopped += s.loops_stopped;
    }
    println!("ORDBs: {total:?}");
    let figures = check_downloads(&net, &ops, &data);
    let wasted: u64 = figures.iter().map(|f| f.2.bytes_wasted).sum();
    let replaced: u64 = figures.iter().map(|f| f.2.sources_dropped).sum();
    println!(
        "downloads: {FILES} × ~{SIZE} bytes through 2-hop circuits: all in {} ms virtual, median {} ms; circuits median {}; replaced {replaced}; bytes wasted {wasted}; unavailable answers {}",
        net.now - begun,
        median(figures.iter().map(|f| f.0).collect()),
        median(figures.iter().map(|f| f.1).collect()),
        figures.iter().map(|f| f.2.unavailable).sum::<u64>(),
    );

    // 30 % of the other tabs (ORDBs and hops of the circuits) leave
    // mid-download: the downloads go on over new circuits.
    let downloaders = super::tests::pick(&mut net, FILES, &seeders);
    let ops = start_downloads(&mut net, &downloaders, &files, 2);
    let begun = net.now;
    net.run_until(net.now + 150);
    let mut keep = seeders.clone();
    keep.extend(&downloaders);
    let leaving = super::tests::pick(&mut net, TABS * 3 / 10, &keep);
    for n in &leaving {
        net.kill(*n);
    }
    assert!(
        net.run_while(300_000, |net| downloads_done(net, &ops)),
        "downloads finish after the departures"
    );
    let figures = check_downloads(&net, &ops, &data);
    println!(
        "churn: {} tabs left 150 ms into {FILES} downloads; all complete in {} ms virtual (median {} ms); circuits replaced {}, lost with the tabs {}; bytes wasted {}",
        leaving.len(),
        net.now - begun,
        median(figures.iter().map(|f| f.0).collect()),
        figures.iter().map(|f| f.2.sources_dropped).sum::<u64>(),
        figures.iter().map(|f| f.1.saturating_sub(6)).sum::<u64>(),
        figures.iter().map(|f| f.2.bytes_wasted).sum::<u64>(),
    );
    assert!(
        figures.iter().map(|f| f.1).sum::<u64>() > 6 * FILES as u64,
        "some circuits were lost and replaced"
    );

    // A tampering ORDB: a tab with a whole copy of file 0 corrupts every
    // block it serves. Its bad blocks are all caught (the files come out
    // right), and the circuits that carried them are dropped.
    let h0 = files[0];
    let liar = downloaders[0];
    assert_eq!(net.tab(liar).unwrap().file(&h0), data[&h0]);
    net.tab_mut(liar).unwrap().tamper = true;
    let served_before = net.tab(liar).unwrap().peer.ordb_stats().blocks_served;
    let mut keep = seeders.clone();
    keep.extend(&downloaders);
    let fetchers = super::tests::pick(&mut net, 10, &keep);
    let ops = start_downloads(&mut net, &fetchers, &[h0], 2);
    assert!(net.run_while(300_000, |net| downloads_done(net, &ops)));
    let figures = check_downloads(&net, &ops, &data);
    let bad: u64 = figures.iter().map(|f| f.2.blocks_bad).sum();
    let served = net.tab(liar).unwrap().peer.ordb_stats().blocks_served - served_before;
    println!(
        "tampering ORDB: it served {served} corrupted blocks; downloaders caught {bad}; bytes wasted {}; circuits dropped {}",
        figures.iter().map(|f| f.2.bytes_wasted).sum::<u64>(),
        figures.iter().map(|f| f.2.sources_dropped).sum::<u64>(),
    );
    assert!(served > 0, "the liar was asked");
    assert!(
        bad > 0 && bad <= served,
        "bad blocks detected: {bad} of {served}"
    );
    println!("whole run {:.1} s real", started.elapsed().as_secs_f64());
}

/// A freerider (a tab that relays, serves and answers nothing) downloads
/// next to an honest tab: the tabs it takes from drop it, and only it.
#[test]
fn a_freerider_is_dropped_by_the_tabs_it_uses() {
    let mut net = network(21, 1, 11, |_| {});
    // One more tab: the freerider.
    let now = net.now;
    let t = super::tab::SimTab::new(&mut net.rng, |c| c.freerider = true, now);
    net.nodes.push(Node::Tab(Box::new(t)));
    let freerider = net.nodes.len() - 1;
    super::tab::connect_to_bridge(&mut net, freerider, 0);
    let all = tabs(&net);
    assert!(net.run_while(30_000, |net| all.iter().all(|n| open_links(net, *n) >= 5)));
    let (data, h) = seed_pattern(&mut net, all[0], 16_000_000, 9, "big");
    let honest = all[1];
    let links_before = open_links(&net, freerider);
    let ops: Vec<(NodeId, u64)> = [honest, freerider]
        .iter()
        .map(|n| (*n, download(&mut net, *n, h, 2)))
        .collect();
    net.run_while(120_000, |net| {
        ops.iter()
            .all(|(n, op)| net.tab(*n).unwrap().results.contains_key(op))
    });
    let fid = net.tab(freerider).unwrap().peer.id();
    let hid = net.tab(honest).unwrap().peer.id();
    let mut dropped_it = 0;
    for n in tabs(&net) {
        let seen: Vec<_> = net.tab(n).unwrap().peer.freeriders().copied().collect();
        assert!(
            !seen.contains(&hid),
            "tab {n} dropped the honest downloader"
        );
        dropped_it += seen.iter().filter(|p| **p == fid).count();
    }
    println!(
        "freerider: {dropped_it} of its {links_before} linked tabs dropped it; its download: {:?}",
        net.tab(freerider)
            .unwrap()
            .results
            .get(&ops[1].1)
            .map(|o| matches!(o, Outcome::Downloaded(Ok(_))))
    );
    assert!(dropped_it >= 1, "the freerider was dropped");
    match net.tab(honest).unwrap().results.get(&ops[0].1) {
        Some(Outcome::Downloaded(Ok(_))) => {}
        other => panic!("the honest download: {other:?}"),
    }
    assert!(net.tab(honest).unwrap().file(&h) == data);
}

/// DB_INFO reaches only the holder's own links (`info_hops` 0): those tabs
/// STORE themselves at the peers closest to the hash_name, and ORDBs
/// anywhere else find them by FIND_VALUE and relay through a circuit to
/// them. Downloads by tabs not linked to the seeder complete, and their
/// ORDBs found sources through the DHT.
#[test]
fn a_file_beyond_db_info_is_found_through_the_dht() {
    const TABS: usize = 60;
    let mut net = network(0xf1d, 2, TABS, |c| {
        c.info_hops = 0;
        c.join_links = 3;
        c.refresh_ms = 15_000;
    });
    net.run_until(net.now + 30_000);
    let all = tabs(&net);
    let seeder = all[0];
    let data = pattern(800_000, 7);
    let now = net.now;
    let h = net.tab_mut(seeder).unwrap().seed(&data, "far.bin", now);
    net.run_until(net.now + 10_000);
    let sid = net.tab(seeder).unwrap().peer.id();
    let linked_to_seeder = |net: &Net, n: NodeId| {
        net.tab(n)
            .unwrap()
            .peer
            .links()
            .iter()
            .any(|(p, _)| *p == sid)
    };
    let knowing = all
        .iter()
        .filter(|n| {
            net.tab(**n)
                .unwrap()
                .peer
                .shared()
                .iter()
                .any(|(x, _)| *x == h)
        })
        .count();
    let keeping = all
        .iter()
        .filter(|n| net.tab(**n).unwrap().peer.dht_values() > 0)
        .count();
    println!(
        "{TABS} tabs, DB_INFO to the seeder's {} links only: {knowing} tabs know the file, {keeping} keep DHT values for it",
        open_links(&net, seeder)
    );
    assert!(knowing < TABS / 2, "DB_INFO did not reach most tabs");
    assert!(keeping > 0, "the seeder's links stored themselves");

    let far: Vec<NodeId> = all
        .iter()
        .copied()
        .filter(|n| *n != seeder && !linked_to_seeder(&net, *n))
        .take(4)
        .collect();
    assert_eq!(far.len(), 4);
    let ops = start_downloads(&mut net, &far, &[h], 2);
    let begun = net.now;
    assert!(net.run_while(300_000, |net| downloads_done(net, &ops)));
    let mut data_of = BTreeMap::new();
    data_of.insert(h, data);
    let figures = check_downloads(&net, &ops, &data_of);
    let found: u64 = all
        .iter()
        .map(|n| net.tab(*n).unwrap().peer.ordb_stats().sources_found)
        .sum();
    println!(
        "4 downloads by tabs not linked to the seeder: all in {} ms virtual; circuits {:?}; unavailable answers {}; ORDB circuits to sources found by FIND_VALUE {found}",
        net.now - begun,
        figures.iter().map(|f| f.1).collect::<Vec<_>>(),
        figures.iter().map(|f| f.2.unavailable).sum::<u64>(),
    );
    assert!(found > 0, "ORDBs found sources through FIND_VALUE");
}

/// The DHT work one tab can cause its neighbours is bounded: it seeds 100
/// files (asking up to 3 links per file to STORE themselves) and asks for
/// 60 files nobody has (each ORDB it reaches looks for sources). No tab
/// STOREs for more than `MAX_PUBLISHED` files or looks for more than
/// `MAX_FINDING` at once, and the caps are reached (the attack is real).
#[test]
fn one_tab_cannot_make_its_neighbours_store_or_look_without_bound() {
    let mut net = network(0xd05, 1, 24, |c| c.info_hops = 0);
    net.run_until(net.now + 20_000);
    let all = tabs(&net);
    let attacker = all[0];
    let mut max_published = 0;
    let mut max_finding = 0;
    let mut sample = |net: &Net| {
        for n in tabs(net) {
            let (published, finding) = net.tab(n).unwrap().peer.dht_work();
            max_published = max_published.max(published);
            max_finding = max_finding.max(finding);
        }
    };
    // Ten a second: under the per-link rate of control messages.
    for i in 0..100u32 {
        let now = net.now;
        let data = pattern(1000, i as u8);
        net.tab_mut(attacker)
            .unwrap()
            .seed(&data, &format!("f{i}"), now);
        net.run_until(net.now + 100);
        sample(&net);
    }
    for i in 0..60u8 {
        let h = HashName([i.wrapping_mul(37).wrapping_add(1); 20]);
        download(&mut net, attacker, h, 2);
    }
    for _ in 0..300 {
        net.run_until(net.now + 100);
        sample(&net);
    }
    println!("one tab, 100 seeds and 60 missing files: at most {max_published} files stored for and {max_finding} looked for by one tab");
    assert_eq!(
        max_published, 64,
        "the cap on files stored for was reached, not passed"
    );
    assert_eq!(
        max_finding, 8,
        "the cap on files looked for was reached, not passed"
    );
}
