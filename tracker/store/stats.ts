import { ITEM_STATES, type ItemState, type NickStats, type RatePoint, type TrackerStats } from './item-store.js';

export type { RatePoint } from './item-store.js';

/** The raw rows both stores read for `stats()`; numbers may arrive as strings (PostgreSQL bigint). */
export interface StatsRows {
  /** Per state and kind: items of every kind count as items (the leaderboard's rows count them too), only post items' units as IDs. */
  itemCounts: { state: string; kind?: string; items: number | string; ids: number | string; finished: number | string }[];
  nickTotals: {
    nick: string;
    items: number | string;
    ids: number | string;
    bytes: number | string;
    refused_media?: number | string | null;
    refused_claims?: number | string | null;
    stalled_leases?: number | string | null;
  }[];
  nickRates: { nick: string; ids: number | string }[];
  activeNodes: number;
  /** Media URLs given up on (issue 21 §2). */
  mediaFailed: number;
}

/** Turns the stores' raw rows into the `TrackerStats` shape served at /api/v1/stats. */
export function buildStats(options: { project: string; rows: StatsRows; now: number; windowMs: number }): TrackerStats {
  const { project, rows, now, windowMs } = options;
  const windowSecs = windowMs / 1000;
  const items = { queued: 0, claimed: 0, done: 0, total: 0 } as Record<ItemState, number> & { total: number };
  let idsTotal = 0;
  let idsDone = 0;
  for (const row of rows.itemCounts) {
    if ((ITEM_STATES as readonly string[]).includes(row.state)) items[row.state as ItemState] += Number(row.items);
    items.total += Number(row.items);
    // A media item's units are URLs, not IDs.
    if (row.kind !== undefined && row.kind !== 'posts') continue;
    idsTotal += Number(row.ids);
    idsDone += Number(row.finished);
  }
  const rates = new Map(rows.nickRates.map((r) => [r.nick, Number(r.ids)]));
  const nodes: NickStats[] = rows.nickTotals.map((r) => ({
    nick: r.nick,
    items: Number(r.items),
    ids: Number(r.ids),
    bytes: Number(r.bytes),
    rateIdsPerSec: round2((rates.get(r.nick) ?? 0) / windowSecs),
    refused: { media: Number(r.refused_media ?? 0), claims: Number(r.refused_claims ?? 0), stalledLeases: Number(r.stalled_leases ?? 0) },
  }));
  const refused = { media: 0, claims: 0, stalledLeases: 0 };
  for (const n of nodes) {
    refused.media += n.refused.media;
    refused.claims += n.refused.claims;
    refused.stalledLeases += n.refused.stalledLeases;
  }
  nodes.sort((a, b) => b.ids - a.ids || b.bytes - a.bytes || a.nick.localeCompare(b.nick));
  let recent = 0;
  for (const ids of rates.values()) recent += ids;
  const rateIdsPerSec = round2(recent / windowSecs);
  return {
    project,
    items,
    ids: { total: idsTotal, done: idsDone },
    etaSecs: idsDone >= idsTotal ? 0 : rateIdsPerSec > 0 ? Math.round((idsTotal - idsDone) / rateIdsPerSec) : null,
    bytes: nodes.reduce((sum, n) => sum + n.bytes, 0),
    activeNodes: rows.activeNodes,
    rateIdsPerSec,
    rateWindowSecs: windowSecs,
    nodes,
    refused,
    mediaFailed: rows.mediaFailed,
    generatedAt: now,
  };
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/** Width of one bar of the leaderboard's rate chart. */
export const HISTORY_BUCKET_MS = 5 * 60_000;
/** How long rolled-up rate history is kept (the chart shows up to 24 h of it). */
export const HISTORY_RETENTION_MS = 48 * 3600_000;
/** Events younger than this are not rolled up yet (tracker processes' clocks and late commits). */
export const ROLLUP_LAG_MS = 60_000;
/** The settings key holding how far events have been rolled up (ms since the epoch, exclusive). */
export const ROLLUP_KEY = 'rate_rollup_until';

export interface HistoryRow {
  bucket: number | string;
  ids: number | string;
  bytes: number | string;
}

/**
 * The rate history from the stores' rows: rolled-up buckets plus the events not rolled up yet
 * (added together), every bucket from `since` to now present (zero where nothing was reported),
 * the last one's rate taken over the part of it that has passed.
 */
export function buildHistory(options: { rows: Iterable<HistoryRow>; now: number; sinceMs: number }): RatePoint[] {
  const { now } = options;
  const first = Math.floor((now - options.sinceMs) / HISTORY_BUCKET_MS) * HISTORY_BUCKET_MS;
  const byBucket = new Map<number, { ids: number; bytes: number }>();
  for (const r of options.rows) {
    const at = Number(r.bucket);
    if (at < first) continue;
    const b = byBucket.get(at) ?? { ids: 0, bytes: 0 };
    b.ids += Number(r.ids);
    b.bytes += Number(r.bytes);
    byBucket.set(at, b);
  }
  const points: RatePoint[] = [];
  for (let at = first; at <= now; at += HISTORY_BUCKET_MS) {
    const b = byBucket.get(at) ?? { ids: 0, bytes: 0 };
    const secs = Math.max(1, Math.min(HISTORY_BUCKET_MS, now - at)) / 1000;
    points.push({ at, ids: b.ids, bytes: b.bytes, idsPerSec: round2(b.ids / secs), bytesPerSec: Math.round(b.bytes / secs) });
  }
  return points;
}
