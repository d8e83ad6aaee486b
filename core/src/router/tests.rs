//! The router against a client in memory: circuits through three routers,
//! and each teardown and abuse rule (tor-spec §5, C tor's behaviour where
//! the spec is silent).

use super::*;
use crate::cell::{destroy_reason, end_reason, LinkSpec};
use crate::client::{ClientMux, MuxEvent};
use crate::rng::SimRng;

/// The circuit a BEGIN arrived on, among router events.
fn begun(events: &[(usize, RouterEvent<usize>)]) -> CircuitKey<usize> {
    events
        .iter()
        .find_map(|(_, e)| match e {
            RouterEvent::StreamBegin { circuit, .. } => Some(*circuit),
            _ => None,
        })
        .expect("a BEGIN reached a router")
}

/// A client (node 0) and routers 1..=n, linked in a chain: link ids are
/// the index of the node at the other end.
struct Chain {
    client: ClientMux,
    routers: Vec<Router<usize>>,
    keys: Vec<NtorRelayKey>,
    /// Cells that went to the client, and the mux events.
    client_events: Vec<MuxEvent>,
    /// Every cell each node received: (to, from, cell).
    log: Vec<(usize, usize, RawCell)>,
}

fn id_of(node: usize) -> [u8; 20] {
    [node as u8; 20]
}

impl Chain {
    fn new(n: usize, config: impl Fn(RouterConfig) -> RouterConfig) -> Chain {
        let mut rng = SimRng::new(5);
        let keys: Vec<NtorRelayKey> = (0..=n)
            .map(|i| NtorRelayKey::new(id_of(i), [i as u8 + 40; 32]))
            .collect();
        let mut routers: Vec<Router<usize>> = (0..=n)
            .map(|i| {
                let c = config(RouterConfig::new(vec![keys[i].clone()]));
                Router::new(c, &mut rng).unwrap()
            })
            .collect();
        for i in 1..=n {
            // Node i-1 opened the link to node i.
            routers[i].add_link(
                i - 1,
                LinkSide::Responder,
                LinkPeer {
                    id: Some(id_of(i - 1)),
                    ed25519_id: None,
                },
            );
            if i >= 2 {
                routers[i - 1].add_link(
                    i,
                    LinkSide::Initiator,
                    LinkPeer {
                        id: Some(id_of(i)),
                        ed25519_id: None,
                    },
                );
            }
        }
        Chain {
            client: ClientMux::new(LinkSide::Initiator, &mut rng).unwrap(),
            routers,
            keys,
            client_events: Vec::new(),
            log: Vec::new(),
        }
    }

    /// Moves cells until nothing moves; returns router events by node.
    fn run(&mut self) -> Vec<(usize, RouterEvent<usize>)> {
        let mut events = Vec::new();
        loop {
            let mut moved = false;
            for cell in self.client.poll_cells() {
                moved = true;
                self.deliver(1, 0, cell);
            }
            for i in 1..self.routers.len() {
                while let Some((to, cells)) = self.routers[i].poll_transmit() {
                    for cell in cells {
                        moved = true;
                        self.deliver(to, i, cell);
                    }
                }
                while let Some(e) = self.routers[i].poll_event() {
                    moved = true;
                    events.push((i, e));
                }
            }
            while let Some(e) = self.client.poll_event() {
                moved = true;
                self.client_events.push(e);
            }
            if !moved {
                return events;
            }
        }
    }

    fn deliver(&mut self, to: usize, from: usize, cell: RawCell) {
        self.log.push((to, from, cell.clone()));
        if to == 0 {
            self.client.handle_cell(cell);
        } else if let Some(not_mine) = self.routers[to].handle_cell(from, cell) {
            panic!("router {to} did not take {not_mine:?}");
        }
    }

    fn spec(&self, i: usize) -> Vec<LinkSpec> {
        vec![LinkSpec::LegacyId(id_of(i))]
    }

    /// A circuit through routers 1..=hops.
    fn circuit(&mut self, hops: usize) -> u32 {
        let k = self.keys[1].clone();
        let circ = self.client.create_ntor(k.id, k.public).unwrap();
        self.run();
        for i in 2..=hops {
            let k = self.keys[i].clone();
            self.client
                .extend(circ, self.spec(i), k.id, k.public)
                .unwrap();
            self.run();
        }
        assert_eq!(self.client.hops(circ), hops);
        circ
    }

    /// A BEGIN_DIR stream on `circ` to its last router, connected there;
    /// its id and the circuit as the exit knows it.
    fn connected_stream(&mut self, circ: u32) -> (u16, CircuitKey<usize>) {
        let stream = self.client.begin(circ, StreamTarget::Directory).unwrap();
        let at_exit = begun(&self.run());
        let exit = self.routers.len() - 1;
        self.routers[exit]
            .stream_connected(at_exit, stream, None)
            .unwrap();
        self.run();
        (stream, at_exit)
    }

    /// The circuit id of the first (or last) cell `to` got from `from`.
    fn circ_seen(&self, to: usize, from: usize, last: bool) -> u32 {
        let mut seen = self.log.iter().filter(|(t, f, _)| *t == to && *f == from);
        let cell = if last { seen.next_back() } else { seen.next() };
        cell.map(|(_, _, c)| c.circ_id).unwrap()
    }

    /// DESTROY cells node `to` received from `from`, as reasons.
    fn destroys(&self, to: usize, from: usize) -> Vec<u8> {
        self.log
            .iter()
            .filter(|(t, f, c)| *t == to && *f == from && c.command == command::DESTROY)
            .map(|(_, _, c)| c.body[0])
            .collect()
    }
}

#[test]
fn three_routers_carry_a_stream_both_ways_under_flow_control() {
    let mut net = Chain::new(3, |c| c);
    let circ = net.circuit(3);
    let stream = net.client.begin(circ, StreamTarget::Directory).unwrap();
    let events = net.run();
    let at_exit = events
        .iter()
        .find_map(|(i, e)| match e {
            RouterEvent::StreamBegin {
                circuit,
                stream: s,
                target,
            } if *i == 3 => {
                assert_eq!((*s, target), (stream, &StreamTarget::Directory));
                Some(*circuit)
            }
            _ => None,
        })
        .expect("the exit got BEGIN_DIR");
    net.routers[3]
        .stream_connected(at_exit, stream, None)
        .unwrap();
    net.run();
    // 2 MiB each way: several windows, so SENDMEs must flow both ways.
    let payload: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (mut sent_up, mut sent_down) = (0, 0);
    let (mut got_up, mut got_down) = (Vec::new(), Vec::new());
    while got_up.len() < payload.len() || got_down.len() < payload.len() {
        if sent_up < payload.len() {
            sent_up += net.client.write(circ, stream, &payload[sent_up..]).unwrap();
        }
        if sent_down < payload.len() {
            sent_down += net.routers[3]
                .write(at_exit, stream, &payload[sent_down..])
                .unwrap();
        }
        net.run();
        got_up.extend(net.routers[3].read(at_exit, stream, usize::MAX).unwrap());
        got_down.extend(net.client.read(circ, stream, usize::MAX).unwrap());
        // Windows bound what the middle ever holds.
        assert!(net.routers[2].queued_cells() < 2200);
    }
    assert!(got_up == payload && got_down == payload);
}

#[test]
fn a_create_in_the_wrong_half_or_beyond_the_limit_is_refused() {
    let mut net = Chain::new(1, |mut c| {
        c.max_circuits_per_link = 2;
        c
    });
    // The client opened the link: its ids must have the high bit set.
    let wrong = crate::cell::create::create_fast_cell(0x0000_0042, &[1; 20]);
    net.deliver(1, 0, wrong);
    net.run();
    assert_eq!(net.destroys(0, 1), [destroy_reason::PROTOCOL]);
    let a = net.circuit(1);
    let _b = net.circuit(1);
    let c = net.client.create_fast().unwrap();
    net.run();
    assert_eq!(
        net.destroys(0, 1),
        [destroy_reason::PROTOCOL, destroy_reason::RESOURCELIMIT]
    );
    assert!(!net.client.is_alive(c) && net.client.is_alive(a));
}

#[test]
fn destroy_travels_both_ways_as_destroyed() {
    // The client closes: the middle and exit hear DESTROYED.
    let mut net = Chain::new(3, |c| c);
    let circ = net.circuit(3);
    net.client.destroy(circ);
    net.run();
    assert_eq!(net.destroys(1, 0), [destroy_reason::FINISHED]);
    assert_eq!(net.destroys(2, 1), [destroy_reason::DESTROYED]);
    assert_eq!(net.destroys(3, 2), [destroy_reason::DESTROYED]);
    assert!(net.routers.iter().all(|r| r.circuit_count() == 0));

    // The exit closes: the client hears DESTROYED, not the exit's reason.
    let mut net = Chain::new(3, |c| c);
    let circ = net.circuit(3);
    let key = CircuitKey {
        link: 2,
        circ: net.circ_seen(3, 2, true),
    };
    net.routers[3].destroy(key, destroy_reason::INTERNAL);
    net.run();
    assert_eq!(net.destroys(2, 3), [destroy_reason::INTERNAL]);
    assert_eq!(net.destroys(0, 1), [destroy_reason::DESTROYED]);
    assert!(!net.client.is_alive(circ));
    assert!(net.routers.iter().all(|r| r.circuit_count() == 0));
}

#[test]
fn a_lost_link_closes_its_circuits_with_channel_closed() {
    let mut net = Chain::new(3, |c| c);
    let circ = net.circuit(3);
    // The middle loses its link to the exit.
    net.routers[2].remove_link(3);
    net.run();
    assert_eq!(net.destroys(1, 2), [destroy_reason::CHANNEL_CLOSED]);
    assert_eq!(net.destroys(0, 1), [destroy_reason::DESTROYED]);
    assert!(!net.client.is_alive(circ));
    // And losing the client side tells the next hop CHANNEL_CLOSED.
    let mut net = Chain::new(3, |c| c);
    net.circuit(3);
    net.routers[1].remove_link(0);
    net.run();
    assert_eq!(net.destroys(2, 1), [destroy_reason::CHANNEL_CLOSED]);
    assert_eq!(net.destroys(3, 2), [destroy_reason::DESTROYED]);
}

#[test]
fn relay_early_toward_the_client_closes_the_circuit() {
    let mut net = Chain::new(2, |c| c);
    let circ = net.circuit(2);
    let back = net.circ_seen(2, 1, true);
    // Router 2 (the last hop) "sends" RELAY_EARLY back to router 1.
    net.deliver(1, 2, RawCell::new(back, command::RELAY_EARLY, vec![0; 509]));
    net.run();
    assert_eq!(net.destroys(2, 1), [destroy_reason::PROTOCOL]);
    assert_eq!(net.destroys(0, 1), [destroy_reason::PROTOCOL]);
    assert!(!net.client.is_alive(circ));
}

#[test]
fn extending_back_to_the_previous_hop_is_refused() {
    let mut net = Chain::new(2, |c| c);
    let circ = net.circuit(2);
    let k = net.keys[1].clone();
    // Router 2 is asked to extend back to router 1, where it came from.
    net.client
        .extend(circ, net.spec(1), k.id, k.public)
        .unwrap();
    net.run();
    assert_eq!(net.destroys(1, 2), [destroy_reason::PROTOCOL]);
    assert!(!net.client.is_alive(circ));
}

#[test]
fn extends_to_an_unlinked_relay_ask_once_and_fail_together() {
    let mut net = Chain::new(1, |c| c);
    let a = net.circuit(1);
    let b = net.circuit(1);
    let far = NtorRelayKey::new([9; 20], [9; 32]);
    let specs = vec![
        LinkSpec::Addr("127.0.0.9:9001".parse().unwrap()),
        LinkSpec::LegacyId(far.id),
    ];
    net.client
        .extend(a, specs.clone(), far.id, far.public)
        .unwrap();
    net.client.extend(b, specs, far.id, far.public).unwrap();
    let events = net.run();
    let connects: Vec<&ExtendTarget> = events
        .iter()
        .filter_map(|(_, e)| match e {
            RouterEvent::Connect { target } => Some(target),
            _ => None,
        })
        .collect();
    assert_eq!(connects.len(), 1, "one link asked for two extends");
    assert_eq!(connects[0].addresses, ["127.0.0.9:9001".parse().unwrap()]);
    let target = connects[0].clone();
    net.routers[1].connect_failed(&target);
    net.run();
    assert_eq!(
        net.destroys(0, 1),
        [destroy_reason::CONNECTFAILED, destroy_reason::CONNECTFAILED]
    );
    // A tab's router never opens links: the extend fails at once.
    let mut net = Chain::new(1, |mut c| {
        c.can_open_links = false;
        c
    });
    let c = net.circuit(1);
    net.client
        .extend(c, vec![LinkSpec::LegacyId(far.id)], far.id, far.public)
        .unwrap();
    let events = net.run();
    assert!(!events
        .iter()
        .any(|(_, e)| matches!(e, RouterEvent::Connect { .. })));
    assert_eq!(net.destroys(0, 1), [destroy_reason::CONNECTFAILED]);
}

#[test]
fn a_circuit_whose_cells_pile_up_is_destroyed_and_its_queue_freed() {
    let mut net = Chain::new(2, |mut c| {
        c.max_queued_cells_per_circuit = 50;
        c
    });
    let circ = net.circuit(2);
    let (stream, at_exit) = net.connected_stream(circ);
    // The exit sends (in bursts its own limit allows); router 1 relays
    // toward a client link nobody drains.
    for _ in 0..2 {
        net.routers[2]
            .write(at_exit, stream, &[0; 40 * 498])
            .unwrap();
        while let Some((to, cells)) = net.routers[2].poll_transmit() {
            assert_eq!(to, 1);
            for c in cells {
                net.routers[1].handle_cell(2, c);
            }
        }
    }
    // Router 1 holds at most the limit, then destroyed the circuit.
    assert!(
        net.routers[1].queued_cells() <= 2,
        "purged: only DESTROYs left"
    );
    assert_eq!(net.routers[1].circuit_count(), 0);
    let (_, to_client) = net.routers[1].poll_transmit().unwrap();
    assert_eq!(
        to_client.last().map(|c| (c.command, c.body[0])),
        Some((command::DESTROY, destroy_reason::RESOURCELIMIT))
    );
}

#[test]
fn streams_refused_and_ended_reach_the_client() {
    let mut net = Chain::new(1, |c| c);
    let circ = net.circuit(1);
    let s = net
        .client
        .begin(
            circ,
            StreamTarget::Tcp {
                host: "127.0.0.1".into(),
                port: 80,
            },
        )
        .unwrap();
    let events = net.run();
    let key = begun(&events);
    net.routers[1]
        .stream_refused(key, s, end_reason::EXITPOLICY)
        .unwrap();
    net.run();
    assert!(net.client_events.contains(&MuxEvent::StreamEnded {
        circ,
        stream: s,
        reason: end_reason::EXITPOLICY,
        opened: false
    }));
}

#[test]
fn a_cell_no_hop_recognizes_closes_the_circuit_at_the_exit() {
    let mut net = Chain::new(3, |c| c);
    let circ = net.circuit(3);
    let first = net.circ_seen(1, 0, false);
    net.deliver(1, 0, RawCell::new(first, command::RELAY, vec![0xab; 509]));
    net.run();
    assert_eq!(net.destroys(2, 3), [destroy_reason::PROTOCOL]);
    assert_eq!(net.destroys(0, 1), [destroy_reason::DESTROYED]);
    assert!(!net.client.is_alive(circ));
}

#[test]
fn a_forged_cell_toward_the_client_makes_it_destroy() {
    let mut net = Chain::new(2, |c| c);
    let circ = net.circuit(2);
    net.client
        .handle_cell(RawCell::new(circ, command::RELAY, vec![0x55; 509]));
    net.run();
    assert_eq!(net.destroys(1, 0), [destroy_reason::PROTOCOL]);
    assert!(!net.client.is_alive(circ));
    assert!(net.routers.iter().all(|r| r.circuit_count() == 0));
}

#[test]
fn more_than_eight_relay_early_cells_close_the_circuit() {
    let mut net = Chain::new(3, |c| c);
    net.circuit(3);
    let first = net.circ_seen(1, 0, false);
    // The client used two for its EXTEND2s; seven more make nine.
    for _ in 0..7 {
        net.deliver(
            1,
            0,
            RawCell::new(first, command::RELAY_EARLY, vec![0; 509]),
        );
    }
    net.run();
    assert!(net.destroys(0, 1).contains(&destroy_reason::PROTOCOL));
    assert_eq!(net.routers[1].circuit_count(), 0);
}

/// A client acknowledges data it never received: an unauthenticated (v0)
/// circuit SENDME, or a v1 SENDME with a guessed digest, after the exit
/// sent a window's hundred cells that never arrived. Either would let it
/// make the exit send faster than it reads (prop 289); the exit destroys
/// the circuit (FlowCtrl=1: only authenticated SENDMEs).
#[test]
fn blind_circuit_sendmes_destroy_the_circuit() {
    use crate::cell::{relay_command, RelayCell, Sendme};
    for blind in [Sendme::V0, Sendme::V1 { digest: [7; 20] }] {
        let mut net = Chain::new(3, |c| c);
        let circ = net.circuit(3);
        let (stream, at_exit) = net.connected_stream(circ);
        // A hundred DATA cells leave the exit and are lost on the way.
        let hundred_cells = vec![0x42; 100 * 498];
        let written = net.routers[3]
            .write(at_exit, stream, &hundred_cells)
            .unwrap();
        assert_eq!(written, hundred_cells.len());
        let mut lost = 0;
        while let Some((_, cells)) = net.routers[3].poll_transmit() {
            lost += cells.len();
        }
        assert_eq!(lost, 100);
        let sendme = RelayCell::new(relay_command::SENDME, 0, blind.encode());
        net.client.send_any_to_last_hop(circ, sendme).unwrap();
        net.run();
        assert_eq!(net.destroys(2, 3), [destroy_reason::PROTOCOL], "{blind:?}");
        assert_eq!(net.destroys(0, 1), [destroy_reason::DESTROYED], "{blind:?}");
        assert!(net.routers.iter().all(|r| r.circuit_count() == 0));
    }
}

/// An extend names a relay's identity at a wrong address (a tarpit): it
/// is its own target, so an extend to the same identity at the right
/// address is asked for at once rather than queued behind it; the link
/// that proves the identity serves both; a failure of the tarpit target
/// fails only the extends that named it.
#[test]
fn a_wrong_address_for_an_identity_does_not_hold_up_the_right_one() {
    let mut net = Chain::new(1, |c| c);
    let (tarpit, right, third) = (net.circuit(1), net.circuit(1), net.circuit(1));
    let far = NtorRelayKey::new([9; 20], [9; 32]);
    let at = |addr: &str| {
        vec![
            LinkSpec::Addr(addr.parse().unwrap()),
            LinkSpec::LegacyId(far.id),
        ]
    };
    for (circ, addr) in [
        (tarpit, "127.0.0.66:9001"),
        (right, "127.0.0.9:9001"),
        (third, "127.0.0.66:9001"),
    ] {
        net.client
            .extend(circ, at(addr), far.id, far.public)
            .unwrap();
    }
    let connects: Vec<ExtendTarget> = net
        .run()
        .into_iter()
        .filter_map(|(_, e)| match e {
            RouterEvent::Connect { target } => Some(target),
            _ => None,
        })
        .collect();
    assert_eq!(connects.len(), 2, "one connect per (identity, address)");
    // The tarpit fails: only the two extends that named it fail.
    let slow: SocketAddr = "127.0.0.66:9001".parse().unwrap();
    let stuck = connects.iter().find(|t| t.addresses == [slow]).unwrap();
    net.routers[1].connect_failed(stuck);
    net.run();
    assert_eq!(
        net.destroys(0, 1),
        [destroy_reason::CONNECTFAILED, destroy_reason::CONNECTFAILED]
    );
    assert!(net.client.is_alive(right) && !net.client.is_alive(tarpit));
    assert!(!net.client.is_alive(third));
    // The right address links: its extend goes out on that link.
    net.routers[1].add_link(
        2,
        LinkSide::Initiator,
        LinkPeer {
            id: Some(far.id),
            ed25519_id: None,
        },
    );
    let sent = net.routers[1].take_cells(2);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].command, command::CREATE2);
}

/// The middle of a circuit sends END (and a stream SENDME) for a stream
/// the client opened at the exit: the client ignores both (C tor finds a
/// stream by its hop), so a middle cannot cut or unblock streams it does
/// not carry. The stream still carries data.
#[test]
fn stream_cells_from_another_hop_are_ignored() {
    use crate::cell::{relay_command, RelayCell};
    let mut net = Chain::new(3, |c| c);
    let circ = net.circuit(3);
    let (stream, at_exit) = net.connected_stream(circ);
    let at_middle = CircuitKey {
        link: 1,
        circ: net.circ_seen(2, 1, false),
    };
    for cell in [
        RelayCell::new(relay_command::END, stream, vec![end_reason::DONE]),
        RelayCell::new(relay_command::SENDME, stream, Vec::new()),
    ] {
        net.routers[2].originate_any(at_middle, cell).unwrap();
        net.run();
    }
    assert!(
        !net.client_events
            .iter()
            .any(|e| matches!(e, MuxEvent::StreamEnded { .. })),
        "{:?}",
        net.client_events
    );
    assert!(net.client.is_alive(circ));
    net.routers[3]
        .write(at_exit, stream, b"still here")
        .unwrap();
    net.run();
    assert_eq!(net.client.read(circ, stream, 100).unwrap(), b"still here");
}

/// Like C tor, the client sends RELAY_EARLY for every cell past the first
/// hop while it has any of its 8 left, not only for EXTEND2: the first
/// hop sees 8 RELAY_EARLY cells on every circuit, whatever its length.
#[test]
fn the_first_eight_relay_cells_past_the_first_hop_are_relay_early() {
    let mut net = Chain::new(3, |c| c);
    let circ = net.circuit(3);
    let (stream, at_exit) = net.connected_stream(circ);
    for _ in 0..10 {
        net.client.write(circ, stream, &[7; 400]).unwrap();
        net.run();
    }
    let first: Vec<u8> = net
        .log
        .iter()
        .filter(|(to, from, c)| *to == 1 && *from == 0 && c.command != command::CREATE2)
        .map(|(_, _, c)| c.command)
        .collect();
    assert!(first.len() > 8);
    assert!(
        first[..8].iter().all(|c| *c == command::RELAY_EARLY),
        "{first:?}"
    );
    assert!(first[8..].iter().all(|c| *c == command::RELAY), "{first:?}");
    // The exit took them all as the stream's data.
    assert_eq!(
        net.routers[3]
            .read(at_exit, stream, usize::MAX)
            .unwrap()
            .len(),
        4000
    );
}

/// One client link names ten unlinked relays (tarpits, say): eight of its
/// extends wait for links, the rest fail at once with RESOURCELIMIT, so
/// one client cannot fill the node's pending-link budget by itself.
#[test]
fn extends_waiting_for_links_are_bounded_per_link() {
    let mut net = Chain::new(1, |c| c);
    let circuits: Vec<u32> = (0..10).map(|_| net.circuit(1)).collect();
    for (i, circ) in circuits.iter().enumerate() {
        let far = NtorRelayKey::new([100 + i as u8; 20], [9; 32]);
        let specs = vec![
            LinkSpec::Addr(format!("127.0.0.{}:9001", 10 + i).parse().unwrap()),
            LinkSpec::LegacyId(far.id),
        ];
        net.client.extend(*circ, specs, far.id, far.public).unwrap();
    }
    let connects = net
        .run()
        .iter()
        .filter(|(_, e)| matches!(e, RouterEvent::Connect { .. }))
        .count();
    assert_eq!(connects, MAX_WAITING_EXTENDS_PER_LINK);
    assert_eq!(
        net.destroys(0, 1),
        vec![destroy_reason::RESOURCELIMIT; 10 - MAX_WAITING_EXTENDS_PER_LINK]
    );
}

/// The circuit a DB_QUERY arrived on, and the query.
fn queried(events: &[(usize, RouterEvent<usize>)]) -> (CircuitKey<usize>, crate::cell::DbQuery) {
    events
        .iter()
        .find_map(|(_, e)| match e {
            RouterEvent::DbQuery { circuit, query, .. } => Some((*circuit, query.clone())),
            _ => None,
        })
        .expect("a DB_QUERY reached a router")
}

#[test]
fn an_ordb_stream_carries_a_block_with_its_answer_under_flow_control() {
    use crate::cell::ordb::{db_end_reason, DbConnected, DbQuery, WANT_MANIFEST};
    let mut net = Chain::new(2, |c| c);
    let circ = net.circuit(2);
    let query = DbQuery {
        hash_name: [7; 20],
        block: 3,
        offset: 980,
        counter: 0,
        flags: WANT_MANIFEST,
    };
    let stream = net.client.begin_db(circ, &query).unwrap();
    let (at_ordb, got) = queried(&net.run());
    assert_eq!(got, query);
    // An answer longer than a cell (manifest and path), then a block of
    // 300,000 bytes from the offset: past the stream window, so
    // DB_SENDMEs must flow.
    let answer = DbConnected {
        manifest: Some(vec![1; 700]),
        path: vec![[2; 32]; 10],
        live: None,
    };
    let check = crate::cell::ordb::block_check(&[7; 20], 3);
    net.routers[2]
        .db_connected(at_ordb, stream, &answer, 980, check)
        .unwrap();
    net.run();
    assert!(net.client_events.iter().any(|e| matches!(e,
        MuxEvent::DbConnected { stream: s, answer: a, .. } if *s == stream && *a == answer)));
    let block: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let (mut sent, mut got) = (0, Vec::new());
    while got.len() < block.len() {
        if sent < block.len() {
            sent += net.routers[2]
                .write(at_ordb, stream, &block[sent..])
                .unwrap();
            if sent == block.len() {
                net.routers[2]
                    .end_stream(at_ordb, stream, db_end_reason::FINISHED)
                    .unwrap();
            }
        }
        net.run();
        got.extend(net.client.read(circ, stream, usize::MAX).unwrap());
    }
    assert_eq!(got, block);
    net.run();
    assert!(net.client_events.iter().any(|e| matches!(e,
        MuxEvent::StreamEnded { stream: s, reason, .. }
            if *s == stream && *reason == db_end_reason::FINISHED)));
    assert!(net.client.is_alive(circ));

    // Cells naming another block (a spliced stream) close the circuit.
    let stream = net.client.begin_db(circ, &query).unwrap();
    let (at_ordb, _) = queried(&net.run());
    let wrong = crate::cell::ordb::block_check(&[7; 20], 4);
    net.routers[2]
        .db_connected(at_ordb, stream, &answer, 980, wrong)
        .unwrap();
    net.routers[2].write(at_ordb, stream, &[1; 100]).unwrap();
    net.run();
    assert!(!net.client.is_alive(circ));
}

#[test]
fn an_ordb_query_that_does_not_decode_gets_an_answer_and_the_circuit_lives() {
    use crate::cell::ordb::DbQuery;
    use crate::cell::{relay_command, RelayCell};
    let mut net = Chain::new(1, |c| c);
    let circ = net.circuit(1);
    let before = net.log.iter().filter(|(to, _, _)| *to == 0).count();
    net.client
        .send_any_to_last_hop(
            circ,
            RelayCell::new(relay_command::DB_QUERY, 5, vec![1, 2, 3]),
        )
        .unwrap();
    let events = net.run();
    assert!(!events
        .iter()
        .any(|(_, e)| matches!(e, RouterEvent::DbQuery { .. })));
    // The ORDB answered (DB_END BAD_QUERY), and nothing closed.
    assert_eq!(
        net.log.iter().filter(|(to, _, _)| *to == 0).count(),
        before + 1
    );
    assert!(net.client.is_alive(circ));
    // The next query on the circuit is served.
    let query = DbQuery {
        hash_name: [1; 20],
        block: 0,
        offset: 0,
        counter: 0,
        flags: 0,
    };
    net.client.begin_db(circ, &query).unwrap();
    assert_eq!(queried(&net.run()).1, query);
}

#[test]
fn an_answer_to_a_query_the_client_cancelled_leaves_the_circuit_up() {
    // A player's seek ends queries it no longer needs. Their answers, on
    // the way already when the DB_END leaves, must not close the circuit
    // (as C tor accepts cells on half-closed streams).
    use crate::cell::ordb::{db_end_reason, DbConnected, DbQuery};
    let mut net = Chain::new(2, |c| c);
    let circ = net.circuit(2);
    let query = DbQuery {
        hash_name: [7; 20],
        block: 3,
        offset: 0,
        counter: 0,
        flags: 0,
    };
    let stream = net.client.begin_db(circ, &query).unwrap();
    let (at_ordb, _) = queried(&net.run());
    // The client cancels; the ORDB answers before the DB_END reaches it.
    net.client.end(circ, stream);
    let answer = DbConnected {
        manifest: None,
        path: vec![[2; 32]; 3],
        live: None,
    };
    let check = crate::cell::ordb::block_check(&[7; 20], 3);
    net.routers[2]
        .db_connected(at_ordb, stream, &answer, 0, check)
        .unwrap();
    net.routers[2].write(at_ordb, stream, &[9; 5000]).unwrap();
    net.routers[2]
        .end_stream(at_ordb, stream, db_end_reason::FINISHED)
        .unwrap();
    net.run();
    assert!(
        net.client.is_alive(circ),
        "the cancelled answer closed the circuit"
    );
    assert!(!net.client_events.iter().any(|e| matches!(e,
        MuxEvent::DbConnected { stream: s, .. } | MuxEvent::StreamEnded { stream: s, .. } if *s == stream)));
    // The next query on the circuit is served.
    let next = DbQuery { block: 4, ..query };
    net.client.begin_db(circ, &next).unwrap();
    assert_eq!(queried(&net.run()).1, next);
}
