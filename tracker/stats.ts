import { ITEM_STATES, type ItemState, type NickStats, type TrackerStats } from './item-store.js';

/** The raw rows both stores read for `stats()`; numbers may arrive as strings (PostgreSQL bigint). */
export interface StatsRows {
  itemCounts: { state: string; items: number | string; ids: number | string; finished: number | string }[];
  nickTotals: { nick: string; items: number | string; ids: number | string; bytes: number | string }[];
  nickRates: { nick: string; ids: number | string }[];
  activeNodes: number;
}

/** Turns the stores' raw rows into the `TrackerStats` shape served at /api/v1/stats. */
export function buildStats(options: { project: string; rows: StatsRows; now: number; windowMs: number }): TrackerStats {
  const { project, rows, now, windowMs } = options;
  const windowSecs = windowMs / 1000;
  const items = { queued: 0, claimed: 0, done: 0, total: 0 } as Record<ItemState, number> & { total: number };
  let idsTotal = 0;
  let idsDone = 0;
  for (const row of rows.itemCounts) {
    if ((ITEM_STATES as readonly string[]).includes(row.state)) items[row.state as ItemState] = Number(row.items);
    items.total += Number(row.items);
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
  }));
  nodes.sort((a, b) => b.ids - a.ids || b.bytes - a.bytes || a.nick.localeCompare(b.nick));
  let recent = 0;
  for (const ids of rates.values()) recent += ids;
  return {
    project,
    items,
    ids: { total: idsTotal, done: idsDone },
    bytes: nodes.reduce((sum, n) => sum + n.bytes, 0),
    activeNodes: rows.activeNodes,
    rateIdsPerSec: round2(recent / windowSecs),
    rateWindowSecs: windowSecs,
    nodes,
    generatedAt: now,
  };
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
