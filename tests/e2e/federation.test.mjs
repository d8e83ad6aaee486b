// Bridges' DHT: three bridges in a chain (B2 names B1, B3 names B2) find
// each other through BRIDGE_NODES and all federate; a tab on B1 and a tab
// on B3 are introduced across them and link over WebRTC. Runs in a
// loopback-only network namespace (scripts/test).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, launchBrowser, eventually } from './helpers.mjs';

const bridges = [];
const browsers = [];
after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  for (const n of bridges) await n.stop();
});

const wsOf = (n) => `${n.origin.replace('http:', 'ws:')}/bridge`;

test('three bridges named in a chain all federate; tabs at the ends link', async () => {
  bridges.push(await startNode({ args: ['--relays', '0'] }));
  bridges.push(await startNode({ args: ['--relays', '0', '--peer-bridge', wsOf(bridges[0])] }));
  bridges.push(await startNode({ args: ['--relays', '0', '--peer-bridge', wsOf(bridges[1])] }));
  for (const n of bridges) {
    await eventually(async () => new Set((await n.status()).federation.map((f) => f.url)).size === 2,
      20000, 'each bridge federated with the two others');
  }
  const tabs = [];
  for (const n of [bridges[0], bridges[2]]) {
    const browser = await launchBrowser();
    browsers.push(browser);
    const page = await browser.newPage();
    await page.goto(`${n.origin}/`);
    await page.waitForSelector('#status[data-status="connected"]', { timeout: 20000 });
    tabs.push({ page, id: await page.evaluate(() => window.peersm.id) });
  }
  for (const [i, tab] of tabs.entries()) {
    const other = tabs[1 - i].id;
    await eventually(async () => {
      const open = await tab.page.evaluate(() => window.peersm.peers().filter((p) => p.state === 'open').map((p) => p.id));
      return open.includes(other);
    }, 30000, 'the two tabs linked across the bridges');
  }
  const circuits = await tabs[0].page.evaluate(() => window.peersm.peers());
  assert.equal(circuits.length, 1);
});
