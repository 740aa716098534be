import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadProfile } from '../config/profile.js';
import { discoverMaxId } from '../crawler/run/discover.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { FollowSeeder, type FollowLog } from '../tracker/server/follow.js';
import { parseProject } from '../tracker/store/project.js';
import { buildTrackerApp } from '../tracker/server/server.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';

/** Issue 14: a tracker project with `follow` seeds what a growing platform publishes. */

const T0 = 1_700_000_000_000;
let platform: DemoPlatform;
let dir: string;
let serial = 0;
beforeAll(async () => {
  platform = await startDemoPlatform({ posts: 25 });
  dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-follow-'));
});
afterAll(async () => {
  await platform.close();
  rmSync(dir, { recursive: true, force: true });
});

async function openStore() {
  const store = new SqliteItemStore({ path: path.join(dir, 'tracker.sqlite'), project: `follow-${serial++}` });
  await store.init();
  return store;
}

function recordingLog(): FollowLog & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, info: () => undefined, warn: (msg) => warnings.push(msg) };
}

const discover = () => discoverMaxId(loadProfile('demo', { baseUrl: platform.url }), { allowPrivateNetwork: true });
const seederFor = (store: SqliteItemStore, log = recordingLog()) => new FollowSeeder({ store, discover, itemSize: 10, everyMs: 1000, log });
const idsTotal = async (store: SqliteItemStore) => (await store.stats({ now: T0, windowMs: 60_000 })).ids.total;

describe('FollowSeeder', () => {
  it('seeds the platform as it grows, each ID once, also across a restart and with items leased', async () => {
    platform.setPosts(25);
    const store = await openStore();
    try {
      const seeder = seederFor(store);
      expect(await seeder.pollOnce()).toEqual({ kind: 'seeded', highest: 25, seed: { items: 3, ids: 25, skipped: 0 } });
      const node = await store.registerNode({ nick: 'n', tokenHash: 'h1', now: T0 });
      const claimed = await store.claim({ nodeId: node.id, now: T0, leaseMs: 60_000 });
      expect(claimed.kind).toBe('lease');
      platform.setPosts(40);
      expect(await seeder.pollOnce()).toEqual({ kind: 'seeded', highest: 40, seed: { items: 2, ids: 15, skipped: 0 } });
      expect(await seeder.pollOnce()).toEqual({ kind: 'unchanged', highest: 40 });
      // A restarted tracker reads its live edge back (issue 21): nothing is seeded again.
      expect(await seederFor(store).pollOnce()).toEqual({ kind: 'unchanged', highest: 40 });
      expect(await idsTotal(store)).toBe(40);
    } finally {
      await store.close();
    }
  });

  it('a failing discover is logged and asked again; nothing is lost or stopped', async () => {
    platform.setPosts(30);
    const store = await openStore();
    const log = recordingLog();
    try {
      const seeder = seederFor(store, log);
      await seeder.pollOnce();
      platform.setChaos({ rate: 1, kinds: ['5xx'] });
      const failed = await seeder.pollOnce();
      expect(failed.kind).toBe('failed');
      expect(failed.highest).toBe(30);
      expect(log.warnings.join('\n')).toMatch(/discovering the latest ID failed .*HTTP 5\d\d/);
      platform.setChaos(undefined);
      platform.setPosts(35);
      expect(await seeder.pollOnce()).toMatchObject({ kind: 'seeded', highest: 35, seed: { ids: 5 } });
      expect(await idsTotal(store)).toBe(35);
    } finally {
      platform.setChaos(undefined);
      await store.close();
    }
  });

  it('a discover that goes backwards never shrinks the range; growth after it is seeded', async () => {
    platform.setPosts(40);
    const store = await openStore();
    const log = recordingLog();
    try {
      const seeder = seederFor(store, log);
      await seeder.pollOnce();
      platform.setPosts(12);
      expect(await seeder.pollOnce()).toEqual({ kind: 'backwards', highest: 40, answered: 12 });
      expect(log.warnings).toEqual(["follow: the platform's latest ID went backwards (12 < 40); keeping 40"]);
      expect(await idsTotal(store)).toBe(40);
      platform.setPosts(45);
      expect(await seeder.pollOnce()).toMatchObject({ kind: 'seeded', highest: 45, seed: { ids: 5 } });
      expect(await idsTotal(store)).toBe(45);
    } finally {
      await store.close();
    }
  });
});

describe('tracker app with follow', () => {
  it('polls on its own every follow.every_secs and serves the new IDs', async () => {
    platform.setPosts(20);
    const store = await openStore();
    const project = parseProject({ name: 'follow-app', profile: 'demo', item_size: 10, follow: { every_secs: 1 } });
    await expect(buildTrackerApp({ store, project, adminToken: 'x'.repeat(16), leaseMs: 60_000, rateLimit: { max: 1000, timeWindowMs: 60_000 } })).rejects.toThrow(/follow section: pass discoverMaxId/);
    const app = await buildTrackerApp({ store, project, adminToken: 'x'.repeat(16), leaseMs: 60_000, rateLimit: { max: 1000, timeWindowMs: 60_000 }, statsCacheMs: 0, expireEveryMs: 0, aliveEveryMs: 0, discoverMaxId: discover });
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    const total = async () => ((await (await request(`${base}/api/v1/stats`)).body.json()) as { ids: { total: number } }).ids.total;
    const waitFor = async (n: number) => {
      for (let i = 0; i < 200 && (await total()) !== n; i++) await new Promise((r) => setTimeout(r, 50));
      return total();
    };
    try {
      expect(await waitFor(20)).toBe(20);
      platform.setPosts(33);
      expect(await waitFor(33)).toBe(33);
    } finally {
      await app.close();
      await store.close();
    }
  });
});

describe('claims of a followed project', () => {
  it('say "later" (after the next poll), never "done", when everything seeded is finished', async () => {
    platform.setPosts(5);
    const store = await openStore();
    const project = parseProject({ name: 'follow-later', profile: 'demo', item_size: 10, follow: { every_secs: 7 } });
    const app = await buildTrackerApp({ store, project, adminToken: 'x'.repeat(16), leaseMs: 60_000, rateLimit: { max: 1000, timeWindowMs: 60_000 }, expireEveryMs: 0, aliveEveryMs: 0, discoverMaxId: discover });
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const { TrackerClient } = await import('../tracker/client/client.js');
      const node = new TrackerClient({ baseUrl: base, clientVersion: '0.1.0', retry: { maxAttempts: 2, baseDelayMs: 1 } });
      await node.register('f');
      let item = await node.claim();
      for (let i = 0; i < 100 && !item; i++) item = (await new Promise((r) => setTimeout(r, 50)), await node.claim());
      await node.done(item!.leaseId, { counts: { archived: 5, missing: 0, gone: 0, restricted: 0, failed: 0 }, bytes: 1, warcs: [] });
      expect(await node.tryClaim()).toEqual({ kind: 'later', retryAfterSecs: 7 });
    } finally {
      await app.close();
      await store.close();
    }
  });
});
