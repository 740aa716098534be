import type Database from 'better-sqlite3';
import { openForReading } from './sqlite-read.js';

/**
 * The read side of a shard's database (`shard.sqlite`, written by shard-db.ts) for the curator
 * commands — status, verify, the codec a report prints IDs in. Every query over the shard's
 * tables that is not the crawl's own lives here, so the schema has two homes only: the writer and
 * this reader. The handle comes from `openForReading` (`ShardDbReader.open`) or from an input
 * snapshot (input-db.ts); `close` is for the first.
 */

/** One row of the shard's record locations: where the database says a record is. */
export interface RecordLocation {
  warc: string;
  offset: number;
  length: number;
  recordId: string | null;
  type: string;
  url: string | null;
  /** What the row is, for a defect message: `captures row (post)`, `records row`. */
  what: string;
}

/** The table names of any SQLite database. */
export function tableNames(db: Database.Database): Set<string> {
  return new Set(db.prepare<[], { name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table'`).all().map((r) => r.name));
}

/** IDs per status (the `ids` table, which a merged database keeps in the shard's form). */
export function idCounts(db: Database.Database): Record<string, number> {
  const ids: Record<string, number> = {};
  for (const r of db.prepare<[], { status: string; n: number }>('SELECT status, COUNT(*) AS n FROM ids GROUP BY status').iterate()) ids[r.status] = r.n;
  return ids;
}

/** Archived IDs with no 2xx capture (`ids` and `captures`, kept in the shard's form by a merge too). */
export function* archivedWithoutCapture(db: Database.Database): Generator<number> {
  const rows = db.prepare<[], { id: number }>(
    `SELECT id FROM ids WHERE status = 'archived' AND NOT EXISTS (
       SELECT 1 FROM captures c WHERE c.post_id = ids.id AND c.http_status BETWEEN 200 AND 299)`,
  );
  for (const r of rows.iterate()) yield r.id;
}

export class ShardDbReader {
  readonly #db: Database.Database;

  constructor(db: Database.Database) {
    this.#db = db;
  }

  /** Opens `path` to read (no `-wal`/`-shm` left behind, see sqlite-read.ts); throws when it cannot. */
  static open(path: string): ShardDbReader {
    return new ShardDbReader(openForReading(path));
  }

  close(): void {
    this.#db.close();
  }

  hasTables(...names: string[]): boolean {
    const tables = tableNames(this.#db);
    return names.every((n) => tables.has(n));
  }

  /** The ID codec the shard was crawled with (`meta.codec`: `integer`, `base36`, `padded-N`…). */
  codecName(): string | undefined {
    return this.#db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'codec'").get()?.value;
  }

  idCounts(): Record<string, number> {
    return idCounts(this.#db);
  }

  /** Every ID range a crawl of this shard was asked for (`meta.ranges`, JSON `[[start, end], …]`); undefined in a shard too old to keep them. */
  requestedRanges(): [number, number][] | undefined {
    const value = this.#db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'ranges'").get()?.value;
    if (value === undefined) return undefined;
    try {
      const parsed = JSON.parse(value) as unknown;
      return Array.isArray(parsed) ? (parsed as [number, number][]) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Final IDs (any status but failed) as runs of consecutive IDs, in ID order; streamed. */
  finalRanges(): Iterable<{ start: number; end: number }> {
    return this.#db
      .prepare<[], { start: number; end: number }>(
        `SELECT MIN(id) AS start, MAX(id) AS end FROM (SELECT id, id - ROW_NUMBER() OVER (ORDER BY id) AS grp FROM ids WHERE status != 'failed')
         GROUP BY grp ORDER BY start`,
      )
      .iterate();
  }

  /** Failed IDs per `last_error` (as stored: the caller groups them by cause). */
  failedErrors(): { lastError: string | null; count: number }[] {
    return this.#db
      .prepare<[], { lastError: string | null; count: number }>(`SELECT last_error AS lastError, COUNT(*) AS count FROM ids WHERE status = 'failed' GROUP BY last_error`)
      .all();
  }

  /** Final IDs whose `last_error` is an extraction note (`extraction: …`), per note as stored. */
  extractionErrors(): { lastError: string; count: number }[] {
    return this.#db
      .prepare<[], { lastError: string; count: number }>(
        `SELECT last_error AS lastError, COUNT(*) AS count FROM ids WHERE status != 'failed' AND last_error LIKE 'extraction: %' GROUP BY last_error`,
      )
      .all();
  }

  /**
   * IDs whose status is final but that miss a capture (`ids.incomplete`, schema 2): how many, the
   * first `limit` of them in ID order, and how many per reason as stored. A shard written before
   * the column existed has none.
   */
  incomplete(limit: number): { total: number; first: { id: number; reason: string }[]; reasons: { reason: string; count: number }[] } {
    const columns = this.#db.prepare<[], { name: string }>('PRAGMA table_info(ids)').all();
    if (!columns.some((c) => c.name === 'incomplete')) return { total: 0, first: [], reasons: [] };
    const reasons = this.#db
      .prepare<[], { reason: string; count: number }>('SELECT incomplete AS reason, COUNT(*) AS count FROM ids WHERE incomplete IS NOT NULL GROUP BY incomplete')
      .all();
    const first = this.#db.prepare<[number], { id: number; reason: string }>('SELECT id, incomplete AS reason FROM ids WHERE incomplete IS NOT NULL ORDER BY id LIMIT ?').all(limit);
    return { total: reasons.reduce((n, r) => n + r.count, 0), first, reasons };
  }

  /** The first `limit` runs of consecutive failed IDs, in ID order. */
  failedRanges(limit: number): { start: number; end: number }[] {
    return this.#db
      .prepare<[number], { start: number; end: number }>(
        `SELECT MIN(id) AS start, MAX(id) AS end FROM (SELECT id, id - ROW_NUMBER() OVER (ORDER BY id) AS grp FROM ids WHERE status = 'failed')
         GROUP BY grp ORDER BY start LIMIT ?`,
      )
      .all(limit);
  }

  /** Media URLs per state (`queued`, `done`, `failed`…). */
  mediaStates(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.#db.prepare<[], { state: string; n: number }>('SELECT state, COUNT(*) AS n FROM urls GROUP BY state').iterate()) out[r.state] = r.n;
    return out;
  }

  /** Every record the captures point at (responses and their requests), sorted by (file, offset); streamed. */
  recordLocations(): Iterable<RecordLocation> {
    return this.#db
      .prepare<[], RecordLocation>(
        `SELECT warc, offset, length, record_id AS recordId, record_type AS type, url, 'captures row (' || name || ')' AS what FROM captures
         UNION ALL
         SELECT request_warc, request_offset, request_length, NULL, 'request', url, 'captures row (' || name || ', request)' FROM captures
         ORDER BY 1, 2`,
      )
      .iterate();
  }

  archivedWithoutCapture(): Iterable<number> {
    return archivedWithoutCapture(this.#db);
  }
}
