// Browser crypto benchmark (not a test): loads the page from a peersm-node
// and runs the core's relay crypto and ntor benchmarks as wasm in headless
// Chromium, next to the same code natively (cargo run --release --example
// bench_crypto). Usage: node tests/e2e/bench-crypto.mjs
import { startNode, launchBrowser } from './helpers.mjs';

const node = await startNode();
const browser = await launchBrowser();
try {
  const page = await browser.newPage();
  await page.goto(`${node.origin}/`);
  await page.waitForFunction(() => window.peersm, null, { timeout: 15000 });
  const result = await page.evaluate(async () => {
    const m = await import('/pkg/peersm.js');
    return { relay: m.benchRelayCrypto(100), ntorMs: m.benchNtor(500) };
  });
  const f = (x) => x.toFixed(1).padStart(8);
  console.log('relay crypto, one hop, wasm in Chromium:');
  console.log(`  client seal + encrypt   ${f(result.relay.clientEncrypt)} MB/s`);
  console.log(`  relay decrypt + check   ${f(result.relay.relayDecrypt)} MB/s`);
  console.log(`  bare AES-128-CTR        ${f(result.relay.aesCtrOnly)} MB/s (baseline)`);
  console.log(`ntor handshake, wasm: ${result.ntorMs.toFixed(3)} ms`);
} finally {
  await browser.close();
  await node.stop();
}
