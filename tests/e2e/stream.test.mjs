// Playing while downloading (docs/PROTOCOL.md "Streaming"): tab A seeds
// media made by ffmpeg, and tab B, linked to A only through two relaying
// tabs' mesh, plays it with peer.stream through ORDB circuits of two tabs.
// Playback must start before the download completes, a seek to 80 % must
// play within SEEK_BOUND_MS, and the stored file must be byte-equal.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { startNode, openNamedTab, eventually, startFileServer, ROOT } from './helpers.mjs';
import { media } from './media.mjs';

// Loopback, circuits of two tabs, a 2-core machine running four browsers.
const SEEK_BOUND_MS = 3000;
const FIRST_FRAME_BOUND_MS = 5000;

let node;
const tabs = [];
const servers = [];
before(async () => {
  node = await startNode({ args: ['--relays', '0'] });
});
after(async () => {
  for (const t of tabs) await t.browser.close().catch(() => {});
  for (const s of servers) s.close();
  await node?.stop();
});

const openTab = (name, query = '', hash = '') => openNamedTab(node, tabs, name, query, hash);

/** A seeds `bytes` as `name` of type `type`; resolves with the hash_name
 *  once two other tabs know of it. */
async function seed(a, others, bytes, name, type) {
  const server = await startFileServer(bytes, { path: `/${name}` });
  servers.push(server);
  const hash = await a.page.evaluate(async ([url, n, t]) => {
    const blob = await (await fetch(url)).blob();
    return (await window.peersm.seed(blob, { name: n, type: t })).hashName;
  }, [`${server.url}/${name}`, name, type]);
  await eventually(async () => {
    const known = await Promise.all(others.map((r) => r.page.evaluate(
      (h) => window.peersm.shared().some((s) => s.hashName === h), hash)));
    return known.filter(Boolean).length >= 2;
  }, 30000, 'relaying tabs told about the file');
  return hash;
}

/** B starts playing `hash` in a new muted <video>; the page records when
 *  the first frame showed and how much had arrived when time first moved. */
const startPlaying = (b, hash) => b.page.evaluate(async (h) => {
  const video = document.createElement('video');
  video.muted = true;
  video.controls = true;
  document.body.append(video);
  const s = { received: 0, total: 0, firstFrameMs: null, movedAt: null, receivedWhenMoved: null };
  window.playing = { video, s };
  const t0 = performance.now();
  video.requestVideoFrameCallback(() => { s.firstFrameMs = performance.now() - t0; });
  video.addEventListener('loadedmetadata', () => { s.metadataMs = performance.now() - t0; });
  video.addEventListener('timeupdate', () => {
    if (s.movedAt === null && video.currentTime > 0.2) {
      s.movedAt = performance.now() - t0;
      s.receivedWhenMoved = s.received;
    }
  });
  const player = await window.peersm.stream(h, video, {
    onProgress: ({ received, total }) => {
      s.received = received; s.total = total;
      if (total && s.manifestMs === undefined) s.manifestMs = performance.now() - t0;
    },
  });
  s.readyMs = performance.now() - t0;
  window.playing.player = player;
  window.playing.done = player.done.then(
    async (d) => {
      s.download = { ...d.stats, circuits: d.circuits, sources: d.sources.length, ms: d.ms };
      const digest = await crypto.subtle.digest('SHA-256', await d.bytes());
      s.sha = [...new Uint8Array(digest)].map((x) => x.toString(16).padStart(2, '0')).join('');
    },
    (e) => { s.failed = e.message; },
  );
  await video.play();
  return { mode: player.mode, type: player.type, message: player.message ?? null };
}, hash);

const state = (b) => b.page.evaluate(() => ({
  ...window.playing.s, currentTime: window.playing.video.currentTime,
  duration: window.playing.video.duration, error: window.playing.video.error?.message ?? null,
  stats: window.playing.player?.stats(),
}));

/** Seeks to `share` of the duration; resolves with the ms until playback
 *  moved past the target. */
const seekTo = (b, share) => b.page.evaluate(async (f) => {
  const { video } = window.playing;
  const target = video.duration * f;
  const t0 = performance.now();
  video.currentTime = target;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no play after the seek: at ${video.currentTime}`)), 20000);
    const check = () => {
      if (video.currentTime > target + 0.2 && !video.seeking) { clearTimeout(timer); resolve(); } else requestAnimationFrame(check);
    };
    check();
  });
  return { ms: performance.now() - t0, target };
}, share);

async function playAndCheck(b, hash, bytes, type) {
  const started = await startPlaying(b, hash);
  assert.equal(started.mode, 'mediasource', JSON.stringify(started));
  assert.match(started.type, type);
  try {
    await eventually(async () => (await state(b)).movedAt !== null, 20000, 'playback moving');
  } catch (e) {
    throw new Error(`${e.message}: ${JSON.stringify(await state(b))}`);
  }
  let st = await state(b);
  assert.ok(st.firstFrameMs !== null && st.firstFrameMs < FIRST_FRAME_BOUND_MS,
    `first frame in ${st.firstFrameMs} ms: ${JSON.stringify(st)}`);
  assert.ok(st.receivedWhenMoved < bytes.length,
    `playback moved at ${st.receivedWhenMoved} of ${bytes.length} bytes: before the download completed`);
  const seek = await seekTo(b, 0.8);
  assert.ok(seek.ms < SEEK_BOUND_MS, `a seek to 80 % played in ${seek.ms.toFixed(0)} ms`);
  await b.page.evaluate(() => window.playing.done);
  st = await state(b);
  assert.equal(st.failed, undefined);
  assert.equal(st.sha, createHash('sha256').update(bytes).digest('hex'), 'the stored file is byte-equal');
  assert.equal(st.error, null);
  console.log(`# ${type}: manifest ${st.manifestMs?.toFixed(0)} ms, player ready ${st.readyMs.toFixed(0)} ms,`
    + ` metadata ${st.metadataMs?.toFixed(0)} ms, first frame ${st.firstFrameMs.toFixed(0)} ms, time moved at ${st.movedAt.toFixed(0)} ms`
    + ` with ${(st.receivedWhenMoved / 1e6).toFixed(1)} of ${(bytes.length / 1e6).toFixed(1)} MB,`
    + ` seek to 80 % played in ${seek.ms.toFixed(0)} ms; ${JSON.stringify(st.stats)} ${JSON.stringify(st.download)}`);
  await b.page.evaluate(() => { window.playing.player.stop(); window.playing.video.remove(); });
}

let a; let relays; let b;
const files = {};
const SHOTS = `${ROOT}target/e2e-screenshots`;
test('VP9 WebM plays while it downloads through ORDB tabs, seeks, and is stored byte-equal', async () => {
  a = await openTab('A', '?joinLinks=2');
  relays = [await openTab('R1', '?joinLinks=2'), await openTab('R2', '?joinLinks=2')];
  // B never links to A; joining with three links it links to both relays
  // even when the bridge names A among them.
  b = await openTab('B', `?joinLinks=3&neverLink=${a.id}`);
  const webm = media('vp9.webm', 30);
  const hash = await seed(a, relays, webm, 'clip.webm', 'video/webm');
  await playAndCheck(b, hash, webm, /^video\/webm; codecs="vp9,opus"$/);
});

test('H.264 fragmented MP4 plays while it downloads, seeks, and is stored byte-equal', async () => {
  const mp4 = media('h264-frag.mp4', 20);
  const hash = await seed(a, relays, mp4, 'clip.mp4', 'video/mp4');
  files.mp4 = hash;
  await playAndCheck(b, hash, mp4, /^video\/mp4; codecs="avc1\.[0-9a-f]{6},mp4a\.40\.2"$/);
});

test('the page: Play puts a player in the file\'s row, with its buffered ranges drawn', async () => {
  // A fresh tab plays the fragmented MP4 from the box.
  const c = await openTab('C', '?joinLinks=3');
  await eventually(async () => (await c.page.evaluate(
    () => window.peersm.peers().filter((p) => p.state === 'open').length)) >= 2, 20000, 'C linked');
  await eventually(() => c.page.evaluate(
    (h) => window.peersm.shared().some((s) => s.hashName === h), files.mp4), 20000, 'C told of the file');
  await c.page.fill('#hash', files.mp4);
  await c.page.click('#play-it');
  const row = `#files li[data-hash="${files.mp4}"]`;
  await c.page.waitForSelector(`${row} .player video`, { timeout: 20000 });
  try {
    await eventually(() => c.page.$eval(`${row} .player video`, (v) => v.currentTime > 0.5), 20000, 'the row\'s player playing');
  } catch (e) {
    const v = await c.page.$eval(`${row} .player video`, (v) => ({ paused: v.paused, rs: v.readyState, err: v.error?.message, t: v.currentTime, src: v.src }));
    const text = await c.page.$eval(row, (li) => li.textContent);
    throw new Error(`${e.message}: ${JSON.stringify(v)} ${text}`);
  }
  await eventually(() => c.page.$$eval(`${row} .ranges span.buffered`, (s) => s.length > 0), 5000, 'buffered ranges drawn');
  assert.equal(await c.page.$eval(`${row} .ranges .playhead`, () => true), true);
  await c.page.waitForSelector(`${row}[data-state="done"]`, { timeout: 60000 });
  assert.match(await c.page.$eval(`${row} .file-status`, (e) => e.textContent), /Downloaded and checked/);
  mkdirSync(SHOTS, { recursive: true });
  await c.page.screenshot({ path: `${SHOTS}/stream-player.png`, fullPage: true });
  assert.deepEqual(c.errors, []);
});

test('a plain MP4 plays once downloaded, and says why', async () => {
  const plain = media('h264-plain.mp4', 4);
  const hash = await seed(a, relays, plain, 'plain.mp4', 'video/mp4');
  const started = await startPlaying(b, hash);
  assert.equal(started.mode, 'after-download');
  assert.match(started.message, /not fragmented.*plays once it is downloaded/);
  await b.page.evaluate(() => window.playing.done);
  await eventually(async () => (await state(b)).currentTime > 0.5, 15000, 'the whole file playing');
  assert.deepEqual(b.errors, []);
});

test('bad input gets plain words', async () => {
  const text = await seed(a, relays, Buffer.from('not a film\n'.repeat(1000)), 'notes.txt', 'text/plain');
  const bad = await b.page.evaluate(async (h) => {
    const out = [];
    try { await window.peersm.stream(h, document.createElement('video')); } catch (e) { out.push(e.message); }
    try { await window.peersm.stream('nonsense', document.createElement('video')); } catch (e) { out.push(e.message); }
    try { await window.peersm.stream('00'.repeat(20), 'not an element'); } catch (e) { out.push(e.message); }
    return out;
  }, text);
  assert.match(bad[0], /text\/plain files do not play while they download/);
  assert.match(bad[1], /neither a hash_name .* nor a Peersm link/);
  assert.match(bad[2], /must be a <video> or <audio> element/);
});
