// The exit under the default policy (npm start's: `serve` with its two
// embedded relays), asked by a tab's peer.fetch for private addresses in
// every spelling and for the exit's own address: each is refused by
// policy, and the servers behind those addresses see nothing. A public
// address on an accepted port goes through. scripts/test puts 198.18.0.1
// (the exit's source address here) and 198.18.0.2 (a "public" server) on
// the namespace's loopback: 198.18.0.0/15 is not private.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startNode, launchBrowser, makeBody, startFileServer } from './helpers.mjs';

const PORT = 8080; // accepted by the default (reduced) policy
const body = makeBody(256 * 1024);
const sha256 = (b) => createHash('sha256').update(b).digest('hex');

let node; let browser; let page; const servers = {};
before(async () => {
  node = await startNode({ args: ['--exit-bind', '198.18.0.1'] });
  servers.loopback = await startFileServer(body, { host: '127.0.0.1', port: PORT });
  servers.own = await startFileServer(body, { host: '198.18.0.1', port: PORT });
  servers.public = await startFileServer(body, { host: '198.18.0.2', port: PORT });
  browser = await launchBrowser();
  page = await browser.newPage();
  await page.goto(`${node.origin}/`);
  await page.waitForSelector('#status[data-status="connected"]', { timeout: 15000 });
});
after(async () => {
  await browser?.close();
  for (const s of Object.values(servers)) s.close();
  await node?.stop();
});

function fetchInPage(url) {
  return page.evaluate(async (url) => {
    try {
      const res = await window.peersm.fetch(url, { maxAttempts: 1, singleOperator: true });
      const bytes = await res.bytes();
      const digest = await crypto.subtle.digest('SHA-256', bytes);
      await res.remove();
      const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
      return { status: res.status, sha256: hex };
    } catch (e) {
      return { error: String(e?.message ?? e) };
    }
  }, url);
}

const REFUSED = [
  `http://[::ffff:127.0.0.1]:${PORT}/file.bin`, // IPv4-mapped loopback
  `http://[::ffff:7f00:1]:${PORT}/file.bin`, // the same, in hex
  `http://[::127.0.0.1]:${PORT}/file.bin`, // IPv4-compatible
  `http://[64:ff9b::7f00:1]:${PORT}/file.bin`, // NAT64 prefix
  `http://100.64.0.1:${PORT}/file.bin`, // shared address space
  `http://224.0.0.1:${PORT}/file.bin`, // multicast
  `http://127.0.0.1:${PORT}/file.bin`, // loopback
  `http://localhost:${PORT}/file.bin`, // a name for it
  `http://198.18.0.1:${PORT}/file.bin`, // the exit's own address
  `http://[::ffff:198.18.0.1]:${PORT}/file.bin`, // the same, mapped
];

for (const url of REFUSED) {
  test(`the default exit refuses ${url}`, async () => {
    const r = await fetchInPage(url);
    assert.match(r.error ?? '', /exit's policy does not allow/, JSON.stringify(r));
  });
}

test('the servers behind refused addresses saw nothing', () => {
  assert.deepEqual(servers.loopback.connections, []);
  assert.deepEqual(servers.own.connections, []);
});

test('a public address on an accepted port goes through the default exit', async () => {
  const r = await fetchInPage(`${servers.public.url}/file.bin`);
  assert.equal(r.status, 200, JSON.stringify(r));
  assert.equal(r.sha256, sha256(body));
  assert.deepEqual(servers.public.connections, ['198.18.0.1'], 'only the exit connected');
});
