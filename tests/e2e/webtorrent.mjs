// WebTorrent tab → tab, the baseline of bench-share.mjs: its browser build
// in two Chromium processes, a local bittorrent-tracker (WebSocket) so the
// tabs find each other, WebRTC between them on loopback. Installs both
// packages on first use without saving them (they are for benchmarks only).
import { createServer } from 'node:http';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { ROOT } from './helpers.mjs';

// Kept apart from the project's node_modules (and its lockfile).
const DIR = `${ROOT}target/bench-webtorrent`;
const BUNDLE = `${DIR}/node_modules/webtorrent/dist/webtorrent.min.js`;
const TRACKER = `${DIR}/node_modules/bittorrent-tracker/server.js`;
// Its service worker, for file.streamTo(video) (the streaming baseline).
const WORKER = `${DIR}/node_modules/webtorrent/dist/sw.min.js`;

function ensureInstalled() {
  if (existsSync(BUNDLE) && existsSync(TRACKER)) return;
  console.log(`installing webtorrent and bittorrent-tracker for the baseline into ${DIR}…`);
  mkdirSync(DIR, { recursive: true });
  // --ignore-scripts: native add-ons (uTP, node-datachannel) are not needed
  // for the browser build and the WebSocket tracker.
  execFileSync('npm', ['install', '--prefix', DIR, '--no-audit', '--no-fund', '--ignore-scripts',
    'webtorrent@2', 'bittorrent-tracker@11'], { stdio: 'inherit' });
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>WebTorrent baseline</title>
<script type="module">
import WebTorrent from '/webtorrent.min.js';
window.WebTorrent = WebTorrent;
window.ready = true;
</script>`;

/** Starts the tracker, the page server and a seeding tab. `round(body)`
 *  downloads the file in a new client in a second tab: { ms, ttfb, sha }.
 *  `files` are served by the page's server (path → bytes), for
 *  `streamRound`. */
export async function startWebTorrent(launchBrowser, browsers, files = {}) {
  ensureInstalled();
  const { default: Server } = await import(TRACKER);
  const tracker = new Server({ udp: false, http: false, ws: true, stats: false });
  await new Promise((r) => tracker.listen(0, '127.0.0.1', r));
  const announce = `ws://127.0.0.1:${tracker.ws.address().port}`;
  const bundle = readFileSync(BUNDLE);
  const site = createServer((req, res) => {
    if (req.url === '/webtorrent.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end(bundle);
    }
    if (req.url === '/sw.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end(readFileSync(WORKER));
    }
    if (files[req.url]) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      return res.end(files[req.url]);
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    return res.end(PAGE);
  });
  await new Promise((r) => site.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${site.address().port}`;
  const open = async () => {
    const browser = await launchBrowser();
    browsers.push(browser);
    const page = await browser.newPage();
    await page.goto(origin);
    await page.waitForFunction(() => window.ready === true);
    return page;
  };
  const seeder = await open();
  const downloader = await open();
  let magnet = null;
  const streamMagnets = {};
  return {
    async round(body) {
      if (!magnet) {
        // The same bytes as helpers.mjs makeBody, made in the page.
        magnet = await seeder.evaluate(({ size, announce }) => new Promise((resolve, reject) => {
          const bytes = new Uint8Array(size);
          const view = new DataView(bytes.buffer);
          for (let i = 0; i < size; i += 4) view.setUint32(i, (i * 2654435761) >>> 0, true);
          const client = new window.WebTorrent({ tracker: { rtcConfig: { iceServers: [] } }, dht: false, lsd: false });
          client.on('error', reject);
          client.seed(new File([bytes], 'bench.bin'), { announce: [announce] }, (t) => resolve(t.magnetURI));
        }), { size: body.length, announce });
      }
      return downloader.evaluate(({ magnet, announce }) => new Promise((resolve, reject) => {
        const client = new window.WebTorrent({ tracker: { rtcConfig: { iceServers: [] } }, dht: false, lsd: false });
        client.on('error', reject);
        const t0 = performance.now();
        let ttfb = null;
        // A new store each round (destroyed with the client), so every
        // round fetches every piece from the seeder.
        client.add(magnet, { announce: [announce], destroyStoreOnDestroy: true }, (torrent) => {
          torrent.on('download', () => { if (ttfb === null) ttfb = performance.now() - t0; });
          torrent.on('done', async () => {
            const ms = performance.now() - t0;
            const bytes = await torrent.files[0].arrayBuffer();
            const digest = await crypto.subtle.digest('SHA-256', bytes);
            const sha = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
            await new Promise((r) => client.destroy(r));
            if (ttfb === null) reject(new Error('WebTorrent downloaded nothing (a cached copy?)'));
            else resolve({ ms, ttfb, sha });
          });
        });
      }), { magnet, announce });
    },
    /** Seeds `path` (one of `files`) once, then plays it in a new client
     *  with file.streamTo(video) through WebTorrent's service worker:
     *  { firstFrameMs, seekMs } (a seek to `seekTo` of the duration). */
    /** Plays `path` and seeks to `seekTo` of it: { firstFrameMs, seekMs,
     *  heldAtSeek }. With `streamOnly`, the torrent starts with no piece
     *  selected (`deselect`), so it fetches only what the player reads and
     *  the seek fetches its target from the seeder; by default WebTorrent
     *  fetches the whole file meanwhile and may hold the target already. */
    async streamRound(path, seekTo, { streamOnly = false } = {}) {
      if (!streamMagnets[path]) {
        streamMagnets[path] = await seeder.evaluate(({ path, announce }) => new Promise((resolve, reject) => {
          fetch(path).then((r) => r.blob()).then((blob) => {
            const client = new window.WebTorrent({ tracker: { rtcConfig: { iceServers: [] } }, dht: false, lsd: false });
            client.on('error', reject);
            client.seed(new File([blob], path.slice(1)), { announce: [announce] }, (t) => resolve(t.magnetURI));
          }, reject);
        }), { path, announce });
      }
      return downloader.evaluate(async ({ magnet, announce, seekTo, streamOnly }) => {
        const registration = await navigator.serviceWorker.register('/sw.min.js', { scope: '/' });
        const worker = registration.active ?? registration.waiting ?? registration.installing;
        if (worker.state !== 'activated') {
          await new Promise((r) => worker.addEventListener('statechange', () => worker.state === 'activated' && r()));
        }
        const client = new window.WebTorrent({ tracker: { rtcConfig: { iceServers: [] } }, dht: false, lsd: false });
        client.createServer({ controller: registration });
        const video = document.createElement('video');
        video.muted = true;
        document.body.append(video);
        const t0 = performance.now();
        const firstFrameMs = await new Promise((resolve, reject) => {
          client.on('error', reject);
          video.requestVideoFrameCallback(() => resolve(performance.now() - t0));
          client.add(magnet, { announce: [announce], destroyStoreOnDestroy: true, deselect: streamOnly }, (torrent) => {
            torrent.files[0].streamTo(video);
            video.play().catch(() => {});
          });
          setTimeout(() => reject(new Error('WebTorrent: no frame in 60 s')), 60000);
        });
        const target = video.duration * seekTo;
        const torrent = client.torrents[0];
        // How much of the file, and of the bytes from the target on, the
        // downloader holds when it seeks (WebTorrent keeps fetching in the
        // background while the first frame plays).
        const file = torrent.files[0];
        const at = Math.floor((file.length * seekTo) / torrent.pieceLength);
        const heldAtSeek = { file: torrent.progress, atTarget: torrent.bitfield.get(at) && torrent.bitfield.get(at + 1) };
        const t1 = performance.now();
        video.currentTime = target;
        await new Promise((resolve, reject) => {
          const check = () => (video.currentTime > target + 0.2 && !video.seeking
            ? resolve() : requestAnimationFrame(check));
          check();
          setTimeout(() => reject(new Error('WebTorrent: no play after the seek')), 60000);
        });
        const seekMs = performance.now() - t1;
        video.remove();
        await new Promise((r) => client.destroy(r));
        return { firstFrameMs, seekMs, heldAtSeek };
      }, { magnet: streamMagnets[path], announce, seekTo, streamOnly });
    },
    async stop() {
      tracker.close();
      site.close();
    },
  };
}
