import Database from 'better-sqlite3';
import { StorageError } from '../../config/errors.js';
import { missingRanges } from './coverage.js';
import { archivedWithoutCapture, idCounts, tableNames, type RecordLocation } from '../shard/shard-db-read.js';
import { openForReading } from '../shard/sqlite-read.js';

/**
 * The merged database (`OUT/merged.sqlite`): where every kept record is, what every dropped
 * duplicate was a copy of, each ID's final status and which input gave it, and the provenance
 * of every merged input. Everything the CDXJ index, the coverage report, `status` and `verify`
 * need comes from here, so an incremental merge never re-reads the WARCs already merged.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inputs (id INTEGER PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL, digest TEXT NOT NULL,
  profile TEXT, node TEXT, software TEXT, merged_at TEXT NOT NULL, records_read INTEGER NOT NULL DEFAULT 0,
  records_kept INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0, defects INTEGER NOT NULL DEFAULT 0, bytes_read INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS inputs_digest ON inputs(digest);
CREATE TABLE IF NOT EXISTS input_warcs (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, size INTEGER NOT NULL, input_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (record_id TEXT PRIMARY KEY, type TEXT NOT NULL, url TEXT, surt TEXT, ts TEXT, date TEXT,
  mime TEXT, status INTEGER, payload_digest TEXT, cdx_digest TEXT, warc TEXT NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
  input_id INTEGER NOT NULL, encoding TEXT);
CREATE INDEX IF NOT EXISTS records_key ON records(url, payload_digest);
CREATE INDEX IF NOT EXISTS records_surt ON records(surt, ts);
CREATE TABLE IF NOT EXISTS duplicates (record_id TEXT PRIMARY KEY, kept_record_id TEXT, type TEXT NOT NULL, url TEXT,
  payload_digest TEXT, date TEXT, input_id INTEGER NOT NULL, warc TEXT, offset INTEGER, length INTEGER);
CREATE TABLE IF NOT EXISTS ids (id INTEGER PRIMARY KEY, status TEXT NOT NULL, http_status INTEGER, input_id INTEGER NOT NULL, updated_at INTEGER);
CREATE INDEX IF NOT EXISTS ids_status ON ids(status);
CREATE TABLE IF NOT EXISTS id_conflicts (id INTEGER NOT NULL, status TEXT NOT NULL, input_id INTEGER NOT NULL, other_status TEXT NOT NULL, other_input_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS captures (post_id INTEGER, name TEXT, url TEXT NOT NULL, http_status INTEGER, record_id TEXT NOT NULL,
  payload_digest TEXT, fetched_at TEXT, content_type TEXT, input_id INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS captures_post ON captures(post_id);
CREATE TABLE IF NOT EXISTS posts (id INTEGER NOT NULL, input_id INTEGER NOT NULL, fields TEXT NOT NULL, PRIMARY KEY (id, input_id));
CREATE TABLE IF NOT EXISTS requested (input_id INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS media_left (url TEXT NOT NULL, state TEXT NOT NULL, input_id INTEGER NOT NULL, reason TEXT, PRIMARY KEY (url, input_id));
CREATE TABLE IF NOT EXISTS defects (input_id INTEGER, file TEXT NOT NULL, offset INTEGER, what TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS warcs (name TEXT PRIMARY KEY, size INTEGER, sha256 TEXT, records INTEGER, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decoded (record_id TEXT PRIMARY KEY, digest TEXT);
`;

export interface KeptRecordRow {
  recordId: string;
  type: string;
  url: string | null;
  surt: string | null;
  ts: string | null;
  date: string | null;
  mime: string | null;
  status: number | null;
  payloadDigest: string | null;
  cdxDigest: string | null;
  /** The HTTP Content-Encoding and Transfer-Encoding of a response (`gzip`, `br+chunked`), null when neither. */
  encoding: string | null;
  warc: string;
  offset: number;
  length: number;
  inputId: number;
}

export interface DuplicateRow {
  recordId: string;
  keptRecordId: string | null;
  type: string;
  url: string | null;
  payloadDigest: string | null;
  date: string | null;
  inputId: number;
  /** Index-only merges: where the duplicate stays (relative to the output folder); null when it was dropped by not copying it. */
  warc?: string | null;
  offset?: number | null;
  length?: number | null;
}

/** Status precedence when inputs disagree: what we hold beats what we could not get. */
export const STATUS_RANK_SQL = (col: string): string =>
  `(CASE ${col} WHEN 'archived' THEN 5 WHEN 'restricted' THEN 4 WHEN 'gone' THEN 3 WHEN 'missing' THEN 2 ELSE 1 END)`;

export class MergedDb {
  readonly db: Database.Database;
  readonly #s;

  constructor(path: string) {
    try {
      this.db = new Database(path);
    } catch (err) {
      throw new StorageError(`cannot open the merged database ${path}: ${(err as Error).message}`, { code: 'E_MERGE_DB', cause: err });
    }
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    // Merged directories written before issue 15 lack the encoding column.
    if (!this.db.prepare<[], { name: string }>('PRAGMA table_info(records)').all().some((c) => c.name === 'encoding')) this.db.exec('ALTER TABLE records ADD COLUMN encoding TEXT');
    // …and before issue 21 the reason a media URL failed.
    if (!this.db.prepare<[], { name: string }>('PRAGMA table_info(media_left)').all().some((c) => c.name === 'reason')) this.db.exec('ALTER TABLE media_left ADD COLUMN reason TEXT');
    // ... and before issue 25 where an index-only merge's duplicates stay.
    if (!this.db.prepare<[], { name: string }>('PRAGMA table_info(duplicates)').all().some((c) => c.name === 'warc')) {
      this.db.exec('ALTER TABLE duplicates ADD COLUMN warc TEXT; ALTER TABLE duplicates ADD COLUMN offset INTEGER; ALTER TABLE duplicates ADD COLUMN length INTEGER');
    }
    const db = this.db;
    this.#s = {
      knownId: db.prepare<[string, string], { n: number }>('SELECT 1 AS n FROM records WHERE record_id = ? UNION ALL SELECT 1 FROM duplicates WHERE record_id = ? LIMIT 1'),
      byKey: db.prepare<[string, string], { record_id: string }>(`SELECT record_id FROM records WHERE url = ? AND payload_digest = ? AND type IN ('response', 'resource') LIMIT 1`),
      putRecord: db.prepare(
        `INSERT OR IGNORE INTO records (record_id, type, url, surt, ts, date, mime, status, payload_digest, cdx_digest, warc, offset, length, input_id, encoding)
         VALUES (@recordId, @type, @url, @surt, @ts, @date, @mime, @status, @payloadDigest, @cdxDigest, @warc, @offset, @length, @inputId, @encoding)`,
      ),
      putDuplicate: db.prepare(
        `INSERT OR IGNORE INTO duplicates (record_id, kept_record_id, type, url, payload_digest, date, input_id, warc, offset, length)
         VALUES (@recordId, @keptRecordId, @type, @url, @payloadDigest, @date, @inputId, @warc, @offset, @length)`,
      ),
      putDefect: db.prepare('INSERT INTO defects (input_id, file, offset, what) VALUES (?, ?, ?, ?)'),
      knownWarc: db.prepare<[string], { input_id: number }>('SELECT input_id FROM input_warcs WHERE sha256 = ?'),
      putWarcInput: db.prepare('INSERT OR IGNORE INTO input_warcs (sha256, name, size, input_id) VALUES (?, ?, ?, ?)'),
      putWarc: db.prepare(
        `INSERT INTO warcs (name, size, sha256, records, state) VALUES (@name, @size, @sha256, @records, @state)
         ON CONFLICT(name) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, records = excluded.records, state = excluded.state`,
      ),
    };
  }

  isKnownRecord(recordId: string): boolean {
    return this.#s.knownId.get(recordId, recordId) !== undefined;
  }

  /** The kept response/resource with this URL and payload digest, if any. */
  keptByKey(url: string, payloadDigest: string): string | undefined {
    return this.#s.byKey.get(url, payloadDigest)?.record_id;
  }

  putRecord(r: KeptRecordRow): void {
    this.#s.putRecord.run(r);
  }

  putDuplicate(d: DuplicateRow): void {
    this.#s.putDuplicate.run({ warc: null, offset: null, length: null, ...d });
  }

  putDefect(inputId: number | null, file: string, offset: number | undefined, what: string): void {
    this.#s.putDefect.run(inputId, file, offset ?? null, what);
  }

  /** Which input already merged a WARC with this sha256, if any. */
  mergedWarc(sha256: string): number | undefined {
    return this.#s.knownWarc.get(sha256)?.input_id;
  }

  putInputWarc(sha256: string, name: string, size: number, inputId: number): void {
    this.#s.putWarcInput.run(sha256, name, size, inputId);
  }

  /** A merged WARC (`open`, `closed`), or an input WARC an index-only merge points into (`referenced`, named relative to the output folder). */
  putWarc(w: { name: string; size: number; sha256: string; records: number }, state: 'open' | 'closed' | 'referenced'): void {
    this.#s.putWarc.run({ ...w, state });
  }

  inputCount(): number {
    return this.db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM inputs').get()!.n;
  }

  inputByDigest(digest: string): { id: number; path: string } | undefined {
    return this.db.prepare<[string], { id: number; path: string }>('SELECT id, path FROM inputs WHERE digest = ? LIMIT 1').get(digest);
  }

  addInput(i: { path: string; kind: 'shard' | 'warc'; digest: string; profile?: string; node?: string; software?: string }): number {
    return Number(
      this.db
        .prepare('INSERT INTO inputs (path, kind, digest, profile, node, software, merged_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(i.path, i.kind, i.digest, i.profile ?? null, i.node ?? null, i.software ?? null, new Date().toISOString()).lastInsertRowid,
    );
  }

  updateInput(id: number, s: { recordsRead: number; recordsKept: number; duplicates: number; defects: number; bytesRead: number }): void {
    this.db
      .prepare('UPDATE inputs SET records_read = ?, records_kept = ?, duplicates = ?, defects = ?, bytes_read = ? WHERE id = ?')
      .run(s.recordsRead, s.recordsKept, s.duplicates, s.defects, s.bytesRead, id);
  }

  /** A `meta` value (`prefix`: the name merged WARCs start with). */
  meta(key: string): string | undefined {
    return this.db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?').get(key)?.value;
  }

  setMeta(key: string, value: string): void {
    this.db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(key, value);
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/**
 * The read side of a merged database for the curator commands (status, verify, export). The
 * handle comes from `openForReading` (`MergedDbReader.open`) or an input snapshot (input-db.ts);
 * `close` is for the first. The report builders that own one concern each — coverage.ts,
 * cdxj.ts, wacz-pages.ts, post-search.ts — take `sqlite` and keep their queries to themselves.
 */
export class MergedDbReader {
  readonly #db: Database.Database;

  constructor(db: Database.Database) {
    this.#db = db;
  }

  static open(path: string): MergedDbReader {
    return new MergedDbReader(openForReading(path));
  }

  /** The handle, for the merged database's report modules (coverage, CDXJ, pages, search). */
  get sqlite(): Database.Database {
    return this.#db;
  }

  close(): void {
    this.#db.close();
  }

  hasTables(...names: string[]): boolean {
    const tables = tableNames(this.#db);
    return names.every((n) => tables.has(n));
  }

  meta(key: string): string | undefined {
    return this.#db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?').get(key)?.value;
  }

  idCounts(): Record<string, number> {
    return idCounts(this.#db);
  }

  /** IDs inside some input's requested ranges with no final status (coverage.ts), streamed. */
  missingRanges(): Iterable<{ start: number; end: number }> {
    return missingRanges(this.#db);
  }

  responseCount(): number {
    return this.#db.prepare<[], { n: number }>(`SELECT COUNT(*) AS n FROM records WHERE type = 'response'`).get()!.n;
  }

  /** The first and last WARC-Date of the kept responses and resources. */
  captureSpan(): { first: string | null; last: string | null } {
    return this.#db.prepare<[], { first: string | null; last: string | null }>(`SELECT MIN(date) AS first, MAX(date) AS last FROM records WHERE type IN ('response', 'resource')`).get()!;
  }

  inputCount(): number {
    return this.#db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM inputs').get()!.n;
  }

  /** The inputs merged so far, in merge order. */
  inputSummaries(): { path: string; kind: string; node: string | null; mergedAt: string; recordsKept: number; defects: number }[] {
    return this.#db
      .prepare<[], { path: string; kind: string; node: string | null; mergedAt: string; recordsKept: number; defects: number }>(
        'SELECT path, kind, node, merged_at AS mergedAt, records_kept AS recordsKept, defects FROM inputs ORDER BY id',
      )
      .all();
  }

  /** The earliest date `url` was captured with a usable answer (no 4xx/5xx), if it was. */
  firstGoodCaptureDate(url: string): string | undefined {
    return (
      this.#db
        .prepare<[string], { date: string | null }>(
          `SELECT MIN(date) AS date FROM records WHERE url = ? AND type IN ('response', 'revisit', 'resource') AND (status IS NULL OR status < 400)`,
        )
        .get(url)?.date ?? undefined
    );
  }

  /** Media URLs left over by the inputs (per state) that no input fetched after all. */
  unfetchedMediaStates(): Record<string, number> {
    const out: Record<string, number> = {};
    const rows = this.#db.prepare<[], { state: string; n: number }>(
      `SELECT state, COUNT(DISTINCT url) AS n FROM media_left m
       WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.url = m.url AND r.type IN ('response', 'revisit')) GROUP BY state`,
    );
    for (const r of rows.iterate()) out[r.state] = r.n;
    return out;
  }

  /** The input WARCs an index-only merge points into (named relative to its folder), sorted by name. */
  referencedWarcs(): { name: string; size: number; sha256: string }[] {
    if (!this.hasTables('warcs')) return [];
    return this.#db.prepare<[], { name: string; size: number; sha256: string }>(`SELECT name, size, sha256 FROM warcs WHERE state = 'referenced' ORDER BY name`).all();
  }

  /** Every kept record, sorted by (file, offset); streamed. */
  recordLocations(): Iterable<RecordLocation> {
    return this.#db
      .prepare<[], RecordLocation>(`SELECT warc, offset, length, record_id AS recordId, type, url, 'records row' AS what FROM records ORDER BY warc, offset`)
      .iterate();
  }

  archivedWithoutCapture(): Iterable<number> {
    return archivedWithoutCapture(this.#db);
  }
}
