// Live delay benchmark (not a test): a canvas drawn at 30 frames a second
// is recorded with MediaRecorder and published with peer.live in tab A;
// three viewer tabs that never link to A follow it through the mesh with
// peer.stream. Each viewer samples its delay from capture to display
// (player.delay: now less the newest appended chunk's timestamp, plus how
// far the play position is behind that chunk's end) every 250 ms; the
// median and 95th percentile over all three are printed, with the same
// figures for circuits of one hop.
//   cargo build -p peersm-node && npm run build:wasm &&
//   unshare -n sh -c 'ip link set lo up && exec node tests/e2e/bench-live.mjs [--seconds 20]'
import { startNode, launchBrowser, eventually } from './helpers.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const SECONDS = Number(arg('seconds', 20));
const percentile = (xs, p) => {
  const v = [...xs].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.floor((v.length - 1) * p))];
};

const browsers = [];
const node = await startNode({ args: ['--relays', '0'] });
try {
  const open = async (query = '') => {
    const browser = await launchBrowser();
    browsers.push(browser);
    const page = await browser.newPage();
    await page.goto(`${node.origin}/${query}`);
    await page.waitForSelector('#status[data-status="connected"]', { timeout: 20000 });
    return page;
  };
  const a = await open('?joinLinks=2');
  const aId = await a.evaluate(() => window.peersm.id);
  await open('?joinLinks=2');
  const viewers = [];
  for (let i = 0; i < 3; i += 1) viewers.push(await open(`?joinLinks=3&neverLink=${aId}`));
  const hash = await a.evaluate(async () => {
    const canvas = document.createElement('canvas');
    canvas.width = 640; canvas.height = 360;
    const ctx = canvas.getContext('2d');
    let n = 0;
    setInterval(() => {
      n += 1;
      ctx.fillStyle = `hsl(${(n * 7) % 360} 80% 50%)`;
      ctx.fillRect(0, 0, 640, 360);
      ctx.fillStyle = '#fff';
      ctx.font = '64px sans-serif';
      ctx.fillText(String(n), 60, 200);
    }, 33);
    window.live = await window.peersm.live(canvas.captureStream(30), { name: 'bench' });
    return window.live.hashName;
  });
  for (const hops of [2, 1]) {
    await Promise.all(viewers.map((v) => v.evaluate(async ([h, hp]) => {
      window.bench?.player.stop();
      window.bench?.video.remove();
      const video = document.createElement('video');
      video.muted = true;
      document.body.append(video);
      const player = await window.peersm.stream(h, video, { hops: hp });
      window.bench = { video, player, delays: [] };
    }, [hash, hops])));
    await eventually(async () => (await Promise.all(viewers.map((v) => v.evaluate(
      () => window.bench.video.currentTime > 1)))).every(Boolean), 30000, 'all three playing');
    await Promise.all(viewers.map((v) => v.evaluate(() => {
      window.bench.sampler = setInterval(() => {
        const d = window.bench.player.delay;
        if (d !== null) window.bench.delays.push(d);
      }, 250);
    })));
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const all = [];
    for (const v of viewers) {
      const delays = await v.evaluate(() => { clearInterval(window.bench.sampler); return window.bench.delays; });
      all.push(...delays);
    }
    console.log(`live delay, 3 viewers, circuits of ${hops} tab${hops === 1 ? '' : 's'} to ORDBs, ${all.length} samples over ${SECONDS} s:`
      + ` median ${percentile(all, 0.5).toFixed(0)} ms, p95 ${percentile(all, 0.95).toFixed(0)} ms`);
  }
} finally {
  for (const b of browsers) await b.close().catch(() => {});
  await node.stop();
}
