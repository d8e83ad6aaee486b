// Tabs as onion routers: tabs in separate browser processes, half on each
// of two federated bridges, link over WebRTC (introduced across bridges);
// one builds a circuit through three other tabs (tab → tab → tab → tab),
// fetches from the last tab's directory through it, and when a tab on the
// circuit goes away the circuit dies while other circuits keep working.
// Runs in a loopback-only network namespace (scripts/test).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, launchBrowser, eventually, bridgeIdentity } from './helpers.mjs';

const TABS = Number(process.env.PEERSM_E2E_TABS ?? 8);
const bridges = [];
const browsers = [];
before(async () => {
  const [first, second] = [await bridgeIdentity(), await bridgeIdentity()];
  const b = await startNode({
    args: ['--relays', '0', '--data-dir', first.dataDir, '--trust-bridge', second.fingerprint],
  });
  bridges.push(b);
  const wsOf = (n) => `${n.origin.replace('http:', 'ws:')}/bridge`;
  bridges.push(await startNode({
    args: ['--relays', '0', '--data-dir', second.dataDir, '--peer-bridge', `${wsOf(b)}#${first.fingerprint}`],
  }));
  for (const n of bridges) {
    await eventually(async () => (await n.status()).federation.length === 1, 15000, 'bridges federated');
  }
});
after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  for (const n of bridges) await n.stop();
});

async function openTab(node) {
  const browser = await launchBrowser();
  browsers.push(browser);
  const page = await browser.newPage();
  page.on('console', (m) => { if (process.env.PEERSM_E2E_CONSOLE) console.log('[page]', m.text()); });
  await page.goto(`${node.origin}/`);
  await page.waitForSelector('#status[data-status="connected"]', { timeout: 20000 });
  return { browser, page, id: await page.evaluate(() => window.peersm.id) };
}

const openLinks = (tab) => tab.page.evaluate(
  () => window.peersm.peers().filter((p) => p.state === 'open').length,
);

test(`${TABS} tabs: a circuit through three tabs carries data; a tab leaving kills only its circuits`, async () => {
  const tabs = [];
  for (let i = 0; i < TABS; i += 1) tabs.push(await openTab(bridges[i % 2]));
  // Every tab links to every other, across the two bridges.
  for (const tab of tabs) {
    await eventually(async () => (await openLinks(tab)) === TABS - 1, 60000, `tab ${tab.id.slice(0, 8)} linked to all`);
  }
  // Routing tables fill: every other tab, in buckets by XOR distance.
  for (const tab of tabs) {
    const rt = await tab.page.evaluate(() => window.peersm.routingTable());
    assert.equal(rt.size, TABS - 1);
    assert.equal(rt.buckets.reduce((a, [, n]) => a + n, 0), TABS - 1);
  }
  for (const n of bridges) {
    const s = await n.status();
    assert.equal(s.mesh_peers, TABS / 2);
    assert.equal(s.federation[0].peers, TABS / 2, 'each bridge knows the other\'s tabs');
  }
  const origin = tabs[0];
  const ids = new Set(tabs.map((t) => t.id));

  const circuit = await origin.page.evaluate(() => window.peersm.buildTabCircuit(3));
  assert.equal(circuit.hops.length, 3);
  assert.equal(new Set(circuit.hops).size, 3, 'three different tabs');
  assert.ok(!circuit.hops.includes(origin.id), 'not through itself');
  for (const h of circuit.hops) assert.ok(ids.has(h), `hop ${h} is one of our tabs`);

  const info = await origin.page.evaluate((id) => window.peersm.tabCircuitGet(id, '/peersm/info'), circuit.id);
  assert.equal(info.status, 200);
  assert.equal(info.text, `peersm tab ${circuit.hops[2]}\n`, 'the answer comes from the last hop');
  const bulk = await origin.page.evaluate((id) => window.peersm.tabCircuitGet(id, '/peersm/bytes?n=2000000'), circuit.id);
  assert.equal(bulk.size, 2000000);

  await origin.page.waitForSelector('#circuits li[data-state="open"]', { timeout: 5000 });
  const listed = await origin.page.evaluate(() => window.peersm.circuits());
  assert.deepEqual(listed.map((c) => [c.id, c.state]), [[circuit.id, 'open']]);

  // The middle tab goes away: that circuit dies, others still work.
  const middle = tabs.find((t) => t.id === circuit.hops[1]);
  await middle.browser.close();
  browsers.splice(browsers.indexOf(middle.browser), 1);
  await eventually(async () => {
    const cs = await origin.page.evaluate(() => window.peersm.circuits());
    return cs.find((c) => c.id === circuit.id)?.state === 'closed';
  }, 30000, 'the circuit through the closed tab is destroyed');
  await eventually(async () => (await origin.page.evaluate(() => window.peersm.routingTable())).size === TABS - 2,
    30000, 'the closed tab evicted from the routing table');
  const again = await eventually(async () => {
    const c = await origin.page.evaluate(() => window.peersm.buildTabCircuit(3));
    return !c.hops.includes(middle.id) && c;
  }, 30000, 'a new circuit around the closed tab');
  const info2 = await origin.page.evaluate((id) => window.peersm.tabCircuitGet(id, '/peersm/info'), again.id);
  assert.equal(info2.text, `peersm tab ${again.hops[2]}\n`);
});
