// https end to end from a tab: the TLS session runs from the page (rustls
// in wasm) to the web server, through the bridge, a relay and the exit of
// npm start's network. A recorder between the exit and the server keeps
// every byte the exit sent and received: the body and the request's path
// must not be in it, only TLS records. The server's certificate comes from
// a test CA made here with openssl, which the page trusts through
// `{ ca: [pem] }`; without it, or for a certificate naming another host,
// the fetch fails with a clear reason. As in exit-policy.test.mjs, the exit
// leaves from 198.18.0.1 and the server listens on 198.18.0.2 (the
// namespace's loopback, see scripts/test): 8443 and 8888 are ports the default exit
// policy accepts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, launchBrowser, makeBody, startFileServer } from './helpers.mjs';

const HOST = '198.18.0.2';
const PORT = 8443;
const WRONG_PORT = 8888; // also accepted by the default policy
const SECRET_PATH = '/private-report-7f3a9c.bin';
const body = makeBody(20 * 1024 * 1024);
const sha256 = (b) => createHash('sha256').update(b).digest('hex');

/** A CA and two leaves signed by it: one for HOST, one for another name. */
function makePki(dir) {
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=Peersm e2e test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  const leaf = (name, san) => {
    run('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(join(dir, `${name}.ext`),
      `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
    run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key',
      '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
    return { key: readFileSync(join(dir, `${name}.key`)), cert: readFileSync(join(dir, `${name}.pem`)) };
  };
  return {
    ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    right: leaf('right', `IP:${HOST}`),
    wrong: leaf('wrong', 'DNS:wrong.example'),
  };
}

/** Listens on host:port and forwards each connection to `target`,
 *  keeping everything that went through, both ways. */
async function startRecorder(host, port, target) {
  const seen = { toServer: [], toClient: [], connections: 0 };
  const server = createServer((client) => {
    seen.connections += 1;
    const upstream = connect(target.port, target.host);
    client.on('data', (d) => { seen.toServer.push(d); upstream.write(d); });
    upstream.on('data', (d) => { seen.toClient.push(d); client.write(d); });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise((r) => server.listen(port, host, r));
  return { seen, close: () => server.close() };
}

let node; let browser; let page; let dir; let pki; const servers = {}; let recorder;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'peersm-https-'));
  pki = makePki(dir);
  node = await startNode({ args: ['--exit-bind', '198.18.0.1'] });
  servers.right = await startFileServer(body, { host: HOST, tls: pki.right, path: SECRET_PATH });
  servers.plain = await startFileServer(body, { host: HOST, port: 8080 });
  servers.wrong = await startFileServer(body, { host: HOST, port: WRONG_PORT, tls: pki.wrong });
  recorder = await startRecorder(HOST, PORT, { host: HOST, port: new URL(servers.right.url).port });
  browser = await launchBrowser();
  page = await browser.newPage();
  await page.goto(`${node.origin}/`);
  await page.waitForSelector('#status[data-status="connected"]', { timeout: 15000 });
});
after(async () => {
  await browser?.close();
  recorder?.close();
  for (const s of Object.values(servers)) s.close();
  await node?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function fetchInPage(url, options) {
  return page.evaluate(async ({ url, options }) => {
    try {
      const started = performance.now();
      const res = await window.peersm.fetch(url, { maxAttempts: 1, singleOperator: true, ...options });
      const ms = performance.now() - started;
      const bytes = await res.bytes();
      const digest = await crypto.subtle.digest('SHA-256', bytes);
      await res.remove();
      const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
      return { status: res.status, size: res.size, sha256: hex, tls: res.tls, ms };
    } catch (e) {
      return { error: String(e?.message ?? e) };
    }
  }, { url, options });
}

test('20 MB over https through 3 hops: bytes equal, and the exit saw only TLS', async () => {
  const r = await fetchInPage(`https://${HOST}:${PORT}${SECRET_PATH}`, { ca: [pki.ca] });
  assert.equal(r.status, 200, JSON.stringify(r));
  assert.equal(r.size, body.length);
  assert.equal(r.sha256, sha256(body));
  assert.match(r.tls, /^TLS 1\.3, TLS13_/);
  const plain = await fetchInPage(`${servers.plain.url}/file.bin`, {});
  assert.equal(plain.sha256, sha256(body), JSON.stringify(plain));
  const rate = (ms) => (body.length / 1048576 / (ms / 1000)).toFixed(1);
  console.log(`20 MiB through 3 hops: https ${rate(r.ms)} MiB/s (${r.tls}), `
    + `http ${rate(plain.ms)} MiB/s, https/http ${(plain.ms / r.ms).toFixed(2)}`);

  const toServer = Buffer.concat(recorder.seen.toServer);
  const toClient = Buffer.concat(recorder.seen.toClient);
  assert.ok(toClient.length >= body.length, `the body went through the recorder (${toClient.length} bytes)`);
  assert.equal(toServer[0], 0x16, 'the exit opened with a TLS handshake record');
  assert.equal(toServer.indexOf(SECRET_PATH), -1, 'the request path is not in clear past the exit');
  assert.equal(toServer.indexOf('GET '), -1);
  for (const at of [0, 4096, body.length / 2, body.length - 64]) {
    assert.equal(toClient.indexOf(body.subarray(at, at + 64)), -1, `body bytes at ${at} are not in clear`);
  }
  assert.deepEqual(servers.right.requests.map((q) => q.url), [SECRET_PATH]);
});

test('a server whose CA the page was not given is refused, with the reason', async () => {
  const before = servers.right.requests.length;
  const r = await fetchInPage(`https://${HOST}:${PORT}${SECRET_PATH}`, {});
  assert.match(r.error ?? '', /not signed by a trusted authority/, JSON.stringify(r));
  assert.equal(servers.right.requests.length, before, 'no request was sent');
});

test('a refused certificate is tried once more through another exit, then fails', async () => {
  // The first failure may be the exit's (a forged certificate): one more
  // circuit, avoiding that exit; the second is the server's, and final.
  const connections = recorder.seen.connections;
  const r = await fetchInPage(`https://${HOST}:${PORT}${SECRET_PATH}`, { maxAttempts: 5 });
  assert.match(r.error ?? '', /not signed by a trusted authority/, JSON.stringify(r));
  assert.equal(recorder.seen.connections - connections, 2, 'two TLS handshakes, no more');
});

test('a certificate for another name is refused, with the reason', async () => {
  const r = await fetchInPage(`https://${HOST}:${WRONG_PORT}/file.bin`, { ca: [pki.ca] });
  assert.match(r.error ?? '', /not valid for 198\.18\.0\.2/, JSON.stringify(r));
  assert.deepEqual(servers.wrong.requests, [], 'no request was sent');
});

test('a `ca` that is not PEM is refused before anything is sent', async () => {
  const r = await fetchInPage(`https://${HOST}:${PORT}${SECRET_PATH}`, { ca: ['not a certificate'] });
  assert.match(r.error ?? '', /ca: no "-----BEGIN CERTIFICATE-----"/, JSON.stringify(r));
});
