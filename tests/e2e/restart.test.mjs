// `serve --data-dir`: the bridge and its embedded relays keep their
// identities across a restart (npm start uses .peersm/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode } from './helpers.mjs';

const identities = (status) => ({
  bridge: status.bridge.fingerprint,
  relays: status.relays.map((l) => l.split(' ')[3]).sort(),
});

test('identities survive a restart with --data-dir; key files are owner-only', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peersm-data-'));
  try {
    let node = await startNode({ args: ['--data-dir', dir] });
    const first = identities(await node.status());
    await node.stop();
    node = await startNode({ args: ['--data-dir', dir] });
    const second = identities(await node.status());
    await node.stop();
    assert.equal(first.relays.length, 2);
    assert.deepEqual(second, first);
    for (const f of readdirSync(dir)) {
      assert.equal(statSync(join(dir, f)).mode & 0o077, 0, `${f} is readable by others`);
    }
    // Without --data-dir, a restart is a new identity.
    node = await startNode();
    const fresh = identities(await node.status());
    await node.stop();
    assert.notEqual(fresh.bridge, first.bridge);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
