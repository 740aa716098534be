import { describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { BannedError, LeaseError, NickTakenError } from '../tracker/client/errors.js';
import { type DoneStats, type ItemStore, type Lease, type NodeRecord, packItems } from '../tracker/store/item-store.js';
import { describeEachStore, freshProject } from './fixtures/store-harness.js';


const LEASE_MS = 60_000;
const T0 = 1_700_000_000_000;
const r = (...pairs: [number, number][]) => new RangeSet(pairs.map(([start, end]) => ({ start, end })));
const stats = (bytes = 100): DoneStats => ({
  counts: { archived: 5, missing: 1, gone: 0, restricted: 0, failed: 0 },
  bytes,
  warcs: [{ name: 'demo-1.warc.gz', size: bytes, sha256: 'a'.repeat(64) }],
});

const nextProject = () => freshProject('p');

async function register(store: ItemStore, nick: string) {
  return store.registerNode({ nick, tokenHash: `${nick}-${Math.random()}`, now: T0 });
}

async function mustLease(store: ItemStore, nodeId: number, now = T0): Promise<Lease> {
  const result = await store.claim({ nodeId, now, leaseMs: LEASE_MS });
  if (result.kind !== 'lease') throw new Error(`expected a lease, got ${result.kind}`);
  return result.lease;
}

describeEachStore('contract', (h) => {
  const open = (project = nextProject()) => h.open(project);

  it('claims the lowest queued item, then says later, then done', async () => {
    const store = await open();
    expect(await store.seed(packItems(r([1, 25]), 10))).toEqual({ items: 3, ids: 25 });
    const a = await register(store, 'alice');
    const leases = [await mustLease(store, a.id), await mustLease(store, a.id), await mustLease(store, a.id)];
    expect(leases.map((l) => l.ranges.toJSON())).toEqual([[[1, 10]], [[11, 20]], [[21, 25]]]);
    expect(leases[0]!.leaseExpiresAt).toBe(T0 + LEASE_MS);
    const later = await store.claim({ nodeId: a.id, now: T0, leaseMs: LEASE_MS });
    expect(later).toEqual({ kind: 'later', retryAfterMs: 60_000, expired: 0 });
    for (const l of leases) await store.done({ nodeId: a.id, leaseId: l.leaseId, stats: stats(), now: T0 });
    expect(await store.claim({ nodeId: a.id, now: T0, leaseMs: LEASE_MS })).toEqual({ kind: 'done', expired: 0 });
  });

  it('seedNew adds only IDs the project does not hold, also when seeds race (issue 10 §5)', async () => {
    const store = await open();
    const other = await open();
    expect(await store.seedNew(r([1, 1000]), 100)).toEqual({ items: 10, ids: 1000, skipped: 0 });
    expect(await store.seedNew(r([1, 1000]), 100)).toEqual({ items: 0, ids: 0, skipped: 1000 });
    // Another project's IDs do not count as held.
    expect(await other.seedNew(r([1, 50]), 100)).toEqual({ items: 1, ids: 50, skipped: 0 });
    expect(await store.seedNew(r([500, 1500], [2001, 2003]), 100)).toEqual({ items: 6, ids: 503, skipped: 501 });
    const s = await store.stats({ now: T0, windowMs: 60_000 });
    expect(s.ids.total).toBe(1503);
    expect(s.items.total).toBe(16);
    // Progress is unchanged by a repeated seed: finish one item, seed everything again.
    const a = await register(store, 'alice');
    const lease = await mustLease(store, a.id);
    await store.done({ nodeId: a.id, leaseId: lease.leaseId, stats: stats(), now: T0 });
    expect(await store.seedNew(r([1, 2003]), 100)).toMatchObject({ skipped: 1503, ids: 500 });
    expect((await store.stats({ now: T0, windowMs: 60_000 })).ids).toEqual({ total: 2003, done: 100 });
    // Two seeds of overlapping ranges at once, through separate connections: each ID once.
    const [x, y] = await h.openMany(store.project, 2);
    const both = await Promise.all([x!.seedNew(r([3001, 4000]), 100), y!.seedNew(r([3501, 4500]), 100)]);
    expect(both[0]!.ids + both[1]!.ids).toBe(1500);
    expect((await store.stats({ now: T0, windowMs: 60_000 })).ids.total).toBe(3503);
    expect(await store.listProjects()).toEqual(expect.arrayContaining([store.project, other.project]));
  });

  it('lease expiry hands over only the unfinished remainder', async () => {
    const store = await open();
    await store.seed(packItems(r([1, 100]), 100));
    const a = await register(store, 'alice');
    const b = await register(store, 'bob');
    const lease = await mustLease(store, a.id);
    const hb = await store.heartbeat({ nodeId: a.id, leaseId: lease.leaseId, finished: r([1, 40], [50, 60], [500, 600]), now: T0 + 1000, leaseMs: LEASE_MS });
    expect(hb.remaining.toJSON()).toEqual([[41, 49], [61, 100]]);
    expect(hb.leaseExpiresAt).toBe(T0 + 1000 + LEASE_MS);
    // Before the extended expiry nobody else gets it.
    expect((await store.claim({ nodeId: b.id, now: T0 + LEASE_MS + 500, leaseMs: LEASE_MS })).kind).toBe('later');
    const late = T0 + 1000 + LEASE_MS + 1;
    const handover = await store.claim({ nodeId: b.id, now: late, leaseMs: LEASE_MS });
    expect(handover.expired).toBe(1);
    if (handover.kind !== 'lease') throw new Error('expected a lease');
    const second = handover.lease;
    expect(second.itemId).toBe(lease.itemId);
    expect(second.ranges.toJSON()).toEqual([[41, 49], [61, 100]]);
    // The first node's lease is now stale: heartbeat and done are refused.
    await expect(store.heartbeat({ nodeId: a.id, leaseId: lease.leaseId, finished: r([41, 45]), now: late, leaseMs: LEASE_MS })).rejects.toBeInstanceOf(LeaseError);
    await expect(store.done({ nodeId: a.id, leaseId: lease.leaseId, stats: stats(), now: late })).rejects.toBeInstanceOf(LeaseError);
    await store.done({ nodeId: b.id, leaseId: second.leaseId, stats: stats(300), now: late });
    const s = await store.stats({ now: late, windowMs: 60_000 });
    expect(s.ids).toEqual({ total: 100, done: 100 });
    expect(s.items).toMatchObject({ total: 1, done: 1, queued: 0, claimed: 0 });
    expect(s.nodes).toEqual([
      { nick: 'alice', items: 0, ids: 51, bytes: 0, rateIdsPerSec: expect.any(Number), refused: { media: 0, claims: 0, stalledLeases: 0 } },
      { nick: 'bob', items: 1, ids: 49, bytes: 300, rateIdsPerSec: expect.any(Number), refused: { media: 0, claims: 0, stalledLeases: 0 } },
    ]);
  });

  it('expireLeases counts overdue leases and completes fully reported items', async () => {
    const store = await open();
    await store.seed(packItems(r([1, 20]), 10));
    const a = await register(store, 'alice');
    const l1 = await mustLease(store, a.id);
    await mustLease(store, a.id);
    await store.heartbeat({ nodeId: a.id, leaseId: l1.leaseId, finished: r([1, 10]), now: T0, leaseMs: LEASE_MS });
    expect(await store.expireLeases(T0 + LEASE_MS - 1)).toBe(0);
    expect(await store.expireLeases(T0 + LEASE_MS + 1)).toBe(2);
    const s = await store.stats({ now: T0 + LEASE_MS + 1, windowMs: 60_000 });
    expect(s.items).toMatchObject({ done: 1, queued: 1, claimed: 0 });
    const again = await mustLease(store, a.id, T0 + LEASE_MS + 2);
    expect(again.ranges.toJSON()).toEqual([[11, 20]]);
  });

  it('extendLeases gives leases live at the given moment the time the tracker was away, and no others', async () => {
    const store = await open();
    await store.seed(packItems(r([1, 30]), 10));
    const a = await register(store, 'alice');
    const early = await mustLease(store, a.id, T0 - LEASE_MS - 1); // already expired at T0
    const live = await mustLease(store, a.id, T0 - 1000); // live at T0, expires at T0 + 59 s
    const away = 10 * LEASE_MS;
    expect(await store.extendLeases({ since: T0, byMs: away })).toBe(1);
    const after = T0 + away + 1000;
    // The live one: its node can heartbeat as if the tracker had never gone; nobody else gets it.
    const hb = await store.heartbeat({ nodeId: a.id, leaseId: live.leaseId, finished: r([11, 12]), now: after, leaseMs: LEASE_MS });
    expect(hb.remaining.toJSON()).toEqual([[13, 20]]);
    // The one already overdue before the downtime expires as it would have.
    await expect(store.heartbeat({ nodeId: a.id, leaseId: early.leaseId, finished: r([1, 2]), now: after, leaseMs: LEASE_MS })).rejects.toBeInstanceOf(LeaseError);
    const next = await mustLease(store, a.id, after);
    expect(next.itemId).toBe(early.itemId);
  });

  it('refuses a stale or foreign lease and counts done twice once', async () => {
    const store = await open();
    await store.seed(packItems(r([1, 10]), 10));
    const a = await register(store, 'alice');
    const b = await register(store, 'bob');
    const lease = await mustLease(store, a.id);
    await expect(store.heartbeat({ nodeId: b.id, leaseId: lease.leaseId, finished: r([1, 2]), now: T0, leaseMs: LEASE_MS })).rejects.toMatchObject({ code: 'E_LEASE_NOT_YOURS' });
    await expect(store.done({ nodeId: b.id, leaseId: lease.leaseId, stats: stats(), now: T0 })).rejects.toBeInstanceOf(LeaseError);
    await expect(store.done({ nodeId: a.id, leaseId: 'no-such-lease', stats: stats(), now: T0 })).rejects.toMatchObject({ code: 'E_LEASE_STALE' });
    expect(await store.done({ nodeId: a.id, leaseId: lease.leaseId, stats: stats(100), now: T0 })).toEqual({ duplicate: false });
    expect(await store.done({ nodeId: a.id, leaseId: lease.leaseId, stats: stats(100), now: T0 + 5 })).toEqual({ duplicate: true });
    await expect(store.heartbeat({ nodeId: a.id, leaseId: lease.leaseId, finished: r([1, 2]), now: T0, leaseMs: LEASE_MS })).rejects.toBeInstanceOf(LeaseError);
    const s = await store.stats({ now: T0, windowMs: 60_000 });
    expect(s.nodes.find((n) => n.nick === 'alice')).toMatchObject({ items: 1, ids: 10, bytes: 100 });
    expect(s.bytes).toBe(100);
  });

  it('lookupLease finds the item of a live or finished lease and changes nothing', async () => {
    const store = await open();
    await store.seed(packItems(r([1, 10]), 10));
    const a = await register(store, 'alice');
    const b = await register(store, 'bob');
    const lease = await mustLease(store, a.id);
    const before = await store.stats({ now: T0, windowMs: 60_000 });
    expect(await store.lookupLease({ nodeId: a.id, leaseId: lease.leaseId, now: T0 })).toEqual({ itemId: lease.itemId, state: 'live' });
    expect(await store.stats({ now: T0, windowMs: 60_000 })).toEqual(before);
    await expect(store.lookupLease({ nodeId: b.id, leaseId: lease.leaseId, now: T0 })).rejects.toMatchObject({ code: 'E_LEASE_NOT_YOURS' });
    await expect(store.lookupLease({ nodeId: a.id, leaseId: 'no-such-lease', now: T0 })).rejects.toMatchObject({ code: 'E_LEASE_STALE' });
    await expect(store.lookupLease({ nodeId: a.id, leaseId: lease.leaseId, now: T0 + LEASE_MS + 1 })).rejects.toMatchObject({ code: 'E_LEASE_STALE' });
    await store.done({ nodeId: a.id, leaseId: lease.leaseId, stats: stats(), now: T0 });
    expect(await store.lookupLease({ nodeId: a.id, leaseId: lease.leaseId, now: T0 + 1 })).toEqual({ itemId: lease.itemId, state: 'done' });
    await expect(store.lookupLease({ nodeId: b.id, leaseId: lease.leaseId, now: T0 })).rejects.toBeInstanceOf(LeaseError);
  });

  it('release and fail return the unfinished remainder', async () => {
    const store = await open();
    await store.seed(packItems(r([1, 10]), 10));
    const a = await register(store, 'alice');
    const lease = await mustLease(store, a.id);
    const released = await store.release({ nodeId: a.id, leaseId: lease.leaseId, finished: r([1, 3]), now: T0 });
    expect(released.remaining.toJSON()).toEqual([[4, 10]]);
    await expect(store.done({ nodeId: a.id, leaseId: lease.leaseId, stats: stats(), now: T0 })).rejects.toBeInstanceOf(LeaseError);
    const next = await mustLease(store, a.id);
    expect(next.ranges.toJSON()).toEqual([[4, 10]]);
    const failed = await store.release({ nodeId: a.id, leaseId: next.leaseId, finished: r([4, 4]), error: 'disk full', now: T0 });
    expect(failed.remaining.toJSON()).toEqual([[5, 10]]);
    expect((await mustLease(store, a.id)).ranges.toJSON()).toEqual([[5, 10]]);
  });

  it('bans a nick: registration refused, authentication flagged, leases returned', async () => {
    const store = await open();
    await store.seed(packItems(r([1, 10]), 10));
    const m = await store.registerNode({ nick: 'mallory', tokenHash: 'hash-mallory', now: T0 });
    await mustLease(store, m.id);
    expect(await store.ban({ nick: 'mallory', reason: 'bad data', now: T0 })).toEqual({ releasedItems: 1 });
    await expect(register(store, 'mallory')).rejects.toBeInstanceOf(BannedError);
    expect(await store.authenticate('hash-mallory')).toEqual({ id: m.id, nick: 'mallory', banned: true });
    expect(await store.authenticate('unknown')).toBeUndefined();
    const a = await register(store, 'alice');
    expect((await mustLease(store, a.id)).ranges.toJSON()).toEqual([[1, 10]]);
    await store.unban('mallory');
    expect((await store.authenticate('hash-mallory'))?.banned).toBe(false);
    await store.setSetting('min_client_version', '0.2.0');
    expect(await store.getSetting('min_client_version')).toBe('0.2.0');
    expect(await store.getSetting('nothing')).toBeUndefined();
  });

  it('a nick has one owner: a second node cannot take it, even racing from several connections; a ban hits only its owner', async () => {
    const project = nextProject();
    const stores = await h.openMany(project, 3);
    await stores[0]!.seed(packItems(r([1, 20]), 10));
    const tries = await Promise.allSettled(stores.flatMap((s, i) => [0, 1].map((j) => s.registerNode({ nick: 'shared', tokenHash: `race-${i}-${j}`, now: T0 }))));
    const won = tries.filter((t) => t.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const t of tries) if (t.status === 'rejected') expect(t.reason).toBeInstanceOf(NickTakenError);
    const owner = (won[0] as PromiseFulfilledResult<NodeRecord>).value;
    // The owner registering again with its own token (a crash before it saved the answer) gets its node back.
    const ownerToken = `race-${Math.floor(tries.findIndex((t) => t.status === 'fulfilled') / 2)}-${tries.findIndex((t) => t.status === 'fulfilled') % 2}`;
    expect(await stores[2]!.registerNode({ nick: 'shared', tokenHash: ownerToken, now: T0 })).toEqual({ id: owner.id, nick: 'shared', banned: false });
    await expect(stores[1]!.registerNode({ nick: 'shared', tokenHash: 'later', now: T0 })).rejects.toThrow(/nick "shared" is already taken/);
    const other = await stores[0]!.registerNode({ nick: 'other', tokenHash: 'hash-other', now: T0 });
    const lease = await mustLease(stores[0]!, other.id);
    await stores[0]!.ban({ nick: 'shared', reason: 'bad data', now: T0 });
    expect((await stores[0]!.authenticate('hash-other'))?.banned).toBe(false);
    expect(await stores[0]!.lookupLease({ nodeId: other.id, leaseId: lease.leaseId, now: T0 + 1 })).toMatchObject({ state: 'live' });
    const tokens = tries.map((_, k) => `race-${Math.floor(k / 2)}-${k % 2}`);
    const flagged = await Promise.all(tokens.map((t) => stores[0]!.authenticate(t)));
    expect(flagged.filter((n) => n !== undefined)).toEqual([{ id: owner.id, nick: 'shared', banned: true }]);
    // A token already in use cannot be registered under another nick.
    await expect(stores[0]!.registerNode({ nick: 'copycat', tokenHash: 'hash-other', now: T0 })).rejects.toMatchObject({ code: 'E_TOKEN_TAKEN' });
    // Nicks are per project: another project may use it.
    const elsewhere = await open();
    expect((await elsewhere.registerNode({ nick: 'shared', tokenHash: 'elsewhere', now: T0 })).nick).toBe('shared');
  });

  it("saturates a node's byte total at 2^53 − 1 instead of leaving safe integers (the API refuses > 1 TiB per item first)", async () => {
    const store = await open();
    await store.seed(packItems(r([1, 20]), 10));
    const a = await register(store, 'alice');
    for (let i = 0; i < 2; i++) {
      const lease = await mustLease(store, a.id);
      await store.done({ nodeId: a.id, leaseId: lease.leaseId, stats: stats(Number.MAX_SAFE_INTEGER), now: T0 });
    }
    const s = await store.stats({ now: T0, windowMs: 60_000 });
    expect(s.nodes.find((n) => n.nick === 'alice')!.bytes).toBe(Number.MAX_SAFE_INTEGER);
    expect(Number.isSafeInteger(s.bytes)).toBe(true);
  });

  it('reports live rate and active nodes', async () => {
    const store = await open();
    await store.seed(packItems(r([1, 1000]), 100));
    const a = await register(store, 'alice');
    const b = await register(store, 'bob');
    const la = await mustLease(store, a.id);
    const lb = await mustLease(store, b.id);
    await store.heartbeat({ nodeId: a.id, leaseId: la.leaseId, finished: r([1, 60]), now: T0 + 1000, leaseMs: LEASE_MS });
    await store.done({ nodeId: b.id, leaseId: lb.leaseId, stats: stats(5000), now: T0 + 2000 });
    const s = await store.stats({ now: T0 + 10_000, windowMs: 60_000 });
    expect(s.activeNodes).toBe(1);
    expect(s.rateIdsPerSec).toBeCloseTo(160 / 60, 2);
    expect(s.nodes.map((n) => [n.nick, n.ids, n.rateIdsPerSec])).toEqual([['bob', 100, 1.67], ['alice', 60, 1]]);
    const later = await store.stats({ now: T0 + 200_000, windowMs: 60_000 });
    expect(later.rateIdsPerSec).toBe(0);
  });

  it('keeps a bounded 5-minute rate history that outlives the events, counted once, and gives an ETA (issue 10 §6)', async () => {
    const store = await open();
    await store.seed(packItems(r([1, 10_000]), 100));
    const a = await register(store, 'alice');
    const lease = await mustLease(store, a.id);
    const MIN = 60_000;
    await store.heartbeat({ nodeId: a.id, leaseId: lease.leaseId, finished: r([1, 50]), now: T0 + 10_000, leaseMs: LEASE_MS * 60 });
    await store.heartbeat({ nodeId: a.id, leaseId: lease.leaseId, finished: r([1, 80]), now: T0 + 6 * MIN, leaseMs: LEASE_MS * 60 });
    await store.done({ nodeId: a.id, leaseId: lease.leaseId, stats: stats(5000), now: T0 + 11 * MIN });
    const bucket = (t: number) => Math.floor(t / 300_000) * 300_000;
    const expected = new Map([[bucket(T0 + 10_000), 50], [bucket(T0 + 6 * MIN), 30], [bucket(T0 + 11 * MIN), 20]]);
    const check = async (now: number) => {
      const points = await store.rateHistory({ now, sinceMs: 3600_000 });
      expect(points.length).toBe(13); // an hour of 5-minute buckets, the current one included
      expect(points[points.length - 1]!.at).toBe(bucket(now));
      for (const p of points) expect([p.at, p.ids]).toEqual([p.at, expected.get(p.at) ?? 0]);
      expect(points.reduce((n, p) => n + p.bytes, 0)).toBe(5000);
      return points;
    };
    // ETA from the live rate; none when nothing moves.
    const s = await store.stats({ now: T0 + 11 * MIN + 1000, windowMs: 60_000 });
    expect(s.ids).toEqual({ total: 10_000, done: 100 });
    expect(s.etaSecs).toBe(Math.round(9_900 / s.rateIdsPerSec));
    expect(s.etaSecs).toBeGreaterThan(0);
    expect((await store.stats({ now: T0 + 40 * MIN, windowMs: 60_000 })).etaSecs).toBeNull();
    const live = await check(T0 + 12 * MIN); // nothing rolled up yet: all from the events
    const full = live.find((p) => p.at === bucket(T0 + 6 * MIN))!;
    expect(full.idsPerSec).toBeCloseTo(30 / 300, 2);
    await store.expireLeases(T0 + 12 * MIN); // rolls up what is older than a minute
    await check(T0 + 12 * MIN);
    await store.expireLeases(T0 + 30 * MIN); // the rest; the events are gone after 15 min
    await store.expireLeases(T0 + 30 * MIN);
    await check(T0 + 30 * MIN);
    // Bounded: after 48 h the history is dropped.
    await store.expireLeases(T0 + 49 * 3600_000);
    const old = await store.rateHistory({ now: T0 + 49 * 3600_000, sinceMs: 100 * 3600_000 });
    expect(old.length).toBe(48 * 12 + 1);
    expect(old.every((p) => p.ids === 0)).toBe(true);
  });

  it('concurrent claimers never hold overlapping IDs', async () => {
    const project = nextProject();
    const stores = await h.openMany(project, 3);
    await stores[0]!.seed(packItems(r([1, 500]), 10));
    const nodes = await Promise.all(Array.from({ length: 12 }, (_, i) => register(stores[i % 3]!, `n${i}`)));
    const claims = await Promise.all(
      Array.from({ length: 80 }, (_, i) => stores[i % 3]!.claim({ nodeId: nodes[i % nodes.length]!.id, now: T0, leaseMs: LEASE_MS })),
    );
    const leases = claims.flatMap((c) => (c.kind === 'lease' ? [c.lease] : []));
    expect(leases).toHaveLength(50);
    expect(claims.filter((c) => c.kind === 'later')).toHaveLength(30);
    expect(new Set(leases.map((l) => l.itemId)).size).toBe(50);
    let union = new RangeSet();
    for (const l of leases) {
      expect(union.intersect(l.ranges).isEmpty).toBe(true);
      union = union.union(l.ranges);
    }
    expect(union.toJSON()).toEqual([[1, 500]]);
    // Expire all, then race again: the remainders are again handed out exactly once.
    await Promise.all(leases.slice(0, 25).map((l) => {
      const holder = claims.findIndex((c) => c.kind === 'lease' && c.lease.leaseId === l.leaseId);
      const node = nodes[holder % nodes.length]!;
      return stores[holder % 3]!.heartbeat({ nodeId: node.id, leaseId: l.leaseId, finished: r([l.ranges.min!, l.ranges.min! + 4]), now: T0, leaseMs: LEASE_MS });
    }));
    const late = T0 + LEASE_MS + 1;
    const again = await Promise.all(
      Array.from({ length: 80 }, (_, i) => stores[i % 3]!.claim({ nodeId: nodes[i % nodes.length]!.id, now: late, leaseMs: LEASE_MS })),
    );
    const second = again.flatMap((c) => (c.kind === 'lease' ? [c.lease] : []));
    expect(new Set(second.map((l) => l.itemId)).size).toBe(50);
    let union2 = new RangeSet();
    for (const l of second) {
      expect(union2.intersect(l.ranges).isEmpty).toBe(true);
      union2 = union2.union(l.ranges);
    }
    expect(union2.size).toBe(500 - 25 * 5);
  });

  it('seeds 1,000,000 items in batches (timing printed)', async () => {
    const store = await open();
    const started = performance.now();
    const result = await store.seed(packItems(r([1, 10_000_000]), 10));
    const secs = (performance.now() - started) / 1000;
    console.log(`[${store.kind}] seeded ${result.items} items in ${secs.toFixed(2)} s`);
    expect(result).toEqual({ items: 1_000_000, ids: 10_000_000 });
    const a = await register(store, 'alice');
    expect((await mustLease(store, a.id)).ranges.toJSON()).toEqual([[1, 10]]);
  }, 180_000);
});

describe('packItems', () => {
  it('cuts ranges into items and gathers fragments', () => {
    expect([...packItems(r([1, 25]), 10)].map((s) => s.toJSON())).toEqual([[[1, 10]], [[11, 20]], [[21, 25]]]);
    expect([...packItems(r([1, 3], [7, 7], [10, 20]), 5)].map((s) => s.toJSON())).toEqual([[[1, 3], [7, 7], [10, 10]], [[11, 15]], [[16, 20]]]);
  });
});
