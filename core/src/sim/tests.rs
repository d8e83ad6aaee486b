//! Scenarios on the simulated network. Figures are printed (run with
//! `cargo test -p peersm-core sim -- --nocapture` to see them).

use super::tab::connect_to_bridge;
use super::*;
use crate::crypto::PeerId;
use crate::dht::{Distance, K};
use crate::peer::tab::{FetchOptions, LinkStatus, Outcome, TabConfig};

/// Bridges (federated in a star around the first) and tabs joining one
/// after another, spread over the bridges.
fn network(seed: u64, bridges: usize, tabs: usize, config: impl Fn(&mut TabConfig)) -> Net {
    let mut net = Net::new(seed, NetConfig::default());
    for i in 0..bridges {
        let b = SimBridge::new(&mut net.rng, i);
        net.nodes.push(Node::Bridge(Box::new(b)));
    }
    let first_url = net.bridge(0).map(|b| b.url.clone()).unwrap_or_default();
    for i in 1..bridges {
        bridge::federate_with(&mut net, i, &first_url);
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

fn tabs(net: &Net) -> Vec<NodeId> {
    (0..net.nodes.len())
        .filter(|n| net.tab(*n).is_some_and(|t| t.alive))
        .collect()
}

fn open_links(net: &Net, n: NodeId) -> usize {
    net.tab(n).map_or(0, |t| {
        t.peer
            .links()
            .iter()
            .filter(|(_, s)| *s == LinkStatus::Open)
            .count()
    })
}

/// Runs until operation `op` of tab `n` is done; its outcome.
fn wait(net: &mut Net, n: NodeId, op: u64, limit: u64) -> Option<Outcome> {
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
    let now = net.now;
    let op = net
        .tab_mut(origin)
        .map(|t| t.peer.build_tab_circuit(3, now))
        .unwrap_or(0);
    let Some(Outcome::TabCircuit(Ok(circuit))) = wait(&mut net, origin, op, 10_000) else {
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
