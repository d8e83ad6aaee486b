//! A client circuit through three in-memory relays: CREATE_FAST, two
//! EXTEND2/ntor, a stream to an echo "server" at the exit carrying
//! megabytes both ways under SENDME flow control, and malformed cells that
//! destroy only the circuit they hit.

use super::*;
use crate::cell::{command, destroy_reason, end_reason, Created2, LinkSpec, RawCell};
use crate::crypto::ntor::NtorRelayKey;

struct Relay {
    keys: Vec<NtorRelayKey>,
    circuit: Option<RelayCircuit>,
}

struct Net {
    client: ClientCircuit,
    relays: Vec<Relay>,
    /// What the exit's "server" received.
    server_got: Vec<u8>,
    client_events: Vec<CircuitEvent>,
    echo: bool,
    max_in_flight: usize,
}

impl Net {
    fn new() -> Net {
        let relays = (0..3u8)
            .map(|i| Relay {
                keys: vec![NtorRelayKey::new([i + 1; 20], [i + 10; 32])],
                circuit: None,
            })
            .collect();
        Net {
            client: ClientCircuit::create_fast(0x8000_0001).unwrap(),
            relays,
            server_got: Vec::new(),
            client_events: Vec::new(),
            echo: true,
            max_in_flight: 0,
        }
    }

    /// Moves cells and answers events until nothing moves.
    fn run(&mut self) {
        loop {
            let mut moved = false;
            let mut in_flight = 0;
            while let Some(cell) = self.client.poll_cell() {
                moved = true;
                in_flight += 1;
                self.deliver_forward(0, cell);
            }
            for i in 0..self.relays.len() {
                let Some(c) = self.relays[i].circuit.as_mut() else {
                    continue;
                };
                let mut forward = Vec::new();
                let mut back = Vec::new();
                let mut events = Vec::new();
                while let Some(cell) = c.poll_cell_forward() {
                    forward.push(cell);
                }
                while let Some(cell) = c.poll_cell_back() {
                    back.push(cell);
                }
                while let Some(e) = c.poll_event() {
                    events.push(e);
                }
                moved |= !(forward.is_empty() && back.is_empty() && events.is_empty());
                in_flight += forward.len() + back.len();
                for cell in forward {
                    self.deliver_forward(i + 1, cell);
                }
                for cell in back {
                    self.deliver_back(i, cell);
                }
                for e in events {
                    self.relay_event(i, e);
                }
            }
            self.max_in_flight = self.max_in_flight.max(in_flight);
            while let Some(e) = self.client.poll_event() {
                moved = true;
                self.client_events.push(e);
            }
            if !moved {
                break;
            }
        }
    }

    fn deliver_forward(&mut self, i: usize, cell: RawCell) {
        let relay = &mut self.relays[i];
        match cell.command {
            command::CREATE_FAST | command::CREATE2 => {
                match RelayCircuit::accept_create(&cell, &relay.keys) {
                    Ok(c) => relay.circuit = Some(c),
                    Err(_) => panic!("relay {i} refused CREATE"),
                }
            }
            _ => {
                let _ = relay.circuit.as_mut().unwrap().handle_cell_from_back(cell);
            }
        }
    }

    fn deliver_back(&mut self, i: usize, cell: RawCell) {
        if i == 0 {
            let _ = self.client.handle_cell(cell);
            return;
        }
        let prev = self.relays[i - 1].circuit.as_mut().unwrap();
        if cell.command == command::CREATED2 {
            prev.next_hop_created(cell.circ_id, Created2::from_cell(&cell).unwrap())
                .unwrap();
        } else {
            prev.handle_cell_from_forward(cell).unwrap();
        }
    }

    fn relay_event(&mut self, i: usize, e: RelayEvent) {
        match e {
            RelayEvent::Extend(extend) => {
                // The harness "opens a channel" to relay i+1 by identity.
                let id = extend.legacy_id().unwrap();
                assert_eq!(id, self.relays[i + 1].keys[0].id);
                let create = extend.create.to_cell(100 + i as u32).unwrap();
                self.deliver_forward(i + 1, create);
            }
            RelayEvent::Begin { stream_id, target } => {
                assert_eq!(
                    target,
                    StreamTarget::Tcp {
                        host: "127.0.0.1".into(),
                        port: 80
                    }
                );
                self.relays[i]
                    .circuit
                    .as_mut()
                    .unwrap()
                    .stream_connected(stream_id, None)
                    .unwrap();
            }
            RelayEvent::StreamData { stream_id, data } => {
                self.server_got.extend_from_slice(&data);
                if self.echo {
                    let c = self.relays[i].circuit.as_mut().unwrap();
                    assert_eq!(c.send(stream_id, &data).unwrap(), data.len());
                }
            }
            _ => {}
        }
    }

    fn extend_to(&mut self, i: usize) {
        let k = &self.relays[i].keys[0];
        let specs = vec![
            LinkSpec::Addr(format!("127.0.0.{}:9001", i + 1).parse().unwrap()),
            LinkSpec::LegacyId(k.id),
        ];
        let (id, public) = (k.id, k.public);
        self.client.extend_ntor(specs, id, public).unwrap();
        self.run();
    }

    fn three_hops() -> Net {
        let mut net = Net::new();
        net.run();
        net.extend_to(1);
        net.extend_to(2);
        assert_eq!(net.client.hop_count(), 3);
        net
    }

    fn received(&self, stream: u16) -> Vec<u8> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                CircuitEvent::StreamData { stream_id, data } if *stream_id == stream => {
                    Some(data.clone())
                }
                _ => None,
            })
            .flatten()
            .collect()
    }
}

#[test]
fn builds_three_hops_and_echoes_megabytes_under_flow_control() {
    let mut net = Net::three_hops();
    let hops: Vec<usize> = net
        .client_events
        .iter()
        .filter_map(|e| match e {
            CircuitEvent::Extended { hops } => Some(*hops),
            _ => None,
        })
        .collect();
    assert_eq!(hops, vec![1, 2, 3]);

    let stream = net
        .client
        .begin(StreamTarget::Tcp {
            host: "127.0.0.1".into(),
            port: 80,
        })
        .unwrap();
    net.run();
    assert!(net
        .client_events
        .contains(&CircuitEvent::StreamConnected { stream_id: stream }));

    // 3 MiB: far more than one circuit window (1000 × 498 bytes), so the
    // transfer only completes if SENDMEs flow correctly in both directions.
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    let mut offset = 0;
    while offset < payload.len() {
        let n = net.client.send(stream, &payload[offset..]).unwrap();
        offset += n;
        net.run();
        assert!(!net.client.is_destroyed());
    }
    net.run();
    assert_eq!(net.server_got.len(), payload.len());
    assert!(net.server_got == payload, "bytes at the exit differ");
    assert!(net.received(stream) == payload, "echoed bytes differ");
    // Windows bound what is ever queued between hops.
    assert!(
        net.max_in_flight < 2 * 1000 + 100,
        "in flight: {}",
        net.max_in_flight
    );

    net.client.end_stream(stream, end_reason::DONE).unwrap();
    net.run();
    assert!(!net.client.is_destroyed());
}

#[test]
fn garbage_relay_cell_destroys_the_circuit_with_protocol_reason() {
    let mut net = Net::three_hops();
    // A cell no hop recognizes reaches the exit, which must destroy.
    let garbage = RawCell::new(0x8000_0001, command::RELAY, vec![0xab; 509]);
    net.deliver_forward(0, garbage);
    net.run();
    assert!(net.relays[2].circuit.as_ref().unwrap().is_destroyed());
    // The client learns the tail is gone (TRUNCATED) and keeps its first hops.
    assert!(net.client_events.iter().any(|e| matches!(
        e,
        CircuitEvent::Truncated {
            hops: 2,
            reason: destroy_reason::PROTOCOL
        }
    )));
    assert_eq!(net.client.hop_count(), 2);
    assert!(!net.client.is_destroyed());
}

#[test]
fn forged_inbound_cell_makes_the_client_destroy() {
    let mut net = Net::three_hops();
    let forged = RawCell::new(0x8000_0001, command::RELAY, vec![0x55; 509]);
    assert!(net.client.handle_cell(forged).is_err());
    assert!(net.client.is_destroyed());
    let cell = net.client.poll_cell().unwrap();
    assert_eq!(
        (cell.command, cell.body[0]),
        (command::DESTROY, destroy_reason::PROTOCOL)
    );
    assert!(matches!(
        net.client.send(1, b"x"),
        Err(CircuitError::Destroyed)
    ));
}

#[test]
fn extend2_outside_relay_early_is_refused() {
    let mut net = Net::three_hops();
    // Replay the client's logic by hand: an EXTEND2 in a plain RELAY cell.
    net.client.relay_early_left = 0;
    let k = net.relays[2].keys[0].clone();
    net.client
        .extend_ntor(vec![LinkSpec::LegacyId(k.id)], k.id, k.public)
        .unwrap_err();
}

#[test]
fn relay_early_budget_is_enforced_by_relays() {
    let mut net = Net::three_hops();
    let relay = net.relays[0].circuit.as_mut().unwrap();
    // Nine RELAY_EARLY cells: the ninth destroys (the client sent two already).
    let mut result = Ok(());
    for _ in 0..8 {
        result = relay.handle_cell_from_back(RawCell::new(
            0x8000_0001,
            command::RELAY_EARLY,
            vec![0; 509],
        ));
        if result.is_err() {
            break;
        }
    }
    assert!(result.is_err());
    assert!(relay.is_destroyed());
}
