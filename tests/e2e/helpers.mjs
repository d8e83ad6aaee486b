// Shared pieces of the end-to-end tests: a peersm-node process on a free
// port, headless Chromium through playwright-core, and a plain HTTP server.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
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

/** Starts `peersm-node serve` on 127.0.0.1 (port 0 = free port); resolves
 *  once it printed its address. */
export async function startNode({ port = 0, args = [] } = {}) {
  if (!existsSync(NODE_BIN)) throw new Error(`${NODE_BIN} missing: run cargo build -p peersm-node`);
  const child = spawn(NODE_BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--www', `${ROOT}www`, ...args], {
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
      const m = out.match(/open (http:\/\/127\.0\.0\.1:\d+)\//);
      if (m) { clearTimeout(timer); resolve(m[1]); }
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

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
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
