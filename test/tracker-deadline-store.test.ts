import { describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { projectDeadline, reportSpanMs } from '../tracker/store/deadline.js';
import { type ClaimOptions, type DoneStats, type ItemStore, type Lease } from '../tracker/store/item-store.js';
import { describeEachStore, freshProject } from './fixtures/store-harness.js';

/**
 * Issue 14: the claim order under a deadline (kinds in value-per-byte order, newest first within
 * a kind) and the per-kind work the projection reads, on both stores (one contract).
 */

const LEASE_MS = 60_000;
const T0 = 1_700_000_000_000;
const r = (start: number, end: number) => new RangeSet([{ start, end }]);
const stats = (bytes: number): DoneStats => ({ counts: { archived: 1, missing: 0, gone: 0, restricted: 0, failed: 0 }, bytes, warcs: [] });

async function lease(store: ItemStore, nodeId: number, extra: Partial<ClaimOptions> = {}): Promise<Lease> {
  const result = await store.claim({ nodeId, now: T0, leaseMs: LEASE_MS, ...extra });
  if (result.kind !== 'lease') throw new Error(`expected a lease, got ${result.kind}`);
  return result.lease;
}
const describeLease = (l: Lease) => (l.kind === 'posts' ? l.ranges.toJSON() : l.urls!.map((u) => u.url));

describeEachStore('deadline contract', (h) => {
  const fresh = () => h.open(freshProject('dl-'));

  it('newest first within a kind; post items before images before video whatever the order', async () => {
    const store = await fresh();
    await store.seedNew(r(1, 30), 10);
    await store.queueMedia([{ url: 'http://127.0.0.1/v.mp4' }, { url: 'http://127.0.0.1/a.png' }]);
    const node = await store.registerNode({ nick: 'n', tokenHash: 'h-newest', now: T0 });
    const got: unknown[] = [];
    for (let i = 0; i < 5; i++) got.push(describeLease(await lease(store, node.id, { order: 'newest' })));
    expect(got).toEqual([[[21, 30]], [[11, 20]], [[1, 10]], ['http://127.0.0.1/a.png'], ['http://127.0.0.1/v.mp4']]);
  });

  it('newest first never lets a media item that went back (a higher item id) before posts with lower IDs (issue 21 §5)', async () => {
    const store = await fresh();
    await store.seedNew(r(1, 30), 10);
    await store.queueMedia([{ url: 'http://127.0.0.1/v.mp4' }, { url: 'http://127.0.0.1/a.png' }]);
    const node = await store.registerNode({ nick: 'n', tokenHash: 'h-back', now: T0 });
    // Everything handed out once: the media items are cut last, so they carry the highest item ids.
    const first: unknown[] = [];
    for (let i = 0; i < 5; i++) first.push(describeLease(await lease(store, node.id, { order: 'newest' })));
    expect(first).toEqual([[[21, 30]], [[11, 20]], [[1, 10]], ['http://127.0.0.1/a.png'], ['http://127.0.0.1/v.mp4']]);
    // Every lease runs out (the node died): all five go back, and the order must hold again.
    const again: unknown[] = [];
    for (let i = 0; i < 5; i++) again.push(describeLease(await lease(store, node.id, { order: 'newest', now: T0 + LEASE_MS + 1 })));
    expect(again).toEqual(first);
  });

  it('oldest first is the default order', async () => {
    const store = await fresh();
    await store.seedNew(r(1, 30), 10);
    const node = await store.registerNode({ nick: 'n', tokenHash: 'h-oldest', now: T0 });
    expect((await lease(store, node.id)).ranges.toJSON()).toEqual([[1, 10]]);
    expect((await lease(store, node.id, { order: 'oldest' })).ranges.toJSON()).toEqual([[11, 20]]);
  });

  it('a killed node’s remainder goes back and, being the newest, is handed out next', async () => {
    const store = await fresh();
    await store.seedNew(r(1, 30), 10);
    const a = await store.registerNode({ nick: 'a', tokenHash: 'h-a', now: T0 });
    const b = await store.registerNode({ nick: 'b', tokenHash: 'h-b', now: T0 });
    const first = await lease(store, a.id, { order: 'newest' });
    await store.heartbeat({ nodeId: a.id, leaseId: first.leaseId, finished: r(21, 24), now: T0, leaseMs: LEASE_MS });
    // a is killed (-9): no release, no heartbeat; its lease runs out.
    const after = await store.claim({ nodeId: b.id, now: T0 + LEASE_MS + 1, leaseMs: LEASE_MS, order: 'newest' });
    expect(after.kind === 'lease' && after.lease.ranges.toJSON()).toEqual([[25, 30]]);
  });

  it('workProgress counts units per kind, pending media included, and the cost of done items', async () => {
    const store = await fresh();
    await store.seedNew(r(1, 20), 10);
    await store.queueMedia([{ url: 'http://127.0.0.1/a.png' }, { url: 'http://127.0.0.1/b.png' }, { url: 'http://127.0.0.1/v.webm' }]);
    const node = await store.registerNode({ nick: 'n', tokenHash: 'h-work', now: T0 });
    const l = await lease(store, node.id);
    await store.done({ nodeId: node.id, leaseId: l.leaseId, stats: stats(5000), now: T0 + 1000 });
    const work = await store.workProgress({ now: T0 + 2000, windowMs: 10_000 });
    expect(work.bytesPerSec).toBe(500);
    expect(work.kinds).toEqual([
      { kind: 'posts', units: 20, finished: 10, sampleUnits: 10, sampleBytes: 5000 },
      { kind: 'image', units: 2, finished: 0, sampleUnits: 0, sampleBytes: 0 },
      { kind: 'other', units: 0, finished: 0, sampleUnits: 0, sampleBytes: 0 },
      { kind: 'video', units: 1, finished: 0, sampleUnits: 0, sampleBytes: 0 },
    ]);
    // The rate window excludes older reports.
    expect((await store.workProgress({ now: T0 + 20_000, windowMs: 10_000 })).bytesPerSec).toBe(0);
    // Work reported by heartbeats (no bytes until done) counts at the mean cost of a unit: 5 IDs × 500 B in 10 s.
    const next = await lease(store, node.id);
    await store.heartbeat({ nodeId: node.id, leaseId: next.leaseId, finished: r(11, 15), now: T0 + 21_000, leaseMs: LEASE_MS });
    expect((await store.workProgress({ now: T0 + 22_000, windowMs: 10_000 })).bytesPerSec).toBe(250);
  });
});

describe('projectDeadline', () => {
  const kinds = [
    { kind: 'video' as const, units: 10, finished: 0, sampleUnits: 2, sampleBytes: 2_000_000 },
    { kind: 'posts' as const, units: 1000, finished: 100, sampleUnits: 100, sampleBytes: 100_000 },
    { kind: 'image' as const, units: 100, finished: 0, sampleUnits: 10, sampleBytes: 100_000 },
  ];

  it('spends the time left on the kinds in claim order, each unit at its measured cost', () => {
    // 1000 B/s × 1000 s = 1 MB: 900 posts (900 kB), then 10 images (100 kB), no video.
    const p = projectDeadline({ deadline: T0 + 1_000_000, now: T0, bytesPerSec: 1000, kinds });
    expect(p.secondsLeft).toBe(1000);
    expect(p.fits).toBe(false);
    expect(p.kinds.map((k) => [k.kind, k.projected, k.coverage])).toEqual([
      ['posts', 1000, 1],
      ['image', 10, 0.01], // 100 images known after 100 of 1000 posts: 1000 expected
      ['video', 0, 0],
    ]);
  });

  it('a kind with no sample projects nothing more; media expected scale with the posts left', () => {
    const unsampled = [
      { kind: 'posts' as const, units: 10, finished: 5, sampleUnits: 5, sampleBytes: 500 },
      { kind: 'image' as const, units: 10, finished: 0, sampleUnits: 0, sampleBytes: 0 },
    ];
    const p = projectDeadline({ deadline: T0 + 1000, now: T0, bytesPerSec: 1000, kinds: unsampled });
    expect(p.kinds.map((k) => k.projected)).toEqual([10, 0]);
    expect(p.kinds[1]!.bytesPerUnit).toBeNull();
    // Half the posts reported 10 images: 20 expected; 1000 B/s × 1 s at 100 B an image after the posts' 500 B.
    expect(p.kinds[1]!.expectedUnits).toBe(20);
    const sampled = projectDeadline({ deadline: T0 + 1000, now: T0, bytesPerSec: 1000, kinds: [unsampled[0]!, { ...unsampled[1]!, finished: 2, sampleUnits: 2, sampleBytes: 200 }] });
    expect(sampled.kinds[1]).toMatchObject({ expectedUnits: 20, projected: 7, coverage: 0.35 });
    const none = projectDeadline({ deadline: T0 + 1000, now: T0, bytesPerSec: 1000, kinds: [{ kind: 'posts', units: 10, finished: 0, sampleUnits: 0, sampleBytes: 0 }] });
    expect(none.kinds[0]!.projected).toBe(0);
    expect(none.kinds[0]!.bytesPerUnit).toBeNull();
  });

  it('past the deadline the projection is what is done', () => {
    const p = projectDeadline({ deadline: T0 - 1, now: T0, bytesPerSec: 1e9, kinds });
    expect(p.secondsLeft).toBe(0);
    expect(p.kinds.map((k) => k.projected)).toEqual([100, 0, 0]);
  });

  it('the rate stands for the time since the first report (less one mean gap), not a window reaching back before it', () => {
    const now = T0 + 100_000;
    // Five reports over the last 10 s: 9 s between the first and the last, 2.25 s apart.
    expect(reportSpanMs({ count: 5, firstAt: now - 10_000, lastAt: now - 1000 }, 300_000, now)).toBe(12_250);
    expect(reportSpanMs({ count: 1, firstAt: now - 10_000, lastAt: now - 10_000 }, 300_000, now)).toBe(300_000);
    expect(reportSpanMs({ count: 0, firstAt: null, lastAt: null }, 60_000, now)).toBe(60_000);
    // Reports all through the window: the window.
    expect(reportSpanMs({ count: 301, firstAt: now - 300_000, lastAt: now }, 300_000, now)).toBe(300_000);
  });

  it('fits when the budget covers everything', () => {
    expect(projectDeadline({ deadline: T0 + 1e9, now: T0, bytesPerSec: 1e6, kinds }).fits).toBe(true);
  });
});
