// Bridges' DHT: three bridges in a chain (B2 names B1, B3 names B2, each
// trusting its neighbours' identities) find each other through BRIDGE_NODES
// (vouches from a trusted neighbour) and all federate; a tab on B1 and a
// tab on B3 are introduced across them and link over WebRTC. A fourth
// bridge that names B1 but that no operator trusts is not federated. Runs
// in a loopback-only network namespace (scripts/test).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, launchBrowser, eventually, bridgeIdentity } from './helpers.mjs';

const bridges = [];
const browsers = [];
after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  for (const n of bridges) await n.stop();
});

const wsOf = (n) => `${n.origin.replace('http:', 'ws:')}/bridge`;

test('three bridges named in a chain all federate; tabs at the ends link', async () => {
  const ids = [await bridgeIdentity(), await bridgeIdentity(), await bridgeIdentity()];
  const own = (i) => ['--relays', '0', '--data-dir', ids[i].dataDir];
  bridges.push(await startNode({ args: [...own(0), '--trust-bridge', ids[1].fingerprint] }));
  bridges.push(await startNode({
    args: [...own(1), '--peer-bridge', `${wsOf(bridges[0])}#${ids[0].fingerprint}`,
      '--trust-bridge', ids[2].fingerprint],
  }));
  bridges.push(await startNode({ args: [...own(2), '--peer-bridge', `${wsOf(bridges[1])}#${ids[1].fingerprint}`] }));
  for (const [i, n] of bridges.entries()) {
    const status = await n.status();
    assert.equal(status.bridge.fingerprint, ids[i].fingerprint, 'the identity made ahead of time');
    await eventually(async () => new Set((await n.status()).federation.map((f) => f.url)).size === 2,
      20000, 'each bridge federated with the two others');
  }
  // An untrusted bridge says hello to B1: ignored.
  const stranger = await startNode({
    args: ['--relays', '0', '--peer-bridge', `${wsOf(bridges[0])}#${ids[0].fingerprint}`],
  });
  bridges.push(stranger);
  await eventually(async () => (await stranger.status()).federation.length === 1, 10000, 'the stranger linked to B1');
  await new Promise((r) => setTimeout(r, 1000));
  const urls = (await bridges[0].status()).federation.map((f) => f.url);
  assert.ok(!urls.includes(wsOf(stranger)), `B1 did not federate with a bridge it does not trust: ${urls}`);
  assert.equal(urls.length, 2);
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
