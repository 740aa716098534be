import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { MediaReporter, reportChunks } from '../node/media.js';
import { ScopeGuard } from '../crawler/fetch/scope-guard.js';
import { ShardDb } from '../storage/shard/shard-db.js';
import { TrackerClient } from '../tracker/client/client.js';
import { TrackerRequestError } from '../tracker/client/errors.js';
import { packItems } from '../tracker/store/item-store.js';
import { parseProject } from '../tracker/store/project.js';
import { buildTrackerApp } from '../tracker/server/server.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';

/**
 * Issue 13: a post item's media reach the tracker before, or with, the IDs they came from — a
 * refused report leaves those IDs unfinished on the tracker — in reports it accepts (≤ 500 URLs,
 * < 64 KiB), the project's inline kinds left out.
 */

const dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-media-report-'));
let store: SqliteItemStore;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  const project = parseProject({ name: 'report', profile: 'demo' });
  store = new SqliteItemStore({ path: path.join(dir, 't.sqlite'), project: project.name });
  await store.init();
  app = await buildTrackerApp({ store, project, adminToken: 'admin-token-for-tests-0123456789', leaseMs: 60_000, rateLimit: { max: 10_000, timeWindowMs: 60_000 }, expireEveryMs: 0, aliveEveryMs: 0 });
  base = await app.listen({ port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await app.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function shardWith(name: string, media: Record<number, string[]>): string {
  const shard = path.join(dir, name);
  mkdirSync(shard, { recursive: true });
  const db = new ShardDb(path.join(shard, 'shard.sqlite'));
  for (const [id, urls] of Object.entries(media)) {
    db.recordOutcome({ id: Number(id), status: 'archived', httpStatus: 200, attempts: 1, lastError: null });
    for (const url of urls) db.queueUrl(url, Number(id));
  }
  db.close();
  return shard;
}

describe('MediaReporter (issue 13)', () => {
  it('sends the media first and the IDs with the last report; a refused report leaves the IDs unfinished', async () => {
    await store.seed(packItems(new RangeSet([{ start: 1, end: 20 }]), 10));
    const client = new TrackerClient({ baseUrl: base, clientVersion: '0.1.0', retry: { maxAttempts: 1 } });
    await client.register('alice');
    const item = (await client.claim())!;
    // Posts 1-3 found a URL off the project's hosts (a profile bug): the report is refused…
    const bad = shardWith('bad', { 1: ['http://127.0.0.1:8080/a.png'], 2: ['http://127.0.0.2/x.png'], 3: [] });
    const reporter = new MediaReporter({ client, leaseId: item.leaseId, dir: bad, inline: [] });
    await expect(reporter.report(new RangeSet([{ start: 1, end: 3 }]))).rejects.toBeInstanceOf(TrackerRequestError);
    // …and the tracker does not count those posts finished, nor may a release name them.
    expect((await client.heartbeat(item.leaseId, new RangeSet())).remaining.toJSON()).toEqual([[1, 10]]);
    expect(reporter.acked.isEmpty).toBe(true);
    expect(await store.mediaCounts()).toMatchObject({ urls: 0 });

    // 1,200 URLs (some long) from posts 4-10: several reports, the IDs only with the last.
    const many: Record<number, string[]> = {};
    for (let i = 0; i < 1200; i++) (many[4 + (i % 7)] ??= []).push(`http://127.0.0.1:8080/m/${i}/${i % 3 === 0 ? 'x'.repeat(150) : ''}.jpg`);
    many[4]!.push('http://127.0.0.1:8080/v/clip.mp4');
    const good = shardWith('good', many);
    const sent: { finished: number; media: number }[] = [];
    const spy = new Proxy(client, {
      get(target, prop, receiver) {
        if (prop !== 'heartbeat') return Reflect.get(target, prop, receiver);
        return async (leaseId: string, finished: RangeSet, media?: string[]) => {
          sent.push({ finished: finished.size, media: media?.length ?? 0 });
          return target.heartbeat(leaseId, finished, media);
        };
      },
    });
    const r2 = new MediaReporter({ client: spy, leaseId: item.leaseId, dir: good, inline: ['video'] });
    await r2.report(new RangeSet([{ start: 4, end: 10 }]));
    expect(sent.length).toBeGreaterThanOrEqual(3);
    // Each report names only the posts whose media have all been sent (the tracker takes media per ID finished).
    expect(sent.slice(0, -1).every((s, i) => s.finished < 7 && s.finished <= sent[i + 1]!.finished)).toBe(true);
    expect(sent.at(-1)!.finished).toBe(7);
    expect(sent.reduce((n, s) => n + s.media, 0)).toBe(1200); // the inline video is fetched by the item itself
    expect(await store.mediaCounts()).toMatchObject({ urls: 1200 });
    expect(r2.acked.toJSON()).toEqual([[4, 10]]);
    // A second round sends only the finished set: nothing is reported twice.
    sent.length = 0;
    await r2.report(new RangeSet([{ start: 4, end: 10 }]));
    expect(sent).toEqual([{ finished: 7, media: 0 }]);
  });

  it("with the project's media hosts, an off-host or overlong URL is not reported but recorded skipped: the item still finishes", async () => {
    await store.seed(packItems(new RangeSet([{ start: 101, end: 110 }]), 10));
    const client = new TrackerClient({ baseUrl: base, clientVersion: '0.1.0', retry: { maxAttempts: 1 } });
    await client.register('bob');
    const item = (await client.claim({ only: 'posts' }))!;
    expect(item.media.hosts).toEqual(['127.0.0.1']); // the demo profile's scope, sent with the claim
    const long = `http://127.0.0.1:8080/${'z'.repeat(2100)}.png`;
    const shard = shardWith('scoped', { 101: ['http://127.0.0.1:8080/kept.png', 'http://127.0.0.2/elsewhere.png'], 102: [long] });
    const scope = new ScopeGuard({ hosts: item.media.hosts!, allowPrivateNetwork: true });
    const reporter = new MediaReporter({ client, leaseId: item.leaseId, dir: shard, inline: [], scope });
    const before = (await store.mediaCounts()).urls;
    await reporter.report(new RangeSet([{ start: 101, end: 110 }]));
    expect((await store.mediaCounts()).urls).toBe(before + 1);
    expect(reporter.acked.toJSON()).toEqual([[101, 110]]);
    const db = new Database(path.join(shard, 'shard.sqlite'), { readonly: true });
    const states = Object.fromEntries(db.prepare('SELECT url, state, last_error FROM urls').all().map((r: any) => [r.url.slice(0, 40), `${r.state}: ${r.last_error ?? ''}`]));
    db.close();
    expect(states).toEqual({
      'http://127.0.0.1:8080/kept.png': 'queued: ',
      'http://127.0.0.2/elsewhere.png': expect.stringMatching(/^skipped: not reported to the tracker: host 127\.0\.0\.2 is not in the profile's scope/),
      [long.slice(0, 40)]: 'skipped: not reported to the tracker: longer than 2000 characters',
    });
  });

  it('cuts reports at 500 URLs or about 48,000 characters', () => {
    const short = Array.from({ length: 1001 }, (_, i) => `http://h/${i}`);
    expect(reportChunks(short).map((c) => c.length)).toEqual([500, 500, 1]);
    const long = Array.from({ length: 100 }, () => `http://h/${'y'.repeat(1990)}`);
    const chunks = reportChunks(long);
    expect(chunks.every((c) => JSON.stringify(c).length < 64 * 1024 - 1024)).toBe(true);
    expect(chunks.flat()).toHaveLength(100);
  });
});

/**
 * A node against a tracker that is away whenever a heartbeat carries media, `awayReports` times
 * (Infinity: always); with `stopWhenAway` each such failure is also the volunteer's Ctrl-C.
 */
async function nodeWithAwayTracker(name: string, options: { awayReports: number; stopWhenAway: boolean; heartbeatMs: number }) {
  const { startDemoPlatform } = await import('../scripts/demo/demo-platform.js');
  const { runNode } = await import('../node/loop.js');
  const { silentLogger } = await import('../config/logger.js');
  const { TrackerUnavailableError } = await import('../tracker/client/errors.js');
  const platform = await startDemoPlatform({ posts: 60, trackPaths: false });
  const project = parseProject({ name, profile: 'demo', item_size: 60, lease_secs: 60 });
  const trackerPath = path.join(dir, `${name}.sqlite`);
  const ctrlStore = new SqliteItemStore({ path: trackerPath, project: project.name });
  await ctrlStore.init();
  const ctrlApp = await buildTrackerApp({ store: ctrlStore, project, adminToken: 'admin-token-for-tests-0123456789', leaseMs: 60_000, rateLimit: { max: 10_000, timeWindowMs: 60_000 }, expireEveryMs: 0, aliveEveryMs: 0 });
  try {
    const url = await ctrlApp.listen({ port: 0, host: '127.0.0.1' });
    await ctrlStore.seed([new RangeSet([{ start: 1, end: 60 }])]);
    const stop = new AbortController();
    let away = 0;
    let sent = 0; // media URLs in heartbeats the tracker answered
    const real = new TrackerClient({ baseUrl: url, clientVersion: '0.1.0', retry: { maxAttempts: 1 } });
    const client = new Proxy(real, {
      get(target, prop) {
        if (prop !== 'heartbeat') {
          const v: unknown = Reflect.get(target, prop, target);
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        }
        return async (leaseId: string, finished: RangeSet, media?: string[]) => {
          if (media && media.length > 0 && away < options.awayReports) {
            away++;
            if (options.stopWhenAway) stop.abort();
            throw new TrackerUnavailableError('tracker away (test)');
          }
          const answer = await target.heartbeat(leaseId, finished, media);
          sent += media?.length ?? 0;
          return answer;
        };
      },
    });
    const outDir = path.join(dir, `${name}-node`);
    const result = await runNode({ trackerUrl: url, nick: name, outDir, logger: silentLogger, nodeName: name, baseUrl: platform.url, allowPrivateNetwork: true, heartbeatMs: options.heartbeatMs, uploadRetryBaseMs: 20, signal: stop.signal, client, exitWhenDone: true });
    const [item] = (await import('node:fs')).readdirSync(path.join(outDir, 'items'));
    const shard = new Database(path.join(outDir, 'items', item!, 'shard.sqlite'), { readonly: true });
    const withMedia = new Set(shard.prepare(`SELECT DISTINCT post_id FROM urls WHERE state = 'queued' AND post_id IS NOT NULL`).pluck().all() as number[]);
    const queuedUrls = shard.prepare(`SELECT COUNT(*) FROM urls WHERE state = 'queued'`).pluck().get() as number;
    const finalIds = shard.prepare(`SELECT id FROM ids WHERE status IN ('archived', 'missing', 'gone', 'restricted')`).pluck().all() as number[];
    shard.close();
    const trackerDb = new Database(trackerPath, { readonly: true });
    const row = trackerDb.prepare(`SELECT state, finished FROM items WHERE project = ? AND kind = 'posts'`).get(name) as { state: string; finished: string | null };
    trackerDb.close();
    return { result, away, sent, withMedia, queuedUrls, finalIds, row };
  } finally {
    await ctrlApp.close();
    await ctrlStore.close();
    await platform.close();
  }
}

describe('Ctrl-C in collect mode (issue 21 §5)', () => {
  it('releases only IDs whose media the tracker acknowledged: a report that fails at the stop leaves them unfinished', async () => {
    // The tracker never takes a media report; the first one that fails is when Ctrl-C comes
    // (during the crawl, or at the item's last report when the crawl ended first).
    const run = await nodeWithAwayTracker('ctrlc', { awayReports: Infinity, stopWhenAway: true, heartbeatMs: 50 });
    expect(run.result.interrupted).toBe(true);
    // The stop came with final IDs whose media were never acknowledged…
    expect(run.finalIds.filter((id) => run.withMedia.has(id)).length).toBeGreaterThan(0);
    // …and the tracker got none of them back as finished.
    expect(run.row.state).toBe('queued');
    const releasedFinished = RangeSet.fromJSON(JSON.parse(run.row.finished ?? '[]') as [number, number][]);
    expect([...run.withMedia].filter((id) => releasedFinished.has(id))).toEqual([]);
  }, 60_000);

  it("a tracker away at the item's last media report is waited out: the item is done with every medium reported", async () => {
    // No heartbeat during the crawl (the lease is long): the last report is the first, and it fails twice.
    const run = await nodeWithAwayTracker('away', { awayReports: 2, stopWhenAway: false, heartbeatMs: 60_000 });
    expect(run.away).toBe(2);
    expect(run.result.interrupted).toBe(false);
    expect(run.result.items).toBe(1);
    expect(run.row.state).toBe('done');
    expect(run.queuedUrls).toBeGreaterThan(0);
    expect(run.sent).toBe(run.queuedUrls);
  }, 60_000);
});
