import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { RangeSet } from '../config/id-ranges.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../config/logger.js';
import { loadProfile } from '../config/profile.js';
import { discoverMaxId } from '../crawler/run/discover.js';
import { runNode } from '../node/loop.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { parseProject } from '../tracker/store/project.js';
import { buildTrackerApp } from '../tracker/server/server.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';
import { seedCommand } from '../tracker/server/commands.js';

/**
 * Issue 21 §1 through a tracker and a real node: the platform announces IDs 31-40 before they are
 * readable (replication lag), so they answer 404 first; the node reports them `missing` with its
 * `done`, the tracker queues those near its live edge as a recheck item claimable a moment later,
 * and once the platform catches up they end archived. `tracker seed --recheck missing` does the
 * same on purpose for final-missing IDs.
 */

const TRUTH = { public: 'archived', missing: 'missing', gone: 'gone', private: 'restricted' } as const;
const RANK: Record<string, number> = { archived: 4, restricted: 3, gone: 2, missing: 1, failed: 0 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let platform: DemoPlatform;
let tmp: string;
beforeAll(async () => {
  platform = await startDemoPlatform({ posts: 30, trackPaths: false });
  tmp = mkdtempSync(join(tmpdir(), 'lifeboat-follow-lag-'));
});
afterAll(async () => {
  await platform.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** The best status of each ID over every item shard of a node (archived beats missing, as merge does). */
function bestStatuses(out: string): Map<number, string> {
  const best = new Map<number, string>();
  if (!existsSync(join(out, 'items'))) return best;
  for (const item of readdirSync(join(out, 'items'))) {
    const db = new Database(join(out, 'items', item, 'shard.sqlite'), { readonly: true });
    for (const { id, status } of db.prepare('SELECT id, status FROM ids').all() as { id: number; status: string }[]) {
      if (!best.has(id) || RANK[status]! > RANK[best.get(id)!]!) best.set(id, status);
    }
    db.close();
  }
  return new Map([...best].sort((a, b) => a[0] - b[0]));
}

const truth = (n: number) => new Map(Array.from({ length: n }, (_, i) => [i + 1, TRUTH[platform.post(i + 1).status]]));

/** A followed project on SQLite (rechecks: window 100, 3 attempts, 1 s apart), serving on 127.0.0.1. */
async function lagTracker(name: string) {
  const path = join(tmp, `${name}.sqlite`);
  const store = new SqliteItemStore({ path, project: name });
  await store.init();
  const project = parseProject({ name, profile: 'demo', item_size: 10, lease_secs: 30, media: { collect: false }, follow: { every_secs: 1, recheck: { window: 100, attempts: 3, delay_secs: 1 } } });
  const discover = () => discoverMaxId(loadProfile('demo', { baseUrl: platform.url }), { allowPrivateNetwork: true });
  const app = await buildTrackerApp({ store, project, adminToken: 'x'.repeat(16), leaseMs: 30_000, rateLimit: { max: 100_000, timeWindowMs: 60_000 }, statsCacheMs: 0, expireEveryMs: 0, aliveEveryMs: 0, discoverMaxId: discover });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  return { path, store, app, base };
}

describe('lagging IDs through a tracker and a node', () => {
  it('an item that ends with fail (an ID failed after all retries) still reports its missing IDs: those near the live edge are asked again and end archived', async () => {
    platform.setPosts(30);
    platform.setLatest(40);
    // 33 resets every connection: the item 31-40 fails with 33 left; 31-32 and 34-40 answered 404 (not readable yet).
    platform.setPoisonPaths(['/api/v1/posts/33']);
    const t = await lagTracker('lagfail');
    const out = join(tmp, 'failnode');
    const stop = new AbortController();
    const node = runNode({ trackerUrl: t.base, nick: 'failer', outDir: out, logger: createLogger(() => undefined), nodeName: 'failer', baseUrl: platform.url, allowPrivateNetwork: true, heartbeatMs: 1000, backoffBaseMs: 1, signal: stop.signal });
    const db = new Database(t.path, { readonly: true });
    const rows = <R>(sql: string) => db.prepare(sql).all() as R[];
    const rechecks = () => rows<{ ranges: string }>(`SELECT ranges FROM items WHERE kind = 'recheck'`).map((r) => RangeSet.fromJSON(JSON.parse(r.ranges) as [number, number][]).format());
    try {
      // (A truly missing ID of 21-30, near the edge too, gets a recheck item of its own from its item's done.)
      const edgeItem = () => rechecks().filter((r) => r.startsWith('31'));
      for (let i = 0; i < 1200 && edgeItem().length === 0; i++) await sleep(25);
      expect(edgeItem()).toEqual(['31-32,34-40']);
      expect(rows<{ last_error: string | null }>(`SELECT last_error FROM items WHERE kind = 'posts' AND ranges LIKE '[[31,%'`)[0]?.last_error).toMatch(/^1 IDs failed after all retries/);
      // Replication catches up and 33 answers again: every ID ends as the platform says.
      platform.setPoisonPaths([]);
      platform.setLatest(undefined);
      platform.setPosts(40);
      for (let i = 0; i < 1200 && rows<{ n: number }>(`SELECT COUNT(*) AS n FROM items WHERE state != 'done'`)[0]!.n > 0; i++) await sleep(25);
      expect(bestStatuses(out)).toEqual(truth(40));
    } finally {
      platform.setPoisonPaths([]);
      stop.abort();
      await node.catch(() => undefined);
      db.close();
      await t.app.close();
      await t.store.close();
    }
  }, 120_000);


  it('IDs that answer 404 near the live edge are asked again and end archived; final-missing ones stay missing; stats do not count them twice', async () => {
    platform.setPosts(30);
    platform.setLatest(40);
    const path = join(tmp, 'tracker.sqlite');
    const store = new SqliteItemStore({ path, project: 'lag' });
    await store.init();
    const project = parseProject({ name: 'lag', profile: 'demo', item_size: 10, lease_secs: 30, media: { collect: false }, follow: { every_secs: 1, recheck: { window: 100, attempts: 3, delay_secs: 1 } } });
    const discover = () => discoverMaxId(loadProfile('demo', { baseUrl: platform.url }), { allowPrivateNetwork: true });
    const app = await buildTrackerApp({ store, project, adminToken: 'x'.repeat(16), leaseMs: 30_000, rateLimit: { max: 100_000, timeWindowMs: 60_000 }, statsCacheMs: 0, expireEveryMs: 0, aliveEveryMs: 0, discoverMaxId: discover });
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    const out = join(tmp, 'node');
    const stop = new AbortController();
    const node = runNode({ trackerUrl: base, nick: 'lagger', outDir: out, logger: createLogger(() => undefined), nodeName: 'lagger', baseUrl: platform.url, allowPrivateNetwork: true, heartbeatMs: 1000, signal: stop.signal });
    const db = new Database(path, { readonly: true });
    const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
    try {
      // The node reports 31-40 missing; the tracker queues a recheck item (claimable a second later). Then replication catches up.
      for (let i = 0; i < 1200 && count(`SELECT COUNT(*) AS n FROM items WHERE kind = 'recheck'`) === 0; i++) await sleep(25);
      expect(count(`SELECT COUNT(*) AS n FROM items WHERE kind = 'recheck'`)).toBeGreaterThan(0);
      platform.setLatest(undefined);
      platform.setPosts(40);
      // Rechecks run until none is left (a truly missing ID near the edge is asked 3 times, then final).
      for (let i = 0; i < 1200 && count(`SELECT COUNT(*) AS n FROM items WHERE state != 'done'`) > 0; i++) await sleep(25);
      expect(count(`SELECT COUNT(*) AS n FROM items WHERE state != 'done'`)).toBe(0);
      expect(bestStatuses(out)).toEqual(truth(40));
      const stats = await store.stats({ now: Date.now(), windowMs: 60_000 });
      expect(stats.ids).toEqual({ total: 40, done: 40 });
      const edgeMissing = [...truth(40)].filter(([id, s]) => id > 30 && s === 'missing').length;
      // One recheck item per round: the first for all ten, then one per round while a truly missing one is left.
      expect(count(`SELECT MAX(rechecks) AS n FROM items WHERE kind = 'recheck'`)).toBe(edgeMissing > 0 ? 3 : 1);
    } finally {
      stop.abort();
      await node.catch(() => undefined);
      db.close();
      await app.close();
      await store.close();
    }

    // tracker seed --recheck missing: the curator asks again for final-missing IDs on purpose.
    platform.setPosts(30);
    const dbUrl = `sqlite:${join(tmp, 'curated.sqlite')}`;
    await seedCommand({ db: dbUrl, project: 'curated', ids: '1-40', itemSize: 10, create: true });
    const still = join(tmp, 'still');
    const plain = parseProject({ name: 'curated', profile: 'demo', item_size: 10, media: { collect: false } });
    const runOnce = async (outDir: string, nick: string) => {
      const cstore = new SqliteItemStore({ path: join(tmp, 'curated.sqlite'), project: 'curated' });
      await cstore.init();
      const capp = await buildTrackerApp({ store: cstore, project: plain, adminToken: 'x'.repeat(16), leaseMs: 30_000, rateLimit: { max: 100_000, timeWindowMs: 60_000 }, expireEveryMs: 0, aliveEveryMs: 0 });
      const cbase = await capp.listen({ port: 0, host: '127.0.0.1' });
      try {
        await runNode({ trackerUrl: cbase, nick, outDir, logger: createLogger(() => undefined), nodeName: nick, baseUrl: platform.url, allowPrivateNetwork: true, exitWhenDone: true });
      } finally {
        await capp.close();
        await cstore.close();
      }
    };
    await runOnce(still, 'c1');
    expect([...bestStatuses(still)].filter(([id, s]) => id > 30 && s !== 'missing')).toEqual([]);
    platform.setPosts(40);
    // A plain seed skips IDs the project holds: nothing to do.
    expect((await seedCommand({ db: dbUrl, project: 'curated', ids: '31-40', itemSize: 10 })).ids).toBe(0);
    const r = await seedCommand({ db: dbUrl, project: 'curated', ids: '31-40', itemSize: 10, recheck: true });
    expect(r).toMatchObject({ items: 1, ids: 10 });
    expect(r.summary).toMatch(/queued 10 IDs in 1 recheck items of project curated/);
    const again = join(tmp, 'again');
    await runOnce(again, 'c2');
    // The recheck node fetched only 31-40; with the first node's shards (as merge reads them) every ID is as the platform says.
    expect([...bestStatuses(again).keys()]).toEqual(Array.from({ length: 10 }, (_, i) => 31 + i));
    const merged = new Map([...bestStatuses(still), ...[...bestStatuses(again)].filter(([, s]) => s !== 'missing')]);
    expect(new Map([...merged].sort((a, b) => a[0] - b[0]))).toEqual(truth(40));
  }, 120_000);
});
