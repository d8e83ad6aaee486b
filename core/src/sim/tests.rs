//! Scenarios on the simulated network. Figures are printed (run with
//! `cargo test -p peersm-core sim -- --nocapture` to see them).

use super::tab::connect_to_bridge;
use super::*;
use crate::crypto::PeerId;
use crate::peer::tab::{FetchOptions, LinkStatus, Outcome, TabConfig};

/// Bridges (federated in a star around the first) and tabs joining one
/// after another, spread over the bridges.
pub(super) fn network(
    seed: u64,
    bridges: usize,
    tabs: usize,
    config: impl Fn(&mut TabConfig),
) -> Net {
    let mut net = Net::new(seed, NetConfig::default());
    for i in 0..bridges {
        let b = SimBridge::new(&mut net.rng, i);
        net.nodes.push(Node::Bridge(Box::new(b)));
    }
    let first_url = net.bridge(0).map(|b| b.url.clone()).unwrap_or_default();
    let first_fingerprint = net.bridge(0).map(|b| b.fingerprint).unwrap_or_default();
    for i in 1..bridges {
        // Each operator trusts the first bridge's; the others find each
        // other through its vouches.
        bridge::trust_each_other(&mut net, 0, i);
        bridge::federate_with(&mut net, i, &first_url, first_fingerprint);
    }
    net.run_until(net.now + 2_000);
    for j in 0..tabs {
        let now = net.now;
        let t = SimTab::new(&mut net.rng, &config, now);
        net.nodes.push(Node::Tab(Box::new(t)));
        let id = net.nodes.len() - 1;
        connect_to_bridge(&mut net, id, j % bridges.max(1));
        net.run_until(net.now + 50);
    }
    net
}

pub(super) fn tabs(net: &Net) -> Vec<NodeId> {
    (0..net.nodes.len())
        .filter(|n| net.tab(*n).is_some_and(|t| t.alive))
        .collect()
}

pub(super) fn open_links(net: &Net, n: NodeId) -> usize {
    net.tab(n).map_or(0, |t| {
        t.peer
            .links()
            .iter()
            .filter(|(_, s)| *s == LinkStatus::Open)
            .count()
    })
}

/// Tab `origin` builds a circuit through `hops` other tabs; the outcome,
/// once it came within `limit` ms.
pub(super) fn build_tab_circuit(
    net: &mut Net,
    origin: NodeId,
    hops: usize,
    limit: u64,
) -> Option<Outcome> {
    let now = net.now;
    let op = net
        .tab_mut(origin)
        .map(|t| t.peer.build_tab_circuit(hops, now))
        .unwrap_or(0);
    wait(net, origin, op, limit)
}

/// Runs until operation `op` of tab `n` is done; its outcome.
pub(super) fn wait(net: &mut Net, n: NodeId, op: u64, limit: u64) -> Option<Outcome> {
    net.run_while(limit, |net| {
        net.tab(n).is_some_and(|t| t.results.contains_key(&op))
    });
    net.tab_mut(n).and_then(|t| t.results.remove(&op))
}

#[test]
fn a_small_network_links_builds_circuits_through_tabs_and_looks_up() {
    let mut net = network(7, 2, 8, |_| {});
    let all = tabs(&net);
    assert!(
        net.run_while(30_000, |net| all.iter().all(|n| open_links(net, *n) == 7)),
        "every tab linked to every other: {:?}",
        all.iter().map(|n| open_links(&net, *n)).collect::<Vec<_>>()
    );
    let origin = all[0];
    let Some(Outcome::TabCircuit(Ok(circuit))) = build_tab_circuit(&mut net, origin, 3, 10_000)
    else {
        panic!("no circuit through three tabs");
    };
    assert_eq!(circuit.hops.len(), 3);
    let now = net.now;
    let op = net
        .tab_mut(origin)
        .map(|t| t.peer.tab_circuit_get(circuit.id, "/peersm/info", now))
        .unwrap_or(0);
    let Some(Outcome::DirGot(Ok((200, body)))) = wait(&mut net, origin, op, 10_000) else {
        panic!("no answer from the last hop's directory");
    };
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("peersm tab {}\n", circuit.hops[2].to_hex())
    );
    let target = net
        .tab(all[5])
        .map(|t| t.peer.id())
        .unwrap_or(PeerId([0; 20]));
    let now = net.now;
    let op = net
        .tab_mut(origin)
        .map(|t| t.peer.find_node(target, now))
        .unwrap_or(0);
    let Some(Outcome::Found(Ok(found))) = wait(&mut net, origin, op, 20_000) else {
        panic!("the lookup did not finish");
    };
    assert_eq!(found.closest.first(), Some(&target));
}

/// A tab that must never link to some peers (`never_link`) links to the
/// others the bridge names. The bridge lists the registered tabs closest
/// to the joiner; before the fix the joiner took its `join_links` closest
/// first and dropped the excluded ones after, so when those were all
/// excluded it offered to nobody, never lost a link, and stayed alone
/// (an e2e test saw a tab with no link after 45 s).
#[test]
fn a_joiner_that_excludes_its_closest_peers_links_to_the_next_ones() {
    let mut net = network(11, 1, 8, |c| c.join_links = 3);
    net.run_until(net.now + 10_000);
    let now = net.now;
    // The joiner's ID comes from the first key its generator makes.
    let joiner_id = SimTab::new(&mut net.rng.clone(), |_| {}, now).peer.id();
    let mut others: Vec<PeerId> = tabs(&net)
        .iter()
        .filter_map(|n| net.tab(*n).map(|t| t.peer.id()))
        .collect();
    others.sort_by_key(|id| crate::dht::Distance::between(id, &joiner_id));
    let farthest = others.pop().expect("tabs");
    let joiner = SimTab::new(
        &mut net.rng,
        |c| {
            c.join_links = 3;
            c.never_link = others.clone();
        },
        now,
    );
    assert_eq!(joiner.peer.id(), joiner_id);
    net.nodes.push(Node::Tab(Box::new(joiner)));
    let n = net.nodes.len() - 1;
    connect_to_bridge(&mut net, n, 0);
    assert!(
        net.run_while(10_000, |net| open_links(net, n) >= 1),
        "the joiner linked to nobody"
    );
    let linked: Vec<PeerId> = net
        .tab(n)
        .unwrap()
        .peer
        .links()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(linked, vec![farthest], "only the one peer it may link to");
}

/// Picks `n` distinct live tabs other than `not`.
pub(super) fn pick(net: &mut Net, n: usize, not: &[NodeId]) -> Vec<NodeId> {
    let mut pool: Vec<NodeId> = tabs(net).into_iter().filter(|t| !not.contains(t)).collect();
    let mut out = Vec::new();
    while out.len() < n && !pool.is_empty() {
        let i = net.rng.below(pool.len());
        out.push(pool.swap_remove(i));
    }
    out
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Starts a download through `hops` tabs from every tab in `from`.
fn start_transfers(net: &mut Net, from: &[NodeId], bytes: u64) -> Vec<(NodeId, u64)> {
    let url = format!("http://directory/peersm/bytes?n={bytes}");
    let now = net.now;
    from.iter()
        .filter_map(|n| {
            let options = FetchOptions {
                through_tabs: Some(3),
                max_attempts: Some(8),
                ..Default::default()
            };
            let op = net.tab_mut(*n)?.peer.fetch(&url, options, now);
            Some((*n, op))
        })
        .collect()
}

fn transfers_done(net: &Net, ops: &[(NodeId, u64)]) -> bool {
    ops.iter()
        .all(|(n, op)| net.tab(*n).is_some_and(|t| t.results.contains_key(op)))
}

/// Checks finished downloads: complete and every byte right; returns the
/// attempts each took.
fn check_transfers(net: &Net, ops: &[(NodeId, u64)], bytes: u64) -> Vec<u32> {
    ops.iter()
        .map(|(n, op)| {
            let t = net.tab(*n).unwrap();
            match t.results.get(op) {
                Some(Outcome::Fetched(Ok(f))) => {
                    let s = &t.stored[op];
                    assert_eq!((f.status, f.size, s.bytes), (200, bytes, bytes), "tab {n}");
                    assert!(s.intact, "tab {n}: bytes differ from the pattern");
                    f.attempts
                }
                other => panic!("tab {n}: {other:?}"),
            }
        })
        .collect()
}

/// The whole network: 200 tabs and 3 bridges join; routing tables fill;
/// lookups through tabs find their targets; downloads through circuits
/// of 3 tabs complete; 30 % of the tabs leave mid-transfer and the
/// downloads resume on circuits around them; a slow reader keeps every
/// queue bounded.
#[test]
fn two_hundred_tabs_and_three_bridges() {
    const TABS: usize = 200;
    let started = std::time::Instant::now();
    let mut net = network(0x9ee75, 3, TABS, |c| c.refresh_ms = 15_000);
    let joined_at = net.now;
    // Routing tables fill: joining links, then bucket refreshes.
    net.run_until(net.now + 60_000);
    let all = tabs(&net);
    let links: Vec<usize> = all.iter().map(|n| open_links(&net, *n)).collect();
    let table: Vec<usize> = all
        .iter()
        .map(|n| net.tab(*n).map_or(0, |t| t.peer.routing_table().len()))
        .collect();
    let mean_table = table.iter().sum::<usize>() as f64 / table.len() as f64;
    println!(
        "join: {TABS} tabs on 3 federated bridges; after 60 s: links per tab min {} mean {:.1} max {}; routing table mean {mean_table:.1}",
        links.iter().min().unwrap(),
        links.iter().sum::<usize>() as f64 / links.len() as f64,
        links.iter().max().unwrap(),
    );
    assert!(
        links.iter().all(|l| *l >= 4),
        "every tab has links: {links:?}"
    );
    assert!(mean_table >= 10.0, "routing tables fill: mean {mean_table}");
    for b in 0..3 {
        let (registered, _, federation) = net.bridge(b).unwrap().peer.mesh_status();
        assert!(registered >= TABS / 3 - 1, "bridge {b}: {registered} tabs");
        assert_eq!(federation.len(), 2, "bridge {b} federated with both others");
    }

    // Lookups through tabs for tabs' IDs: the target is the closest found.
    let (mut hits, mut rounds, mut queries, mut times) = (0, Vec::new(), Vec::new(), Vec::new());
    const LOOKUPS: usize = 40;
    for _ in 0..LOOKUPS {
        let pair = pick(&mut net, 2, &[]);
        let (from, to) = (pair[0], pair[1]);
        let target = net.tab(to).unwrap().peer.id();
        let now = net.now;
        let op = net.tab_mut(from).unwrap().peer.find_node(target, now);
        let begun = net.now;
        match wait(&mut net, from, op, 60_000) {
            Some(Outcome::Found(Ok(found))) => {
                hits += usize::from(found.closest.first() == Some(&target));
                rounds.push(u64::from(found.rounds));
                queries.push(found.queries as u64);
                times.push(net.now - begun);
            }
            other => panic!("lookup: {other:?}"),
        }
    }
    println!(
        "lookups: {hits}/{LOOKUPS} found their target first; rounds median {} max {}; queries median {}; virtual time median {} ms",
        median(rounds.clone()),
        rounds.iter().max().unwrap(),
        median(queries),
        median(times)
    );
    assert!(
        hits >= LOOKUPS * 9 / 10,
        "{hits}/{LOOKUPS} lookups found their target"
    );

    // Circuits through three tabs: build time, then downloads.
    let mut build_ms = Vec::new();
    for n in pick(&mut net, 20, &[]) {
        let now = net.now;
        match build_tab_circuit(&mut net, n, 3, 30_000) {
            Some(Outcome::TabCircuit(Ok(c))) => {
                assert_eq!(c.hops.len(), 3);
                build_ms.push(net.now - now);
                net.tab_mut(n).unwrap().peer.close_tab_circuit(c.id);
            }
            other => panic!("circuit through tabs: {other:?}"),
        }
    }
    println!(
        "circuits through 3 tabs: build time median {} ms, max {} ms (virtual; {} ms one-way latency)",
        median(build_ms.clone()),
        build_ms.iter().max().unwrap(),
        net.config.latency_ms
    );
    const BYTES: u64 = 1_000_000;
    let origins = pick(&mut net, 20, &[]);
    let ops = start_transfers(&mut net, &origins, BYTES);
    let begun = net.now;
    assert!(
        net.run_while(120_000, |net| transfers_done(net, &ops)),
        "downloads finish"
    );
    let attempts = check_transfers(&net, &ops, BYTES);
    println!(
        "downloads: 20 × {BYTES} bytes through 3 tabs in {} ms virtual; attempts {:?}",
        net.now - begun,
        attempts.iter().max()
    );

    // 30 % of the tabs leave mid-transfer: downloads resume elsewhere.
    let origins = pick(&mut net, 20, &[]);
    let ops = start_transfers(&mut net, &origins, 4 * BYTES);
    net.run_until(net.now + 1_500);
    let leaving = pick(&mut net, TABS * 3 / 10, &origins);
    for n in &leaving {
        net.kill(*n);
    }
    assert!(
        net.run_while(300_000, |net| transfers_done(net, &ops)),
        "downloads finish after the departures"
    );
    let attempts = check_transfers(&net, &ops, 4 * BYTES);
    let resumed = attempts.iter().filter(|a| **a > 1).count();
    println!(
        "churn: {} of {TABS} tabs left mid-transfer; 20 downloads of {} bytes complete, {resumed} resumed on a new circuit (attempts max {})",
        leaving.len(),
        4 * BYTES,
        attempts.iter().max().unwrap()
    );
    assert!(resumed > 0, "some downloads lost a hop and resumed");

    // A slow reader: its store holds every chunk; nothing grows.
    let before = net.stats.clone();
    let reader = pick(&mut net, 1, &[])[0];
    net.tab_mut(reader).unwrap().slow_store = true;
    let ops = start_transfers(&mut net, &[reader], 8 * BYTES);
    net.stats.max_stream_bytes = 0;
    net.stats.max_link_backlog = 0;
    net.run_until(net.now + 20_000);
    let stuck = net
        .tab(reader)
        .unwrap()
        .stored
        .get(&ops[0].1)
        .map_or(0, |s| s.bytes);
    let held = net.stats.clone();
    println!(
        "slow reader: after 20 s it took {stuck} bytes; the most queued meanwhile: {} stream bytes in a peer, {} bytes on a link",
        held.max_stream_bytes, held.max_link_backlog
    );
    assert!(stuck < 8 * BYTES, "the reader holds the download back");
    // One stream window (500 cells of 498 bytes) at most in any peer.
    assert!(
        held.max_stream_bytes <= 500 * 498,
        "stream queues stay bounded: {}",
        held.max_stream_bytes
    );
    assert!(
        held.max_link_backlog < 1_000_000,
        "link queues stay bounded: {}",
        held.max_link_backlog
    );
    // The reader catches up: the download completes.
    let t = net.tab_mut(reader).unwrap();
    t.slow_store = false;
    let now = net.now;
    net.tab_mut(reader).unwrap().release_store(now);
    assert!(net.run_while(120_000, |net| transfers_done(net, &ops)));
    check_transfers(&net, &ops, 8 * BYTES);
    println!(
        "whole run: {} s virtual since the joins, {} frames, {} MB on wires, most bytes in flight {}; queued at most (before the slow reader) {} stream bytes in a peer, {} bytes on a link; {:.1} s real",
        (net.now - joined_at) / 1000,
        net.stats.frames,
        net.stats.bytes / 1_000_000,
        net.stats.max_in_flight_bytes,
        before.max_stream_bytes,
        before.max_link_backlog,
        started.elapsed().as_secs_f64()
    );
}

/// A circuit through six tabs: each extend needs a RELAY_EARLY cell, and
/// the FIND_NODE questions between them must not use those up.
#[test]
fn a_circuit_through_six_tabs_is_built() {
    let mut net = network(25, 1, 8, |_| {});
    let all = tabs(&net);
    assert!(net.run_while(30_000, |net| all.iter().all(|n| open_links(net, *n) == 7)));
    match build_tab_circuit(&mut net, all[0], 6, 20_000) {
        Some(Outcome::TabCircuit(Ok(c))) => assert_eq!(c.hops.len(), 6),
        other => panic!("circuit through six tabs: {other:?}"),
    }
}
