// The mesh: tabs (in separate browser processes) register with their
// bridge, learn each other through DB_FOUND_PEER, are introduced
// (INTRODUCE/INTRODUCED carrying SDPs) and open WebRTC links on which both
// ends prove their IDs bound to the DTLS fingerprints. Runs in a
// loopback-only network namespace (scripts/test), so WebRTC stays on
// 127.0.0.1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, launchBrowser, eventually } from './helpers.mjs';

let node;
const browsers = [];
before(async () => { node = await startNode({ args: ['--relays', '0'] }); });
after(async () => {
  for (const b of browsers) await b.close();
  await node?.stop();
});

async function openTab(query = '', { initScript } = {}) {
  const browser = await launchBrowser();
  browsers.push(browser);
  const page = await browser.newPage();
  if (initScript) await page.addInitScript(initScript);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => { if (process.env.PEERSM_E2E_CONSOLE) console.log('[page]', m.text()); });
  await page.goto(`${node.origin}/${query}`);
  await page.waitForSelector('#status[data-status="connected"]', { timeout: 15000 });
  assert.deepEqual(errors, []);
  const id = await page.evaluate(() => window.peersm.id);
  return { browser, page, id };
}

const openLinks = (tab) => tab.page.evaluate(
  () => window.peersm.peers().filter((p) => p.state === 'open').map((p) => p.id).sort(),
);

test('three tabs in three browsers link to each other over WebRTC', async () => {
  const tabs = [];
  for (let i = 0; i < 3; i += 1) tabs.push(await openTab());
  for (const tab of tabs) {
    const others = tabs.filter((t) => t !== tab).map((t) => t.id).sort();
    await eventually(async () => {
      const open = await openLinks(tab);
      return JSON.stringify(open) === JSON.stringify(others) && open;
    }, 30000, `tab ${tab.id.slice(0, 8)} linked to the two others`);
  }
  // The page lists the open links.
  await tabs[0].page.waitForFunction(
    () => document.querySelectorAll('#peers li[data-state="open"]').length === 2, null, { timeout: 5000 },
  );
  // A tab that goes away: the others drop its link, and keep theirs.
  await tabs[2].browser.close();
  browsers.splice(browsers.indexOf(tabs[2].browser), 1);
  for (const tab of tabs.slice(0, 2)) {
    const other = tabs.find((t) => t !== tab && t !== tabs[2]).id;
    await eventually(async () => {
      const open = await openLinks(tab);
      return JSON.stringify(open) === JSON.stringify([other]);
    }, 30000, 'the closed tab dropped, the other link kept');
  }
});

/** XOR distance between two hex IDs, as a BigInt. */
const xor = (a, b) => BigInt(`0x${a}`) ^ BigInt(`0x${b}`);

test('a Kademlia lookup goes through other tabs to peers it is not linked to', async () => {
  for (const b of browsers.splice(0)) await b.close();
  // Each tab links to one peer when joining: a tree, so most peers are
  // reachable only through others.
  const tabs = [];
  for (let i = 0; i < 6; i += 1) {
    tabs.push(await openTab('?joinLinks=1'));
    if (i > 0) await eventually(async () => (await openLinks(tabs[i])).length >= 1, 30000, 'joined');
  }
  const ids = tabs.map((t) => t.id);
  const origin = tabs[0];
  const target = 'f'.repeat(8) + ids[5].slice(8);
  const found = await origin.page.evaluate((t) => window.peersm.findNode(t), target);
  const expected = ids.slice(1).sort((a, b) => (xor(a, target) < xor(b, target) ? -1 : 1));
  assert.deepEqual(found.closest, expected, 'the true closest peers, in order');
  const direct = (await openLinks(origin)).length;
  console.log(`lookup: ${direct} direct links, ${found.queries} queries, ${found.rounds} rounds, ${found.ms.toFixed(0)} ms`);
  if (direct < expected.length) assert.ok(found.rounds >= 2, 'peers beyond the links were reached through others');
});

test('bucket refresh: lookups find the peers a tab is not linked to, and it links to them', async () => {
  for (const b of browsers.splice(0)) await b.close();
  const tabs = [];
  for (let i = 0; i < 5; i += 1) {
    tabs.push(await openTab('?joinLinks=1&refreshMs=2000'));
    if (i > 0) await eventually(async () => (await openLinks(tabs[i])).length >= 1, 30000, 'joined');
  }
  for (const tab of tabs) {
    await eventually(async () => (await openLinks(tab)).length === 4, 60000,
      `tab ${tab.id.slice(0, 8)} linked to all through refreshes`);
  }
  for (const tab of tabs) {
    assert.equal((await tab.page.evaluate(() => window.peersm.routingTable())).size, 4);
  }
});

test('introductions by peers: found peers are linked through the tab that named them', async () => {
  for (const b of browsers.splice(0)) await b.close();
  const before = (await node.status()).introductions;
  const tabs = [];
  for (let i = 0; i < 5; i += 1) {
    tabs.push(await openTab('?joinLinks=1&refreshMs=2000&introducer=peers'));
    if (i > 0) await eventually(async () => (await openLinks(tabs[i])).length >= 1, 30000, 'joined');
  }
  for (const tab of tabs) {
    await eventually(async () => (await openLinks(tab)).length === 4, 60000,
      `tab ${tab.id.slice(0, 8)} linked to all`);
  }
  // Only the four joins went through the bridge; the six other links
  // were introduced by tabs.
  assert.equal((await node.status()).introductions - before, 4);
});

// An introducer that slips a second a=fingerprint line into a tab's SDPs:
// it copies the real line to the session level, where a parser taking the
// first line finds it, and puts its own certificate's in the media
// section, which Chromium enforces. Played here by the tab's own page
// (every SDP the tab reads back is altered); the tab still signs its real
// certificate, as the victim of such an introducer would.
function forgeSecondFingerprint() {
  const real = Object.getOwnPropertyDescriptor(RTCPeerConnection.prototype, 'localDescription');
  Object.defineProperty(RTCPeerConnection.prototype, 'localDescription', {
    get() {
      const d = real.get.call(this);
      if (!d) return d;
      const line = d.sdp.match(/a=fingerprint:[^\r\n]*\r\n/)[0];
      const attacker = `a=fingerprint:sha-256 ${Array(32).fill('AB').join(':')}\r\n`;
      const sdp = d.sdp.replace(line, attacker).replace(/\r\nm=/, `\r\n${line}m=`);
      return { type: d.type, sdp };
    },
  });
}

// Counts the peer connections a page makes.
function countPeerConnections() {
  const Real = RTCPeerConnection;
  window.peerConnections = 0;
  window.RTCPeerConnection = function counted(...args) {
    window.peerConnections += 1;
    return new Real(...args);
  };
  window.RTCPeerConnection.prototype = Real.prototype;
  window.RTCPeerConnection.generateCertificate = Real.generateCertificate.bind(Real);
}

test('an SDP carrying two fingerprints is refused before any connection is made', async () => {
  for (const b of browsers.splice(0)) await b.close();
  const honest = [];
  for (let i = 0; i < 2; i += 1) honest.push(await openTab('', { initScript: countPeerConnections }));
  await eventually(async () => (await openLinks(honest[0])).length === 1, 30000, 'honest tabs link');
  const before = (await node.status()).introductions;
  const forged = await openTab('', { initScript: forgeSecondFingerprint });
  // It offers to both through the bridge; the attempts end, refused.
  await eventually(async () => (await node.status()).introductions - before >= 2, 30000,
    'the forged tab offered to both');
  await eventually(async () => {
    const peers = await forged.page.evaluate(() => window.peersm.peers());
    return peers.length === 0;
  }, 40000, 'the forged tab has no link, open or pending');
  for (const tab of honest) {
    assert.deepEqual(await openLinks(tab), [honest.find((t) => t !== tab).id], 'honest links kept');
    // One connection each: their own link. None for the forged offers.
    assert.equal(await tab.page.evaluate(() => window.peerConnections), 1);
  }
});
