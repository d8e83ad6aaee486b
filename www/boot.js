// Starts the Peersm peer from the wasm bundle served at `origin`, linked to
// that origin's bridge. Shared by the page (app.js) and the bookmarklet
// shell (shell.js), which loads into pages of other origins.
import init, { Peer } from './pkg/peersm.js';

export function bridgeUrlFor(origin) {
  const url = new URL('/bridge', origin);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

// The bridge's identity as it reports it: the tab then requires the bridge
// to prove that identity in the link handshake (CERTS).
async function bridgeFingerprint(origin) {
  try {
    const status = await (await fetch(new URL('/status', origin))).json();
    return status.bridge && status.bridge.fingerprint;
  } catch (err) {
    console.warn('Peersm: no bridge fingerprint from /status, not pinning', err);
    return undefined;
  }
}

export async function startPeer(origin) {
  await init({ module_or_path: new URL('./pkg/peersm_bg.wasm', import.meta.url) });
  const url = bridgeUrlFor(origin);
  const fingerprint = await bridgeFingerprint(origin);
  const peer = await Peer.start({ bridges: [fingerprint ? { url, fingerprint } : url] });
  window.peersm = peer;
  window.dispatchEvent(new CustomEvent('peersm:ready', { detail: peer }));
  return peer;
}
