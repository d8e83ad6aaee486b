// The bookmarklet shell: loaded as a module into any page, it starts a
// Peersm peer from this script's own origin and shows a small overlay with
// the peer ID and link state. The overlay lives in a shadow root so the
// host page's styles cannot touch it.
import { startPeer } from './boot.js';

const ORIGIN = new URL(import.meta.url).origin;
const HOST_ID = 'peersm-overlay';

function buildOverlay() {
  const host = document.createElement('div');
  host.id = HOST_ID;
  host.style.cssText = 'position:fixed;right:12px;bottom:12px;z-index:2147483647;';
  const root = host.attachShadow({ mode: 'open' });
  root.innerHTML = `
    <style>
      .box { font: 13px/1.4 system-ui, sans-serif; background: #1d2330; color: #f5f6f8;
             border-radius: 8px; padding: 10px 12px; box-shadow: 0 4px 16px #0006; max-width: 22rem; }
      .row { display: flex; gap: 8px; } .k { color: #9aa3b2; min-width: 3.5rem; }
      code { word-break: break-all; } button { float: right; background: none; border: 0;
             color: #9aa3b2; cursor: pointer; font-size: 15px; }
    </style>
    <div class="box">
      <button title="Hide" aria-label="Hide Peersm">×</button>
      <strong>Peersm</strong>
      <div class="row"><span class="k">ID</span><code class="peer-id">…</code></div>
      <div class="row"><span class="k">Link</span><span class="status">starting</span></div>
    </div>`;
  root.querySelector('button').addEventListener('click', () => host.remove());
  document.body.appendChild(host);
  return root;
}

const root = buildOverlay();
const statusEl = root.querySelector('.status');
const show = (s) => { statusEl.textContent = s; };
try {
  const peer = await startPeer(ORIGIN);
  root.querySelector('.peer-id').textContent = peer.id;
  show(peer.status);
  peer.on('status', show);
} catch (err) {
  show(`error: ${err && err.message ? err.message : err}`);
}
