import type { AcceptedRange } from '../../config/live-edge.js';
import type { MediaCounts, TrackerStats } from './item-store.js';
import { type KindProgress, type WorkRows, buildWorkProgress } from './deadline.js';
import { type HistoryRow, type RatePoint, type StatsRows, HISTORY_BUCKET_MS, HISTORY_RETENTION_MS, ROLLUP_KEY, ROLLUP_LAG_MS, buildHistory, buildStats } from './stats.js';
import type { SqlName, Stmt } from './sqlite-sql.js';

/**
 * The SQLite store's reports: the read-only queries behind `stats`, `workProgress`,
 * `rateHistory`, `mediaCounts`, `claimableIdItems` and `acceptedSince` (SqliteItemStore's
 * methods of those names hand over to these), and the rollup that turns events into the rate
 * history those reports read. The statements are sqlite-sql.ts's, prepared by the store; the rows
 * become answers in stats.ts and deadline.ts, as PostgreSQL's do (postgres-reports.ts).
 */
export class SqliteReports {
  readonly #project: string;
  readonly #stmt: (name: SqlName) => Stmt;
  readonly #tx: <T>(fn: () => T) => T;
  readonly #do: <T>(fn: () => T) => T;

  /** `tx`: one IMMEDIATE transaction; `run`: one statement outside a transaction (both SqliteItemStore's, with its error wrapping). */
  constructor(o: { project: string; stmt: (name: SqlName) => Stmt; tx: <T>(fn: () => T) => T; run: <T>(fn: () => T) => T }) {
    this.#project = o.project;
    this.#stmt = o.stmt;
    this.#tx = o.tx;
    this.#do = o.run;
  }

  /** Rolls events older than ROLLUP_LAG_MS into rate_history, once each (the watermark moves with them); inside the caller's transaction. */
  rollup(now: number): void {
    const from = Number((this.#stmt('getSetting').get(this.#project, ROLLUP_KEY) as { value: string } | undefined)?.value ?? 0);
    const to = now - ROLLUP_LAG_MS;
    if (to <= from) return;
    this.#stmt('rollup').run(this.#project, from, to);
    this.#stmt('setSetting').run(this.#project, ROLLUP_KEY, String(to));
    this.#stmt('pruneHistory').run(this.#project, now - HISTORY_RETENTION_MS);
  }

  async rateHistory({ now, sinceMs }: { now: number; sinceMs: number }): Promise<RatePoint[]> {
    const rows = this.#tx(() => {
      const from = Number((this.#stmt('getSetting').get(this.#project, ROLLUP_KEY) as { value: string } | undefined)?.value ?? 0);
      return this.#stmt('history').all(this.#project, now - sinceMs - HISTORY_BUCKET_MS, this.#project, from) as HistoryRow[];
    });
    return buildHistory({ rows, now, sinceMs: Math.min(sinceMs, HISTORY_RETENTION_MS) });
  }

  async mediaCounts(): Promise<MediaCounts> {
    const row = this.#do(() => this.#stmt('mediaCounts').get(this.#project) as MediaCounts);
    return { urls: row.urls, done: row.done, pending: row.pending, failed: row.failed };
  }

  async claimableIdItems(now: number): Promise<number> {
    return Number((this.#do(() => this.#stmt('claimableIdItems').get(this.#project, now)) as { n: number }).n);
  }

  async stats({ now, windowMs }: { now: number; windowMs: number }): Promise<TrackerStats> {
    const since = now - windowMs;
    // Read-only: events are rolled up into the rate history, then pruned, by expireLeases.
    const rows: StatsRows = this.#tx(() => ({
      itemCounts: this.#stmt('itemCounts').all(this.#project) as StatsRows['itemCounts'],
      nickTotals: this.#stmt('nickTotals').all(this.#project) as StatsRows['nickTotals'],
      nickRates: this.#stmt('nickRates').all(this.#project, since) as StatsRows['nickRates'],
      mediaFailed: Number((this.#stmt('failedMedia').get(this.#project) as { n: number }).n),
      activeNodes: Number((this.#stmt('activeNodes').get(this.#project, now) as { n: number }).n),
    }));
    return buildStats({ project: this.#project, rows, now, windowMs });
  }

  async workProgress({ now, windowMs }: { now: number; windowMs: number }): Promise<{ kinds: KindProgress[]; bytesPerSec: number }> {
    const rows = this.#tx((): WorkRows => {
      const recent = this.#stmt('windowBytes').get(this.#project, now - windowMs) as { n: number; units: number; events: number; first_at: number | null; last_at: number | null };
      return {
        items: this.#stmt('workItems').all(this.#project) as WorkRows['items'],
        pending: this.#stmt('workPending').all(this.#project) as WorkRows['pending'],
        windowBytes: recent.n,
        windowUnits: recent.units,
        windowEvents: { count: recent.events, firstAt: recent.first_at, lastAt: recent.last_at },
      };
    });
    return buildWorkProgress(rows, windowMs, now);
  }

  async acceptedSince(since: number): Promise<AcceptedRange[]> {
    const rows = this.#do(() => this.#stmt('acceptedSince').all(this.#project, since) as { first_id: number; last_id: number; accepted_at: number }[]);
    return rows.map((r) => ({ start: Number(r.first_id), end: Number(r.last_id), at: Number(r.accepted_at) }));
  }
}
