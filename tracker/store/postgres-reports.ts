import type pg from 'pg';
import type { AcceptedRange } from '../../config/live-edge.js';
import type { MediaCounts, TrackerStats } from './item-store.js';
import { type KindProgress, type WorkRows, buildWorkProgress } from './deadline.js';
import { type HistoryRow, type RatePoint, type StatsRows, HISTORY_BUCKET_MS, HISTORY_RETENTION_MS, ROLLUP_KEY, ROLLUP_LAG_MS, buildHistory, buildStats } from './stats.js';
import * as Q from './postgres-sql.js';

/** One statement on any pooled connection (PostgresItemStore's, with its error wrapping). */
export type PgQuery = <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => Promise<R[]>;
/** One transaction on one connection (PostgresItemStore's). */
export type PgTx = <T>(fn: (client: pg.PoolClient) => Promise<T>, what?: string) => Promise<T>;

/**
 * The PostgreSQL store's reports: the read-only queries behind `stats`, `workProgress`,
 * `rateHistory`, `mediaCounts`, `claimableIdItems` and `acceptedSince` (PostgresItemStore's
 * methods of those names hand over to these), and the rollup that turns events into the rate
 * history those reports read. The statements are postgres-sql.ts's; the rows become answers in
 * stats.ts and deadline.ts, as SQLite's do (sqlite-reports.ts).
 */
export class PostgresReports {
  readonly #project: string;
  readonly #schema: string;
  readonly #q: PgQuery;
  readonly #tx: PgTx;

  constructor(o: { project: string; schema: string; query: PgQuery; tx: PgTx }) {
    this.#project = o.project;
    this.#schema = o.schema;
    this.#q = o.query;
    this.#tx = o.tx;
  }

  /**
   * Rolls events older than ROLLUP_LAG_MS into rate_history once each: tracker processes take
   * turns (an advisory lock) and move the watermark in the same transaction. Runs on the expiry
   * timer, never on a node's request, so heartbeats never queue on a shared history row.
   */
  async rollup(now: number): Promise<void> {
    await this.#tx(async (client) => {
      await client.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`lifeboat-rollup:${this.#schema}:${this.#project}`]);
      const row = (await client.query<{ value: string }>(`SELECT value FROM settings WHERE project = $1 AND key = $2`, [this.#project, ROLLUP_KEY])).rows[0];
      const from = Number(row?.value ?? 0);
      const to = now - ROLLUP_LAG_MS;
      if (to <= from) return;
      await client.query(Q.ROLLUP, [this.#project, from, to]);
      await client.query(Q.SET_SETTING, [this.#project, ROLLUP_KEY, String(to)]);
      await client.query(`DELETE FROM rate_history WHERE project = $1 AND bucket < $2`, [this.#project, now - HISTORY_RETENTION_MS]);
    }, 'rolling up the rate history failed');
  }

  async rateHistory({ now, sinceMs }: { now: number; sinceMs: number }): Promise<RatePoint[]> {
    const rows = await this.#q<HistoryRow>(Q.HISTORY, [this.#project, now - sinceMs - HISTORY_BUCKET_MS, ROLLUP_KEY]);
    return buildHistory({ rows, now, sinceMs: Math.min(sinceMs, HISTORY_RETENTION_MS) });
  }

  async mediaCounts(): Promise<MediaCounts> {
    const row = (await this.#q<MediaCounts>(Q.STATS.mediaCounts, [this.#project]))[0]!;
    return { urls: row.urls, done: row.done, pending: row.pending, failed: row.failed };
  }

  async claimableIdItems(now: number): Promise<number> {
    return Number((await this.#q<{ n: number }>(Q.STATS.claimableIdItems, [this.#project, now]))[0]?.n ?? 0);
  }

  async stats({ now, windowMs }: { now: number; windowMs: number }): Promise<TrackerStats> {
    // Read-only: events are rolled up into the rate history, then pruned, by expireLeases.
    const [itemCounts, nickTotals, nickRates, active, failed] = await Promise.all([
      this.#q<{ state: string; kind: string; items: number; ids: number; finished: number }>(Q.STATS.itemCounts, [this.#project]),
      this.#q<StatsRows['nickTotals'][number]>(Q.STATS.nickTotals, [this.#project]),
      this.#q<{ nick: string; ids: number }>(Q.STATS.nickRates, [this.#project, now - windowMs]),
      this.#q<{ n: number }>(Q.STATS.activeNodes, [this.#project, now]),
      this.#q<{ n: number }>(Q.STATS.failedMedia, [this.#project]),
    ]);
    const rows = { itemCounts, nickTotals, nickRates, activeNodes: Number(active[0]?.n ?? 0), mediaFailed: Number(failed[0]?.n ?? 0) };
    return buildStats({ project: this.#project, rows, now, windowMs });
  }

  async workProgress({ now, windowMs }: { now: number; windowMs: number }): Promise<{ kinds: KindProgress[]; bytesPerSec: number }> {
    const [items, pending, windowBytes] = await Promise.all([
      this.#q<WorkRows['items'][number]>(Q.STATS.workItems, [this.#project]),
      this.#q<WorkRows['pending'][number]>(Q.STATS.workPending, [this.#project]),
      this.#q<{ n: string; units: string; events: string; first_at: string | null; last_at: string | null }>(Q.STATS.windowBytes, [this.#project, now - windowMs]),
    ]);
    const w = windowBytes[0];
    const windowEvents = { count: w?.events ?? 0, firstAt: w?.first_at ?? null, lastAt: w?.last_at ?? null };
    return buildWorkProgress({ items, pending, windowBytes: w?.n ?? 0, windowUnits: w?.units ?? 0, windowEvents }, windowMs, now);
  }

  async acceptedSince(since: number): Promise<AcceptedRange[]> {
    const rows = await this.#q<{ first_id: number; last_id: number; accepted_at: number }>(Q.ACCEPTED_SINCE, [this.#project, since]);
    return rows.map((r) => ({ start: Number(r.first_id), end: Number(r.last_id), at: Number(r.accepted_at) }));
  }
}
