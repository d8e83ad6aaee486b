// The page's file sharing: drop or pick a file to seed it (progress while
// it is hashed and stored), a share link with a copy button, a box where a
// link or hash_name starts a download, and one list of seeds and downloads
// with progress, speed, circuits and a save button. A `…/#<hashName>` link
// opens the page and starts its download. Files kept in IndexedDB from an
// earlier visit are listed with an offer to share them again or resume.
// "Play" streams a video or audio file into a player in its row while it
// downloads (peer.stream), with the buffered ranges drawn under it.
// "Go live" publishes the camera, or a WebM file replayed as live
// (peer.live); a live stream's link plays from near its live edge, with
// the delay from capture to display shown. "Watch live" plays the live
// stream of a web address: from the tabs relaying it, or fetched through
// three hops by this tab (which then relays it) when none does.

const $ = (id) => document.getElementById(id);
const HASH = /^[0-9a-f]{40}$/i;

export function human(bytes) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (bytes >= 1000 && i < units.length - 1) { bytes /= 1000; i += 1; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function message(err) {
  return err && err.message ? err.message : String(err);
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

/** One line of the list: a seed or a download. */
class Row {
  constructor(list, key, name) {
    this.key = key;
    this.li = el('li', { className: 'file' });
    if (HASH.test(key)) this.li.dataset.hash = key;
    this.title = el('div', { className: 'file-name' });
    this.bar = el('progress', { max: 1, value: 0 });
    this.text = el('div', { className: 'note file-status' });
    this.text.setAttribute('aria-live', 'polite');
    this.error = el('div', { className: 'error' });
    this.error.setAttribute('role', 'alert');
    this.actions = el('div', { className: 'file-actions' });
    this.share = el('div', { className: 'file-link' });
    this.li.append(this.title, this.bar, this.text, this.share, this.actions, this.error);
    list.prepend(this.li);
    this.setName(name);
  }

  setName(name, size) {
    this.title.textContent = size === undefined ? name : `${name} (${human(size)})`;
  }

  setState(state, text) {
    this.li.dataset.state = state;
    if (text !== undefined) this.text.textContent = text;
  }

  setProgress(done, total) {
    if (total) { this.bar.max = total; this.bar.value = done; } else this.bar.removeAttribute('value');
  }

  fail(err) {
    this.li.dataset.state = 'failed';
    this.error.textContent = message(err);
  }

  showLink(link) {
    this.key = link.split('#').pop();
    this.li.dataset.hash = this.key;
    const input = el('input', { value: link, readOnly: true, className: 'share-link' });
    input.setAttribute('aria-label', 'Share link');
    const copy = el('button', { type: 'button', textContent: 'Copy link', className: 'copy' });
    copy.addEventListener('click', async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(link);
        copy.textContent = 'Copied';
      } catch {
        // Without clipboard permission the selected text can still be copied by hand.
        copy.textContent = 'Press Ctrl+C';
      }
      setTimeout(() => { copy.textContent = 'Copy link'; }, 2000);
    });
    this.share.replaceChildren(input, copy);
  }

  setActions(...buttons) {
    this.actions.replaceChildren(...buttons);
  }

  /** A player in the row (replacing an earlier one), with a bar showing
   *  what is buffered and where playback is. */
  attachPlayer(video) {
    this.detachPlayer();
    this.ranges = el('div', { className: 'ranges' });
    this.ranges.setAttribute('aria-hidden', 'true');
    this.player = el('div', { className: 'player' }, video, this.ranges);
    this.li.insertBefore(this.player, this.text);
    const draw = () => this.drawRanges(video);
    for (const e of ['progress', 'timeupdate', 'seeking', 'durationchange']) video.addEventListener(e, draw);
  }

  /** Removes the row's player; emptying its element ends the peer's
   *  player loop (peer.stream listens for 'emptied'). */
  detachPlayer() {
    const video = this.player?.querySelector('video');
    if (video) { video.removeAttribute('src'); video.load(); }
    this.player?.remove();
    this.player = null;
  }

  drawRanges(video) {
    const d = video.duration;
    if (!Number.isFinite(d) || d <= 0) return;
    const pct = (t) => `${Math.min(100, (t / d) * 100)}%`;
    const spans = [];
    for (let i = 0; i < video.buffered.length; i += 1) {
      const s = video.buffered.start(i);
      spans.push(el('span', { className: 'buffered', style: `left:${pct(s)};width:${pct(video.buffered.end(i) - s)}` }));
    }
    spans.push(el('span', { className: 'playhead', style: `left:${pct(video.currentTime)}` }));
    this.ranges.replaceChildren(...spans);
  }
}

const isMedia = (type) => /^(video|audio)\//i.test(type ?? '');

function button(text, className, onClick) {
  const b = el('button', { type: 'button', textContent: text, className });
  b.addEventListener('click', onClick);
  return b;
}

export function setupSharing(peer) {
  const list = $('files');
  const rows = new Map();
  const rowFor = (key, name) => rows.get(key) ?? (rows.set(key, new Row(list, key, name)), rows.get(key));
  const showError = (text) => { $('share-error').textContent = text; };

  function removeButton(row, hashName) {
    return button('Remove', 'remove', async () => {
      try {
        await peer.remove(hashName);
        row.detachPlayer();
        row.li.remove();
        rows.delete(hashName);
      } catch (err) { row.fail(err); }
    });
  }

  // The bytes are saved as an opaque download, whatever type the seeder
  // named: a blob URL of the page's origin must never render the seeder's
  // HTML or SVG. The object URL lives only for the click.
  function saveButton(row, file) {
    return button(`Save ${file.name}`, 'save', async () => {
      try {
        const blob = new Blob([await file.blob()], { type: 'application/octet-stream' });
        const url = URL.createObjectURL(blob);
        const a = el('a', { href: url, download: file.name });
        a.click();
        setTimeout(() => URL.revokeObjectURL(url), 60000);
      } catch (err) { row.fail(err); }
    });
  }

  async function seed(file) {
    showError('');
    const key = `seeding-${Date.now()}-${Math.random()}`;
    const row = rowFor(key, file.name);
    row.setName(file.name, file.size);
    row.setState('hashing', 'Reading and hashing…');
    try {
      const shared = await peer.seed(file, {
        onProgress: ({ hashed, total }) => {
          row.setProgress(hashed, total);
          row.setState('hashing', `Hashed and stored ${human(hashed)} of ${human(total)}`);
        },
      });
      rows.delete(key);
      rows.set(shared.hashName, row);
      row.setProgress(1, 1);
      row.setState('seeding', 'Shared from this tab: anyone with the link can download it.');
      row.showLink(shared.link);
      row.setActions(...(isMedia(shared.type) ? [playButton(shared.hashName)] : []), removeButton(row, shared.hashName));
    } catch (err) { row.fail(err); }
  }

  function playButton(hashName) {
    return button('Play', 'play', () => play(hashName));
  }

  /** The hash_name in a link or hash_name the user gave, or null (said). */
  function hashOf(target) {
    const hash = String(target).trim().split('#').pop().toLowerCase();
    if (HASH.test(hash)) return hash;
    showError('That is neither a Peersm link nor a hash_name (40 hex characters).');
    return null;
  }

  const progressText = (prefix, row) => ({ received, total, speed, circuits }) => {
    row.setProgress(received, total);
    const of = total ? ` of ${human(total)}` : '';
    row.setState(row.li.dataset.state,
      `${prefix}${human(received)}${of} at ${human(speed)}/s through ${circuits} circuit${circuits === 1 ? '' : 's'}`);
  };

  function downloaded(row, file, started) {
    row.setName(file.name, file.size);
    row.setProgress(1, 1);
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    const via = file.circuits ? ` through ${file.circuits} circuits to ${file.sources.length} ORDBs` : ' (kept here)';
    const caught = file.stats.blocksBad ? `; ${file.stats.blocksBad} bad blocks caught and fetched again` : '';
    row.setState('done', `Downloaded and checked in ${secs} s${via}${caught}. Shared from this tab too.`);
    row.showLink(file.link);
    const play = isMedia(file.type) && !row.player ? [playButton(file.hashName)] : [];
    row.setActions(...play, saveButton(row, file), removeButton(row, file.hashName));
  }

  function failed(row, hash, err, again) {
    row.fail(err);
    row.setActions(button('Retry', 'retry', () => again(hash)), removeButton(row, hash));
  }

  /** [hash_name, the row] a download or a play of `target` starts in,
   *  reset to `state`; null (and said) when `target` is no link or
   *  hash_name. */
  function startRow(target, state) {
    showError('');
    const hash = hashOf(target);
    if (!hash) return null;
    const row = rowFor(hash, hash);
    row.error.textContent = '';
    row.setState(state, 'Finding the file through other tabs…');
    row.setActions();
    return [hash, row];
  }

  async function download(target) {
    const [hash, row] = startRow(target, 'downloading') ?? [];
    if (!row) return;
    const started = performance.now();
    try {
      const file = await peer.download(hash, { onProgress: progressText('', row) });
      downloaded(row, file, started);
    } catch (err) {
      // A live stream has nothing to download: it plays.
      if (message(err).includes('this is a live stream')) play(hash);
      else failed(row, hash, err, download);
    }
  }

  /** A live player's row: the delay from capture to display, kept up to
   *  date, and a button that stops watching. */
  function watchLive(row, hash, player, video) {
    row.setState('live', 'Live: joining near the edge…');
    const tick = setInterval(() => {
      const s = player.stats();
      const delay = s.delay === null ? '' : `, ${(s.delay / 1000).toFixed(1)} s behind the source`;
      const gaps = s.gaps ? `; ${s.gaps} skipped` : '';
      const from = s.direct ? 'Live from the address, fetched and relayed by this tab' : 'Live through other tabs';
      row.setState('live', `${from}: ${s.chunks} chunks${delay}${gaps}.`);
    }, 500);
    const stop = () => { clearInterval(tick); player.stop(); row.detachPlayer(); };
    row.setActions(button('Stop watching', 'stop', () => { stop(); row.setState('ended', 'Stopped watching.'); }));
    player.done.then(
      () => { clearInterval(tick); },
      (err) => { stop(); failed(row, hash, err, play); },
    );
    video.play().catch(() => {});
  }

  /** Plays a video or audio file in its row while it downloads. */
  async function play(target) {
    const [hash, row] = startRow(target, 'playing') ?? [];
    if (!row) return;
    const video = el('video', { controls: true, playsInline: true });
    row.attachPlayer(video);
    const started = performance.now();
    try {
      const player = await peer.stream(hash, video, { onProgress: progressText('Playing while downloading: ', row) });
      if (player.mode === 'live') { watchLive(row, hash, player, video); return; }
      if (player.mode !== 'mediasource') {
        row.setState('downloading', `${player.message}.`);
      }
      // The click that asked for it lets it play with sound; a browser
      // that still refuses leaves the controls to the user.
      video.play().catch(() => {});
      downloaded(row, await player.done, started);
    } catch (err) {
      row.detachPlayer();
      failed(row, hash, err, play);
    }
  }

  /** Plays the live stream of web address `url` in its row. */
  async function watchAddress(url) {
    showError('');
    const row = rowFor(url, url);
    row.error.textContent = '';
    row.setState('live', 'Looking for tabs relaying this address…');
    row.setActions();
    const video = el('video', { controls: true, playsInline: true });
    row.attachPlayer(video);
    try {
      const player = await peer.stream(url, video, { live: true, singleOperator: $('single-operator').checked });
      watchLive(row, url, player, video);
    } catch (err) {
      row.detachPlayer();
      failed(row, url, err, watchAddress);
    }
  }

  /** Publishes a camera (a MediaStream) or a WebM file as a live stream,
   *  with its link, a preview and what was sent. */
  async function goLive(source, name, preview) {
    showError('');
    const key = `live-${Date.now()}`;
    const row = rowFor(key, name);
    row.setState('publishing', 'Starting the live stream…');
    if (preview) row.attachPlayer(preview);
    let live;
    try {
      live = await peer.live(source, { name });
    } catch (err) {
      row.detachPlayer();
      row.fail(err);
      return;
    }
    rows.delete(key);
    rows.set(live.hashName, row);
    row.showLink(live.link);
    const tick = setInterval(() => {
      const s = live.stats();
      row.setState('publishing', `Live from this tab: ${s.chunks} chunks sent (${human(s.bytes)}), ${s.keys} keyframes${s.ended ? '; the source ended' : ''}.`);
    }, 500);
    row.setActions(button('Stop the live stream', 'stop', () => {
      clearInterval(tick);
      live.stop();
      if (source.getTracks) for (const t of source.getTracks()) t.stop();
      row.detachPlayer();
      row.setState('ended', 'The live stream is over.');
      row.setActions(removeRowButton(row, live.hashName));
    }));
  }

  function removeRowButton(row, hash) {
    return button('Remove', 'remove', () => { row.li.remove(); rows.delete(hash); });
  }

  $('go-live-camera').addEventListener('click', async () => {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    } catch (err) { showError(`The camera: ${message(err)}`); return; }
    const preview = el('video', { muted: true, playsInline: true, autoplay: true });
    preview.srcObject = stream;
    goLive(stream, 'camera', preview);
  });
  $('watch-live').addEventListener('click', () => {
    const url = $('url').value.trim();
    if (!/^https?:\/\//i.test(url)) { showError('Watch live takes a web address (http:// or https://).'); return; }
    watchAddress(url);
  });
  $('go-live-file').addEventListener('change', (ev) => {
    const f = ev.target.files[0];
    ev.target.value = '';
    if (f) goLive(f, f.name, null);
  });

  // Files kept from earlier visits: offered again, never shared silently.
  async function listKept() {
    let kept;
    try { kept = await peer.stored(); } catch (err) { showError(message(err)); return; }
    for (const f of kept) {
      if (rows.has(f.hashName)) continue;
      const row = rowFor(f.hashName, f.name);
      row.setName(f.name, f.size);
      row.showLink(f.link);
      if (f.role === 'download' && !f.complete) {
        row.setState('kept', 'Partly downloaded in an earlier visit.');
        row.setActions(button('Resume', 'resume', () => download(f.hashName)), removeButton(row, f.hashName));
      } else {
        row.setProgress(1, 1);
        row.setState('kept', f.role === 'seed' ? 'You shared this in an earlier visit.' : 'Downloaded in an earlier visit.');
        const again = button('Share again', 'reseed', async () => {
          try {
            await peer.reseed(f.hashName);
            row.setState('seeding', 'Shared from this tab again.');
            row.setActions(removeButton(row, f.hashName));
          } catch (err) { row.fail(err); }
        });
        row.setActions(again, ...(isMedia(f.type) ? [playButton(f.hashName)] : []), removeButton(row, f.hashName));
      }
    }
  }

  const drop = $('drop');
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    for (const f of ev.dataTransfer.files) seed(f);
  });
  $('pick').addEventListener('change', (ev) => {
    for (const f of ev.target.files) seed(f);
    ev.target.value = '';
  });
  $('get-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    download($('hash').value);
    $('hash').value = '';
  });
  $('play-it').addEventListener('click', () => {
    if (!$('hash').value.trim()) { $('hash').reportValidity(); return; }
    play($('hash').value);
    $('hash').value = '';
  });
  // A shared link opens the page with the hash_name after '#'. The hash
  // is then cleared, so a reload does not start (or share) it again.
  const fromLocation = () => {
    const h = location.hash.slice(1);
    if (!HASH.test(h)) return;
    history.replaceState(null, '', location.pathname + location.search);
    download(h);
  };
  window.addEventListener('hashchange', fromLocation);
  listKept().then(fromLocation);
}
