// The page against a real bridge: a tab generates its identity, links to
// the bridge, shows ID and state, and the bridge lists it on /status.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, launchBrowser, eventually, HEX40 } from './helpers.mjs';

let node, browser;
before(async () => { node = await startNode(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await node?.stop(); });

async function openPeer(context) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(`${node.origin}/`);
  await page.waitForSelector('#status[data-status="connected"]', { timeout: 15000 });
  assert.deepEqual(errors, []);
  return page;
}

test('a tab shows a 40-hex ID, "connected", and /status lists it', async () => {
  const context = await browser.newContext();
  const page = await openPeer(context);
  const shownId = await page.textContent('#peer-id');
  assert.match(shownId, HEX40);
  assert.equal(await page.evaluate(() => window.peersm.id), shownId);
  assert.equal(await page.evaluate(() => window.peersm.status), 'connected');
  const status = await eventually(async () => {
    const s = await node.status();
    return s.peers.some((p) => p.id === shownId) && s;
  }, 5000, 'the ID on /status');
  assert.ok(status.links >= 1);
  await context.close();
  await eventually(async () => !(await node.status()).peers.some((p) => p.id === shownId), 5000, 'the ID to leave /status');
});

test('two tabs get two identities, both listed', async () => {
  const context = await browser.newContext();
  const [a, b] = [await openPeer(context), await openPeer(context)];
  const [ida, idb] = [await a.textContent('#peer-id'), await b.textContent('#peer-id')];
  assert.notEqual(ida, idb);
  await eventually(async () => {
    const ids = (await node.status()).peers.map((p) => p.id);
    return ids.includes(ida) && ids.includes(idb);
  }, 5000, 'both IDs on /status');
  // A reload is a new session: a new identity.
  await a.reload();
  await a.waitForSelector('#status[data-status="connected"]', { timeout: 15000 });
  assert.notEqual(await a.textContent('#peer-id'), ida);
  await context.close();
});

test('status events report the link going down and coming back', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${node.origin}/`);
  await page.waitForSelector('#status[data-status="connected"]', { timeout: 15000 });
  const id = await page.textContent('#peer-id');
  await page.evaluate(() => {
    window.seen = [];
    window.peersm.on('status', (s) => window.seen.push(s));
  });
  // Restart the bridge on the same port: the tab reconnects by itself.
  const port = Number(new URL(node.origin).port);
  await node.stop();
  await page.waitForSelector('#status:not([data-status="connected"])', { timeout: 10000 });
  node = await startNode({ port });
  await page.waitForSelector('#status[data-status="connected"]', { timeout: 20000 });
  const seen = await page.evaluate(() => window.seen);
  assert.equal(seen[0], 'disconnected');
  assert.ok(seen.includes('connecting'));
  assert.equal(seen.at(-1), 'connected');
  assert.equal(await page.textContent('#peer-id'), id, 'same session, same ID');
  await eventually(async () => (await node.status()).peers.some((p) => p.id === id), 5000, 'the ID back on /status');
  await context.close();
});
