import { createCodec, type IdCodec } from '../crawler/id-codec.js';
import type { RangeSet } from '../crawler/id-ranges.js';
import { type TrackerStats, packItems, parseSeedRanges } from './item-store.js';
import { openItemStore } from './open-store.js';

/**
 * `lifeboat tracker seed`: adds IDs to a project as items of at most `itemSize` IDs.
 * `ids` is a RangeSet or text — `1-1000,5000-6000`, or the content of a merge's
 * missing-ranges.txt (one range per line, `#` comments) — read with `codec` (default integer).
 * Seeding does not check for IDs already seeded. Returns a printable summary line.
 */
export async function seedCommand(options: {
  db: string;
  project: string;
  ids: RangeSet | string;
  itemSize: number;
  codec?: IdCodec;
}): Promise<{ items: number; ids: number; seconds: number; summary: string }> {
  const { db, project, itemSize, codec = createCodec('integer') } = options;
  const ids = typeof options.ids === 'string' ? parseSeedRanges(options.ids, codec) : options.ids;
  const store = await openItemStore({ db, project });
  try {
    const started = performance.now();
    const result = await store.seed(packItems(ids, itemSize));
    const seconds = (performance.now() - started) / 1000;
    const summary = `seeded ${result.items.toLocaleString('en-US')} items (${result.ids.toLocaleString('en-US')} IDs, up to ${itemSize} per item) into project ${project} in ${seconds.toFixed(2)} s`;
    return { ...result, seconds, summary };
  } finally {
    await store.close();
  }
}

/** `lifeboat tracker status`: the project's totals and leaderboard as printable text. */
export async function statusCommand(options: {
  db: string;
  project: string;
  now?: number;
  rateWindowMs?: number;
}): Promise<{ stats: TrackerStats; summary: string }> {
  const { db, project, now = Date.now(), rateWindowMs = 60_000 } = options;
  const store = await openItemStore({ db, project });
  try {
    const stats = await store.stats({ now, windowMs: rateWindowMs });
    return { stats, summary: formatStatus(stats) };
  } finally {
    await store.close();
  }
}

export function formatStatus(s: TrackerStats): string {
  const n = (v: number) => v.toLocaleString('en-US');
  const pct = s.ids.total === 0 ? 0 : (100 * s.ids.done) / s.ids.total;
  const lines = [
    `project ${s.project}: ${n(s.ids.done)} / ${n(s.ids.total)} IDs done (${pct.toFixed(2)} %)`,
    `items: ${n(s.items.done)} done, ${n(s.items.claimed)} leased, ${n(s.items.queued)} queued (${n(s.items.total)} total)`,
    `bytes ${n(s.bytes)}; ${n(s.activeNodes)} active nodes; ${s.rateIdsPerSec} IDs/s over the last ${s.rateWindowSecs} s`,
  ];
  if (s.nodes.length > 0) {
    lines.push('', 'nick                              items          IDs            bytes     IDs/s');
    for (const node of s.nodes) {
      lines.push(
        `${node.nick.padEnd(32)} ${n(node.items).padStart(7)} ${n(node.ids).padStart(12)} ${n(node.bytes).padStart(16)} ${String(node.rateIdsPerSec).padStart(9)}`,
      );
    }
  }
  return lines.join('\n');
}
