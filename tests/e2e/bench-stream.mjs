// Streaming benchmark (not a test): in one run, time to first frame and
// seek-to-play time for the same VP9 WebM (made by ffmpeg, tests/e2e/media.mjs)
// played tab → tab (1) through Peersm with one hop between the viewer and
// the ORDB, (2) through Peersm with three hops, and (3) through WebTorrent
// (file.streamTo(video) with its service worker, a local tracker, WebRTC
// between the tabs), both by default (it fetches the whole file while the
// start plays, so its seek may find the target held already) and "stream
// only" (no piece selected: it fetches what the player reads, and the seek
// fetches its target, as Peersm's always does). Each round says how much
// was held at the seek. Each round plays a fresh copy: Peersm removes it
// from IndexedDB, WebTorrent destroys its store.
//   cargo build --release -p peersm-node && npm run build:wasm &&
//   PEERSM_NODE=target/release/peersm-node node tests/e2e/bench-stream.mjs [--rounds 5] [--seconds 30] [--only peersm]
import { startNode, launchBrowser, eventually, startFileServer } from './helpers.mjs';
import { media } from './media.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const ROUNDS = Number(arg('rounds', 5));
const SECONDS = Number(arg('seconds', 30));
const ONLY = arg('only', '');
const SEEK_TO = 0.8;
const clip = media('vp9.webm', SECONDS);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const browsers = [];
const results = {};
const record = (what, r) => {
  (results[what] ??= []).push(r);
  const held = r.heldAtSeek
    ? ` (held at the seek: ${(r.heldAtSeek.file * 100).toFixed(0)} % of the file, the target ${r.heldAtSeek.atTarget ? 'already' : 'not yet'})`
    : '';
  console.log(`${what}: first frame ${r.firstFrameMs.toFixed(0)} ms, seek to ${SEEK_TO * 100} % played in ${r.seekMs.toFixed(0)} ms${held}`);
};

/** Plays `hash` through `hops` in `page`: { firstFrameMs, seekMs }; the
 *  copy is removed afterwards. */
const peersmRound = (page, hash, hops) => page.evaluate(async ({ hash, hops, seekTo }) => {
  const video = document.createElement('video');
  video.muted = true;
  document.body.append(video);
  const t0 = performance.now();
  const frame = new Promise((resolve) => video.requestVideoFrameCallback(() => resolve(performance.now() - t0)));
  let held = { received: 0, total: 1 };
  const player = await window.peersm.stream(hash, video, { hops, onProgress: (p) => { held = p; } });
  video.play().catch(() => {});
  const firstFrameMs = await frame;
  const target = video.duration * seekTo;
  // Peersm fetches from the play position first: the target is not held.
  const heldAtSeek = { file: held.received / (held.total || 1), atTarget: false };
  const t1 = performance.now();
  video.currentTime = target;
  await new Promise((resolve, reject) => {
    const check = () => (video.currentTime > target + 0.2 && !video.seeking ? resolve() : requestAnimationFrame(check));
    check();
    setTimeout(() => reject(new Error('no play after the seek')), 60000);
  });
  const seekMs = performance.now() - t1;
  const file = await player.done;
  player.stop();
  video.remove();
  await file.remove();
  return { firstFrameMs, seekMs, heldAtSeek };
}, { hash, hops, seekTo: SEEK_TO });

const node = await startNode({ args: ['--relays', '0'] });
try {
  if (ONLY !== 'webtorrent') {
    const server = await startFileServer(clip, { path: '/clip.webm' });
    const open = async () => {
      const browser = await launchBrowser();
      browsers.push(browser);
      const page = await browser.newPage();
      await page.goto(`${node.origin}/`);
      await page.waitForSelector('#status[data-status="connected"]', { timeout: 20000 });
      return page;
    };
    // Seeder, two more tabs for the 3-hop circuits, the viewer.
    const seeder = await open();
    const others = [await open(), await open()];
    const viewer = await open();
    const hash = await seeder.evaluate(async (url) => {
      const blob = await (await fetch(url)).blob();
      return (await window.peersm.seed(blob, { name: 'clip.webm', type: 'video/webm' })).hashName;
    }, `${server.url}/clip.webm`);
    await eventually(async () => (await viewer.evaluate(
      () => window.peersm.peers().filter((p) => p.state === 'open').length)) >= 3, 30000, 'links');
    await eventually(() => viewer.evaluate(
      (h) => window.peersm.shared().some((s) => s.hashName === h), hash), 30000, 'DB_INFO');
    void others;
    for (let round = 0; round < ROUNDS; round += 1) {
      record('peersm 1 hop', await peersmRound(viewer, hash, 1));
      record('peersm 3 hops', await peersmRound(viewer, hash, 3));
    }
    server.close();
    for (const b of browsers.splice(0)) await b.close();
  }
  if (ONLY !== 'peersm') {
    const { startWebTorrent } = await import('./webtorrent.mjs');
    const wt = await startWebTorrent(launchBrowser, browsers, { '/clip.webm': clip });
    for (let round = 0; round < ROUNDS; round += 1) {
      record('webtorrent', await wt.streamRound('/clip.webm', SEEK_TO));
      record('webtorrent stream only', await wt.streamRound('/clip.webm', SEEK_TO, { streamOnly: true }));
    }
    await wt.stop();
  }
  console.log(`\n${(clip.length / 1e6).toFixed(1)} MB VP9 WebM (${SECONDS} s) tab → tab, median of ${ROUNDS} rounds:`);
  const med = (what, k) => median(results[what].map((r) => r[k]));
  for (const what of Object.keys(results)) {
    console.log(`  ${what.padEnd(22)} first frame ${med(what, 'firstFrameMs').toFixed(0)} ms, seek to play ${med(what, 'seekMs').toFixed(0)} ms`);
  }
  // Peersm's seek always fetches its target; so does WebTorrent's in
  // "stream only", while by default it has often fetched it already.
  for (const wt of ['webtorrent', 'webtorrent stream only'].filter((w) => results[w])) {
    for (const what of ['peersm 1 hop', 'peersm 3 hops'].filter((w) => results[w])) {
      console.log(`  ${what} / ${wt}: first frame ${(med(what, 'firstFrameMs') / med(wt, 'firstFrameMs')).toFixed(2)}, seek ${(med(what, 'seekMs') / med(wt, 'seekMs')).toFixed(2)} (below 1: faster)`);
    }
  }
} finally {
  for (const b of browsers) await b.close();
  await node.stop();
}
