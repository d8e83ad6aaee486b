// A live stream from a web address (docs/PROTOCOL.md "Live streams from a
// web address"): an HTTP server sends an endless WebM stream (ffmpeg,
// paced in real time). The first tab to play the address finds nobody
// relaying it and fetches it through bridge → relay → exit itself; the
// next tabs find that tab through the mesh and play the stream from it:
// the server sees one request, from the exit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { startNode, openNamedTab, eventually, ROOT } from './helpers.mjs';
import { media } from './media.mjs';

// The embedded exit connects from 127.0.0.2.
const EXIT_ARGS = ['--exit-policy', 'accept 127.0.0.0/8:*', '--exit-bind', '127.0.0.2'];

/** An HTTP server whose /live.webm is a WebM stream made as it is sent:
 *  a 90 s recording re-muxed by ffmpeg at its own pace, with Segment and
 *  Clusters of unknown size, as a live encoder writes them. */
async function startLiveServer() {
  const clip = `${ROOT}target/test-media/90s-live.webm`;
  media('live.webm', 90);
  const requests = [];
  const encoders = [];
  const server = createServer((req, res) => {
    requests.push({ url: req.url, from: req.socket.remoteAddress });
    if (req.url === '/fast.webm') {
      // The whole recording at once, as fast as the exit takes it.
      res.writeHead(200, { 'content-type': 'video/webm' });
      res.end(readFileSync(clip));
      return;
    }
    if (req.url !== '/live.webm') { res.writeHead(404); res.end('not here'); return; }
    res.writeHead(200, { 'content-type': 'video/webm' });
    const ff = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-re', '-i', clip, '-c', 'copy',
      '-f', 'webm', '-live', '1', '-cluster_time_limit', '500', 'pipe:1'], { stdio: ['ignore', 'pipe', 'inherit'] });
    encoders.push(ff);
    ff.stdout.pipe(res);
    res.on('close', () => ff.kill('SIGKILL'));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    close: () => { for (const f of encoders) f.kill('SIGKILL'); server.closeAllConnections?.(); server.close(); },
  };
}

let node;
let server;
const tabs = [];
before(async () => {
  node = await startNode({ args: ['--relays', '2', ...EXIT_ARGS] });
  server = await startLiveServer();
});
after(async () => {
  for (const t of tabs) await t.browser.close().catch(() => {});
  server?.close();
  await node?.stop();
});

/** Starts `tab` playing the live stream of `url` in a new muted <video>. */
const watch = (tab, url, options = {}) => tab.page.evaluate(async ([u, o]) => {
  const video = document.createElement('video');
  video.muted = true;
  document.body.append(video);
  // The test network's relays are the bridge's own: the user's choice.
  const player = await window.peersm.stream(u, video, { live: true, singleOperator: true, ...o });
  window.live = { video, player };
  return { mode: player.mode, type: player.type, hashName: player.hashName };
}, [url, options]);

const state = (tab) => tab.page.evaluate(() => ({
  currentTime: window.live.video.currentTime,
  error: window.live.video.error?.message ?? null,
  stats: window.live.player.stats(),
}));

async function playing(tab, secs, what) {
  try {
    await eventually(async () => (await state(tab)).currentTime > secs, 45000, what);
  } catch (e) {
    throw new Error(`${e.message}: ${JSON.stringify(await state(tab))}`);
  }
}

test('the first viewer of a web address fetches it through three hops; the next get it from that tab', async () => {
  const url = `${server.url}/live.webm`;
  const a = await openNamedTab(node, tabs, 'A', '?joinLinks=2');
  // R links to A; B and C (below) never do: they find A through R.
  const r = await openNamedTab(node, tabs, 'R', '?joinLinks=2');
  const started = await watch(a, url);
  assert.equal(started.mode, 'live');
  assert.match(started.type, /^video\/webm; codecs="vp8,opus"$/);
  await playing(a, 2, 'A plays the address');
  const sa = await state(a);
  assert.equal(sa.stats.direct, true, 'nobody relayed it: A fetched the address');
  assert.equal(server.requests.length, 1);
  assert.equal(server.requests[0].from, '127.0.0.2', 'the server saw the exit, not the tab');

  // S is one more tab of the mesh (a circuit through tabs needs a tab
  // with two links).
  const extra = await openNamedTab(node, tabs, 'S', '?joinLinks=3');
  const viewers = [
    await openNamedTab(node, tabs, 'B', `?joinLinks=3&neverLink=${a.id}`),
    await openNamedTab(node, tabs, 'C', `?joinLinks=3&neverLink=${a.id}`),
  ];
  for (const v of viewers) {
    const s = await watch(v, url);
    assert.equal(s.hashName, started.hashName, 'the same stream, named by the address');
  }
  for (const v of viewers) await playing(v, 2, `${v.name} plays the relayed stream`);
  for (const v of viewers) {
    const s = await state(v);
    const links = await v.page.evaluate(() => window.peersm.peers().map((p) => `${p.id.slice(0, 8)}:${p.state}`));
    assert.equal(s.stats.direct, false, `${v.name} got the stream from tabs, not the address: ${JSON.stringify({ ...s.stats, links })}`);
  }
  // And keeps playing as the stream goes on.
  const at = await Promise.all(viewers.map(async (v) => (await state(v)).currentTime));
  for (const [i, v] of viewers.entries()) await playing(v, at[i] + 4, `${v.name} keeps playing`);
  for (const v of viewers) {
    const s = await state(v);
    assert.equal(s.error, null);
    assert.equal(s.stats.direct, false, `${v.name} got the stream from tabs, not the address`);
    assert.ok(s.stats.chunks >= 4, `${v.name}: ${s.stats.chunks} chunks`);
    console.log(`# ${v.name}: ${s.stats.chunks} chunks, delay ${Math.round(s.stats.delay)} ms, playing at ${s.currentTime.toFixed(1)} s`);
  }
  assert.equal(server.requests.length, 1, 'one request reached the server');
  for (const t of [a, r, extra, ...viewers]) assert.deepEqual(t.errors, []);
});

test('the page: "Watch live" plays the address in the list, relayed by other tabs', async () => {
  const r = tabs.find((t) => t.name === 'R');
  const url = `${server.url}/live.webm`;
  await r.page.fill('#url', url);
  await r.page.check('#single-operator');
  await r.page.click('#watch-live');
  const row = '#files li[data-state="live"]';
  await r.page.waitForSelector(`${row} .player video`, { timeout: 30000 });
  await eventually(() => r.page.$eval(`${row} .player video`, (v) => v.currentTime > 1), 45000, 'the row plays live');
  await eventually(async () => /Live through other tabs: .*behind the source/.test(
    await r.page.$eval(`${row} .file-status`, (e) => e.textContent)), 10000, 'the row says where it comes from');
  assert.equal(server.requests.length, 1, 'still one request at the server');
  await r.page.click(`${row} button.stop`);
  assert.deepEqual(r.errors, []);
});

test('a body sent faster than it plays is read at the pace of its media', async () => {
  const [a] = tabs;
  const url = `${server.url}/fast.webm`;
  const seen = await a.page.evaluate(async (u) => {
    const video = document.createElement('video');
    video.muted = true;
    document.body.append(video);
    const player = await window.peersm.stream(u, video, { live: true, direct: true, singleOperator: true });
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 6000));
    const s = player.stats();
    const secs = (performance.now() - t0) / 1000;
    player.stop();
    video.remove();
    return { lastSeq: s.lastSeq, direct: s.direct, secs };
  }, url);
  assert.equal(seen.direct, true);
  // 250 ms chunks: real time since the start, plus the 3 s lead allowed,
  // plus slack for the first burst; the whole 90 s file would be ~360.
  const bound = Math.ceil((seen.secs + 1 + 3 + 2) * 4);
  console.log(`# a 90 s recording sent at once: ${seen.lastSeq + 1} chunks made in ${seen.secs.toFixed(1)} s (bound ${bound})`);
  assert.ok(seen.lastSeq + 1 <= bound, `${seen.lastSeq + 1} chunks in ${seen.secs} s`);
});

test('bad input: an address that is no stream, live options without live', async () => {
  const [a] = tabs;
  const errors = await a.page.evaluate(async (base) => {
    const video = document.createElement('video');
    const attempt = async (url, o) => {
      try { await window.peersm.stream(url, video, o); return null; } catch (e) { return e.message; }
    };
    const wait = async (url, o) => {
      try {
        const p = await window.peersm.stream(url, video, o);
        await p.done;
        return null;
      } catch (e) { return e.message; }
    };
    return {
      notFound: await wait(`${base}/nothing-here`, { live: true, direct: true, singleOperator: true }),
      noLive: await attempt(`${base}/live.webm`, { direct: true }),
      badUrl: await attempt('http://', { live: true }),
    };
  }, server.url);
  assert.match(String(errors.notFound), /answered 404/);
  assert.match(String(errors.noLive), /go with `live: true`/);
  assert.match(String(errors.badUrl), /stream:/);
});
