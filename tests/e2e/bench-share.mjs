// File-sharing benchmark (not a test): in one run, the same 20 MB file goes
// tab → tab (1) through Peersm with one hop between the downloader and the
// ORDB that holds it, (2) through Peersm with three hops, and (3) through
// WebTorrent (its browser build, a local bittorrent-tracker, WebRTC between
// the tabs). Prints throughput, time to first byte, and the ratios.
//   cargo build --release -p peersm-node && npm run build:wasm &&
//   PEERSM_NODE=target/release/peersm-node node tests/e2e/bench-share.mjs [--mb 20] [--rounds 3] [--only peersm]
import { createHash } from 'node:crypto';
import { startNode, launchBrowser, makeBody, eventually } from './helpers.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const MB = Number(arg('mb', 20));
const ROUNDS = Number(arg('rounds', 3));
const ONLY = arg('only', '');
const body = makeBody(MB * 1000 * 1000);
const SHA = createHash('sha256').update(body).digest('hex');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const node = await startNode({ args: ['--relays', '0'] });
const browsers = [];
async function openTab(query = '') {
  const browser = await launchBrowser();
  browsers.push(browser);
  const page = await browser.newPage();
  await page.goto(`${node.origin}/${query}`);
  await page.waitForSelector('#status[data-status="connected"]', { timeout: 20000 });
  return page;
}

/** Downloads `hash` in `page` through `hops`; resolves to { ms, ttfb, sha }
 *  and deletes the copy (so the next round fetches it again). */
const peersmRound = (page, hash, hops) => page.evaluate(async ({ hash, hops }) => {
  const t0 = performance.now();
  let ttfb = null;
  const file = await window.peersm.download(hash, {
    hops,
    onProgress: ({ received }) => { if (ttfb === null && received > 0) ttfb = performance.now() - t0; },
  });
  const ms = performance.now() - t0;
  const digest = await crypto.subtle.digest('SHA-256', await file.bytes());
  const sha = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  await file.remove();
  return { ms, ttfb, sha, circuits: file.circuits };
}, { hash, hops });

const results = {};
const record = (what, r) => {
  if (r.sha !== SHA) throw new Error(`${what}: the bytes differ`);
  (results[what] ??= []).push(r);
  console.log(`${what}: ${(MB * 1000 / r.ms).toFixed(2)} MB/s, first byte ${r.ttfb.toFixed(0)} ms`);
};

try {
  if (ONLY !== 'webtorrent') {
    // Seeder, downloader, and two more tabs for the 3-hop circuits.
    const seeder = await openTab();
    const others = [await openTab(), await openTab()];
    const downloader = await openTab();
    const hash = await seeder.evaluate(async (size) => {
      // helpers.mjs makeBody, computed in the page (same arithmetic).
      const bytes = new Uint8Array(size);
      const view = new DataView(bytes.buffer);
      for (let i = 0; i < size; i += 4) view.setUint32(i, (i * 2654435761) >>> 0, true);
      return (await window.peersm.seed(new Blob([bytes]), { name: 'bench.bin' })).hashName;
    }, body.length);
    await eventually(async () => (await downloader.evaluate(
      () => window.peersm.peers().filter((p) => p.state === 'open').length)) >= 3, 30000, 'links');
    await eventually(() => downloader.evaluate(
      (h) => window.peersm.shared().some((s) => s.hashName === h), hash), 30000, 'DB_INFO');
    for (let round = 0; round < ROUNDS; round += 1) {
      record('peersm 1 hop', await peersmRound(downloader, hash, 1));
      record('peersm 3 hops', await peersmRound(downloader, hash, 3));
    }
    for (const b of browsers.splice(0)) await b.close();
  }
  if (ONLY !== 'peersm') {
    const { startWebTorrent } = await import('./webtorrent.mjs');
    const wt = await startWebTorrent(launchBrowser, browsers);
    for (let round = 0; round < ROUNDS; round += 1) record('webtorrent', await wt.round(body));
    await wt.stop();
  }
  // Throughput over the whole download (asking to done), and over the
  // transfer alone (first byte to done).
  console.log(`\n${MB} MB tab → tab, median of ${ROUNDS} rounds:`);
  const rate = (what) => MB * 1000 / median(results[what].map((r) => r.ms));
  const transfer = (what) => MB * 1000 / median(results[what].map((r) => r.ms - r.ttfb));
  for (const what of Object.keys(results)) {
    console.log(`  ${what.padEnd(14)} ${rate(what).toFixed(2)} MB/s overall, ${transfer(what).toFixed(2)} MB/s after the first byte, first byte ${median(results[what].map((r) => r.ttfb)).toFixed(0)} ms`);
  }
  if (results.webtorrent && results['peersm 1 hop']) {
    for (const what of ['peersm 1 hop', 'peersm 3 hops']) {
      console.log(`  ${what} / WebTorrent: ${(rate(what) / rate('webtorrent')).toFixed(2)} overall, ${(transfer(what) / transfer('webtorrent')).toFixed(2)} after the first byte`);
    }
  }
} finally {
  for (const b of browsers) await b.close();
  await node.stop();
}
