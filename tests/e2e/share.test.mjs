// File sharing between tabs (docs/PROTOCOL.md "ORDB"), each tab in its own
// browser process. One story on one network, in order:
//  1. Tab A seeds 20 MB through the page's file picker and shows the link.
//     Tab B, which never links to A, opens the link and downloads through
//     circuits of tabs to ORDBs; two of B's relaying tabs are closed
//     mid-way, and A is reloaded (it stops serving) once B is past 30 %.
//  2. Tab C asks for the file while only B (partial) holds any of it: B
//     serves C what it has. A's page offers to share the file again after
//     its reload, and does; C is reloaded mid-way.
//  3. B completes, and C resumes from IndexedDB without fetching a stored
//     block twice. SHA-256 equal everywhere.
//  4. A tab with the test-only tampering flag holds the file and serves
//     corrupted blocks; a new downloader, which at first can only reach
//     it, catches them, and completes once an honest tab shares again.
// Screenshots go to target/e2e-screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { startNode, openNamedTab, eventually, makeBody, ROOT } from './helpers.mjs';

const SIZE = 20 * 1000 * 1000;
const BLOCK = 98000;
const BLOCKS = Math.ceil(SIZE / BLOCK);
const body = makeBody(SIZE);
const SHA = createHash('sha256').update(body).digest('hex');
const SHOTS = `${ROOT}target/e2e-screenshots`;

let node;
const tabs = [];
before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  node = await startNode({ args: ['--relays', '0'] });
});
after(async () => {
  for (const t of tabs) await t.browser.close().catch(() => {});
  await node?.stop();
});

const openTab = (name, query = '', hash = '') => openNamedTab(node, tabs, name, query, hash);

/** Closes the tab as a user does (its connections end), then its browser. */
async function closeTab(tab) {
  await tab.page.close();
  await tab.browser.close();
  tabs.splice(tabs.indexOf(tab), 1);
}

const openLinks = (tab) => tab.page.evaluate(
  () => window.peersm.peers().filter((p) => p.state === 'open').map((p) => p.id),
);

/** SHA-256 of a file this tab holds, computed in the page. */
const shaIn = (tab, hash) => tab.page.evaluate(async (h) => {
  const file = await window.peersm.download(h);
  const digest = await crypto.subtle.digest('SHA-256', await file.bytes());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}, hash);

/** The page's row for a file: state and progress. */
const row = (tab, hash) => tab.page.evaluate((h) => {
  const li = document.querySelector(`#files li[data-hash="${h}"]`);
  if (!li) return null;
  const bar = li.querySelector('progress');
  return {
    state: li.dataset.state, text: li.querySelector('.file-status').textContent,
    error: li.querySelector('.error').textContent, value: Number(bar.value), max: Number(bar.max),
  };
}, hash);

const progressOf = async (tab, hash) => {
  const r = await row(tab, hash);
  return r && r.max > 1 ? r.value / r.max : 0;
};

/** Waits until `tab`'s download of `hash` is past `share`; on timeout
 *  the error carries the row's last text. */
async function past(tab, hash, share, ms = 60000) {
  let last = null;
  try {
    await eventually(async () => {
      last = await row(tab, hash);
      return last && last.max > 1 && last.value / last.max >= share;
    }, ms, `${tab.name} past ${share * 100} %`);
  } catch (e) {
    throw new Error(`${e.message}; row: ${JSON.stringify(last)}`);
  }
}

/** What every open tab knows of the mesh and of the file, for a failure
 *  message: its links, what it says it can serve, its ORDB counts, the tabs
 *  it dropped as freeriders, and the file's row. */
async function mesh(hash) {
  const lines = await Promise.all(tabs.map(async (t) => {
    const seen = await t.page.evaluate((h) => ({
      id: window.peersm.id.slice(0, 8),
      links: window.peersm.peers().map((p) => `${p.id.slice(0, 8)}:${p.state}`),
      shared: window.peersm.shared().filter((s) => s.hashName === h),
      ordb: window.peersm.ordbStats(),
      freeriders: window.peersm.freeriders().map((id) => id.slice(0, 8)),
    }), hash).catch((e) => `unreadable: ${e.message}`);
    return `${t.name}: ${JSON.stringify(seen)} row ${JSON.stringify(await row(t, hash).catch(() => null))}`;
  }));
  return lines.join('\n');
}

const shot = (tab, what) => tab.page.screenshot({ path: `${SHOTS}/share-${what}.png`, fullPage: true });

const state = {};

test('A seeds 20 MB from the page; B, not linked to A, downloads it through ORDB tabs', async () => {
  const a = await openTab('A', '?joinLinks=2');
  const relays = [];
  for (let i = 0; i < 4; i += 1) relays.push(await openTab(`R${i}`, '?joinLinks=2'));
  // A picks the file in the page: progress while hashing, then the link.
  await a.page.setInputFiles('#pick', { name: 'film.bin', mimeType: 'application/octet-stream', buffer: body });
  await a.page.waitForSelector('#files li[data-state="seeding"] .share-link', { timeout: 30000 });
  const link = await a.page.$eval('#files li[data-state="seeding"] .share-link', (e) => e.value);
  const hash = link.split('#').pop();
  assert.match(hash, /^[0-9a-f]{40}$/);
  assert.equal(link, `${node.origin}/#${hash}`);
  await shot(a, 'seeding');
  // DB_INFO reaches the relaying tabs (directly or one tab away).
  await eventually(async () => {
    const known = await Promise.all(relays.map((r) => r.page.evaluate(
      (h) => window.peersm.shared().some((s) => s.hashName === h), hash)));
    return known.filter(Boolean).length >= 3;
  }, 30000, 'relaying tabs told about the file');

  // B opens the link; it refuses any link with A, and links to the four
  // relaying tabs, so that two are left after two of them close. (With one
  // left, a CI run saw B's last neighbour name no peer B knew, and no
  // circuit could be built until the next bucket refresh.)
  const b = await openTab('B', `?joinLinks=5&neverLink=${a.id}`, `#${hash}`);
  // Two of B's first hops close mid-way, and A stops serving (a reload).
  await past(b, hash, 0.1);
  const bLinks = await openLinks(b);
  assert.ok(!bLinks.includes(a.id), 'B is not linked to A');
  const closed = relays.filter((r) => bLinks.includes(r.id)).slice(0, 2);
  assert.equal(closed.length, 2, `B relays through at least two tabs: ${bLinks}`);
  for (const r of closed) await closeTab(r);
  await past(b, hash, 0.3, 120000);
  await a.page.reload();
  await a.page.waitForSelector('#status[data-status="connected"]', { timeout: 20000 });
  a.id = await a.page.evaluate(() => window.peersm.id);
  const stalled = await progressOf(b, hash);
  assert.ok(stalled < 1, `B was not done when A left (${stalled})`);
  await shot(b, 'downloading');
  Object.assign(state, { a, b, hash });
});

test('after 25 %, B serves what it has to a third tab, C; A shares again; C is reloaded mid-way', async () => {
  const { b, hash } = state;
  const { a } = state;
  const servedBefore = await b.page.evaluate(() => window.peersm.ordbStats().blocksServed);
  const c = await openTab('C', '?joinLinks=3', `#${hash}`);
  // A has not shared the file again yet: only B holds any of it.
  try {
    await eventually(async () => (await progressOf(c, hash)) > 0, 60000, 'C received blocks');
  } catch (e) {
    throw new Error(`${e.message}\n${await mesh(hash)}`);
  }
  const served = await b.page.evaluate(() => window.peersm.ordbStats().blocksServed);
  assert.ok(served > servedBefore, `B served blocks (${servedBefore} → ${served})`);
  // The link's hash was cleared: a reload does not start it again.
  assert.equal(await c.page.evaluate(() => location.hash), '');
  // A's page offers to share the file again after its reload.
  await a.page.waitForSelector(`#files li[data-hash="${hash}"] button.reseed`);
  await shot(a, 'offer-to-share-again');
  await a.page.click(`#files li[data-hash="${hash}"] button.reseed`);
  await a.page.waitForSelector(`#files li[data-hash="${hash}"][data-state="seeding"]`);
  // The page remembers the partial download across a reload (once some
  // blocks are in IndexedDB).
  await eventually(() => c.page.evaluate((h) => window.peersm.stored().then(
    (s) => s.some((f) => f.hashName === h && f.blocks > 0)), hash), 30000, 'C stored blocks');
  const before = await row(c, hash);
  await c.page.goto(`${node.origin}/?joinLinks=3`);
  await c.page.waitForSelector('#status[data-status="connected"]', { timeout: 20000 });
  const all = await c.page.evaluate(() => window.peersm.stored());
  const kept = all.find((f) => f.hashName === hash);
  assert.ok(kept && !kept.complete && kept.blocks > 0 && kept.blocks < BLOCKS,
    `C kept part: ${JSON.stringify(all)} (row before the reload: ${JSON.stringify(before)})`);
  await c.page.waitForSelector(`#files li[data-hash="${hash}"] button.resume`);
  state.c = c;
  state.keptBlocks = kept.blocks;
});

test('with A sharing again, B completes, and C resumes without fetching a kept block', async () => {
  const { a, b, c, hash } = state;
  await b.page.waitForSelector(`#files li[data-hash="${hash}"][data-state="done"]`, { timeout: 120000 });
  await shot(b, 'done');
  assert.equal(await shaIn(b, hash), SHA);
  // C resumes from IndexedDB.
  const result = await c.page.evaluate(async (h) => {
    const file = await window.peersm.download(h);
    return { fetched: file.fetched, size: file.size, name: file.name, circuits: file.circuits };
  }, hash);
  assert.equal(result.size, SIZE);
  assert.equal(result.name, 'film.bin');
  assert.equal(result.fetched + state.keptBlocks, BLOCKS, `no kept block fetched twice: ${JSON.stringify(result)}`);
  assert.equal(await shaIn(c, hash), SHA);
  for (const t of [a, b, c]) assert.deepEqual(t.errors, [], `${t.name}: no page errors`);
});

test('a tampering tab is caught: its bad blocks are refetched elsewhere, the file completes', async () => {
  const { a, b, c, hash } = state;
  const t = await openTab('T', '?joinLinks=3&tamper=1');
  await t.page.evaluate((h) => window.peersm.download(h).then(() => {}), hash);
  // Only C (honest) and T (tampering) hold the file now. C stops serving
  // (a reload) until T has served E a few blocks: with C serving from the
  // start, a run on a slow machine saw E take every block from C.
  await closeTab(a);
  await closeTab(b);
  await c.page.reload();
  await c.page.waitForSelector('#status[data-status="connected"]', { timeout: 20000 });
  const servedBefore = await t.page.evaluate(() => window.peersm.ordbStats().blocksServed);
  const e = await openTab('E', '?joinLinks=3');
  await e.page.evaluate((h) => {
    window.tampered = window.peersm.download(h)
      .then((file) => ({ stats: file.stats, fetched: file.fetched }));
  }, hash);
  let servedByT = servedBefore;
  try {
    await eventually(async () => {
      servedByT = await t.page.evaluate(() => window.peersm.ordbStats().blocksServed);
      return servedByT >= servedBefore + 3;
    }, 60000, 'T served E blocks');
  } catch (err) {
    throw new Error(`${err.message}\n${await mesh(hash)}`);
  }
  await c.page.evaluate((h) => window.peersm.reseed(h), hash);
  const result = await e.page.evaluate(() => window.tampered);
  assert.equal(await shaIn(e, hash), SHA);
  assert.ok(result.stats.blocksBad >= 1, `bad blocks caught: ${JSON.stringify(result)}`);
  assert.ok(result.stats.sourcesDropped >= 1, `the tampering circuit dropped: ${JSON.stringify(result)}`);
  assert.deepEqual(e.errors, []);
});

test('bad input in the page gets plain words', async () => {
  const { c } = state;
  await c.page.fill('#hash', 'not a link');
  await c.page.click('#get');
  const text = await c.page.$eval('#share-error', (e) => e.textContent);
  assert.match(text, /neither a Peersm link nor a hash_name/);
  const err = await c.page.evaluate(() => window.peersm.seed(new Blob([])).catch((e) => e.message));
  assert.match(err, /empty/);
  const unknown = await c.page.evaluate(() => window.peersm.reseed('ab'.repeat(20)).catch((e) => e.message));
  assert.match(unknown, /no file .* is kept here/);
});
