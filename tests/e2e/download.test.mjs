// Anonymous download from the tab: a 20 MB file from a local HTTP server
// through bridge → relay → exit, bytes checked, the server seeing only the
// exit; the page's URL box and save link; a relay killed mid-download and
// the download finishing over a new circuit from where it stopped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  startNode, startRelay, launchBrowser, eventually, makeBody, startFileServer,
} from './helpers.mjs';

// The embedded exit connects from 127.0.0.2, so the server's log tells the
// exit's connections from anything else on the machine.
const EXIT_ARGS = ['--exit-policy', 'accept 127.0.0.0/8:*', '--exit-bind', '127.0.0.2'];
const SIZE = 20 * 1000 * 1000;
const body = makeBody(SIZE);
const sha256 = (b) => createHash('sha256').update(b).digest('hex');

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

async function openPage(node) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => { if (process.env.PEERSM_E2E_CONSOLE) console.log('[page]', m.text()); });
  await page.goto(`${node.origin}/`);
  await page.waitForSelector('#status[data-status="connected"]', { timeout: 15000 });
  assert.deepEqual(errors, []);
  return page;
}

/** Runs peer.fetch in the page; returns status, size, attempts and the
 *  body's SHA-256 computed in the page. */
function fetchInPage(page, url, options = {}) {
  return page.evaluate(async ({ url, options }) => {
    window.progress = { received: 0, calls: 0 };
    // The test networks' relays are the bridge's own: the user's choice.
    const res = await window.peersm.fetch(url, {
      singleOperator: true,
      ...options,
      onProgress: (p) => { window.progress = { ...p, calls: window.progress.calls + 1 }; },
    });
    const bytes = await res.bytes();
    const digest = await crypto.subtle.digest('SHA-256', bytes);
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
    await res.remove();
    return {
      status: res.status, size: res.size, attempts: res.attempts, sha256: hex,
      circuits: res.circuits, contentType: res.headers['content-type'], progress: window.progress,
    };
  }, { url, options });
}

test('20 MB through bridge + 2 relays: bytes equal, the server sees only the exit', async () => {
  const node = await startNode({ args: ['--relays', '2', ...EXIT_ARGS] });
  const server = await startFileServer(body);
  try {
    const page = await openPage(node);
    const proved = await page.evaluate(() => window.peersm.bridgeFingerprint);
    assert.equal(proved, (await node.status()).bridge.fingerprint, 'the bridge proved its identity');
    const relays = await page.evaluate(() => window.peersm.relays());
    assert.equal(relays.length, 2);
    assert.equal(relays.filter((r) => r.exit).length, 1);

    const got = await fetchInPage(page, `${server.url}/file.bin`);
    assert.equal(got.status, 200);
    assert.equal(got.size, SIZE);
    assert.equal(got.sha256, sha256(body));
    assert.equal(got.attempts, 1);
    assert.equal(got.contentType, 'application/octet-stream');
    assert.ok(got.progress.calls > 1 && got.progress.total === SIZE, JSON.stringify(got.progress));
    assert.ok(server.connections.length >= 1);
    assert.deepEqual([...new Set(server.connections)], ['127.0.0.2'], 'only the exit connected');

    // A redirect is followed; a refused port is a clear error, not a hang.
    const moved = await fetchInPage(page, `${server.url}/moved`);
    assert.equal(moved.sha256, sha256(body));
    const closedPort = await page.evaluate(async () => {
      try { await window.peersm.fetch('http://127.0.0.1:1/x', { maxAttempts: 1, singleOperator: true }); return 'no error'; }
      catch (e) { return e.message; }
    });
    assert.match(closedPort, /refused/);
    // Every relay here is the bridge's: without the user's consent, no
    // circuit is built and the reason is given.
    const bridgeOnly = await page.evaluate(async (url) => {
      const relays = await window.peersm.relays();
      try { await window.peersm.fetch(url, { maxAttempts: 1 }); return { relays, error: 'no error' }; }
      catch (e) { return { relays, error: e.message }; }
    }, `${server.url}/file.bin`);
    assert.ok(bridgeOnly.relays.every((r) => r.bridgeRun), 'the embedded relays are marked');
    assert.match(bridgeOnly.error, /run by the bridge itself/);
    const ftp = await page.evaluate(async () => {
      try { await window.peersm.fetch('ftp://example.org/'); return 'no error'; }
      catch (e) { return e.message; }
    });
    assert.match(ftp, /only http:\/\/ and https:\/\/ URLs can be fetched/);
    await page.close();
  } finally {
    server.close();
    await node.stop();
  }
});

test('the page: URL box, progress bar, save link', async () => {
  const node = await startNode({ args: ['--relays', '2', ...EXIT_ARGS] });
  const small = makeBody(300 * 1000);
  const server = await startFileServer(small);
  try {
    const page = await openPage(node);
    await page.fill('#url', `${server.url}/file.bin`);
    await page.click('#go');
    const save = await page.waitForSelector('#save', { timeout: 30000 });
    assert.equal(await save.getAttribute('download'), 'file.bin');
    assert.match(await page.textContent('#progress-text'), /^200 OK: 300\.0 KB through /);
    const saved = await page.evaluate(async () => {
      const buf = await (await fetch(document.getElementById('save').href)).arrayBuffer();
      return buf.byteLength;
    });
    assert.equal(saved, small.length);
    await page.close();
  } finally {
    server.close();
    await node.stop();
  }
});

test('a relay killed mid-download: a new circuit resumes where it stopped', async () => {
  // One embedded relay (the exit) and two joined middles; a third relay
  // without the operator's join token is not listed.
  const node = await startNode({ args: ['--relays', '1', ...EXIT_ARGS, '--join-token', 'e2e-token'] });
  const m1 = await startRelay({ join: node.origin, nickname: 'middle1', args: ['--join-token', 'e2e-token'] });
  const m2 = await startRelay({ join: node.origin, nickname: 'middle2', args: ['--join-token', 'e2e-token'] });
  const intruder = await startRelay({ join: node.origin, nickname: 'intruder', args: ['--join-token', 'guess'] });
  const server = await startFileServer(body, { bytesPerSecond: 4 * 1000 * 1000 });
  try {
    await eventually(async () => (await node.status()).relays.length === 3, 15000, 'both middles listed');
    await eventually(() => intruder.logs.join('').includes('bridge refused us'), 5000, 'the intruder refused');
    assert.ok(!(await node.status()).relays.some((l) => l.includes(' intruder ')), 'no relay without the token');
    const page = await openPage(node);
    const relays = await page.evaluate(() => window.peersm.relays());
    const exit = relays.find((r) => r.exit);
    const pending = fetchInPage(page, `${server.url}/file.bin`, { path: [m1.fingerprint, exit.fingerprint] });
    await eventually(() => page.evaluate(() => window.progress && window.progress.received > 3e6), 30000, '3 MB through middle1');
    m1.kill();
    const got = await pending;
    assert.equal(got.size, SIZE);
    assert.equal(got.sha256, sha256(body));
    assert.ok(got.attempts >= 2, `attempts ${got.attempts}`);
    assert.match(got.circuits[0], /^middle1 → /);
    assert.match(got.circuits.at(-1), /^middle2 → /);
    const resumed = server.requests.filter((r) => r.range);
    assert.ok(resumed.length >= 1, 'a Range request resumed the download');
    assert.ok(Number(/bytes=(\d+)-/.exec(resumed[0].range)[1]) > 3e6, resumed[0].range);
    await page.close();
  } finally {
    intruder.kill();
    m2.kill();
    m1.kill();
    server.close();
    await node.stop();
  }
});

test('a WebM fetched through 3 hops plays as its bytes come (peer.stream of a URL)', async () => {
  const { media } = await import('./media.mjs');
  const clip = media('vp9.webm', 30);
  const node = await startNode({ args: ['--relays', '2', ...EXIT_ARGS] });
  // Served at twice its bitrate, so that playing before the end is seen.
  const server = await startFileServer(clip, { path: '/clip.webm', bytesPerSecond: 1000 * 1000 });
  try {
    const page = await openPage(node);
    const started = await page.evaluate(async (url) => {
      const video = document.createElement('video');
      video.muted = true;
      document.body.append(video);
      window.fetched = { received: 0, movedWith: null };
      video.addEventListener('timeupdate', () => {
        if (window.fetched.movedWith === null && video.currentTime > 1) window.fetched.movedWith = window.fetched.received;
      });
      const player = await window.peersm.stream(url, video, {
        singleOperator: true,
        onProgress: ({ received }) => { window.fetched.received = received; },
      });
      window.fetched.done = player.done.then(async (res) => {
        const digest = await crypto.subtle.digest('SHA-256', await res.bytes());
        window.fetched.sha = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
        window.fetched.size = res.size;
      }, (e) => { window.fetched.failed = e.message; });
      video.play().catch(() => {});
      return { mode: player.mode, type: player.type };
    }, `${server.url}/clip.webm`);
    assert.equal(started.mode, 'mediasource');
    assert.match(started.type, /^video\/webm; codecs="vp9,opus"$/);
    await eventually(() => page.evaluate(() => window.fetched.movedWith !== null), 30000, 'playback moving');
    await page.evaluate(() => window.fetched.done);
    const f = await page.evaluate(() => ({ ...window.fetched, done: undefined }));
    assert.equal(f.failed, undefined);
    assert.ok(f.movedWith < clip.length, `played with ${f.movedWith} of ${clip.length} bytes fetched`);
    assert.equal(f.sha, sha256(clip), 'the fetched body is byte-equal');
    console.log(`# a fetched WebM played with ${(f.movedWith / 1e6).toFixed(1)} of ${(clip.length / 1e6).toFixed(1)} MB fetched`);
    const bad = await page.evaluate(async (url) => {
      try { await window.peersm.stream(url, document.createElement('video'), { singleOperator: true }); return null; } catch (e) { return e.message; }
    }, `${server.url}/nothing-here`);
    assert.match(String(bad), /not a WebM or MP4 file/);
    await page.close();
  } finally {
    server.close();
    await node.stop();
  }
});
