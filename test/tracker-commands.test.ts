import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../config/errors.js';
import { createCodec } from '../config/id-codec.js';
import { RangeSet } from '../config/id-ranges.js';
import { duration, seedCommand, statusCommand } from '../tracker/server/commands.js';
import { openItemStore } from '../tracker/store/open-store.js';
import { compareVersions, loadProjectFile } from '../tracker/store/project.js';
import { serveTracker } from '../tracker/server/server.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-tracker-cmd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('tracker seed and status commands', () => {
  it('seeds from a RangeSet and from missing-ranges.txt content, then reports status', async () => {
    const db = `sqlite:${path.join(dir, 'cmd.sqlite')}`;
    const first = await seedCommand({ db, project: 'rescue', ids: new RangeSet([{ start: 1, end: 2500 }]), itemSize: 1000, create: true });
    expect(first).toMatchObject({ items: 3, ids: 2500 });
    expect(first.summary).toMatch(/^seeded 3 items \(2,500 IDs, up to 1000 per item\) into project rescue in/);
    const missing = '# IDs with no final status\n3000-3009\n3020\n3100-3189\n';
    const second = await seedCommand({ db, project: 'rescue', ids: missing, itemSize: 50 });
    expect(second).toMatchObject({ items: 3, ids: 101 });
    const base36 = await seedCommand({ db, project: 'other', ids: 'a-z', itemSize: 100, codec: createCodec('base36'), create: true });
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

  it('seeding a range again adds only the IDs not yet in the project (issue 10 §5)', async () => {
    const db = `sqlite:${path.join(dir, 'again.sqlite')}`;
    expect(await seedCommand({ db, project: 'again', ids: '1-1000', itemSize: 100, create: true })).toMatchObject({ items: 10, ids: 1000, skipped: 0 });
    const twice = await seedCommand({ db, project: 'again', ids: '1-1000', itemSize: 100 });
    expect(twice).toMatchObject({ items: 0, ids: 0, skipped: 1000 });
    expect(twice.summary).toMatch(/seeded 0 items \(0 IDs.*; 1,000 IDs were already in the project/);
    expect((await statusCommand({ db, project: 'again' })).stats.ids.total).toBe(1000);
    expect(await seedCommand({ db, project: 'again', ids: '500-1500', itemSize: 100 })).toMatchObject({ items: 5, ids: 500, skipped: 501 });
    const status = await statusCommand({ db, project: 'again' });
    expect(status.stats.ids.total).toBe(1500);
    expect(status.stats.items.total).toBe(15);
  });

  it('refuses to seed a project the database does not hold without create, names by the serve rule, and a missing database for status', async () => {
    const file = path.join(dir, 'guard.sqlite');
    const db = `sqlite:${file}`;
    await expect(seedCommand({ db, project: 'rescue', ids: '1-10', itemSize: 5 })).rejects.toMatchObject({ code: 'E_NO_DB', message: expect.stringMatching(/guard\.sqlite does not exist; check --db, or add --create/) });
    expect(existsSync(file)).toBe(false);
    await expect(statusCommand({ db, project: 'rescue' })).rejects.toMatchObject({ code: 'E_NO_DB', message: expect.stringMatching(/guard\.sqlite does not exist/) });
    expect(existsSync(file)).toBe(false);
    await seedCommand({ db, project: 'rescue', ids: '1-10', itemSize: 5, create: true });
    await expect(seedCommand({ db, project: 'rescue-typo', ids: '11-20', itemSize: 5 })).rejects.toMatchObject({
      code: 'E_NO_PROJECT',
      message: expect.stringMatching(/project rescue-typo is not in sqlite:.*guard\.sqlite \(it holds rescue\); check the name and --db, or add --create/),
    });
    await expect(statusCommand({ db, project: 'rescue-typo' })).rejects.toMatchObject({ code: 'E_NO_PROJECT' });
    await expect(seedCommand({ db, project: 'Rescue_2', ids: '1-2', itemSize: 1, create: true })).rejects.toMatchObject({ code: 'E_PROJECT_NAME', message: expect.stringMatching(/"Rescue_2": use lower-case letters, digits and dashes/) });
    expect((await statusCommand({ db, project: 'rescue' })).stats.ids.total).toBe(10);
  });

  it('prints an ETA a person reads at a glance', () => {
    expect([duration(59), duration(600), duration(3700), duration(90_061)]).toEqual(['59 s', '10 min', '1 h 1 min', '1 d 1 h']);
  });

  it('refuses a bad --db value', async () => {
    await expect(seedCommand({ db: 'mysql://x', project: 'p', ids: '1-2', itemSize: 1, create: true })).rejects.toThrow(/expected sqlite:PATH or postgres:\/\//);
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

  it('a minimal project file (name, profile) gets the documented defaults and starts a tracker', async () => {
    const file = path.join(dir, 'minimal.yaml');
    writeFileSync(file, 'name: minimal\nprofile: demo\n');
    const project = await loadProjectFile(file);
    expect(project).toEqual({ name: 'minimal', profile: 'demo', item_size: 1000, lease_secs: 600, min_client_version: '0.0.0', media: { collect: true, inline: [], item_size: 100, max_attempts: 3, max_per_node_hour: 100_000 }, nodes: { max_leases: 4, stall_secs: 3600 } });
    const running = await serveTracker({ projectFile: file, db: `sqlite:${path.join(dir, 'minimal.sqlite')}`, port: 0, env: { LIFEBOAT_ADMIN_TOKEN: 'a-long-enough-admin-token' }, logger: false });
    try {
      expect(await (await fetch(`${running.url}/api/v1/project`)).json()).toEqual({ name: 'minimal', profile: 'demo', item_size: 1000, lease_secs: 600, min_client_version: '0.0.0' });
    } finally {
      await running.close();
    }
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
