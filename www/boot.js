// Starts the Peersm peer from the wasm bundle served at `origin`, linked to
// that origin's bridge. Shared by the page (app.js) and the bookmarklet
// shell (shell.js), which loads into pages of other origins.
import init, { Peer } from './pkg/peersm.js';

export function bridgeUrlFor(origin) {
  const url = new URL('/bridge', origin);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

export async function startPeer(origin, options = {}) {
  await init({ module_or_path: new URL('./pkg/peersm_bg.wasm', import.meta.url) });
  // Not pinned to a fingerprint: the bridge serving this page may restart
  // with a new identity. The link still makes the bridge prove the identity
  // it claims (CERTS, then ntor); peer.bridgeFingerprint tells which.
  const peer = await Peer.start({ bridges: [bridgeUrlFor(origin)], ...options });
  window.peersm = peer;
  window.dispatchEvent(new CustomEvent('peersm:ready', { detail: peer }));
  return peer;
}
