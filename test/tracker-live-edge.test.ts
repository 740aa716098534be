import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { loadProfile } from '../config/profile.js';
import { discoverMaxId } from '../crawler/run/discover.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { TrackerClient } from '../tracker/client/client.js';
import type { ItemStore } from '../tracker/store/item-store.js';
import { parseProject } from '../tracker/store/project.js';
import { buildTrackerApp } from '../tracker/server/server.js';
import { takeIds } from '../tracker/server/follow.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';
import { describeWithPostgres, pgStores } from './fixtures/pg-stores.js';

/**
 * Issue 21 §1, the tracker's live edge over HTTP: a `latest` of 10^15 never freezes the API (a
 * jump is held until confirmed; what is accepted is a frontier cut into bounded chunks as work is
 * claimed), and a restart reads the edge back instead of seeding again. Real SQLite and PostgreSQL.
 */

let platform: DemoPlatform;
let dir: string;
beforeAll(async () => {
  platform = await startDemoPlatform({ posts: 50 });
  dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-live-edge-tracker-'));
});
afterAll(async () => {
  await platform.close();
  rmSync(dir, { recursive: true, force: true });
});

const discover = () => discoverMaxId(loadProfile('demo', { baseUrl: platform.url }), { allowPrivateNetwork: true });

interface StatsBody {
  ids: { total: number; done: number };
  items: { queued: number };
  follow: { highest: number; held: number | null; frontier_ids: number };
}

async function startTracker(store: ItemStore, name: string, o: { recheck?: Record<string, number>; now?: () => number; confirmSecs?: number } = {}) {
  const project = parseProject({ name, profile: 'demo', item_size: 10, follow: { every_secs: 1, chunk_items: 5, ...(o.recheck ? { recheck: o.recheck } : {}), ...(o.confirmSecs !== undefined ? { confirm_secs: o.confirmSecs } : {}) } });
  const app = await buildTrackerApp({ store, project, adminToken: 'x'.repeat(16), leaseMs: 60_000, rateLimit: { max: 100_000, timeWindowMs: 60_000 }, statsCacheMs: 0, expireEveryMs: 0, aliveEveryMs: 0, discoverMaxId: discover, ...(o.now ? { now: o.now } : {}) });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  // Every answer must come: a frozen tracker fails here, not by a clock in the assertion.
  const stats = async () => {
    const res = await request(`${base}/api/v1/stats`, { headersTimeout: 20_000, bodyTimeout: 20_000 });
    expect(res.statusCode).toBe(200);
    return (await res.body.json()) as StatsBody;
  };
  /** Asks for stats until `ok` holds (each ask must be answered). */
  const until = async (ok: (s: StatsBody) => boolean) => {
    let s = await stats();
    for (let i = 0; i < 400 && !ok(s); i++) s = (await new Promise((r) => setTimeout(r, 25)), await stats());
    return s;
  };
  return { app, base, stats, until };
}

const ALL_MISSING = { counts: { archived: 0, missing: 10, gone: 0, restricted: 0, failed: 0 }, bytes: 0, warcs: [] };

function liveEdgeSuite(open: (project: string) => Promise<ItemStore>) {
  it('a missing ID outside the window is asked again while younger than recheck.age_secs, counted from the poll that accepted it (after a restart too); the first answer\'s IDs have no age', async () => {
    platform.setLatest(undefined);
    platform.setPosts(50);
    const store = await open('aged');
    let clock = Date.now();
    const now = () => clock;
    // Window 1: only the newest ID is near the edge by the window; age 100 s.
    const o = { recheck: { window: 1, attempts: 3, delay_secs: 1, age_secs: 100 }, now };
    let t = await startTracker(store, 'aged', o);
    const node = async (base: string, nick: string) => {
      const client = new TrackerClient({ baseUrl: base, clientVersion: '0.1.0', retry: { maxAttempts: 2, baseDelayMs: 1 } });
      await client.register(nick);
      return client;
    };
    /** Claims every item claimable now; each ends (done, or fail) with all its IDs missing. */
    const work = async (client: TrackerClient, end: 'done' | 'fail' = 'done') => {
      const got: string[] = [];
      for (;;) {
        const a = await client.tryClaim();
        if (a.kind !== 'item') return got;
        got.push(a.item.ranges.format());
        if (end === 'done') await client.done(a.item.leaseId, ALL_MISSING, { missing: a.item.ranges });
        else await client.fail(a.item.leaseId, 'x', a.item.ranges, undefined, { missing: a.item.ranges });
      }
    };
    try {
      await t.until((s) => s.follow.highest === 50);
      const accepted = clock;
      platform.setPosts(70); // 51-70: accepted by a poll at `accepted`
      await t.until((s) => s.follow.highest === 70);
      expect(await work(await node(t.base, 'aging'))).toEqual(['1-10', '11-20', '21-30', '31-40', '41-50', '51-60', '61-70']);
      // A restart: the new process never saw the poll that accepted 51-70, the store did.
      await t.app.close();
      clock = accepted + 99_999;
      t = await startTracker(store, 'aged', o);
      await t.until((s) => s.follow.highest === 70);
      const b = await node(t.base, 'aging2');
      // The first answer (1-50) has no age and lies outside the window: final. 51-70 are young (99.999 s): asked again.
      expect(await work(b)).toEqual(['51-60', '61-70']);
      clock += 2000;
      // Their second recheck, 101.999 s after the poll: too old now; only 70 (the window) is asked again. A fail counts as a done does.
      expect(await work(b, 'fail')).toEqual(['51-60', '61-70']);
      clock += 4000;
      expect(await work(b)).toEqual(['70']);
    } finally {
      await t.app.close();
      await store.close();
    }
  });

  it('a glitched latest of 10^15 is held, never seeded, and dropped when a poll answers normally, though several polls saw it', async () => {
    platform.setLatest(undefined);
    platform.setPosts(50);
    const store = await open('glitch-dropped');
    const t = await startTracker(store, 'glitch-dropped');
    try {
      expect((await t.until((s) => s.ids.total === 50)).ids.total).toBe(50);
      platform.setLatest(1e15);
      const held = await t.until((s) => s.follow.held === 1e15);
      expect(held.follow).toEqual({ highest: 50, held: 1e15, frontier_ids: 0 });
      expect(held.ids.total).toBe(50);
      // The glitch lasts a few polls (every_secs 1), far less than confirm_secs (default 60 s): still held, nothing accepted.
      await new Promise((r) => setTimeout(r, 3500));
      expect((await t.stats()).follow).toEqual({ highest: 50, held: 1e15, frontier_ids: 0 });
      platform.setLatest(undefined);
      platform.setPosts(60);
      const after = await t.until((s) => s.follow.highest === 60);
      // 51-60 accepted: items or (5 items already queued) the frontier; nothing of the glitch.
      expect(after.follow.held).toBeNull();
      expect(after.ids.total + after.follow.frontier_ids).toBe(60);
      expect(after.ids.total).toBe(50);
    } finally {
      platform.setLatest(undefined);
      await t.app.close();
      await store.close();
    }
  });

  it('a 10^15 confirmed by a later poll, confirm_secs after it was first seen, becomes a frontier: register, claim, heartbeat and stats answer; items are cut a chunk at a time; a restart seeds nothing again', async () => {
    platform.setLatest(undefined);
    platform.setPosts(50);
    const store = await open('glitch-confirmed');
    let t = await startTracker(store, 'glitch-confirmed', { confirmSecs: 2 });
    try {
      await t.until((s) => s.ids.total === 50);
      platform.setLatest(1e15); // stays: a poll 2 s after the first sighting confirms it
      const s = await t.until((x) => x.follow.highest === 1e15);
      expect(s.follow).toEqual({ highest: 1e15, held: null, frontier_ids: 1e15 - 50 });
      // 5 items (50 IDs) queued: the frontier waits (chunk_items 5).
      expect(s.ids.total).toBe(50);
      const node = new TrackerClient({ baseUrl: t.base, clientVersion: '0.1.0', retry: { maxAttempts: 2, baseDelayMs: 1 } });
      await node.register('edge');
      const claimed: string[] = [];
      for (let i = 0; i < 8; i++) {
        const item = await node.claim();
        expect(item).not.toBeNull();
        claimed.push(item!.ranges.format());
        await node.heartbeat(item!.leaseId, new RangeSet());
        await node.done(item!.leaseId, { counts: { archived: 10, missing: 0, gone: 0, restricted: 0, failed: 0 }, bytes: 1, warcs: [] });
      }
      // Claims went on past the first 50 IDs: each chunk was cut when the queue ran low.
      expect(claimed).toEqual(['1-10', '11-20', '21-30', '31-40', '41-50', '51-60', '61-70', '71-80']);
      const mid = await t.stats();
      // Rows are cut only while fewer than a chunk (5 items) are queued: never more than the work
      // claimed plus two chunks; every accepted ID is a row or in the frontier, none in both.
      expect(mid.ids.total).toBeGreaterThanOrEqual(100);
      expect(mid.ids.total).toBeLessThanOrEqual(80 + 2 * 50);
      expect(mid.ids.total + mid.follow.frontier_ids).toBe(1e15);
      // A restart reads the edge back: the frontier goes on from where it was, nothing is seeded again.
      await t.app.close();
      t = await startTracker(store, 'glitch-confirmed', { confirmSecs: 2 });
      const again = await t.until((x) => x.follow.highest === 1e15);
      expect(again.ids.total + again.follow.frontier_ids).toBe(1e15);
      expect(again.ids.total).toBeLessThanOrEqual(mid.ids.total + 50);
    } finally {
      platform.setLatest(undefined);
      await t.app.close();
      await store.close();
    }
  });
}

describe('the frontier', () => {
  it('cuts the lowest IDs for order oldest and the highest for newest, without listing them', () => {
    const frontier = new RangeSet([{ start: 51, end: 60 }, { start: 101, end: 1e15 }]);
    expect(takeIds(frontier, 15, 'oldest').format()).toBe('51-60,101-105');
    expect(takeIds(frontier, 15, 'newest').format()).toBe(`${1e15 - 14}-${1e15}`);
    expect(takeIds(new RangeSet([{ start: 1, end: 3 }]), 10, 'oldest').format()).toBe('1-3');
  });
});

describe('follow.recheck.age_secs in the project file', () => {
  it('takes whole seconds, 0 (off) included; a misspelt key is an error naming the one meant', () => {
    expect(parseProject({ name: 'a', profile: 'demo', follow: { every_secs: 1, recheck: { age_secs: 0 } } }).follow?.recheck).toEqual({ age_secs: 0 });
    expect(() => parseProject({ name: 'a', profile: 'demo', follow: { every_secs: 1, recheck: { age_sec: 600 } } }, 'p.yaml')).toThrow('p.yaml: follow.recheck: unknown key "age_sec" (did you mean "age_secs"?)');
    expect(() => parseProject({ name: 'a', profile: 'demo', follow: { every_secs: 1, recheck: { age_secs: -1 } } }, 'p.yaml')).toThrow(/follow\.recheck\.age_secs/);
  });
});

describe('tracker follow at the live edge (SQLite)', () => {
  let serial = 0;
  liveEdgeSuite(async (project) => {
    const store = new SqliteItemStore({ path: path.join(dir, `tracker-${serial++}.sqlite`), project });
    await store.init();
    return store;
  });
});

describeWithPostgres('tracker follow at the live edge (PostgreSQL)', () => {
  const pg = pgStores('live_edge');
  afterAll(() => pg.teardown());
  liveEdgeSuite((project) => pg.open(project));
});
