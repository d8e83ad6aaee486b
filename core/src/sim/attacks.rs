//! Attacks on the simulated network (docs/SECURITY.md): each scenario
//! plays an attacker against real peers and checks the attack fails.

use super::tab::connect_to_bridge;
use super::tests::{build_tab_circuit, network, open_links, tabs};
use super::*;
use crate::peer::tab::LinkStatus;

/// Adds a tab to the network, set up by `attack`, and lets it join.
fn join_with(net: &mut Net, bridge: NodeId, attack: impl FnOnce(&mut SimTab)) -> NodeId {
    let now = net.now;
    let mut t = SimTab::new(&mut net.rng, |_| {}, now);
    attack(&mut t);
    net.nodes.push(Node::Tab(Box::new(t)));
    let id = net.nodes.len() - 1;
    connect_to_bridge(net, id, bridge);
    id
}

fn links_of(net: &Net, n: NodeId) -> Vec<LinkStatus> {
    net.tab(n)
        .map(|t| t.peer.links().into_iter().map(|(_, s)| s).collect())
        .unwrap_or_default()
}

/// An introducer adds a second `a=fingerprint` line to a tab's SDPs (the
/// browser enforces the media section's, a parser taking the first line
/// would bind the link to the attacker's). Every link of that tab is
/// refused; the honest tabs still link to each other.
#[test]
fn an_sdp_with_two_fingerprints_is_refused() {
    let mut net = network(21, 1, 3, |_| {});
    let honest = tabs(&net);
    let victim = join_with(&mut net, 0, |t| t.sdps_carry_two_fingerprints = true);
    net.run_until(net.now + 20_000);
    for n in &honest {
        assert_eq!(open_links(&net, *n), 2, "honest tabs link to each other");
    }
    assert_eq!(open_links(&net, victim), 0, "{:?}", links_of(&net, victim));
}

/// Someone terminates DTLS between two tabs with a certificate of their
/// own (the SDPs untouched): the certificate the browser negotiated is not
/// the one the SDP named, and the link never opens.
#[test]
fn a_link_whose_dtls_certificate_is_not_the_introduced_one_never_opens() {
    let mut net = network(22, 1, 3, |_| {});
    let honest = tabs(&net);
    let victim = join_with(&mut net, 0, |t| t.dtls_intercepted = true);
    net.run_until(net.now + 20_000);
    for n in &honest {
        assert_eq!(open_links(&net, *n), 2, "honest tabs link to each other");
    }
    assert_eq!(open_links(&net, victim), 0, "{:?}", links_of(&net, victim));
}

/// Circuits through three tabs are closed, from the origin (DESTROY
/// travels forward through every tab relay) and by a middle tab leaving
/// (DESTROY travels both ways from the break): afterwards no tab keeps
/// any of them. Before the peer core, a tab relay dropped its forward
/// entry before the DESTROY went out, and the hops behind it kept the
/// circuit until the link closed.
#[test]
fn after_a_destroy_no_hop_keeps_the_circuit() {
    let mut net = network(23, 1, 6, |_| {});
    let all = tabs(&net);
    assert!(net.run_while(30_000, |net| all.iter().all(|n| open_links(net, *n) == 5)));
    let relayed = |net: &Net| -> usize {
        all.iter()
            .filter_map(|n| net.tab(*n))
            .filter(|t| t.alive)
            .map(|t| t.peer.relayed_circuits())
            .sum()
    };
    let origin = all[0];
    let mut built = Vec::new();
    for _ in 0..4 {
        match build_tab_circuit(&mut net, origin, 3, 10_000) {
            Some(crate::peer::tab::Outcome::TabCircuit(Ok(c))) => built.push(c),
            other => panic!("circuit through three tabs: {other:?}"),
        }
    }
    assert_eq!(relayed(&net), 4 * 3, "each circuit has three relaying hops");

    // The origin closes two: their hops drop them, the others stay.
    for c in &built[..2] {
        net.tab_mut(origin).unwrap().peer.close_tab_circuit(c.id);
    }
    net.run_until(net.now + 2_000);
    assert_eq!(
        relayed(&net),
        2 * 3,
        "closed circuits are gone at every hop"
    );

    // The middle hop of a third one leaves: the hops on both sides of it
    // drop that circuit.
    let middle = built[2].hops[1];
    let leaving = *all
        .iter()
        .find(|n| net.tab(**n).is_some_and(|t| t.peer.id() == middle))
        .unwrap();
    let through_leaving =
        |net: &Net| -> usize { net.tab(leaving).map_or(0, |t| t.peer.relayed_circuits()) };
    let expected = relayed(&net) - through_leaving(&net) * 3;
    net.kill(leaving);
    net.run_until(net.now + 2_000);
    assert_eq!(
        relayed(&net),
        expected,
        "no hop keeps a circuit through the tab that left"
    );
}

/// A first hop chooses who comes next when the origin takes any peer its
/// FOUND_NODE answer names: a malicious hop would name its own Sybils. In
/// a sparse network (each tab links to few others) the origin builds
/// circuits through three tabs: every hop after the first must be a peer
/// in the origin's own routing table (proved on its own link), whatever
/// the hops it went through offered.
#[test]
fn later_hops_of_a_tab_circuit_are_peers_the_origin_knows() {
    let mut net = network(24, 1, 24, |c| {
        c.join_links = 4;
        c.refresh_ms = 3_600_000;
    });
    net.run_until(net.now + 20_000);
    let all = tabs(&net);
    let mut built = 0;
    for origin in all.iter().copied().take(6) {
        for _ in 0..3 {
            let outcome = build_tab_circuit(&mut net, origin, 3, 20_000);
            let Some(crate::peer::tab::Outcome::TabCircuit(Ok(c))) = outcome else {
                continue;
            };
            built += 1;
            let t = net.tab(origin).unwrap();
            for hop in &c.hops[1..] {
                assert!(
                    t.peer.routing_table().contains(hop),
                    "hop {hop} of a circuit from tab {origin} is a peer it never linked to"
                );
            }
            net.tab_mut(origin).unwrap().peer.close_tab_circuit(c.id);
        }
    }
    let links: Vec<usize> = all.iter().map(|n| open_links(&net, *n)).collect();
    assert!(
        built >= 9,
        "circuits built: {built} of 18 (links per tab {links:?})"
    );
}

/// A linked tab hangs (or plays dead): its links stay up and it sends
/// nothing. The others close their links to it once it has been silent
/// for `LINK_SILENT_MS`, while their links to each other, idle but kept
/// alive by PADDING cells, stay open through ten quiet minutes. Before
/// the fix a silent peer kept its link, a slot and a routing-table entry
/// for ever.
#[test]
fn a_silent_linked_tab_is_dropped_and_live_idle_links_stay() {
    use crate::peer::tab::{KEEPALIVE_MS, LINK_SILENT_MS};
    let mut net = network(23, 1, 4, |_| {});
    net.run_until(net.now + 20_000);
    let all = tabs(&net);
    for n in &all {
        assert_eq!(open_links(&net, *n), 3, "{:?}", links_of(&net, *n));
    }
    let (hung, honest) = all.split_last().unwrap();
    let hung_id = net.tab(*hung).unwrap().peer.id();
    net.tab_mut(*hung).unwrap().alive = false;
    let open_to_hung = |net: &Net, n: NodeId| {
        net.tab(n)
            .unwrap()
            .peer
            .links()
            .iter()
            .any(|(p, s)| *p == hung_id && *s == LinkStatus::Open)
    };
    net.run_until(net.now + LINK_SILENT_MS - KEEPALIVE_MS);
    assert!(
        honest.iter().all(|n| open_to_hung(&net, *n)),
        "not dropped before its time"
    );
    net.run_until(net.now + 2 * KEEPALIVE_MS);
    for n in honest {
        assert!(!open_to_hung(&net, *n), "the silent tab's link is closed");
        let table = &net.tab(*n).unwrap().peer;
        assert!(
            !table.routing_table().contains(&hung_id),
            "and out of the table"
        );
    }
    net.run_until(net.now + 10 * 60_000);
    for n in honest {
        assert_eq!(open_links(&net, *n), 2, "{:?}", links_of(&net, *n));
    }
}
