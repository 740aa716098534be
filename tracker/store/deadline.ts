import { MEDIA_PRIORITY, POSTS_PRIORITY } from './media-urls.js';

/**
 * What a project with a `deadline` will have done by then (issue 14). Work kinds in the order the
 * tracker hands them out — post IDs, then images, other media, video: the most valuable work per
 * byte first — and the bytes the project's nodes move per second now. The time left is spent on
 * the kinds in that order, each unit costing the bytes a unit of its kind has cost so far.
 */

export const WORK_KINDS = ['posts', 'image', 'other', 'video'] as const;
export type WorkKind = (typeof WORK_KINDS)[number];

/** The claim priority of each work kind (the stores' `priority` column). */
export const KIND_PRIORITY: Record<WorkKind, number> = { posts: POSTS_PRIORITY, ...MEDIA_PRIORITY };

/** One kind's work as the store counts it: units (IDs or media URLs) known, finished, and the bytes finished ones cost. */
export interface KindProgress {
  kind: WorkKind;
  /** Units known: seeded post IDs; media URLs in items or pending. */
  units: number;
  finished: number;
  /** Units of done items of this kind and the bytes their nodes reported (the cost sample). */
  sampleUnits: number;
  sampleBytes: number;
}

export interface KindProjection {
  kind: WorkKind;
  units: number;
  finished: number;
  /** Units expected by the end: `units`, for media scaled up while posts (which report them) are left. */
  expectedUnits: number;
  /** Units projected finished at the deadline. */
  projected: number;
  /** projected / expectedUnits (1 when there are none). */
  coverage: number;
  /** Bytes one unit of this kind has cost (the mean of its done items); null when none is done yet. */
  bytesPerUnit: number | null;
}

export interface DeadlineProjection {
  deadline: number;
  secondsLeft: number;
  /** Bytes per second the nodes moved over the rate window. */
  bytesPerSec: number;
  /** True when every known unit is projected done by the deadline. */
  fits: boolean;
  kinds: KindProjection[];
}

/**
 * Spends `bytesPerSec × secondsLeft` on the kinds in claim order. A kind with no cost sample yet
 * gets nothing more projected (a medium's size says nothing of a post's: an honest "unknown" is 0
 * extra, not a guess). Media URLs become known as posts are crawled, so while posts are left a
 * media kind's expected units are its known ones scaled by all posts over the posts finished.
 * Past the deadline the projection is what is done.
 */
export function projectDeadline(options: { deadline: number; now: number; bytesPerSec: number; kinds: readonly KindProgress[] }): DeadlineProjection {
  const { deadline, now, bytesPerSec } = options;
  const secondsLeft = Math.max(0, (deadline - now) / 1000);
  let budget = Math.max(0, bytesPerSec) * secondsLeft;
  const posts = options.kinds.find((k) => k.kind === 'posts');
  const scale = posts && posts.finished > 0 && posts.finished < posts.units ? posts.units / posts.finished : 1;
  const ordered = [...options.kinds].sort((a, b) => KIND_PRIORITY[a.kind] - KIND_PRIORITY[b.kind]);
  let fits = true;
  const kinds = ordered.map((k): KindProjection => {
    const expectedUnits = k.kind === 'posts' ? k.units : Math.round(k.units * scale);
    const left = Math.max(0, expectedUnits - k.finished);
    const cost = k.sampleUnits > 0 ? k.sampleBytes / k.sampleUnits : null;
    let more: number;
    if (left === 0) more = 0;
    else if (cost === null) more = 0;
    else if (cost === 0) more = budget > 0 ? left : 0;
    else more = Math.min(left, Math.floor(budget / cost));
    if (cost !== null && cost > 0) budget -= more * cost;
    if (more < left) fits = false;
    const projected = k.finished + more;
    return { kind: k.kind, units: k.units, expectedUnits, finished: k.finished, projected, coverage: expectedUnits > 0 ? round4(projected / expectedUnits) : 1, bytesPerUnit: cost === null ? null : Math.round(cost) };
  });
  return { deadline, secondsLeft: Math.round(secondsLeft), bytesPerSec: Math.round(bytesPerSec), fits, kinds };
}

function round4(n: number): number {
  return Math.round(n * 10_000) / 10_000;
}

/** The raw rows both stores read for `workProgress()`; numbers may arrive as strings (PostgreSQL bigint). */
export interface WorkRows {
  items: { priority: number | string; units: number | string; finished: number | string; sample_units: number | string; sample_bytes: number | string }[];
  /** Media URLs not cut into an item yet, per priority. */
  pending: { priority: number | string; n: number | string }[];
  /** Bytes nodes reported over the window (with `done`, so an item's bytes arrive at its end). */
  windowBytes: number | string;
  /** Units nodes reported finished over the window (heartbeats too: these arrive as the work is done). */
  windowUnits: number | string;
  /** The progress events in the window: how many, the first and the last (ms since the epoch). */
  windowEvents: { count: number | string; firstAt: number | string | null; lastAt: number | string | null };
}

/**
 * The time the window's reports stand for: the window, but when the reports began later (nodes
 * joined, the tracker started), from the first report less the mean gap between reports (the
 * first report's work began about that long before it arrived). So a run's rate is not diluted
 * by the minutes before its first report.
 */
export function reportSpanMs(events: WorkRows['windowEvents'], windowMs: number, now: number): number {
  const count = Number(events.count);
  if (count < 2 || events.firstAt === null || events.lastAt === null) return windowMs;
  const first = Number(events.firstAt);
  const gap = (Number(events.lastAt) - first) / (count - 1);
  return Math.max(1000, Math.min(windowMs, now - first + gap));
}

/**
 * Every work kind's progress (kinds with no work give zeros) and the bytes/s over the window: the
 * bytes reported, or the units reported at the mean cost of a unit, whichever is more. Bytes
 * arrive only with an item's `done`, so early in a run (or with long items) they lag the work by
 * about an item; units arrive with every heartbeat.
 */
export function buildWorkProgress(rows: WorkRows, windowMs: number, now: number): { kinds: KindProgress[]; bytesPerSec: number } {
  const byPriority = new Map<number, KindProgress>();
  const kinds = WORK_KINDS.map((kind) => {
    const k: KindProgress = { kind, units: 0, finished: 0, sampleUnits: 0, sampleBytes: 0 };
    byPriority.set(KIND_PRIORITY[kind], k);
    return k;
  });
  for (const r of rows.items) {
    const k = byPriority.get(Number(r.priority));
    if (!k) continue;
    k.units += Number(r.units);
    k.finished += Number(r.finished);
    k.sampleUnits += Number(r.sample_units);
    k.sampleBytes += Number(r.sample_bytes);
  }
  for (const r of rows.pending) {
    const k = byPriority.get(Number(r.priority));
    if (k) k.units += Number(r.n);
  }
  let sampleUnits = 0;
  let sampleBytes = 0;
  for (const k of kinds) {
    sampleUnits += k.sampleUnits;
    sampleBytes += k.sampleBytes;
  }
  const secs = reportSpanMs(rows.windowEvents, windowMs, now) / 1000;
  const byUnits = sampleUnits > 0 ? (Number(rows.windowUnits) * (sampleBytes / sampleUnits)) / secs : 0;
  return { kinds, bytesPerSec: Math.max(Number(rows.windowBytes) / secs, byUnits) };
}
