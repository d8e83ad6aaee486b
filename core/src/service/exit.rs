//! The exit (tor-spec §6.2): a BEGIN names a host and port; the exit
//! policy decides on the resolved address; the adapter resolves, connects
//! and moves bytes, asked through `ExitEvent`s. Bytes flow under the
//! stream queues' rules: the adapter reads its socket only while
//! `Router::room` says the stream takes more (so a closed window stops
//! the reading), and writes to the socket what `Router::read` hands it
//! (so stream SENDMEs follow what the server took).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};

use crate::cell::end_reason;
use crate::router::{CircuitKey, Router};

use super::exit_policy::ExitPolicy;

/// How long the exit says a resolved address may be cached (CONNECTED's TTL).
const ADDRESS_TTL: u32 = 300;

/// One exit stream: its circuit and stream id.
pub type ExitStream<L> = (CircuitKey<L>, u16);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitEvent<L> {
    /// Resolve `host`, then call `resolved`.
    Resolve {
        stream: ExitStream<L>,
        host: String,
        port: u16,
    },
    /// Connect to `addr` (the policy allows it), then call `connected`
    /// or `connect_failed`.
    Connect {
        stream: ExitStream<L>,
        addr: SocketAddr,
    },
    /// The client's bytes wait: `Router::read` them as the socket takes them.
    Readable { stream: ExitStream<L> },
    /// The stream takes bytes again: read the socket.
    Writable { stream: ExitStream<L> },
    /// The stream is over: close the socket.
    Closed { stream: ExitStream<L> },
}

/// Connections (starting or open) one circuit may hold at the exit; a
/// BEGIN beyond is refused with END RESOURCELIMIT. Each is a socket.
pub const MAX_EXIT_CONNECTIONS_PER_CIRCUIT: usize = 64;
/// Connections the whole exit holds at once.
pub const MAX_EXIT_CONNECTIONS: usize = 8192;

pub struct ExitService<L> {
    policy: ExitPolicy,
    /// Streams waiting for a resolution or a connection.
    starting: BTreeMap<ExitStream<L>, u16>,
    open: BTreeSet<ExitStream<L>>,
    events: VecDeque<ExitEvent<L>>,
}

impl<L: Copy + Ord + Debug> ExitService<L> {
    pub fn new(policy: ExitPolicy) -> Self {
        ExitService {
            policy,
            starting: BTreeMap::new(),
            open: BTreeSet::new(),
            events: VecDeque::new(),
        }
    }

    pub fn policy(&self) -> &ExitPolicy {
        &self.policy
    }

    pub fn owns(&self, stream: &ExitStream<L>) -> bool {
        self.starting.contains_key(stream) || self.open.contains(stream)
    }

    /// Exit streams now connected.
    pub fn open_streams(&self) -> usize {
        self.open.len()
    }

    pub fn poll_event(&mut self) -> Option<ExitEvent<L>> {
        self.events.pop_front()
    }

    /// BEGIN host:port on circuit `c`.
    pub fn begin(
        &mut self,
        router: &mut Router<L>,
        c: CircuitKey<L>,
        stream: u16,
        host: String,
        port: u16,
    ) {
        let key = (c, stream);
        if self.policy.rejects_everything() {
            let _ = router.stream_refused(c, stream, end_reason::EXITPOLICY);
            return;
        }
        let on_circuit = self.streams_on(c).count();
        let total = self.open.len() + self.starting.len();
        if on_circuit >= MAX_EXIT_CONNECTIONS_PER_CIRCUIT || total >= MAX_EXIT_CONNECTIONS {
            let _ = router.stream_refused(c, stream, end_reason::RESOURCELIMIT);
            return;
        }
        self.starting.insert(key, port);
        match host
            .trim_matches(|ch| ch == '[' || ch == ']')
            .parse::<IpAddr>()
        {
            Ok(ip) => self.resolved(router, key, Ok(vec![ip])),
            Err(_) => self.events.push_back(ExitEvent::Resolve {
                stream: key,
                host,
                port,
            }),
        }
    }

    /// The adapter resolved the host (or could not): the first address
    /// the policy allows is connected to.
    pub fn resolved(
        &mut self,
        router: &mut Router<L>,
        stream: ExitStream<L>,
        addrs: Result<Vec<IpAddr>, ()>,
    ) {
        let Some(&port) = self.starting.get(&stream) else {
            return;
        };
        let refuse = |this: &mut Self, router: &mut Router<L>, reason| {
            this.starting.remove(&stream);
            let _ = router.stream_refused(stream.0, stream.1, reason);
        };
        let addrs = match addrs {
            Ok(a) if !a.is_empty() => a,
            _ => return refuse(self, router, end_reason::RESOLVEFAILED),
        };
        match addrs.iter().find(|ip| self.policy.allows(**ip, port)) {
            Some(ip) => self.events.push_back(ExitEvent::Connect {
                stream,
                addr: SocketAddr::new(*ip, port),
            }),
            None => refuse(self, router, end_reason::EXITPOLICY),
        }
    }

    /// The connection is up: CONNECTED goes to the client.
    pub fn connected(
        &mut self,
        router: &mut Router<L>,
        stream: ExitStream<L>,
        addr: SocketAddr,
    ) -> bool {
        if self.starting.remove(&stream).is_none() {
            return false;
        }
        let ok = router
            .stream_connected(stream.0, stream.1, Some((addr.ip(), ADDRESS_TTL)))
            .is_ok();
        if ok {
            self.open.insert(stream);
        }
        ok
    }

    /// The connection failed; `reason` is an END reason.
    pub fn connect_failed(&mut self, router: &mut Router<L>, stream: ExitStream<L>, reason: u8) {
        if self.starting.remove(&stream).is_some() {
            let _ = router.stream_refused(stream.0, stream.1, reason);
        }
    }

    /// The server closed its side: END after the queued bytes.
    pub fn server_closed(&mut self, router: &mut Router<L>, stream: ExitStream<L>) {
        if self.open.remove(&stream) {
            let _ = router.end_stream(stream.0, stream.1, end_reason::DONE);
        }
    }

    pub(super) fn readable(&mut self, stream: ExitStream<L>) {
        if self.open.contains(&stream) {
            self.events.push_back(ExitEvent::Readable { stream });
        }
    }

    pub(super) fn writable(&mut self, stream: ExitStream<L>) {
        if self.open.contains(&stream) {
            self.events.push_back(ExitEvent::Writable { stream });
        }
    }

    pub(super) fn ended(&mut self, stream: ExitStream<L>) {
        let was = self.open.remove(&stream) | self.starting.remove(&stream).is_some();
        if was {
            self.events.push_back(ExitEvent::Closed { stream });
        }
    }

    /// Streams of circuit `c`, starting or open: a range of each ordered
    /// set, not a scan of every stream.
    fn streams_on(&self, c: CircuitKey<L>) -> impl Iterator<Item = &ExitStream<L>> + '_ {
        let all = (c, 0)..=(c, u16::MAX);
        self.open
            .range(all.clone())
            .chain(self.starting.range(all).map(|(k, _)| k))
    }

    pub(super) fn circuit_closed(&mut self, c: CircuitKey<L>) {
        let gone: Vec<ExitStream<L>> = self.streams_on(c).copied().collect();
        for stream in gone {
            self.ended(stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::LinkSide;
    use crate::router::{LinkPeer, RouterConfig};

    /// A name that resolves to an address reaching a private network in
    /// another spelling (an AAAA of `::ffff:10.0.0.1`) is refused by
    /// policy, and nothing is connected to.
    #[test]
    fn a_name_resolving_to_a_mapped_private_address_is_refused() {
        let mut rng = crate::rng::SimRng::new(1);
        let mut router: Router<u8> = Router::new(RouterConfig::new(Vec::new()), &mut rng).unwrap();
        router.add_link(1, LinkSide::Responder, LinkPeer::default());
        let policy: ExitPolicy = "reject private:*, accept *:*".parse().unwrap();
        let mut exit = ExitService::new(policy);
        let c = CircuitKey {
            link: 1,
            circ: 0x8000_0001,
        };
        exit.begin(&mut router, c, 1, "intranet.example".into(), 80);
        let Some(ExitEvent::Resolve { stream, .. }) = exit.poll_event() else {
            panic!("the name must be resolved first");
        };
        for addrs in [
            vec!["::ffff:10.0.0.1".parse().unwrap()],
            vec![
                "::ffff:127.0.0.1".parse().unwrap(),
                "64:ff9b::a00:1".parse().unwrap(),
            ],
        ] {
            exit.starting.insert(stream, 80);
            exit.resolved(&mut router, stream, Ok(addrs));
            assert_eq!(exit.poll_event(), None, "nothing is connected to");
            assert!(!exit.owns(&stream));
        }
    }

    /// One circuit asks for more connections than an exit gives a
    /// circuit: each BEGIN beyond the limit is refused at once and no
    /// socket is opened for it; another circuit is not affected.
    #[test]
    fn a_circuit_gets_a_bounded_number_of_exit_connections() {
        let mut rng = crate::rng::SimRng::new(1);
        let mut router: Router<u8> = Router::new(RouterConfig::new(Vec::new()), &mut rng).unwrap();
        router.add_link(1, LinkSide::Responder, LinkPeer::default());
        let mut exit = ExitService::new("accept *:*".parse().unwrap());
        let c = |circ| CircuitKey { link: 1, circ };
        let connects = |exit: &mut ExitService<u8>| {
            std::iter::from_fn(|| exit.poll_event())
                .filter(|e| matches!(e, ExitEvent::Connect { .. }))
                .count()
        };
        for stream in 1..=100u16 {
            exit.begin(&mut router, c(0x8000_0001), stream, "192.0.2.1".into(), 80);
        }
        assert_eq!(connects(&mut exit), MAX_EXIT_CONNECTIONS_PER_CIRCUIT);
        assert!(!exit.owns(&(c(0x8000_0001), 100)));
        exit.begin(&mut router, c(0x8000_0002), 1, "192.0.2.1".into(), 80);
        assert_eq!(connects(&mut exit), 1, "another circuit has its own");
        // A stream that ends frees its place.
        exit.ended((c(0x8000_0001), 1));
        exit.begin(&mut router, c(0x8000_0001), 101, "192.0.2.1".into(), 80);
        assert_eq!(connects(&mut exit), 1);
    }
}
