import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { TrackerClient } from '../tracker/client/client.js';
import { packItems } from '../tracker/store/item-store.js';
import { MediaScope, mediaUrlHash, normaliseMediaUrl } from '../tracker/store/media-urls.js';
import { parseProject } from '../tracker/store/project.js';
import { buildTrackerApp } from '../tracker/server/server.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';
import { ShardDb } from '../storage/shard/shard-db.js';
import { mediaFailures } from '../node/media.js';

/**
 * Issue 21 §2 and §3 over HTTP: reported media are held to the scheme's default port or the
 * ports the project names, hosts are normalised before dedupe, a failed media item's per-URL
 * reasons reach the tracker, and what is refused shows in /api/v1/stats and /metrics.
 */

const ADMIN = 'admin-token-for-tests-0123456789';
let dir: string;
let app: FastifyInstance;
let store: SqliteItemStore;
let base: string;
let file: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-limits-api-'));
  file = path.join(dir, 'tracker.sqlite');
  const project = parseProject({ name: 'limits', profile: 'demo', media: { hosts: ['cdn.example.org'], ports: [8443], item_size: 10 }, nodes: { max_leases: 1 } });
  store = new SqliteItemStore({ path: file, project: project.name });
  await store.init();
  await store.seed(packItems(new RangeSet([{ start: 1, end: 10 }]), 10));
  app = await buildTrackerApp({ store, project, adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 10_000, timeWindowMs: 60_000 }, expireEveryMs: 0, aliveEveryMs: 0, statsCacheMs: 0 });
  base = await app.listen({ port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await app?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('media ports and hosts (issue 21 §2)', () => {
  it('takes the default port and the named ones, leaves out any other, and dedupes a trailing-dot or upper-case host', () => {
    const scope = new MediaScope(['cdn.example.org'], [8443]);
    const got = scope.checkReport([
      'http://cdn.example.org:6379/a.png',
      'http://CDN.Example.org./b.png',
      'https://cdn.example.org:443/c.png',
      'http://cdn.example.org:8443/d.png',
      'http://cdn.example.org:0/e.png',
    ]);
    expect(got.media.map((m) => m.url)).toEqual(['http://cdn.example.org/b.png', 'https://cdn.example.org/c.png', 'http://cdn.example.org:8443/d.png']);
    expect(got.offPort).toBe(2);
    expect(mediaUrlHash('p', normaliseMediaUrl('http://cdn.example.org../x.png').href)).toEqual(mediaUrlHash('p', normaliseMediaUrl('http://cdn.example.org/x.png').href));
    // The organiser's own list (seed --media-from-file) is not held to the ports.
    expect(new MediaScope(['cdn.example.org'], 'any').check(['http://cdn.example.org:9000/f.png'])).toEqual([{ url: 'http://cdn.example.org:9000/f.png' }]);
  });
});

describe("a node's failed media item (issue 21 §2)", () => {
  it('tells the tracker why each URL failed, from its shard (last error, else the HTTP status)', () => {
    const shard = path.join(dir, 'media-item');
    mkdirSync(shard);
    const db = new ShardDb(path.join(shard, 'shard.sqlite'));
    try {
      for (const url of ['http://h/a.png', 'http://h/b.png', 'http://h/c.png']) db.queueUrl(url, null);
      db.setUrlState('http://h/a.png', 'failed', { lastError: 'connection reset by peer' });
      db.setUrlState('http://h/b.png', 'failed', { httpStatus: 503 });
      db.setUrlState('http://h/c.png', 'done');
    } finally {
      db.close();
    }
    const urls = [{ seq: 7, url: 'http://h/a.png' }, { seq: 8, url: 'http://h/b.png' }, { seq: 9, url: 'http://h/c.png' }];
    expect([...mediaFailures(shard, urls)]).toEqual([[7, 'connection reset by peer'], [8, 'HTTP 503']]);
  });
});

describe('refusals over HTTP (issue 21 §3)', () => {
  it('leaves out off-port URLs, caps live leases per node, records a failed URL’s reason, and shows what was refused', async () => {
    const client = new TrackerClient({ baseUrl: base, clientVersion: '0.1.0', retry: { maxAttempts: 1 } });
    await client.register('volunteer');
    const item = (await client.claim())!;
    const hb = await client.heartbeat(item.leaseId, new RangeSet([{ start: 1, end: 10 }]), [
      'http://cdn.example.org:6379/a.png',
      'http://cdn.example.org./b.png',
      'http://cdn.example.org/b.png',
      'http://cdn.example.org:8443/c.png',
      'http://cdn.example.org:0/d.png',
    ]);
    expect(hb).toMatchObject({ mediaQueued: 2, mediaRefused: 2 });
    // One live lease per node here: a second claim is answered "later", not with more work.
    expect((await client.tryClaim()).kind).toBe('later');
    await client.done(item.leaseId, { counts: { archived: 10, missing: 0, gone: 0, restricted: 0, failed: 0 }, bytes: 10, warcs: [] });
    const media = (await client.claim())!;
    expect(media.kind).toBe('media');
    const b = media.urls!.find((u) => u.url === 'http://cdn.example.org/b.png')!;
    await client.fail(media.leaseId, '1 IDs failed after all retries', new RangeSet([{ start: b.seq + 1, end: b.seq + 1 }]).intersect(media.ranges), new Map([[b.seq, 'HTTP 503 after 8 attempts']]));
    const db = new Database(file, { readonly: true });
    try {
      expect(db.prepare('SELECT attempts, last_error FROM media_urls WHERE seq = ?').get(b.seq)).toEqual({ attempts: 1, last_error: 'HTTP 503 after 8 attempts' });
    } finally {
      db.close();
    }
    const stats = (await (await fetch(`${base}/api/v1/stats`)).json()) as { refused: Record<string, number>; media_failed: number; nodes: { nick: string; refused: Record<string, number> }[] };
    expect(stats.refused).toEqual({ media: 2, claims: 1, stalled_leases: 0 });
    expect(stats.nodes[0]!.refused).toEqual({ media: 2, claims: 1, stalled_leases: 0 });
    expect(stats.media_failed).toBe(0);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('lifeboat_tracker_refused{project="limits",kind="media"} 2');
    expect(metrics).toContain('lifeboat_tracker_refused{project="limits",kind="claims"} 1');
    expect(metrics).toContain('lifeboat_tracker_claims_total{project="limits",result="capped"} 1');
    expect(metrics).toContain('lifeboat_tracker_media_refused_total{project="limits"} 2');
  });
});
