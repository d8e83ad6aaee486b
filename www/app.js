// The Peersm page: starts the peer, shows its identity and link state,
// shares files by hash_name (share.js), and fetches URLs anonymously with a
// progress bar and a link to save the file.
import { startPeer } from './boot.js';
import { setupSharing, human } from './share.js';

const $ = (id) => document.getElementById(id);

function showStatus(status) {
  const el = $('status');
  el.textContent = status;
  el.dataset.status = status;
}

function fileNameOf(url) {
  const last = new URL(url).pathname.split('/').filter(Boolean).pop();
  return last || 'download';
}

let previousObjectUrl = null;

async function download(peer, url) {
  const bar = $('progress');
  $('fetch-error').textContent = '';
  $('result').textContent = '';
  $('go').disabled = true;
  bar.hidden = false;
  bar.removeAttribute('value');
  $('progress-text').textContent = 'Building a circuit…';
  try {
    const res = await peer.fetch(url, {
      singleOperator: $('single-operator').checked,
      onProgress: ({ received, total, speed, attempt }) => {
        if (total) { bar.max = total; bar.value = received; }
        const of = total ? ` of ${human(total)}` : '';
        const retry = attempt > 1 ? ` (circuit ${attempt})` : '';
        $('progress-text').textContent = `${human(received)}${of} at ${human(speed)}/s${retry}`;
      },
    });
    bar.max = 1; bar.value = 1;
    const tls = res.tls ? ` (${res.tls}, checked in this page)` : '';
    $('progress-text').textContent = `${res.status} ${res.statusText}: ${human(res.size)} through ${res.circuits.join(', ')}${tls}`;
    const blob = await res.blob();
    if (previousObjectUrl) URL.revokeObjectURL(previousObjectUrl);
    previousObjectUrl = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = previousObjectUrl;
    a.download = fileNameOf(res.url);
    a.id = 'save';
    a.textContent = `Save ${a.download} (${human(res.size)})`;
    $('result').replaceChildren(a);
  } catch (err) {
    bar.hidden = true;
    $('progress-text').textContent = '';
    $('fetch-error').textContent = err && err.message ? err.message : String(err);
  } finally {
    $('go').disabled = false;
  }
}

try {
  showStatus('starting');
  // `?joinLinks=N`: how many peers to link to when joining (tests use few,
  // so that lookups must go through other tabs).
  // `?refreshMs=N`: the routing table's bucket refresh period.
  const params = new URLSearchParams(location.search);
  const options = {};
  if (params.get('joinLinks')) options.joinLinks = Number(params.get('joinLinks'));
  if (params.get('refreshMs')) options.refreshMs = Number(params.get('refreshMs'));
  if (params.get('introducer')) options.introducer = params.get('introducer');
  // Tests only, and only on a local network (never from a link to a
  // public bridge): `?tamper=1` serves corrupted blocks, `?tamperLive=`
  // 'forged' or 'replayed' live chunks; `?neverLink=ID,ID`.
  if (['127.0.0.1', 'localhost'].includes(location.hostname)) {
    if (params.get('tamper')) options.tamper = true;
    if (params.get('tamperLive')) options.tamperLive = params.get('tamperLive');
    if (params.get('neverLink')) options.neverLink = params.get('neverLink').split(',');
  }
  const peer = await startPeer(location.origin, options);
  $('peer-id').textContent = peer.id;
  $('bridge').textContent = peer.bridge;
  showStatus(peer.status);
  peer.on('status', showStatus);
  // The bridge's proven identity and this tab's WebRTC links to other tabs.
  const refresh = () => {
    $('bridge-id').textContent = peer.bridgeFingerprint ?? '…';
    const items = peer.peers().map((p) => {
      const li = document.createElement('li');
      li.textContent = `${p.id} — ${p.state}`;
      li.dataset.state = p.state;
      return li;
    });
    $('peers').replaceChildren(...items);
    const circuits = peer.circuits().map((c) => {
      const li = document.createElement('li');
      li.textContent = `#${c.id}: ${c.hops.map((h) => h.slice(0, 8)).join(' → ')} — ${c.state}`;
      li.dataset.state = c.state;
      return li;
    });
    $('circuits').replaceChildren(...circuits);
  };
  refresh();
  setInterval(refresh, 1000);
  // Exits run by the bridge itself are the user's choice: on
  // their own machine (a local `npm start` network) the box starts ticked,
  // elsewhere not; the note says when the network has nothing else.
  $('single-operator').checked = ['localhost', '127.0.0.1', '[::1]'].includes(location.hostname);
  const showOperators = async () => {
    try {
      const relays = await peer.relays();
      const exits = relays.filter((r) => r.exit);
      $('operator-note').hidden = !(exits.length > 0 && exits.every((r) => r.bridgeRun));
    } catch { /* not connected yet: the next status change retries */ }
  };
  peer.on('status', (s) => { if (s === 'connected') showOperators(); });
  if (peer.status === 'connected') showOperators();
  $('build-circuit').addEventListener('click', async () => {
    try {
      await peer.buildTabCircuit(3);
    } catch (err) {
      $('error').textContent = err && err.message ? err.message : String(err);
    }
  });
  setupSharing(peer);
  $('fetch-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    download(peer, $('url').value);
  });
} catch (err) {
  showStatus('error');
  $('error').textContent = `Peersm could not start: ${err && err.message ? err.message : err}`;
  console.error(err);
}
