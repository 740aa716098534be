import { expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { LeaseError } from '../tracker/client/errors.js';
import { type DoneStats, type ItemStore, type Lease, packItems } from '../tracker/store/item-store.js';
import { describeEachStore } from './fixtures/store-harness.js';

/**
 * Issue 21 §2 and §3 on both stores: media that can never be archived do not starve the rest
 * (per-URL attempts counted project-wide, `failed` with the reason after the cap, the item
 * finishes; a failed item goes behind the rest of its kind), and volunteers nobody vetted are
 * held to the project's limits (live leases per node, leases without progress handed on, media
 * per ID reported finished and per node per hour), each refusal counted; a node does not get
 * back an item taken from it for no progress while other work is there for it (the stall bar).
 */

const T0 = 1_700_000_000_000;
const LEASE_MS = 60_000;
const r = (start: number, end: number) => new RangeSet([{ start, end }]);

async function node(store: ItemStore, nick: string) {
  return store.registerNode({ nick, tokenHash: `${store.project}-${nick}`, now: T0 });
}

async function lease(store: ItemStore, nodeId: number, now = T0, extra: { leaseMs?: number; size?: number } = {}): Promise<Lease> {
  const result = await store.claim({ nodeId, now, leaseMs: extra.leaseMs ?? LEASE_MS, mediaItemSize: extra.size ?? 3 });
  if (result.kind !== 'lease') throw new Error(`expected a lease, got ${result.kind}`);
  return result.lease;
}

const MIN = 60_000;
const HOUR = 3600_000;
const doneStats: DoneStats = { counts: { archived: 10, missing: 0, gone: 0, restricted: 0, failed: 0 }, bytes: 1, warcs: [] };
const nothing = new RangeSet();

const seqOf = (l: Lease, url: string) => l.urls!.find((u) => u.url === url)!.seq;
const seqSet = (...seqs: number[]) => new RangeSet(seqs.map((s) => ({ start: s, end: s })));

describeEachStore('limits (issue 21)', (h) => {
  it('a media URL that always fails is failed after media.max_attempts, with its reason, and its item finishes', async () => {
    const store = await h.open();
    store.setPolicy({ mediaMaxAttempts: 2 });
    const [a, b, c] = [await node(store, 'a'), await node(store, 'b'), await node(store, 'c')];
    const poison = 'http://127.0.0.1/poison.png';
    await store.queueMedia([{ url: 'http://127.0.0.1/ok1.png' }, { url: poison }, { url: 'http://127.0.0.1/ok2.png' }]);
    // First holder: two URLs archived, the poison one failed with its reason; the item goes back.
    const first = await lease(store, a.id);
    expect(first.urls).toHaveLength(3);
    const ok = seqSet(seqOf(first, 'http://127.0.0.1/ok1.png'), seqOf(first, 'http://127.0.0.1/ok2.png'));
    const p = seqOf(first, poison);
    await store.release({ nodeId: a.id, leaseId: first.leaseId, finished: ok, error: '1 IDs failed', mediaErrors: new Map([[p, 'connection reset by peer']]), now: T0 + 1 });
    // Second holder: only the poison URL; it fails again (attempt 2 of 2).
    const second = await lease(store, b.id, T0 + 2);
    expect(second.urls!.map((u) => u.url)).toEqual([poison]);
    await store.release({ nodeId: b.id, leaseId: second.leaseId, error: '1 IDs failed', mediaErrors: new Map([[p, 'connection reset by peer']]), now: T0 + 3 });
    // Nobody gets it a third time: the URL is failed, its item done, nothing is left.
    expect((await store.claim({ nodeId: c.id, now: T0 + 4, leaseMs: LEASE_MS })).kind).toBe('done');
    expect(await store.mediaCounts()).toEqual({ urls: 3, done: 2, pending: 0, failed: 1 });
    const row = await h.sql<{ url: string; last_error: string; failed_at: number | string | null; attempts: number }>(`SELECT url, last_error, failed_at, attempts FROM media_urls WHERE seq = $1`, [p]);
    expect(row[0]).toMatchObject({ url: poison, last_error: 'connection reset by peer', attempts: 2 });
    expect(Number(row[0]!.failed_at)).toBe(T0 + 4);
    expect((await store.stats({ now: T0 + 5, windowMs: 60_000 })).mediaFailed).toBe(1);
  });

  it('a media item whose leases run out counts an attempt for its URLs each time, as a failure does', async () => {
    const store = await h.open();
    store.setPolicy({ mediaMaxAttempts: 2 });
    const a = await node(store, 'a');
    await store.queueMedia([{ url: 'http://127.0.0.1/hangs.mp4' }]);
    await lease(store, a.id, T0);
    await lease(store, a.id, T0 + LEASE_MS + 1); // the first lease ran out: attempt 1
    expect((await store.claim({ nodeId: a.id, now: T0 + 3 * LEASE_MS, leaseMs: LEASE_MS })).kind).toBe('done'); // attempt 2: failed
    const row = await h.sql<{ last_error: string; failed_at: unknown }>(`SELECT last_error, failed_at FROM media_urls WHERE project = $1`, [store.project]);
    expect(row[0]!.last_error).toMatch(/lease ran out/);
    expect(row[0]!.failed_at).not.toBeNull();
  });

  it('an item put back by fail goes behind the rest of its kind; one whose lease ran out keeps its turn', async () => {
    const store = await h.open();
    await store.seed(packItems(r(1, 30), 10));
    const [a, b] = [await node(store, 'a'), await node(store, 'b')];
    const first = await lease(store, a.id);
    expect(first.ranges.toJSON()).toEqual([[1, 10]]);
    await store.release({ nodeId: a.id, leaseId: first.leaseId, error: 'every ID failed', now: T0 + 1 });
    expect((await lease(store, b.id, T0 + 2)).ranges.toJSON()).toEqual([[11, 20]]);
    expect((await lease(store, b.id, T0 + 3)).ranges.toJSON()).toEqual([[21, 30]]);
    expect((await lease(store, b.id, T0 + 4)).ranges.toJSON()).toEqual([[1, 10]]);

    // Media: pending URLs of the same kind are cut into a fresh item before a failed one is handed out again.
    await store.queueMedia([{ url: 'http://127.0.0.1/m1.png' }, { url: 'http://127.0.0.1/m2.png' }]);
    const c = await node(store, 'c');
    const m = await lease(store, c.id, T0 + 5, { size: 1 });
    await store.release({ nodeId: c.id, leaseId: m.leaseId, error: 'failed', now: T0 + 6 });
    const next = await lease(store, c.id, T0 + 7, { size: 1 });
    expect(next.itemId).not.toBe(m.itemId);
    expect(next.urls!.map((u) => u.url)).toEqual(['http://127.0.0.1/m2.png']);
  });

  it('a node holds at most nodes.max_leases live leases; more claims are answered later and counted', async () => {
    const store = await h.open();
    store.setPolicy({ maxLeasesPerNode: 2 });
    await store.seed(packItems(r(1, 50), 10));
    const [hoarder, honest] = [await node(store, 'hoarder'), await node(store, 'honest')];
    await lease(store, hoarder.id);
    await lease(store, hoarder.id);
    const third = await store.claim({ nodeId: hoarder.id, now: T0, leaseMs: LEASE_MS });
    expect(third).toMatchObject({ kind: 'later', capped: true });
    expect((await lease(store, honest.id)).ranges.toJSON()).toEqual([[21, 30]]);
    const s = await store.stats({ now: T0, windowMs: 60_000 });
    expect(s.refused).toEqual({ media: 0, claims: 1, stalledLeases: 0 });
    expect(s.nodes.find((n) => n.nick === 'hoarder')!.refused.claims).toBe(1);
  });

  it('a lease kept alive by heartbeats that report nothing is handed to another node after nodes.stall_secs', async () => {
    const store = await h.open();
    store.setPolicy({ stallMs: 10 * 60_000 });
    await store.seed(packItems(r(1, 20), 10));
    const [slow, idle, other] = [await node(store, 'slow'), await node(store, 'idle'), await node(store, 'other')];
    const hour = 3600_000;
    const progressing = await lease(store, slow.id, T0, { leaseMs: hour });
    const held = await lease(store, idle.id, T0, { leaseMs: hour });
    for (const t of [T0 + 5 * 60_000, T0 + 9 * 60_000]) {
      await store.heartbeat({ nodeId: idle.id, leaseId: held.leaseId, finished: new RangeSet(), now: t, leaseMs: hour });
      await store.heartbeat({ nodeId: slow.id, leaseId: progressing.leaseId, finished: r(1, t === T0 + 5 * 60_000 ? 1 : 2), now: t, leaseMs: hour });
    }
    // At 11 min: the idle lease (no progress since it was claimed) goes; the slow one (progress at 9 min) stays.
    const handed = await store.claim({ nodeId: other.id, now: T0 + 11 * 60_000, leaseMs: hour });
    expect(handed.kind === 'lease' && handed.lease.itemId).toBe(held.itemId);
    expect(handed.expired).toBe(1);
    await expect(store.heartbeat({ nodeId: idle.id, leaseId: held.leaseId, finished: r(11, 11), now: T0 + 11 * 60_000, leaseMs: hour })).rejects.toBeInstanceOf(LeaseError);
    await store.heartbeat({ nodeId: slow.id, leaseId: progressing.leaseId, finished: r(1, 3), now: T0 + 12 * 60_000, leaseMs: hour });
    expect((await store.stats({ now: T0 + 12 * 60_000, windowMs: 60_000 })).refused.stalledLeases).toBe(1);
  });

  it('media are taken up to media.max_per_post per ID reported finished (plus one report) and a per-node hourly quota; the rest is refused and counted', async () => {
    const store = await h.open();
    store.setPolicy({ mediaPerId: 2, mediaPerNodeHour: 600 });
    await store.seed(packItems(r(1, 20), 10));
    const flood = await node(store, 'flood');
    const urls = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ url: `http://127.0.0.1/junk/${from + i}.png` }));
    const one = await lease(store, flood.id);
    // One ID finished: room for 2 + 500 of 520 never-seen URLs.
    const hb = await store.heartbeat({ nodeId: flood.id, leaseId: one.leaseId, finished: r(1, 1), now: T0, leaseMs: LEASE_MS, media: urls(0, 520) });
    expect(hb).toMatchObject({ mediaQueued: 502, mediaRefused: 18 });
    // URLs already known cost nothing, and are not refused.
    const again = await store.heartbeat({ nodeId: flood.id, leaseId: one.leaseId, finished: r(1, 1), now: T0 + 1, leaseMs: LEASE_MS, media: urls(0, 10) });
    expect(again).toMatchObject({ mediaQueued: 0, mediaRefused: 0 });
    // Another item, all ten IDs finished (room 520), but the node's hour has 98 left.
    const two = await lease(store, flood.id, T0 + 2);
    const hb2 = await store.heartbeat({ nodeId: flood.id, leaseId: two.leaseId, finished: two.ranges, now: T0 + 3, leaseMs: LEASE_MS, media: urls(1000, 200) });
    expect(hb2).toMatchObject({ mediaQueued: 98, mediaRefused: 102 });
    expect((await store.mediaCounts()).urls).toBe(600);
    const s = await store.stats({ now: T0 + 4, windowMs: 60_000 });
    expect(s.refused.media).toBe(120);
    // A media report needs a lease the node holds.
    const stranger = await node(store, 'stranger');
    await expect(store.heartbeat({ nodeId: stranger.id, leaseId: one.leaseId, finished: new RangeSet(), now: T0 + 5, leaseMs: LEASE_MS, media: urls(5000, 1) })).rejects.toBeInstanceOf(LeaseError);
    expect((await store.mediaCounts()).urls).toBe(600);
  });

  /** Each item's stall mark: [item, stalled_by, stalled_at], marked ones only. */
  const marks = async (store: ItemStore) =>
    (await h.sql<{ id: number; stalled_by: number; stalled_at: number }>(`SELECT id, stalled_by, stalled_at FROM items WHERE project = $1 AND stalled_by IS NOT NULL ORDER BY id`, [store.project])).map((m) => [Number(m.id), Number(m.stalled_by), Number(m.stalled_at)]);

  it('a node does not get back an item taken from it for no progress while other work is claimable for it; other nodes get it first', async () => {
    const store = await h.open();
    store.setPolicy({ stallMs: 10 * MIN });
    await store.seed(packItems(r(1, 30), 10));
    const [hoarder, honest] = [await node(store, 'hoarder'), await node(store, 'honest')];
    const held = await lease(store, hoarder.id, T0, { leaseMs: HOUR });
    expect(held.ranges.toJSON()).toEqual([[1, 10]]);
    await store.heartbeat({ nodeId: hoarder.id, leaseId: held.leaseId, finished: nothing, now: T0 + 5 * MIN, leaseMs: HOUR });
    // At 11 min its own claim takes the lease back (no progress for 10 min) and hands it other work, twice.
    const next = await store.claim({ nodeId: hoarder.id, now: T0 + 11 * MIN, leaseMs: HOUR });
    expect(next.expired).toBe(1);
    const second = next.kind === 'lease' ? next.lease : undefined;
    expect(second?.ranges.toJSON()).toEqual([[11, 20]]);
    const third = await lease(store, hoarder.id, T0 + 11 * MIN, { leaseMs: HOUR });
    expect(third.ranges.toJSON()).toEqual([[21, 30]]);
    expect(await marks(store)).toEqual([[held.itemId, hoarder.id, T0 + 11 * MIN]]);
    for (const l of [second!, third]) await store.done({ nodeId: hoarder.id, leaseId: l.leaseId, stats: doneStats, now: T0 + 12 * MIN });
    // Only the item it stalled on is left: not for it (no lease is live, yet the answer is later, not done); the honest node gets it.
    expect(await store.claim({ nodeId: hoarder.id, now: T0 + 12 * MIN, leaseMs: HOUR })).toMatchObject({ kind: 'later' });
    const taken = await lease(store, honest.id, T0 + 12 * MIN, { leaseMs: HOUR });
    expect(taken.itemId).toBe(held.itemId);
    const s = await store.stats({ now: T0 + 12 * MIN, windowMs: MIN });
    expect(s.nodes.find((n) => n.nick === 'hoarder')!.refused.stalledLeases).toBe(1);
    // The mark is the last staller's: once the honest node stalls on it too, the hoarder's bar is gone.
    const again = await store.claim({ nodeId: hoarder.id, now: T0 + 23 * MIN, leaseMs: HOUR });
    expect(again.kind === 'lease' && again.lease.itemId).toBe(held.itemId);
    expect(await marks(store)).toEqual([[held.itemId, honest.id, T0 + 23 * MIN]]);
  });

  it('a lease that ran out, or was given back, marks nothing: its node may claim the item again at once', async () => {
    const store = await h.open();
    store.setPolicy({ stallMs: 10 * MIN });
    await store.seed(packItems(r(1, 20), 10));
    const a = await node(store, 'a');
    const first = await lease(store, a.id, T0, { leaseMs: MIN });
    // At 11 min the lease ran out 10 min ago (and reported nothing since it began): it ran out, it was not taken for stalling.
    const again = await store.claim({ nodeId: a.id, now: T0 + 11 * MIN, leaseMs: HOUR });
    expect(again.expired).toBe(1);
    expect(again.kind === 'lease' && again.lease.itemId).toBe(first.itemId);
    await store.release({ nodeId: a.id, leaseId: again.kind === 'lease' ? again.lease.leaseId : '', now: T0 + 12 * MIN });
    expect((await lease(store, a.id, T0 + 12 * MIN)).itemId).toBe(first.itemId);
    expect(await marks(store)).toEqual([]);
    expect((await store.stats({ now: T0 + 12 * MIN, windowMs: MIN })).refused.stalledLeases).toBe(0);
  });

  it('a media item taken for no progress goes behind fresh URLs of its kind for the node that stalled; another node gets it', async () => {
    const store = await h.open();
    store.setPolicy({ stallMs: 10 * MIN });
    const [hoarder, honest] = [await node(store, 'hoarder'), await node(store, 'honest')];
    await store.queueMedia([{ url: 'http://127.0.0.1/m1.png' }, { url: 'http://127.0.0.1/m2.png' }]);
    const claim = (nodeId: number, now: number) => store.claim({ nodeId, now, leaseMs: HOUR, only: 'media', mediaItemSize: 1 });
    const first = await claim(hoarder.id, T0);
    expect(first.kind === 'lease' && first.lease.urls!.map((u) => u.url)).toEqual(['http://127.0.0.1/m1.png']);
    const second = await claim(hoarder.id, T0 + 11 * MIN);
    expect(second.expired).toBe(1);
    expect(second.kind === 'lease' && second.lease.urls!.map((u) => u.url)).toEqual(['http://127.0.0.1/m2.png']);
    const other = await claim(honest.id, T0 + 11 * MIN);
    expect(other.kind === 'lease' && other.lease.itemId).toBe(first.kind === 'lease' && first.lease.itemId);
  });

  it('when the item a node stalled on is all that is left for it, it gets it back nodes.stall_secs after the take-back (a slow node is not starved); another holder in between leaves the bar', async () => {
    const store = await h.open();
    store.setPolicy({ stallMs: 10 * MIN });
    await store.seed(packItems(r(1, 10), 10));
    const [slow, other] = [await node(store, 'slow'), await node(store, 'other')];
    const held = await lease(store, slow.id, T0, { leaseMs: HOUR });
    // Taken at 11 min; the bar lifts at 21 min. Until then the answer is later, never done (no lease is live).
    expect(await store.claim({ nodeId: slow.id, now: T0 + 11 * MIN, leaseMs: HOUR })).toEqual({ kind: 'later', retryAfterMs: 60_000, expired: 1 });
    expect(await store.claim({ nodeId: slow.id, now: T0 + 20.5 * MIN, leaseMs: HOUR })).toEqual({ kind: 'later', retryAfterMs: 30_000, expired: 0 });
    // Another node holds it meanwhile and gives part of it back: the mark stays the slow node's.
    const taken = await lease(store, other.id, T0 + 20.6 * MIN, { leaseMs: HOUR });
    await store.release({ nodeId: other.id, leaseId: taken.leaseId, finished: r(1, 2), now: T0 + 20.7 * MIN });
    expect(await marks(store)).toEqual([[held.itemId, slow.id, T0 + 11 * MIN]]);
    expect(await store.claim({ nodeId: slow.id, now: T0 + 20.8 * MIN, leaseMs: HOUR })).toMatchObject({ kind: 'later' });
    const back = await store.claim({ nodeId: slow.id, now: T0 + 21 * MIN, leaseMs: HOUR });
    expect(back.kind === 'lease' && [back.lease.itemId, back.lease.ranges.toJSON()]).toEqual([held.itemId, [[3, 10]]]);
    await store.done({ nodeId: slow.id, leaseId: back.kind === 'lease' ? back.lease.leaseId : '', stats: doneStats, now: T0 + 22 * MIN });
    expect((await store.claim({ nodeId: slow.id, now: T0 + 22 * MIN, leaseMs: HOUR })).kind).toBe('done');
  });
});
