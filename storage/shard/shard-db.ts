import Database from 'better-sqlite3';
import { StorageError } from '../../config/errors.js';
import { diskFullError } from './disk-full.js';
import type { ClosedWarc, RevisitTarget, WrittenRecord } from '../warc/warc-writer.js';

import type { IdStatus } from '../../config/id-status.js';

export type { IdStatus } from '../../config/id-status.js';

export interface IdOutcome {
  id: number;
  status: IdStatus;
  httpStatus: number | null;
  attempts: number;
  lastError: string | null;
  /** Why a final ID is incomplete (a capture it needs could not be had); null or absent when it is not. */
  incomplete?: string | null;
  fields?: Record<string, unknown>;
  /** `fields` already serialised (the crawl serialises outside the commit, where a failure costs one ID only). */
  fieldsJson?: string;
}

export interface CaptureRow {
  postId: number | null;
  name: string;
  url: string;
  status: number;
  request: WrittenRecord;
  response: WrittenRecord;
  payloadDigest: string;
  fetchedAt: string;
  revisitOf: string | null;
  contentType: string | null;
  bodyBytes: number;
}

const SCHEMA_VERSION = 2;

const MIGRATIONS: string[] = [
  `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE ids (id INTEGER PRIMARY KEY, status TEXT NOT NULL, http_status INTEGER, attempts INTEGER NOT NULL,
                     last_error TEXT, updated_at INTEGER NOT NULL);
   CREATE INDEX ids_status ON ids(status);
   CREATE TABLE captures (rowid INTEGER PRIMARY KEY, post_id INTEGER, name TEXT NOT NULL, url TEXT NOT NULL,
                          http_status INTEGER NOT NULL, warc TEXT NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
                          request_warc TEXT NOT NULL, request_offset INTEGER NOT NULL, request_length INTEGER NOT NULL,
                          record_id TEXT NOT NULL, record_type TEXT NOT NULL, payload_digest TEXT NOT NULL, fetched_at TEXT NOT NULL,
                          revisit_of TEXT, content_type TEXT, body_bytes INTEGER NOT NULL);
   CREATE INDEX captures_url ON captures(url, payload_digest);
   CREATE INDEX captures_post ON captures(post_id);
   CREATE TABLE posts (id INTEGER PRIMARY KEY, fields TEXT NOT NULL);
   CREATE TABLE urls (url TEXT PRIMARY KEY, post_id INTEGER, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                      http_status INTEGER, last_error TEXT, updated_at INTEGER NOT NULL);
   CREATE INDEX urls_state ON urls(state);
   CREATE TABLE related (id INTEGER PRIMARY KEY);
   CREATE TABLE warcs (name TEXT PRIMARY KEY, size INTEGER, sha256 TEXT, records INTEGER, state TEXT NOT NULL);
   CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, ended_at TEXT, args TEXT, summary TEXT);`,
  // 2 (issue 23 §2): an ID whose status is final but that misses a capture the profile asked for is
  // incomplete — why, in this column; it is not final for the frontier (the next run crawls it again).
  `ALTER TABLE ids ADD COLUMN incomplete TEXT;
   CREATE INDEX ids_incomplete ON ids(incomplete) WHERE incomplete IS NOT NULL;`,
];

/**
 * The shard database (ARCHITECTURE.md "Durable"): what was found, where its records are, what is left.
 * Writes are batched by the caller into one transaction per group commit.
 */
export class ShardDb {
  readonly #db: Database.Database;
  readonly path: string;
  readonly #stmts;

  constructor(path: string, options: { readonly?: boolean } = {}) {
    this.path = path;
    try {
      this.#db = new Database(path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
    } catch (err) {
      throw diskFullError(err, path) ?? new StorageError(`cannot open the shard database ${path}: ${(err as Error).message}`, { code: 'E_SHARD_DB', cause: err });
    }
    try {
      this.#db.pragma('busy_timeout = 30000');
      if (!options.readonly) {
        this.#db.pragma('journal_mode = WAL');
        this.#db.pragma('synchronous = NORMAL');
        this.#migrate();
      }
    } catch (err) {
      // A disk already full at start fails here (SQLITE_IOERR_SHMSIZE mapping -shm, SQLITE_FULL): same message as mid-crawl.
      const full = diskFullError(err, path);
      if (!full) throw err;
      this.#db.close();
      throw full;
    }
    const db = this.#db;
    this.#stmts = {
      getId: db.prepare<[number], { status: IdStatus; attempts: number; incomplete: string | null }>('SELECT status, attempts, incomplete FROM ids WHERE id = ?'),
      putId: db.prepare(
        `INSERT INTO ids (id, status, http_status, attempts, last_error, incomplete, updated_at) VALUES (@id, @status, @httpStatus, @attempts, @lastError, @incomplete, @now)
         ON CONFLICT(id) DO UPDATE SET status = excluded.status, http_status = excluded.http_status,
           attempts = ids.attempts + excluded.attempts, last_error = excluded.last_error, incomplete = excluded.incomplete, updated_at = excluded.updated_at`,
      ),
      putPost: db.prepare('INSERT OR REPLACE INTO posts (id, fields) VALUES (?, ?)'),
      putCapture: db.prepare(
        `INSERT INTO captures (post_id, name, url, http_status, warc, offset, length, request_warc, request_offset, request_length,
           record_id, record_type, payload_digest, fetched_at, revisit_of, content_type, body_bytes)
         VALUES (@postId, @name, @url, @status, @warc, @offset, @length, @requestWarc, @requestOffset, @requestLength,
           @recordId, @recordType, @payloadDigest, @fetchedAt, @revisitOf, @contentType, @bodyBytes)`,
      ),
      findRevisit: db.prepare<[string, string], { record_id: string; url: string; fetched_at: string }>(
        `SELECT record_id, url, fetched_at FROM captures WHERE url = ? AND payload_digest = ? AND record_type = 'response' LIMIT 1`,
      ),
      addUrl: db.prepare(`INSERT OR IGNORE INTO urls (url, post_id, state, updated_at) VALUES (?, ?, 'queued', ?)`),
      setUrl: db.prepare(
        'UPDATE urls SET state = @state, attempts = attempts + @attempts, http_status = @httpStatus, last_error = @lastError, updated_at = @now WHERE url = @url',
      ),
      queuedUrls: db.prepare<[number], { url: string; post_id: number | null; attempts: number }>(
        `SELECT url, post_id, attempts FROM urls WHERE state = 'queued' ORDER BY rowid LIMIT ?`,
      ),
      addRelated: db.prepare('INSERT OR IGNORE INTO related (id) VALUES (?)'),
      takeRelated: db.prepare<[number, number, number], { id: number }>('SELECT id FROM related WHERE id % ? = ? ORDER BY id LIMIT ?'),
      dropRelated: db.prepare('DELETE FROM related WHERE id = ?'),
      putWarc: db.prepare(
        `INSERT INTO warcs (name, size, sha256, records, state) VALUES (@name, @size, @sha256, @records, @state)
         ON CONFLICT(name) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, records = excluded.records, state = excluded.state`,
      ),
      getMeta: db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)'),
    };
  }

  #migrate(): void {
    this.#db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    const row = this.#db.prepare<[], { version: number }>('SELECT version FROM schema_version').get();
    let version = row?.version ?? 0;
    if (version > SCHEMA_VERSION) {
      throw new StorageError(`${this.path} has schema version ${version}; this lifeboat knows up to ${SCHEMA_VERSION}: upgrade lifeboat`, { code: 'E_SHARD_SCHEMA' });
    }
    const tx = this.#db.transaction(() => {
      for (; version < SCHEMA_VERSION; version++) this.#db.exec(MIGRATIONS[version]!);
      this.#db.exec('DELETE FROM schema_version');
      this.#db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(SCHEMA_VERSION);
    });
    tx();
  }

  getMeta(key: string): string | undefined {
    return this.#stmts.getMeta.get(key)?.value;
  }

  setMeta(key: string, value: string): void {
    this.#stmts.setMeta.run(key, value);
  }

  idState(id: number): { status: IdStatus; attempts: number; incomplete: string | null } | undefined {
    return this.#stmts.getId.get(id);
  }

  /**
   * Runs `fn` in one transaction (a group commit). IMMEDIATE takes the write lock up front: with
   * several connections (crawl workers), a deferred transaction that read first could fail to
   * upgrade without waiting (SQLITE_BUSY_SNAPSHOT); this one waits its turn (busy_timeout).
   */
  transaction<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  recordOutcome(o: IdOutcome, now = Date.now()): void {
    this.#stmts.putId.run({ id: o.id, status: o.status, httpStatus: o.httpStatus, attempts: o.attempts, lastError: o.lastError, incomplete: o.incomplete ?? null, now });
    if (o.fieldsJson !== undefined) this.#stmts.putPost.run(o.id, o.fieldsJson);
    else if (o.fields) this.#stmts.putPost.run(o.id, JSON.stringify(o.fields));
  }

  recordCapture(c: CaptureRow): void {
    this.#stmts.putCapture.run({
      postId: c.postId,
      name: c.name,
      url: c.url,
      status: c.status,
      warc: c.response.file,
      offset: c.response.offset,
      length: c.response.length,
      requestWarc: c.request.file,
      requestOffset: c.request.offset,
      requestLength: c.request.length,
      recordId: c.response.recordId,
      recordType: c.response.type,
      payloadDigest: c.payloadDigest,
      fetchedAt: c.fetchedAt,
      revisitOf: c.revisitOf,
      contentType: c.contentType,
      bodyBytes: c.bodyBytes,
    });
  }

  /** Every (URL, payload digest) pair the shard holds, streamed (to fill a SeenFilter). */
  *capturedPairs(): Generator<{ url: string; payload_digest: string }> {
    yield* this.#db.prepare<[], { url: string; payload_digest: string }>('SELECT url, payload_digest FROM captures').iterate();
  }

  captureCount(): number {
    return this.#db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM captures').get()!.n;
  }

  findRevisitTarget(url: string, payloadDigest: string): RevisitTarget | undefined {
    const row = this.#stmts.findRevisit.get(url, payloadDigest);
    return row ? { recordId: row.record_id, url: row.url, date: row.fetched_at } : undefined;
  }

  /** Queues a media URL once per shard; returns false when it was already known. */
  queueUrl(url: string, postId: number | null, now = Date.now()): boolean {
    return this.#stmts.addUrl.run(url, postId, now).changes > 0;
  }

  setUrlState(url: string, state: 'done' | 'failed' | 'skipped' | 'queued', info: { attempts?: number; httpStatus?: number | null; lastError?: string | null } = {}): void {
    this.#stmts.setUrl.run({ url, state, attempts: info.attempts ?? 0, httpStatus: info.httpStatus ?? null, lastError: info.lastError ?? null, now: Date.now() });
  }

  queuedUrls(limit: number): { url: string; postId: number | null; attempts: number }[] {
    return this.#stmts.queuedUrls.all(limit).map((r) => ({ url: r.url, postId: r.post_id, attempts: r.attempts }));
  }

  /** Failed media URLs go back to the queue (a new run retries them). */
  requeueFailedUrls(): number {
    return this.#db.prepare(`UPDATE urls SET state = 'queued' WHERE state = 'failed'`).run().changes;
  }

  /**
   * The IDs within `ranges` whose status is `missing` (issue 21 §1: a post announced before it
   * was readable answers 404). Only `missing`: an archived, gone or restricted ID is never asked again.
   */
  missingIn(ranges: readonly { start: number; end: number }[]): number[] {
    const stmt = this.#db.prepare<[number, number], { id: number }>(`SELECT id FROM ids WHERE status = 'missing' AND id BETWEEN ? AND ? ORDER BY id`);
    return ranges.flatMap((r) => stmt.all(r.start, r.end).map((row) => row.id));
  }

  /**
   * Makes the `missing` IDs within `ranges` not final again, so the next run asks the platform
   * once more (a live edge's recheck, or a curator's `--recheck missing`). Returns how many.
   */
  reopenMissing(ranges: readonly { start: number; end: number }[]): number {
    const stmt = this.#db.prepare(`DELETE FROM ids WHERE status = 'missing' AND id BETWEEN ? AND ?`);
    return this.#db.transaction(() => ranges.reduce((n, r) => n + stmt.run(r.start, r.end).changes, 0))();
  }

  #mayHaveRelated = true;

  addRelated(id: number): void {
    this.#stmts.addRelated.run(id);
    this.#mayHaveRelated = true;
  }

  /** Pops related IDs; asks SQLite only when some may be queued (the frontier calls it per ID). */
  takeRelated(limit: number, partition: { index: number; count: number } = { index: 0, count: 1 }): number[] {
    if (!this.#mayHaveRelated) return [];
    const ids = this.#stmts.takeRelated.all(partition.count, partition.index, limit).map((r) => r.id);
    if (ids.length === 0) this.#mayHaveRelated = false;
    for (const id of ids) this.#stmts.dropRelated.run(id);
    return ids;
  }

  recordWarc(w: ClosedWarc | { name: string; size: number; sha256: string; records: number }, state: 'open' | 'closed'): void {
    this.#stmts.putWarc.run({ ...w, state });
  }

  /** Final IDs as ranges (gaps-and-islands in SQL, streamed): what a resumed run skips. Failed and incomplete IDs are not final. */
  *finalRanges(): Generator<{ start: number; end: number }> {
    const stmt = this.#db.prepare<[], { start: number; end: number }>(
      `SELECT MIN(id) AS start, MAX(id) AS end FROM (
         SELECT id, id - ROW_NUMBER() OVER (ORDER BY id) AS grp FROM ids WHERE status != 'failed' AND incomplete IS NULL)
       GROUP BY grp ORDER BY start`,
    );
    yield* stmt.iterate();
  }

  /** Posts whose media (queued under them) are still to be fetched: a node reports such an ID finished only once they are. */
  postsWithQueuedMedia(): number[] {
    return this.#db
      .prepare<[], { id: number }>(`SELECT DISTINCT post_id AS id FROM urls WHERE state = 'queued' AND post_id IS NOT NULL`)
      .all()
      .map((r) => r.id);
  }

  counts(): Record<IdStatus, number> {
    const out = { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0 } as Record<IdStatus, number>;
    for (const r of this.#db.prepare<[], { status: IdStatus; n: number }>('SELECT status, COUNT(*) AS n FROM ids GROUP BY status').all()) {
      out[r.status] = r.n;
    }
    return out;
  }

  /** The IDs that are incomplete now (a crawl reads them once, at its start). */
  incompleteIds(): number[] {
    return this.#db.prepare<[], { id: number }>('SELECT id FROM ids WHERE incomplete IS NOT NULL').all().map((r) => r.id);
  }

  /**
   * What an earlier run kept of an ID: the names of its captures that answered 2xx, and its
   * stored fields — so a run that crawls an incomplete ID again fetches only what is missing.
   */
  earlierCaptures(id: number): { names: Set<string>; fields: Record<string, unknown> } {
    const names = new Set(
      this.#db.prepare<[number], { name: string }>('SELECT DISTINCT name FROM captures WHERE post_id = ? AND http_status BETWEEN 200 AND 299').all(id).map((r) => r.name),
    );
    const row = this.#db.prepare<[number], { fields: string }>('SELECT fields FROM posts WHERE id = ?').get(id);
    let fields: Record<string, unknown> = {};
    try {
      if (row) fields = JSON.parse(row.fields) as Record<string, unknown>;
    } catch {
      fields = {};
    }
    return { names, fields };
  }

  /** IDs whose status is final but that miss a capture (`ids.incomplete`). */
  incompleteCount(): number {
    return this.#db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM ids WHERE incomplete IS NOT NULL').get()!.n;
  }

  urlCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.#db.prepare<[], { state: string; n: number }>('SELECT state, COUNT(*) AS n FROM urls GROUP BY state').all()) out[r.state] = r.n;
    return out;
  }

  warcs(): { name: string; size: number; sha256: string; records: number; state: string }[] {
    return this.#db.prepare<[], { name: string; size: number; sha256: string; records: number; state: string }>('SELECT * FROM warcs ORDER BY name').all();
  }

  startRun(args: unknown): number {
    return Number(this.#db.prepare('INSERT INTO runs (started_at, args) VALUES (?, ?)').run(new Date().toISOString(), JSON.stringify(args)).lastInsertRowid);
  }

  endRun(runId: number, summary: unknown): void {
    this.#db.prepare('UPDATE runs SET ended_at = ?, summary = ? WHERE id = ?').run(new Date().toISOString(), JSON.stringify(summary), runId);
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}
