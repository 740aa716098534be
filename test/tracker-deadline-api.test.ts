import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TrackerClient } from '../tracker/client/client.js';
import { parseProject } from '../tracker/store/project.js';
import { buildTrackerApp } from '../tracker/server/server.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';

/** Issue 14: a project with a deadline — newest first, countdown and projection in stats and metrics. */

const T0 = 1_700_000_000_000;
const DEADLINE = new Date(T0 + 100_000).toISOString();
let clock = T0;
let dir: string;
let store: SqliteItemStore;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-deadline-api-'));
  const project = parseProject({ name: 'dl', profile: 'demo', item_size: 100, deadline: DEADLINE });
  store = new SqliteItemStore({ path: path.join(dir, 't.sqlite'), project: 'dl' });
  await store.init();
  await store.seedNew(new (await import('../config/id-ranges.js')).RangeSet([{ start: 1, end: 1000 }]), 100);
  app = await buildTrackerApp({ store, project, adminToken: 'admin-token-for-tests-0123', now: () => clock, leaseMs: 60_000, rateLimit: { max: 10_000, timeWindowMs: 60_000 }, statsCacheMs: 0, expireEveryMs: 0, aliveEveryMs: 0, rateWindowMs: 100_000 });
  base = await app.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await app.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a project with a deadline', () => {
  it('hands out the newest IDs first, and projects coverage at the deadline from the live byte rate', async () => {
    const node = new TrackerClient({ baseUrl: base, clientVersion: '0.1.0', retry: { maxAttempts: 2, baseDelayMs: 1 } });
    await node.register('alice');
    const first = await node.claim();
    expect(first?.ranges.format()).toBe('901-1000');
    clock = T0 + 20_000;
    await node.done(first!.leaseId, { counts: { archived: 100, missing: 0, gone: 0, restricted: 0, failed: 0 }, bytes: 1_000_000, warcs: [] });
    expect((await node.claim())?.ranges.format()).toBe('801-900');

    const stats = (await (await request(`${base}/api/v1/stats`)).body.json()) as { deadline: { at: string; seconds_left: number; bytes_per_sec: number; fits: boolean; kinds: { kind: string; units: number; finished: number; projected: number; coverage: number }[] } };
    // 1 MB in the 20 s the tracker has been up (shorter than its 100 s window): 50 kB/s; 80 s left:
    // 4 MB = 400 more posts at 10 kB each.
    expect(stats.deadline).toMatchObject({ at: DEADLINE, seconds_left: 80, bytes_per_sec: 50_000, fits: false });
    expect(stats.deadline.kinds[0]).toMatchObject({ kind: 'posts', units: 1000, finished: 100, projected: 500, coverage: 0.5 });

    const metrics = await (await request(`${base}/metrics`)).body.text();
    expect(metrics).toContain('lifeboat_tracker_deadline_seconds{project="dl"} 80');
    expect(metrics).toContain('lifeboat_tracker_projected_coverage{project="dl",kind="posts"} 0.5');
    expect(metrics).toContain('lifeboat_tracker_coverage{project="dl",kind="posts"} 0.1');
  });

  it('the leaderboard page renders the deadline block from the stats', () => {
    const html = readFileSync(path.resolve('tracker/public/index.html'), 'utf8');
    expect(html).toContain('id="deadline-kinds"');
    expect(html).toMatch(/const d = s\.deadline;/);
  });

  it('a project without a deadline keeps the oldest-first order and has no deadline block', async () => {
    const project = parseProject({ name: 'plain', profile: 'demo', item_size: 100 });
    const plainStore = new SqliteItemStore({ path: path.join(dir, 't.sqlite'), project: 'plain' });
    await plainStore.init();
    await plainStore.seedNew(new (await import('../config/id-ranges.js')).RangeSet([{ start: 1, end: 300 }]), 100);
    const plain = await buildTrackerApp({ store: plainStore, project, adminToken: 'admin-token-for-tests-0123', leaseMs: 60_000, rateLimit: { max: 10_000, timeWindowMs: 60_000 }, statsCacheMs: 0, expireEveryMs: 0, aliveEveryMs: 0 });
    const url = await plain.listen({ port: 0, host: '127.0.0.1' });
    try {
      const node = new TrackerClient({ baseUrl: url, clientVersion: '0.1.0', retry: { maxAttempts: 2, baseDelayMs: 1 } });
      await node.register('bob');
      expect((await node.claim())?.ranges.format()).toBe('1-100');
      const stats = (await (await request(`${url}/api/v1/stats`)).body.json()) as Record<string, unknown>;
      expect(stats).not.toHaveProperty('deadline');
      expect(await (await request(`${url}/metrics`)).body.text()).not.toContain('deadline');
    } finally {
      await plain.close();
      await plainStore.close();
    }
  });
});
