import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../config/errors.js';
import { createCodec } from '../crawler/id-codec.js';
import { RangeSet } from '../crawler/id-ranges.js';
import { seedCommand, statusCommand } from '../tracker/commands.js';
import { openItemStore } from '../tracker/open-store.js';
import { compareVersions, loadProjectFile } from '../tracker/project.js';
import { serveTracker } from '../tracker/server.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-tracker-cmd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('tracker seed and status commands', () => {
  it('seeds from a RangeSet and from missing-ranges.txt content, then reports status', async () => {
    const db = `sqlite:${path.join(dir, 'cmd.sqlite')}`;
    const first = await seedCommand({ db, project: 'rescue', ids: new RangeSet([{ start: 1, end: 2500 }]), itemSize: 1000 });
    expect(first).toMatchObject({ items: 3, ids: 2500 });
    expect(first.summary).toMatch(/^seeded 3 items \(2,500 IDs, up to 1000 per item\) into project rescue in/);
    const missing = '# IDs with no final status\n3000-3009\n3020\n3100-3189\n';
    const second = await seedCommand({ db, project: 'rescue', ids: missing, itemSize: 50 });
    expect(second).toMatchObject({ items: 3, ids: 101 });
    const base36 = await seedCommand({ db, project: 'other', ids: 'a-z', itemSize: 100, codec: createCodec('base36') });
    expect(base36).toMatchObject({ items: 1, ids: 26 });
    const status = await statusCommand({ db, project: 'rescue' });
    expect(status.stats.items).toMatchObject({ total: 6, queued: 6 });
    expect(status.summary).toContain('project rescue: 0 / 2,601 IDs done (0.00 %)');
    expect(status.summary).toContain('items: 0 done, 0 leased, 6 queued (6 total)');
    const store = await openItemStore({ db, project: 'rescue' });
    const node = await store.registerNode({ nick: 'n', tokenHash: 'h', now: Date.now() });
    const leases = [];
    for (let i = 0; i < 5; i++) {
      const c = await store.claim({ nodeId: node.id, now: Date.now(), leaseMs: 1000 });
      if (c.kind === 'lease') leases.push(c.lease.ranges.toJSON());
    }
    await store.close();
    expect(leases.slice(3)).toEqual([[[3000, 3009], [3020, 3020], [3100, 3138]], [[3139, 3188]]]);
  });

  it('refuses a bad --db value', async () => {
    await expect(seedCommand({ db: 'mysql://x', project: 'p', ids: '1-2', itemSize: 1 })).rejects.toThrow(/expected sqlite:PATH or postgres:\/\//);
  });
});

describe('project file', () => {
  it('names the file and key of a mistake', async () => {
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, 'name: demo\nprofile: demo\nitem_size: 0\nlease_secs: 60\nmin_client_version: 0.1.0\n');
    await expect(loadProjectFile(file)).rejects.toThrow(new RegExp(`${file.replace(/[.\\/]/g, '\\$&')}: item_size: `));
    writeFileSync(file, 'name: demo\nprofile: demo\nitem_size: 10\nlease_secs: 60\nmin_client_version: 0.1.0\nleese_secs: 5\n');
    const err = await loadProjectFile(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/leese_secs/);
  });

  it('compares versions', () => {
    expect(compareVersions('0.1.0', '0.1.0')).toBe(0);
    expect(compareVersions('0.10.0', '0.9.9')).toBe(1);
    expect(compareVersions('1.0.0-beta', '1.0.1')).toBe(-1);
  });

  it('serveTracker reads the admin token from the named variable and listens on loopback', async () => {
    const file = path.join(dir, 'project.yaml');
    writeFileSync(file, 'name: served\nprofile: demo\nitem_size: 10\nlease_secs: 60\nmin_client_version: 0.1.0\nadmin_token_env: MY_TRACKER_TOKEN\n');
    const db = `sqlite:${path.join(dir, 'served.sqlite')}`;
    await expect(serveTracker({ projectFile: file, db, port: 0, env: {}, logger: false })).rejects.toThrow(/MY_TRACKER_TOKEN/);
    const running = await serveTracker({ projectFile: file, db, port: 0, env: { MY_TRACKER_TOKEN: 'a-long-enough-admin-token' }, logger: false });
    try {
      expect(running.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${running.url}/api/v1/project`);
      expect(await res.json()).toEqual({ name: 'served', profile: 'demo', item_size: 10, lease_secs: 60, min_client_version: '0.1.0' });
    } finally {
      await running.close();
    }
  });
});
