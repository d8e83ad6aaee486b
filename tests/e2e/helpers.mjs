// Shared pieces of the end-to-end tests: a peersm-node process on a free
// port, headless Chromium through playwright-core, and an HTTP(S) file server.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NODE_BIN = process.env.PEERSM_NODE ?? `${ROOT}target/debug/peersm-node`;

// The flags ENVIRONMENT measured as needed on a loopback-only machine.
export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--allow-loopback-in-peer-connection', '--use-fake-ui-for-media-stream',
];

/** Starts `peersm-node serve` on `host` (default 127.0.0.1; port 0 = free
 *  port); resolves once it printed its address. `origin` is on 127.0.0.1
 *  when the node listens on every address. */
export async function startNode({ host = '127.0.0.1', port = 0, args = [] } = {}) {
  if (!existsSync(NODE_BIN)) throw new Error(`${NODE_BIN} missing: run cargo build -p peersm-node`);
  const child = spawn(NODE_BIN, ['serve', '--listen', `${host}:${port}`, '--www', `${ROOT}www`, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' },
  });
  const logs = [];
  child.stderr.on('data', (d) => logs.push(d.toString()));
  const origin = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`node did not start:\n${out}${logs.join('')}`)), 15000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/open http:\/\/([\d.]+):(\d+)\//);
      if (m) { clearTimeout(timer); resolve(`http://${m[1] === '0.0.0.0' ? '127.0.0.1' : m[1]}:${m[2]}`); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`node exited ${code}:\n${logs.join('')}`)); });
  });
  return {
    origin,
    logs,
    async status() { return (await fetch(`${origin}/status`)).json(); },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A bridge identity made ahead of time (for `--peer-bridge URL#FP` and
 *  `--trust-bridge FP` between bridges not started yet): start the node
 *  with `--data-dir ${dataDir}`. */
export async function bridgeIdentity() {
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { execFileSync } = await import('node:child_process');
  const dataDir = mkdtempSync(`${tmpdir()}/peersm-bridge-`);
  const fingerprint = execFileSync(NODE_BIN, ['fingerprint', '--data-dir', dataDir]).toString().trim();
  return { dataDir, fingerprint };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/** A Peersm page of `node` in its own browser process, once connected:
 *  `{ name, browser, page, errors, id }`, added to `tabs`. Page errors
 *  are collected; console lines are printed with PEERSM_E2E_CONSOLE. */
export async function openNamedTab(node, tabs, name, query = '', hash = '') {
  const browser = await launchBrowser();
  const page = await browser.newPage();
  const tab = { name, browser, page, errors: [] };
  tabs.push(tab);
  page.on('pageerror', (e) => tab.errors.push(e));
  page.on('console', (m) => { if (process.env.PEERSM_E2E_CONSOLE) console.log(`[${name}]`, m.text()); });
  await page.goto(`${node.origin}/${query}${hash}`);
  await page.waitForSelector('#status[data-status="connected"]', { timeout: 20000 });
  tab.id = await page.evaluate(() => window.peersm.id);
  return tab;
}

/** A plain page on another origin, for the bookmarklet. */
export async function startPlainSite(html) {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(html);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/** Polls `fn` until it returns a truthy value or `ms` pass. */
export async function eventually(fn, ms = 10000, what = 'condition') {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

export const HEX40 = /^[0-9a-f]{40}$/;

/** Starts `peersm-node relay` on a free port, joined to the bridge at
 *  `join`; resolves with its fingerprint once it printed it. */
export async function startRelay({ join, nickname, args = [] }) {
  const child = spawn(NODE_BIN, ['relay', '--or-port', '127.0.0.1:0', '--nickname', nickname,
    '--exit-policy', 'reject *:*', '--join', join, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' },
  });
  const logs = [];
  child.stderr.on('data', (d) => logs.push(d.toString()));
  const info = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`relay did not start:\n${logs.join('')}`)), 15000);
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) { clearTimeout(timer); resolve(JSON.parse(line)); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`relay exited ${code}:\n${logs.join('')}`)); });
  });
  return {
    ...info,
    logs,
    kill() { child.kill('SIGKILL'); },
  };
}

/** A deterministic body of `size` bytes. */
export function makeBody(size) {
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) body.writeUInt32LE((i * 2654435761) >>> 0, i);
  return body;
}

/** An HTTP server for one file (at `path`) with Content-Length and Range
 *  support. It records each connection's remote address and each request's
 *  Range; `bytesPerSecond` throttles it; `tls: { key, cert }` (PEM) makes it
 *  an https server. */
export async function startFileServer(body, {
  bytesPerSecond = 0, host = '127.0.0.1', port = 0, tls = null, path = '/file.bin',
} = {}) {
  const connections = [];
  const requests = [];
  const handler = async (req, res) => {
    requests.push({ url: req.url, range: req.headers.range ?? null, from: req.socket.remoteAddress });
    if (req.url === '/moved') {
      res.writeHead(302, { location: path, 'content-length': 0 });
      return res.end();
    }
    if (req.url !== path) { res.writeHead(404); return res.end(); }
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m) start = Number(m[1]);
    // CORS lets the page's own fetch() read it too (the benchmark's baseline).
    const headers = {
      'content-type': 'application/octet-stream', 'content-length': body.length - start,
      'access-control-allow-origin': '*',
    };
    if (m) headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    res.writeHead(m ? 206 : 200, headers);
    const piece = 64 * 1024;
    for (let at = start; at < body.length; at += piece) {
      if (res.destroyed) return;
      const ok = res.write(body.subarray(at, Math.min(at + piece, body.length)));
      if (bytesPerSecond) await new Promise((r) => setTimeout(r, (piece / bytesPerSecond) * 1000));
      else if (!ok) await new Promise((r) => res.once('drain', r));
    }
    res.end();
  };
  const server = tls ? createHttpsServer(tls, handler) : createServer(handler);
  server.on('connection', (sock) => connections.push(sock.remoteAddress));
  await new Promise((r) => server.listen(port, host, r));
  return {
    url: `${tls ? 'https' : 'http'}://${host}:${server.address().port}`,
    connections,
    requests,
    close: () => { server.closeAllConnections?.(); server.close(); },
  };
}
