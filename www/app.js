// The Peersm page: starts the peer and shows its identity and link state.
import { startPeer } from './boot.js';

const $ = (id) => document.getElementById(id);

function showStatus(status) {
  const el = $('status');
  el.textContent = status;
  el.dataset.status = status;
}

try {
  showStatus('starting');
  const peer = await startPeer(location.origin);
  $('peer-id').textContent = peer.id;
  $('bridge').textContent = peer.bridge;
  showStatus(peer.status);
  peer.on('status', showStatus);
} catch (err) {
  showStatus('error');
  $('error').textContent = `Peersm could not start: ${err && err.message ? err.message : err}`;
  console.error(err);
}
