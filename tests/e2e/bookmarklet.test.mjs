// The bookmarklet: its code, run on a plain page of another origin, loads
// the Peersm shell from the serving origin and shows an overlay with an ID.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, launchBrowser, startPlainSite, eventually, HEX40 } from './helpers.mjs';

let node, browser, site;
before(async () => {
  node = await startNode();
  browser = await launchBrowser();
  site = await startPlainSite('<!doctype html><title>Plain</title><h1>Just a page</h1>');
});
after(async () => { await browser?.close(); await node?.stop(); site?.close(); });

test('the bookmarklet puts a connected Peersm overlay on a plain page', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${node.origin}/bookmarklet.html`);
  const href = await page.getAttribute('#bookmarklet', 'href');
  assert.ok(href.startsWith('javascript:'));
  const code = decodeURIComponent(href.slice('javascript:'.length));
  assert.ok(code.includes(`${node.origin}/shell.js`), 'loads from the serving origin');

  const plain = await context.newPage();
  await plain.goto(site.origin);
  await plain.evaluate(code);
  // Playwright's CSS engine pierces the overlay's open shadow root.
  const idEl = await plain.waitForSelector('#peersm-overlay .peer-id', { timeout: 15000 });
  const id = await eventually(async () => {
    const t = await idEl.textContent();
    return HEX40.test(t) && t;
  }, 15000, 'an ID in the overlay');
  await eventually(async () => (await plain.textContent('#peersm-overlay .status')) === 'connected', 15000, 'connected');
  assert.equal(await plain.evaluate(() => window.peersm.id), id);
  await eventually(async () => (await node.status()).peers.some((p) => p.id === id), 5000, 'the ID on /status');
  // The host page is untouched apart from the overlay.
  assert.equal(await plain.textContent('h1'), 'Just a page');
  await context.close();
});
