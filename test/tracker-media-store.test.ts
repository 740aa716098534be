import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { LeaseError } from '../tracker/client/errors.js';
import { type DoneStats, type ItemStore, type Lease, packItems } from '../tracker/store/item-store.js';
import { type ReportedMedia, SeenUrls, mediaKindOf, mediaUrlHash, normaliseMediaUrl } from '../tracker/store/media-urls.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';
import { describeEachStore, freshProject } from './fixtures/store-harness.js';

/**
 * Issue 13: the project-wide media URL table and media items, one contract on both stores —
 * dedupe across nodes and replays, media items cut in batches with the ID items' leases,
 * heartbeats, remainder handover, done idempotence and stale-lease refusal, and priorities.
 */


const LEASE_MS = 60_000;
const T0 = 1_700_000_000_000;
const r = (...pairs: [number, number][]) => new RangeSet(pairs.map(([start, end]) => ({ start, end })));
const stats = (bytes = 100): DoneStats => ({ counts: { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0 }, bytes, warcs: [] });
const m = (url: string): ReportedMedia => ({ url });
const urlsOf = (lease: Lease) => (lease.urls ?? []).map((u) => u.url);

const nextProject = () => freshProject('m');

async function register(store: ItemStore, nick: string) {
  return store.registerNode({ nick, tokenHash: `${nick}-${Math.random()}`, now: T0 });
}

async function lease(store: ItemStore, nodeId: number, options: { now?: number; only?: 'posts' | 'media'; size?: number } = {}): Promise<Lease> {
  const result = await store.claim({ nodeId, now: options.now ?? T0, leaseMs: LEASE_MS, mediaItemSize: options.size ?? 3, ...(options.only ? { only: options.only } : {}) });
  if (result.kind !== 'lease') throw new Error(`expected a lease, got ${result.kind}`);
  return result.lease;
}

describeEachStore('media contract', (h) => {
  const open = (project = nextProject()) => h.open(project);

  it('a reported URL is stored once, whichever node reports it and however often (same URL from many nodes at once, a replayed report)', async () => {
    const project = nextProject();
    const stores = await h.openMany(project, 4);
    await stores[0]!.seed(packItems(r([1, 40]), 10));
    const nodes = await Promise.all(stores.map((s, i) => register(s, `n${i}`)));
    const leases = await Promise.all(nodes.map((n, i) => lease(stores[i]!, n.id, { only: 'posts' })));
    const avatars = Array.from({ length: 30 }, (_, i) => m(`http://127.0.0.1/avatars/${i}.png`));
    // Every node reports the same 30 avatars at once, plus one image of its own.
    const reports = await Promise.all(
      leases.map((l, i) =>
        stores[i]!.heartbeat({ nodeId: nodes[i]!.id, leaseId: l.leaseId, finished: r([l.ranges.min!, l.ranges.min!]), now: T0, leaseMs: LEASE_MS, media: [...avatars, m(`http://127.0.0.1/own/${i}.jpg`)] }),
      ),
    );
    expect(reports.reduce((n, x) => n + x.mediaQueued, 0)).toBe(34);
    // The same report again (a retry after a lost answer): nothing new.
    const replay = await stores[0]!.heartbeat({ nodeId: nodes[0]!.id, leaseId: leases[0]!.leaseId, finished: r([1, 1]), now: T0, leaseMs: LEASE_MS, media: [...avatars, m('http://127.0.0.1/own/0.jpg')] });
    expect(replay.mediaQueued).toBe(0);
    expect(await stores[0]!.mediaCounts()).toEqual({ urls: 34, done: 0, pending: 34, failed: 0 });
    // Duplicates inside one report count once.
    expect(await stores[1]!.queueMedia([m('http://127.0.0.1/x.gif'), m('http://127.0.0.1/x.gif')])).toEqual({ queued: 1, known: 0 });
  });

  it('cuts never-seen URLs into media items and hands each URL to exactly one lease, also when claims race', async () => {
    const project = nextProject();
    const stores = await h.openMany(project, 3);
    await stores[0]!.queueMedia(Array.from({ length: 50 }, (_, i) => m(`http://127.0.0.1/img/${i}.jpg`)));
    const nodes = await Promise.all(Array.from({ length: 9 }, (_, i) => register(stores[i % 3]!, `c${i}`)));
    const claims = await Promise.all(
      Array.from({ length: 30 }, (_, i) => stores[i % 3]!.claim({ nodeId: nodes[i % 9]!.id, now: T0, leaseMs: LEASE_MS, mediaItemSize: 4 })),
    );
    const leases = claims.flatMap((c) => (c.kind === 'lease' ? [c.lease] : []));
    const got = leases.flatMap(urlsOf);
    expect(got).toHaveLength(50);
    expect(new Set(got).size).toBe(50);
    for (const l of leases) {
      expect(l.kind).toBe('media');
      expect(l.urls!.length).toBeLessThanOrEqual(4);
      expect(l.ranges.size).toBe(l.urls!.length);
      expect(l.urls!.every((u) => l.ranges.ranges.some((x) => u.seq >= x.start && u.seq <= x.end))).toBe(true);
    }
    expect(claims.filter((c) => c.kind === 'later')).toHaveLength(30 - leases.length);
    expect((await stores[0]!.mediaCounts()).pending).toBe(0);
  });

  it('media items keep the ID items’ lease rules: heartbeat, remainder handover, done once, stale lease refused', async () => {
    const store = await open();
    const [a, b] = [await register(store, 'alice'), await register(store, 'bob')];
    await store.queueMedia(['a', 'b', 'c', 'd'].map((x) => m(`http://127.0.0.1/${x}.png`)));
    const first = await lease(store, a.id, { size: 4 });
    expect(urlsOf(first)).toEqual(['a', 'b', 'c', 'd'].map((x) => `http://127.0.0.1/${x}.png`));
    const [sa, sb] = [first.urls![0]!.seq, first.urls![1]!.seq];
    const hb = await store.heartbeat({ nodeId: a.id, leaseId: first.leaseId, finished: r([sa, sb]), now: T0 + 1000, leaseMs: LEASE_MS });
    expect(hb.remaining.size).toBe(2);
    const late = T0 + 1000 + LEASE_MS + 1;
    const second = await lease(store, b.id, { now: late });
    expect(second.itemId).toBe(first.itemId);
    expect(urlsOf(second)).toEqual(['http://127.0.0.1/c.png', 'http://127.0.0.1/d.png']);
    await expect(store.heartbeat({ nodeId: a.id, leaseId: first.leaseId, finished: r([sa, sa]), now: late, leaseMs: LEASE_MS, media: [m('http://127.0.0.1/stale.png')] })).rejects.toBeInstanceOf(LeaseError);
    await expect(store.done({ nodeId: a.id, leaseId: first.leaseId, stats: stats(), now: late })).rejects.toBeInstanceOf(LeaseError);
    expect((await store.mediaCounts()).urls).toBe(4); // the stale lease's report was not stored
    // …nor remembered as seen: the same URL from a live lease is queued.
    const live = await store.seed(packItems(r([1, 1]), 1)).then(() => lease(store, a.id, { now: late, only: 'posts' }));
    expect((await store.heartbeat({ nodeId: a.id, leaseId: live.leaseId, finished: r([1, 1]), now: late, leaseMs: LEASE_MS, media: [m('http://127.0.0.1/stale.png')] })).mediaQueued).toBe(1);
    await store.done({ nodeId: a.id, leaseId: live.leaseId, stats: stats(), now: late });
    expect(await store.claim({ nodeId: b.id, now: late, leaseMs: LEASE_MS, only: 'media', mediaItemSize: 3 })).toMatchObject({ kind: 'lease', lease: { urls: [{ url: 'http://127.0.0.1/stale.png' }] } });
    expect(await store.done({ nodeId: b.id, leaseId: second.leaseId, stats: stats(500), now: late })).toEqual({ duplicate: false });
    expect(await store.done({ nodeId: b.id, leaseId: second.leaseId, stats: stats(500), now: late })).toEqual({ duplicate: true });
    expect(await store.mediaCounts()).toEqual({ urls: 5, done: 4, pending: 0, failed: 0 });
    // Media seqs are not post IDs: the leaderboard's IDs stay the posts'; bytes still count.
    const s = await store.stats({ now: late, windowMs: 60_000 });
    expect(s.ids).toEqual({ total: 1, done: 1 });
    expect(s.nodes.find((n) => n.nick === 'bob')).toMatchObject({ ids: 0, bytes: 500, items: 1 });
    expect(s.nodes.find((n) => n.nick === 'alice')).toMatchObject({ ids: 1, items: 1 });
    // Released with a failure, the unfinished URLs go back too.
    await store.queueMedia([m('http://127.0.0.1/e.png'), m('http://127.0.0.1/f.png')]);
    const third = await lease(store, a.id, { now: late });
    await store.release({ nodeId: a.id, leaseId: third.leaseId, finished: r([third.urls![0]!.seq, third.urls![0]!.seq]), error: 'x', now: late });
    expect(urlsOf(await lease(store, b.id, { now: late }))).toEqual(['http://127.0.0.1/f.png']);
  });

  it('claims post items first, then media: images, other, video; --only takes one kind', async () => {
    const store = await open();
    const a = await register(store, 'alice');
    // A queued media item older than the post items: still after them.
    await store.queueMedia([m('http://127.0.0.1/page')]);
    await store.release({ nodeId: a.id, leaseId: (await lease(store, a.id)).leaseId, now: T0 });
    await store.queueMedia([m('http://127.0.0.1/v/1.mp4'), m('http://127.0.0.1/i/1.webp'), { url: 'http://127.0.0.1/blob/9', kind: 'image' }]);
    await store.seed(packItems(r([1, 20]), 10));
    // A media-only node takes media while posts are queued, images first.
    const img = await lease(store, a.id, { only: 'media' });
    expect(urlsOf(img)).toEqual(['http://127.0.0.1/i/1.webp', 'http://127.0.0.1/blob/9']);
    const order = [await lease(store, a.id), await lease(store, a.id), await lease(store, a.id), await lease(store, a.id)];
    expect(order.map((l) => l.kind)).toEqual(['posts', 'posts', 'media', 'media']);
    expect(order.slice(2).map(urlsOf)).toEqual([['http://127.0.0.1/page'], ['http://127.0.0.1/v/1.mp4']]);
    expect((await store.claim({ nodeId: a.id, now: T0, leaseMs: LEASE_MS, only: 'posts' })).kind).toBe('later');
    for (const l of [img, ...order]) await store.done({ nodeId: a.id, leaseId: l.leaseId, stats: stats(), now: T0 });
    expect((await store.claim({ nodeId: a.id, now: T0, leaseMs: LEASE_MS, only: 'posts' })).kind).toBe('done');
    // A queued media remainder of lower priority waits behind pending images.
    await store.queueMedia([m('http://127.0.0.1/v/2.mp4')]);
    const video = await lease(store, a.id, { only: 'media' });
    await store.release({ nodeId: a.id, leaseId: video.leaseId, now: T0 });
    await store.queueMedia([m('http://127.0.0.1/i/2.png')]);
    expect(urlsOf(await lease(store, a.id, { only: 'media' }))).toEqual(['http://127.0.0.1/i/2.png']);
    expect(urlsOf(await lease(store, a.id, { only: 'media' }))).toEqual(['http://127.0.0.1/v/2.mp4']);
  });

  it('a media-only node waits while post items may still report media; a posts-only node is done when posts are', async () => {
    const store = await open();
    const a = await register(store, 'alice');
    await store.seed(packItems(r([1, 10]), 10));
    expect(await store.claim({ nodeId: a.id, now: T0, leaseMs: LEASE_MS, only: 'media' })).toMatchObject({ kind: 'later' });
    const posts = await lease(store, a.id, { only: 'posts' });
    expect(await store.claim({ nodeId: a.id, now: T0, leaseMs: LEASE_MS, only: 'media' })).toMatchObject({ kind: 'later' });
    await store.heartbeat({ nodeId: a.id, leaseId: posts.leaseId, finished: r([1, 10]), now: T0, leaseMs: LEASE_MS, media: [m('http://127.0.0.1/z.png')] });
    await store.done({ nodeId: a.id, leaseId: posts.leaseId, stats: stats(), now: T0 });
    expect((await store.claim({ nodeId: a.id, now: T0, leaseMs: LEASE_MS, only: 'posts' })).kind).toBe('done');
    const media = await lease(store, a.id, { only: 'media' });
    expect(urlsOf(media)).toEqual(['http://127.0.0.1/z.png']);
    await store.done({ nodeId: a.id, leaseId: media.leaseId, stats: stats(), now: T0 });
    expect((await store.claim({ nodeId: a.id, now: T0, leaseMs: LEASE_MS, only: 'media' })).kind).toBe('done');
  });

  it('queueMedia with requeue puts URLs of finished media items back (missing-media.txt), never ones in a live item', async () => {
    const store = await open();
    const a = await register(store, 'alice');
    await store.queueMedia([m('http://127.0.0.1/1.png'), m('http://127.0.0.1/2.png')]);
    const l = await lease(store, a.id);
    expect(await store.queueMedia([m('http://127.0.0.1/1.png')], { requeue: true })).toEqual({ queued: 0, known: 1 });
    await store.done({ nodeId: a.id, leaseId: l.leaseId, stats: stats(), now: T0 });
    expect(await store.queueMedia([m('http://127.0.0.1/1.png')])).toEqual({ queued: 0, known: 1 });
    expect(await store.queueMedia([m('http://127.0.0.1/1.png'), m('http://127.0.0.1/3.png')], { requeue: true })).toEqual({ queued: 2, known: 0 });
    expect(urlsOf(await lease(store, a.id))).toEqual(['http://127.0.0.1/1.png', 'http://127.0.0.1/3.png']);
  });

  it('seedNew ignores media items when it works out which IDs the project holds', async () => {
    const store = await open();
    await store.queueMedia(Array.from({ length: 5 }, (_, i) => m(`http://127.0.0.1/${i}.png`)));
    const a = await register(store, 'alice');
    await lease(store, a.id, { size: 5 });
    expect(await store.seedNew(r([1, 10]), 10)).toMatchObject({ items: 1, ids: 10, skipped: 0 });
  });
});

describe('media URL helpers', () => {
  it('SeenUrls keeps the most recently met hashes, up to its bound', () => {
    const seen = new SeenUrls(2);
    const [a, b, c] = ['a', 'b', 'c'].map((x) => mediaUrlHash('p', x));
    seen.addAll([a!, b!]);
    expect(seen.has(a!)).toBe(true); // a is now the most recent
    seen.addAll([c!]);
    expect([seen.has(a!), seen.has(b!), seen.has(c!)]).toEqual([true, false, true]);
    expect(new SeenUrls(0).has(a!)).toBe(false);
  });

  it('normalises scheme, host and default port, drops the fragment, keeps the query', () => {
    expect(normaliseMediaUrl('HTTP://Example.ORG:80/a b/./c.png?b=1&a=2#top').href).toBe('http://example.org/a%20b/c.png?b=1&a=2');
    expect(mediaKindOf('http://h/x/y.JPG?size=2')).toBe('image');
    expect(mediaKindOf('http://h/v.m3u8')).toBe('video');
    expect(mediaKindOf('http://h/media/123')).toBe('other');
  });
});

describe('SqliteItemStore schema upgrade', () => {
  it('upgrades a schema-1 database: its items become post items, media work is added', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-media-'));
    const file = path.join(dir, 'old.sqlite');
    const old = new Database(file);
    old.exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, project TEXT NOT NULL, ranges TEXT NOT NULL, id_count INTEGER NOT NULL,
      finished TEXT NOT NULL DEFAULT '[]', finished_count INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'queued', lease_id TEXT,
      node_id INTEGER, lease_expires_at INTEGER, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, done_at INTEGER, done_stats TEXT);
      INSERT INTO items (project, ranges, id_count) VALUES ('old', '[[1,10]]', 10);`);
    old.close();
    const store = new SqliteItemStore({ path: file, project: 'old' });
    try {
      await store.init();
      await store.queueMedia([m('http://127.0.0.1/a.png')]);
      const a = await register(store, 'alice');
      expect((await lease(store, a.id)).ranges.toJSON()).toEqual([[1, 10]]);
      expect(urlsOf(await lease(store, a.id))).toEqual(['http://127.0.0.1/a.png']);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
