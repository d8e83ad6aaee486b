//! Attacks on the simulated network (docs/SECURITY.md): each scenario
//! plays an attacker against real peers and checks the attack fails.

use super::tab::connect_to_bridge;
use super::tests::{network, open_links, tabs};
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
