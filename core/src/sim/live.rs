//! Live streams on the simulated network (docs/PROTOCOL.md "Live
//! streams"): one tab publishes a chunk every 250 ms, others follow it
//! through circuits to ORDBs while tabs leave; the window logic (indexes
//! rotated and reused, expiry, the joiner's start) is checked on every
//! tab. Figures are printed (`--nocapture`).

use super::tab::LiveSeen;
use super::tests::{network, open_links, pick, tabs};
use super::*;
use crate::content::live::DEFAULT_WINDOW;
use crate::content::HashName;
use crate::peer::tab::{LiveOptions, Outcome};
use crate::service::ordb::LiveTamper;

const CHUNK_MS: u64 = 250;
/// A key chunk every fourth (a keyframe a second).
const KEY_EVERY: u64 = 4;
const RING: usize = 4 * DEFAULT_WINDOW as usize;

/// The publisher's side: chunks pushed on time, and the newest sequence
/// number made so far.
struct Source {
    tab: NodeId,
    h: HashName,
    next_at: u64,
    made: u64,
}

impl Source {
    /// A tab relaying the live stream of a web address.
    fn start_web(net: &mut Net, tab: NodeId, url: &str) -> Source {
        let now = net.now;
        let stream = net
            .tab_mut(tab)
            .unwrap()
            .peer
            .publish_web_live(url, "video/webm; codecs=\"vp8\"", b"init", now)
            .unwrap();
        Source {
            tab,
            h: stream.hash_name,
            next_at: now,
            made: 0,
        }
    }

    fn start(net: &mut Net, tab: NodeId) -> Source {
        let now = net.now;
        let stream = net
            .tab_mut(tab)
            .unwrap()
            .peer
            .publish_live(
                "video/webm; codecs=\"vp8\"",
                "camera",
                b"init",
                Some(250),
                now,
            )
            .unwrap();
        Source {
            tab,
            h: stream.hash_name,
            next_at: now,
            made: 0,
        }
    }

    /// Runs the network for `ms`, pushing chunks of 20 kB on time.
    fn run(&mut self, net: &mut Net, ms: u64) {
        let until = net.now + ms;
        while self.next_at <= until {
            net.run_until(self.next_at);
            let now = net.now;
            let key = self.made % KEY_EVERY == 0;
            let data = vec![self.made as u8; 20_000];
            let t = net.tab_mut(self.tab).unwrap();
            t.peer.push_live_chunk(&self.h, &data, key, now).unwrap();
            self.made += 1;
            self.next_at += CHUNK_MS;
        }
        net.run_until(until);
    }
}

fn follow(net: &mut Net, n: NodeId, h: HashName) -> u64 {
    let now = net.now;
    net.tab_mut(n)
        .unwrap()
        .peer
        .follow_live(h, LiveOptions::default(), now)
}

fn seen(net: &Net, n: NodeId, op: u64) -> Vec<LiveSeen> {
    net.tab(n)
        .and_then(|t| t.live.get(&op).cloned())
        .unwrap_or_default()
}

fn percentile(mut v: Vec<u64>, p: usize) -> u64 {
    v.sort_unstable();
    v.get((v.len().saturating_sub(1)) * p / 100)
        .copied()
        .unwrap_or(0)
}

/// Chunks come in order, the first on a key chunk, and after a gap only
/// on a key chunk.
fn check_order(s: &[LiveSeen], who: NodeId) {
    assert!(
        s.first().is_some_and(|c| c.key),
        "tab {who} starts on a key chunk"
    );
    for w in s.windows(2) {
        assert!(w[1].seq > w[0].seq, "tab {who}: in order");
        if w[1].seq != w[0].seq + 1 {
            assert!(
                w[1].gap && w[1].key,
                "tab {who}: a skip lands on a key chunk"
            );
        }
    }
}

#[test]
fn a_live_stream_is_followed_through_the_mesh_while_tabs_leave() {
    let started = std::time::Instant::now();
    let mut net = network(0x11fe, 2, 40, |_| {});
    let all = tabs(&net);
    net.run_until(net.now + 30_000);
    assert!(all.iter().all(|n| open_links(&net, *n) >= 2));
    let publisher = all[0];
    let mut src = Source::start(&mut net, publisher);
    src.run(&mut net, 3_000);

    // Three viewers join, none linked to the publisher necessarily.
    let viewers = pick(&mut net, 3, &[publisher]);
    let ops: Vec<u64> = viewers
        .iter()
        .map(|v| follow(&mut net, *v, src.h))
        .collect();
    src.run(&mut net, 10_000);

    // A late joiner starts near the edge: by the index-M rule, two
    // windows back, then the next key chunk.
    let mut keep = viewers.clone();
    keep.push(publisher);
    let late = pick(&mut net, 1, &keep)[0];
    let made_at_join = src.made - 1;
    let late_op = follow(&mut net, late, src.h);
    src.run(&mut net, 3_000);
    let first = seen(&net, late, late_op)[0].seq;
    let m = made_at_join.saturating_sub(2 * u64::from(DEFAULT_WINDOW));
    println!("late joiner: newest chunk {made_at_join} when it asked; it began at {first}");
    assert!(
        first >= m && first <= made_at_join + KEY_EVERY,
        "the late joiner starts near the edge ({first}, newest {made_at_join})"
    );

    // A third of the other tabs leave.
    keep.push(late);
    let leaving = pick(&mut net, 12, &keep);
    for n in &leaving {
        net.kill(*n);
    }
    let left_at = src.made;
    src.run(&mut net, 15_000);

    let mut delays = Vec::new();
    for (v, op) in viewers.iter().zip(&ops).chain([(&late, &late_op)]) {
        let s = seen(&net, *v, *op);
        check_order(&s, *v);
        let last = s.last().map_or(0, |c| c.seq);
        assert!(
            last + 2 * u64::from(DEFAULT_WINDOW) >= src.made - 1,
            "tab {v} keeps up: last {last} of {}",
            src.made - 1
        );
        assert!(
            s.iter().any(|c| c.seq > left_at + 20),
            "tab {v} goes on after the departures"
        );
        // Capture to delivery, once caught up (the joiner's first chunks
        // are two windows old by design).
        delays.extend(s.iter().skip(12).map(|c| c.at - c.timestamp_ms));
        let stats = net.tab(*v).unwrap().peer.live_stats(*op).unwrap();
        println!("tab {v}: {} chunks, {stats:?}", s.len());
    }
    let (p50, p95, max) = (
        percentile(delays.clone(), 50),
        percentile(delays.clone(), 95),
        percentile(delays, 100),
    );
    println!("delivery delay after joining: median {p50} ms, p95 {p95} ms, max {max} ms (virtual; 15 ms links)");
    assert!(p95 <= 2_000, "bounded delay: p95 {p95} ms");

    // Every holder keeps at most a ring's worth; the publisher served
    // only part of what the viewers got: viewers serve each other.
    let mut served_by_others = 0;
    for n in tabs(&net) {
        let t = net.tab(n).unwrap();
        if let Some((held, _)) = t.peer.live_held(&src.h) {
            assert!(held <= RING, "tab {n} holds {held} chunks");
        }
        if n != publisher {
            served_by_others += t.peer.ordb_stats().live_chunks_served;
        }
    }
    let by_publisher = net
        .tab(publisher)
        .unwrap()
        .peer
        .ordb_stats()
        .live_chunks_served;
    println!("chunks served: by the publisher {by_publisher}, by other tabs {served_by_others}");

    // The publisher stops: four windows of time later no tab holds a
    // chunk, and the viewers end after a silent minute.
    let stopped = net.now;
    net.run_until(stopped + 5_500);
    for n in tabs(&net) {
        if let Some((held, _)) = net.tab(n).unwrap().peer.live_held(&src.h) {
            assert_eq!(held, 0, "tab {n}: chunks expire after four windows");
        }
    }
    let v0 = viewers[0];
    let r = super::tests::wait(&mut net, v0, ops[0], 70_000);
    assert!(
        matches!(r, Some(Outcome::Followed(Err(_)))),
        "a silent stream ends the follower: {r:?}"
    );
    println!("whole run {:.1} s real", started.elapsed().as_secs_f64());
}

#[test]
fn forged_and_replayed_chunks_are_refused_and_the_stream_goes_on() {
    let mut net = network(0x1ab, 1, 12, |_| {});
    let all = tabs(&net);
    assert!(net.run_while(30_000, |net| all.iter().all(|n| open_links(net, *n) >= 4)));
    let publisher = all[0];
    let mut src = Source::start(&mut net, publisher);
    src.run(&mut net, 2_000);
    // Two followers that lie to whoever asks them.
    let liars = pick(&mut net, 2, &[publisher]);
    for (l, how) in liars.iter().zip([LiveTamper::Forge, LiveTamper::Replay]) {
        follow(&mut net, *l, src.h);
        net.tab_mut(*l).unwrap().peer.tamper_live(Some(how));
    }
    src.run(&mut net, 3_000);
    let mut keep = liars.clone();
    keep.push(publisher);
    let viewers = pick(&mut net, 6, &keep);
    let ops: Vec<u64> = viewers
        .iter()
        .map(|v| follow(&mut net, *v, src.h))
        .collect();
    src.run(&mut net, 20_000);
    let (mut forged, mut replayed) = (0, 0);
    for (v, op) in viewers.iter().zip(&ops) {
        let s = seen(&net, *v, *op);
        check_order(&s, *v);
        assert!(s.len() > 40, "tab {v} follows: {} chunks", s.len());
        let stats = net.tab(*v).unwrap().peer.live_stats(*op).unwrap();
        forged += stats.forged;
        replayed += stats.replayed;
    }
    println!("refused: {forged} forged, {replayed} replayed chunks");
    assert!(
        forged > 0 && replayed > 0,
        "the liars were asked and caught"
    );
}

/// Viewers of a web address find the tab that relays its stream (named by
/// the address) and follow it, without fetching the address; a viewer of
/// an address nobody relays stops looking and fetches it itself (here it
/// cannot: the simulated bridges list no exits).
#[test]
fn viewers_of_a_web_address_follow_the_tab_that_relays_it() {
    use crate::content::web_live::LOOK_MS;
    use crate::peer::tab::WebLiveOptions;
    let mut net = network(0x3eb1, 2, 24, |_| {});
    let all = tabs(&net);
    net.run_until(net.now + 30_000);
    let url = "http://127.0.0.1:8080/live.webm";
    let relay = all[0];
    let mut src = Source::start_web(&mut net, relay, url);
    assert_eq!(src.h, crate::content::live::web_stream_name(url));
    src.run(&mut net, 3_000);
    let viewers = pick(&mut net, 2, &[relay]);
    let now = net.now;
    let ops: Vec<u64> = viewers
        .iter()
        .map(|v| {
            net.tab_mut(*v)
                .unwrap()
                .peer
                .watch_web_live(url, WebLiveOptions::default(), now)
        })
        .collect();
    src.run(&mut net, 8_000);
    for (v, op) in viewers.iter().zip(&ops) {
        let s = seen(&net, *v, *op);
        assert!(
            s.len() >= 20,
            "tab {v} follows the relayed stream: {} chunks",
            s.len()
        );
        check_order(&s, *v);
        let stats = net.tab(*v).unwrap().peer.live_stats(*op).unwrap();
        assert!(!stats.direct, "tab {v} did not fetch the address");
    }

    // An address nobody relays: the viewer looks, then fetches it.
    let lonely = pick(&mut net, 1, &viewers)[0];
    let now = net.now;
    let op = net.tab_mut(lonely).unwrap().peer.watch_web_live(
        "http://127.0.0.1:8080/other.webm",
        WebLiveOptions::default(),
        now,
    );
    let begun = net.now;
    src.run(&mut net, LOOK_MS + 10_000);
    let outcome = net.tab(lonely).unwrap().results.get(&op).cloned();
    let Some(Outcome::Followed(Err(e))) = outcome else {
        panic!("the viewer of an address nobody relays: {outcome:?}");
    };
    assert!(
        e.to_string().contains("other.webm"),
        "the fetch of the address failed: {e}"
    );
    assert!(net.now - begun <= LOOK_MS + 10_000);
    // A bad address is refused at once.
    let now = net.now;
    let op =
        net.tab_mut(lonely)
            .unwrap()
            .peer
            .watch_web_live("mytv", WebLiveOptions::default(), now);
    net.run_until(net.now + 10);
    assert!(matches!(
        net.tab(lonely).unwrap().results.get(&op),
        Some(Outcome::Followed(Err(_)))
    ));
}
