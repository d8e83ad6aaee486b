// GET /status says who uses a bridge only to its operator: a request from
// outside the loopback interface gets counts, readable cross-origin; the
// list of tab IDs with their addresses comes only to loopback requests,
// or to anyone with `--status-details`, and then without CORS. The node
// listens on every address; scripts/test puts 198.18.0.1 on the
// namespace's loopback, so a request to it comes from 198.18.0.1.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, launchBrowser, eventually } from './helpers.mjs';

let browser;
const nodes = [];
after(async () => {
  await browser?.close();
  for (const n of nodes) await n.stop();
});

/** A node on 0.0.0.0 with one tab connected; /status read both ways. */
async function nodeWithOneTab(args) {
  const node = await startNode({ host: '0.0.0.0', args: ['--relays', '0', ...args] });
  nodes.push(node);
  browser ??= await launchBrowser();
  const page = await browser.newPage();
  await page.goto(`${node.origin}/`);
  await page.waitForSelector('#status[data-status="connected"]', { timeout: 15000 });
  await eventually(async () => (await node.status()).mesh_peers === 1, 5000, 'the tab on /status');
  const port = new URL(node.origin).port;
  const outside = await fetch(`http://198.18.0.1:${port}/status`);
  const local = await fetch(`${node.origin}/status`);
  return { outside, local };
}

test('from outside the loopback interface, /status gives counts and no tab list', async () => {
  const { outside, local } = await nodeWithOneTab([]);
  const seen = await outside.json();
  assert.equal(seen.peers, undefined, 'no IDs or addresses');
  assert.equal(seen.peer_count, 1);
  assert.equal(seen.mesh_peers, 1);
  assert.doesNotMatch(JSON.stringify(seen), /127\.0\.0\.1:\d+/, 'no tab address anywhere');
  assert.equal(outside.headers.get('access-control-allow-origin'), '*');
  // The operator, on the machine itself, sees the tab and its address.
  const mine = await local.json();
  assert.equal(mine.peers.length, 1);
  assert.match(mine.peers[0].id, /^[0-9A-F]{40}$/i);
  assert.equal(local.headers.get('access-control-allow-origin'), null, 'details are not for other origins');
});

test('with --status-details, /status lists the tabs to anyone', async () => {
  const { outside } = await nodeWithOneTab(['--status-details']);
  const seen = await outside.json();
  assert.equal(seen.peers.length, 1);
  assert.equal(outside.headers.get('access-control-allow-origin'), null);
});
