// Mesh benchmark (not a test): in one run, (1) a raw WebRTC data channel
// between two tabs in two browsers (plain JS, 16 KiB messages, the sender
// keeping bufferedAmount low) and (2) a 3-hop circuit through tabs
// (peer.tabCircuitGet of /peersm/bytes from the last tab) move the same
// number of bytes; prints both throughputs and the ratio. Needs a
// loopback-only network namespace:
//   npm run build:wasm && cargo build -p peersm-node &&
//   unshare -n sh -c 'ip link set lo up && exec node tests/e2e/bench-mesh.mjs [--mb 20]'
import { startNode, launchBrowser, eventually } from './helpers.mjs';

const i = process.argv.indexOf('--mb');
const MB = i > 0 ? Number(process.argv[i + 1]) : 20;
const BYTES = MB * 1000 * 1000;

const node = await startNode({ args: ['--relays', '0'] });
const browsers = [];
try {
  const tabs = [];
  for (let t = 0; t < 4; t += 1) {
    const b = await launchBrowser();
    browsers.push(b);
    const page = await b.newPage();
    await page.goto(`${node.origin}/`);
    await page.waitForSelector('#status[data-status="connected"]', { timeout: 20000 });
    tabs.push(page);
  }
  for (const p of tabs) {
    await eventually(() => p.evaluate(() => window.peersm.peers().filter((x) => x.state === 'open').length === 3), 60000, 'full mesh');
  }

  // (1) Raw data channel between tabs[0] and tabs[1], signalled by this script.
  const [a, b] = [tabs[0], tabs[1]];
  const offer = await a.evaluate(async () => {
    const pc = new RTCPeerConnection();
    window.rawPc = pc;
    window.rawDc = pc.createDataChannel('raw', { ordered: true });
    await pc.setLocalDescription(await pc.createOffer());
    while (pc.iceGatheringState !== 'complete') await new Promise((r) => setTimeout(r, 50));
    return pc.localDescription.sdp;
  });
  const answer = await b.evaluate(async (sdp) => {
    const pc = new RTCPeerConnection();
    window.rawPc = pc;
    window.rawDone = new Promise((resolve) => {
      pc.ondatachannel = ({ channel }) => {
        channel.binaryType = 'arraybuffer';
        let got = 0; let t0 = 0;
        channel.onmessage = (ev) => {
          if (!t0) t0 = performance.now();
          got += ev.data.byteLength;
          if (got >= window.rawExpect) resolve({ bytes: got, ms: performance.now() - t0 });
        };
      };
    });
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    while (pc.iceGatheringState !== 'complete') await new Promise((r) => setTimeout(r, 50));
    return pc.localDescription.sdp;
  }, offer);
  await b.evaluate((n) => { window.rawExpect = n; }, BYTES);
  await a.evaluate(async ({ sdp, n }) => {
    await window.rawPc.setRemoteDescription({ type: 'answer', sdp });
    const dc = window.rawDc;
    if (dc.readyState !== 'open') await new Promise((r) => { dc.onopen = r; });
    dc.bufferedAmountLowThreshold = 4096;
    const chunk = new Uint8Array(16 * 1024);
    for (let sent = 0; sent < n; sent += chunk.length) {
      if (dc.bufferedAmount > 16 * 1024) await new Promise((r) => { dc.onbufferedamountlow = r; });
      dc.send(sent + chunk.length <= n ? chunk : chunk.subarray(0, n - sent));
    }
  }, { sdp: answer, n: BYTES });
  const raw = await b.evaluate(() => window.rawDone);
  const rawMBs = raw.bytes / raw.ms / 1000;

  // (2) The same bytes through three tabs.
  const circuit = await tabs[0].evaluate(() => window.peersm.buildTabCircuit(3));
  const viaTabs = await tabs[0].evaluate(({ id, n }) => window.peersm.tabCircuitGet(id, `/peersm/bytes?n=${n}`), { id: circuit.id, n: BYTES });
  const tabsMBs = viaTabs.size / viaTabs.ms / 1000;
  console.log(`raw data channel between two tabs: ${rawMBs.toFixed(1)} MB/s (${MB} MB)`);
  console.log(`3-hop circuit through tabs: ${tabsMBs.toFixed(1)} MB/s (${MB} MB, circuit built in ${circuit.ms.toFixed(0)} ms)`);
  console.log(`ratio (3 hops / raw): ${(tabsMBs / rawMBs).toFixed(3)}`);
} finally {
  for (const b of browsers) await b.close();
  await node.stop();
}
