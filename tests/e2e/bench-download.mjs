// Download benchmark (not a test): in one run, one page fetches the same
// file from a local HTTP server (1) through three hops with peer.fetch and
// (2) directly with the browser's fetch(); prints the throughput ratio,
// then the median time to build a 3-hop circuit in the tab over 20 builds.
// Uses the release build of peersm-node for the relays:
//   cargo build --release -p peersm-node && npm run build:wasm &&
//   PEERSM_NODE=target/release/peersm-node node tests/e2e/bench-download.mjs [--mb 50] [--rounds 3]
import { startNode, launchBrowser, makeBody, startFileServer } from './helpers.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const MB = arg('mb', 50);
const ROUNDS = arg('rounds', 3);
const BUILDS = 20;

const node = await startNode({ args: ['--relays', '2', '--exit-policy', 'accept 127.0.0.0/8:*'] });
const server = await startFileServer(makeBody(MB * 1000 * 1000));
const browser = await launchBrowser();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  const page = await browser.newPage();
  await page.goto(`${node.origin}/`);
  await page.waitForSelector('#status[data-status="connected"]', { timeout: 15000 });
  const url = `${server.url}/file.bin`;
  const ours = [];
  const plain = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    // Alternate the order so neither side always runs on a warmer machine.
    const pair = await page.evaluate(async ({ url, oursFirst }) => {
      const viaTor = async () => {
        const t0 = performance.now();
        const res = await window.peersm.fetch(url, { singleOperator: true });
        const ms = performance.now() - t0;
        const size = res.size;
        await res.remove();
        return { ms, size };
      };
      const direct = async () => {
        const t0 = performance.now();
        const buf = await (await fetch(url, { cache: 'no-store' })).arrayBuffer();
        return { ms: performance.now() - t0, size: buf.byteLength };
      };
      if (oursFirst) { const a = await viaTor(); const b = await direct(); return { ours: a, plain: b }; }
      const b = await direct(); const a = await viaTor(); return { ours: a, plain: b };
    }, { url, oursFirst: round % 2 === 0 });
    ours.push(pair.ours.size / pair.ours.ms / 1000);
    plain.push(pair.plain.size / pair.plain.ms / 1000);
    console.log(`round ${round + 1}: 3 hops ${ours.at(-1).toFixed(1)} MB/s, plain fetch() ${plain.at(-1).toFixed(1)} MB/s`);
  }
  const builds = [];
  for (let i = 0; i < BUILDS; i += 1) {
    builds.push((await page.evaluate(() => window.peersm.buildCircuit())).ms);
  }
  const o = median(ours);
  const p = median(plain);
  console.log(`${MB} MB, median of ${ROUNDS}: through 3 hops ${o.toFixed(1)} MB/s, plain fetch() ${p.toFixed(1)} MB/s, ratio ${(o / p).toFixed(3)}`);
  console.log(`3-hop circuit build in the tab, median of ${BUILDS}: ${median(builds).toFixed(1)} ms (min ${Math.min(...builds).toFixed(1)}, max ${Math.max(...builds).toFixed(1)})`);
} finally {
  await browser.close();
  server.close();
  await node.stop();
}
