import { expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { packItems } from '../tracker/store/item-store.js';
import { SCHEMA_VERSION } from '../tracker/store/schema.js';
import { describeEachStore } from './fixtures/store-harness.js';

/**
 * Issue 21 §1, the store's part (both databases): a `done` that names IDs to recheck queues them,
 * in the same transaction, as a recheck item no claim hands out before its delay; each recheck of
 * the same IDs waits twice as long, and after `attempts` rechecks none is queued (missing is final).
 * `seedRecheck` queues held IDs again on purpose. Totals never count a recheck twice.
 */

const T0 = 1_700_000_000_000;
const LEASE_MS = 60_000;
const POLICY = { attempts: 2, delayMs: 1000 };
const EMPTY = { counts: { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0 }, bytes: 0, warcs: [] };
const ids = (a: number, b: number) => new RangeSet([{ start: a, end: b }]);

describeEachStore('rechecks near the live edge', (h) => {
  it('a done with IDs to recheck queues them, claimable only after the delay, doubling, until the attempts are spent', async () => {
    const store = await h.open();
    await store.seed(packItems(ids(1, 10), 10));
    const node = await store.registerNode({ nick: 'n', tokenHash: 't', now: T0 });
    const first = await store.claim({ nodeId: node.id, now: T0, leaseMs: LEASE_MS });
    if (first.kind !== 'lease') throw new Error('no lease');
    // IDs outside the item are ignored; 7-9 are queued to be asked again.
    await store.done({ nodeId: node.id, leaseId: first.lease.leaseId, stats: EMPTY, now: T0, recheck: { ids: new RangeSet([{ start: 7, end: 9 }, { start: 50, end: 60 }]), policy: POLICY } });
    // A repeated done (the answer was lost) queues nothing more.
    expect(await store.done({ nodeId: node.id, leaseId: first.lease.leaseId, stats: EMPTY, now: T0, recheck: { ids: ids(7, 9), policy: POLICY } })).toEqual({ duplicate: true });
    expect((await store.claim({ nodeId: node.id, now: T0 + 999, leaseMs: LEASE_MS })).kind).not.toBe('lease');
    const second = await store.claim({ nodeId: node.id, now: T0 + 1000, leaseMs: LEASE_MS });
    if (second.kind !== 'lease') throw new Error(`no recheck lease: ${second.kind}`);
    expect(second.lease.ranges.format()).toBe('7-9');
    expect(second.lease.kind).toBe('posts');
    // Still missing: the next recheck waits twice as long.
    const t2 = T0 + 1000;
    await store.done({ nodeId: node.id, leaseId: second.lease.leaseId, stats: EMPTY, now: t2, recheck: { ids: ids(8, 8), policy: POLICY } });
    expect((await store.claim({ nodeId: node.id, now: t2 + 1999, leaseMs: LEASE_MS })).kind).not.toBe('lease');
    const third = await store.claim({ nodeId: node.id, now: t2 + 2000, leaseMs: LEASE_MS });
    if (third.kind !== 'lease') throw new Error('no second recheck');
    expect(third.lease.ranges.format()).toBe('8');
    // Two rechecks spent: missing is final, nothing more is queued.
    await store.done({ nodeId: node.id, leaseId: third.lease.leaseId, stats: EMPTY, now: t2 + 2000, recheck: { ids: ids(8, 8), policy: POLICY } });
    expect((await store.claim({ nodeId: node.id, now: T0 + 3_600_000, leaseMs: LEASE_MS })).kind).toBe('done');
    const stats = await store.stats({ now: T0 + 3_600_000, windowMs: 60_000 });
    expect(stats.ids).toEqual({ total: 10, done: 10 });
    // Recheck items count as items (as media items do), their IDs not again.
    expect(stats.items).toMatchObject({ total: 3, done: 3, queued: 0 });
  });

  it('claimableIdItems (the follower\'s low-water mark) counts queued post items and due rechecks, not rechecks still waiting nor media items', async () => {
    const store = await h.open();
    await store.seed(packItems(ids(1, 30), 10));
    expect(await store.claimableIdItems(T0)).toBe(3);
    const node = await store.registerNode({ nick: 'c', tokenHash: 'tc', now: T0 });
    const first = await store.claim({ nodeId: node.id, now: T0, leaseMs: LEASE_MS, only: 'posts' });
    if (first.kind !== 'lease') throw new Error('no lease');
    expect(await store.claimableIdItems(T0)).toBe(2);
    await store.done({ nodeId: node.id, leaseId: first.lease.leaseId, stats: EMPTY, now: T0, recheck: { ids: ids(5, 6), policy: POLICY } });
    expect(await store.claimableIdItems(T0 + 999)).toBe(2);
    expect(await store.claimableIdItems(T0 + 1000)).toBe(3);
    // A media item handed back to the queue is work, but not for a node asking for posts.
    await store.queueMedia([{ url: 'http://127.0.0.1/a.png' }, { url: 'http://127.0.0.1/b.png' }]);
    const media = await store.claim({ nodeId: node.id, now: T0, leaseMs: LEASE_MS, only: 'media' });
    if (media.kind !== 'lease') throw new Error(`no media lease: ${media.kind}`);
    await store.release({ nodeId: node.id, leaseId: media.lease.leaseId, now: T0 });
    expect((await store.stats({ now: T0, windowMs: 60_000 })).items.queued).toBe(4);
    expect(await store.claimableIdItems(T0)).toBe(2);
  });

  it('a fail with IDs to recheck queues those the item holds finished, as a done does; the failed ones go back to the queue, not into the recheck item', async () => {
    const store = await h.open();
    await store.seed(packItems(ids(1, 10), 10));
    const node = await store.registerNode({ nick: 'f', tokenHash: 'tf', now: T0 });
    const first = await store.claim({ nodeId: node.id, now: T0, leaseMs: LEASE_MS });
    if (first.kind !== 'lease') throw new Error('no lease');
    // 9-10 failed after all retries; 5-8 answered missing near the edge (9 is named too: it is not final, so it is not rechecked).
    const r = await store.release({ nodeId: node.id, leaseId: first.lease.leaseId, finished: ids(1, 8), error: '2 IDs failed after all retries', now: T0, recheck: { ids: ids(5, 9), policy: POLICY } });
    expect(r.remaining.format()).toBe('9-10');
    // A fail is not repeatable: the stale lease is refused and queues nothing more.
    await expect(store.release({ nodeId: node.id, leaseId: first.lease.leaseId, finished: ids(1, 8), error: 'again', now: T0, recheck: { ids: ids(5, 8), policy: POLICY } })).rejects.toThrow(/not active/);
    const retry = await store.claim({ nodeId: node.id, now: T0 + 999, leaseMs: LEASE_MS });
    if (retry.kind !== 'lease') throw new Error(`no retry lease: ${retry.kind}`);
    expect(retry.lease.ranges.format()).toBe('9-10');
    expect((await store.claim({ nodeId: node.id, now: T0 + 999, leaseMs: LEASE_MS })).kind).not.toBe('lease');
    const recheck = await store.claim({ nodeId: node.id, now: T0 + 1000, leaseMs: LEASE_MS });
    if (recheck.kind !== 'lease') throw new Error(`no recheck lease: ${recheck.kind}`);
    expect(recheck.lease.ranges.format()).toBe('5-8');
    // The recheck item fails too (8 failed; 6 still missing): its next recheck waits twice as long, as after a done.
    const t2 = T0 + 1000;
    await store.release({ nodeId: node.id, leaseId: recheck.lease.leaseId, finished: ids(5, 7), error: '1 IDs failed after all retries', now: t2, recheck: { ids: ids(6, 6), policy: POLICY } });
    const again = await store.claim({ nodeId: node.id, now: t2, leaseMs: LEASE_MS });
    if (again.kind !== 'lease') throw new Error('no lease for the failed recheck remainder');
    expect(again.lease.ranges.format()).toBe('8');
    expect((await store.claim({ nodeId: node.id, now: t2 + 1999, leaseMs: LEASE_MS })).kind).not.toBe('lease');
    const second = await store.claim({ nodeId: node.id, now: t2 + 2000, leaseMs: LEASE_MS });
    if (second.kind !== 'lease') throw new Error('no second recheck');
    expect(second.lease.ranges.format()).toBe('6');
    // Its attempts are spent: a fail naming 6 again queues nothing.
    await store.release({ nodeId: node.id, leaseId: second.lease.leaseId, finished: new RangeSet(), error: 'x', now: t2 + 2000, recheck: { ids: ids(6, 6), policy: POLICY } });
    const items = await h.sql<{ kind: string; ranges: string; rechecks: number }>(`SELECT kind, ranges, rechecks FROM items WHERE project = $1 ORDER BY id`, [store.project]);
    expect(items.map((i) => [i.kind, RangeSet.fromJSON(JSON.parse(i.ranges)).format(), Number(i.rechecks)])).toEqual([
      ['posts', '1-10', 0],
      ['recheck', '5-8', 1],
      ['recheck', '6', 2],
    ]);
    expect((await store.stats({ now: t2 + 2000, windowMs: 60_000 })).ids.total).toBe(10);
  });

  it('the ranges a follow accepted keep their time (the age rule); older ones are forgotten as new ones come; projects apart', async () => {
    const store = await h.open();
    const other = await h.open(`${store.project}-other`);
    await store.noteAccepted({ ids: ids(1, 10), at: T0, forgetUpTo: T0 - 100 });
    await store.noteAccepted({ ids: new RangeSet([{ start: 11, end: 20 }, { start: 25, end: 26 }]), at: T0 + 10, forgetUpTo: T0 - 90 });
    await other.noteAccepted({ ids: ids(1, 5), at: T0, forgetUpTo: 0 });
    expect(await store.acceptedSince(T0 - 1)).toEqual([
      { start: 1, end: 10, at: T0 },
      { start: 11, end: 20, at: T0 + 10 },
      { start: 25, end: 26, at: T0 + 10 },
    ]);
    // Only rows accepted after `since`.
    expect(await store.acceptedSince(T0)).toEqual([
      { start: 11, end: 20, at: T0 + 10 },
      { start: 25, end: 26, at: T0 + 10 },
    ]);
    // A new note forgets rows accepted at or before forgetUpTo (T0 here), not later ones, and not another project's.
    await store.noteAccepted({ ids: ids(27, 1e15), at: T0 + 20, forgetUpTo: T0 });
    expect(Number((await h.sql<{ n: number }>(`SELECT COUNT(*) AS n FROM follow_accepted WHERE project = $1`, [store.project]))[0]!.n)).toBe(3);
    expect(await store.acceptedSince(0)).toEqual([
      { start: 11, end: 20, at: T0 + 10 },
      { start: 25, end: 26, at: T0 + 10 },
      { start: 27, end: 1e15, at: T0 + 20 },
    ]);
    expect(await other.acceptedSince(0)).toEqual([{ start: 1, end: 5, at: T0 }]);
  });

  it('a database of schema 5 gains the follow_accepted table when a store opens it', async () => {
    const store = await h.open();
    await store.noteAccepted({ ids: ids(1, 10), at: T0, forgetUpTo: 0 });
    await h.exec(`DROP TABLE follow_accepted; UPDATE meta SET value = '5' WHERE key = 'schema_version';`);
    const again = await h.open(store.project);
    expect(await again.acceptedSince(0)).toEqual([]);
    await again.noteAccepted({ ids: ids(1, 10), at: T0, forgetUpTo: 0 });
    expect(await again.acceptedSince(0)).toEqual([{ start: 1, end: 10, at: T0 }]);
    expect((await h.sql<{ value: string }>(`SELECT value FROM meta WHERE key = 'schema_version'`))[0]!.value).toBe(String(SCHEMA_VERSION));
  });

  it('seedRecheck queues held IDs again at once (tracker seed --recheck missing), packed into items', async () => {
    const store = await h.open();
    await store.seed(packItems(ids(1, 30), 10));
    expect(await store.seedNew(ids(21, 30), 10)).toEqual({ items: 0, ids: 0, skipped: 10 });
    expect(await store.seedRecheck(new RangeSet([{ start: 5, end: 5 }, { start: 21, end: 30 }]), 10)).toEqual({ items: 2, ids: 11 });
    const node = await store.registerNode({ nick: 'm', tokenHash: 't2', now: T0 });
    const got: string[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await store.claim({ nodeId: node.id, now: T0, leaseMs: LEASE_MS });
      if (c.kind !== 'lease') break;
      got.push(c.lease.ranges.format());
    }
    expect(got).toEqual(['1-10', '11-20', '21-30', '5,21-29', '30']);
    expect((await store.stats({ now: T0, windowMs: 60_000 })).ids.total).toBe(30);
  });
});
