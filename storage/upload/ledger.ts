/**
 * The upload ledger: the `uploads` table in `DIR/shard.sqlite`, one row per (file, target,
 * endpoint). It records where each file goes, its size and sha256, the open multipart
 * UploadId and every part that landed (number, ETag, size) as it lands, so a run killed
 * mid-upload resumes without re-sending parts, and `lifeboat status` can show what is where.
 *
 * The shard database belongs to the crawler; this module only creates its own table
 * (`CREATE TABLE IF NOT EXISTS`) and opens the file in WAL mode with a busy timeout. Opening
 * the ledger takes the directory's lock (dir-lock.ts), so an upload waits for no crawl: it is
 * refused while one runs on the same directory (issue 10 §2).
 */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { StorageError } from '../../config/errors.js';
import { acquireDirLock, type DirLock } from '../shard/dir-lock.js';
import { openForReading } from '../shard/sqlite-read.js';
import { shardDbPath } from '../shard/layout.js';

export const UPLOAD_STATES = ['pending', 'uploading', 'verified'] as const;
export type UploadState = (typeof UPLOAD_STATES)[number];

export interface LedgerPart {
  /** 1-based part number. */
  n: number;
  etag: string;
  size: number;
}

export interface UploadRecord {
  /** Shard-relative file name, e.g. `warcs/demo-…warc.gz`. */
  file: string;
  /** `s3://bucket/prefix` or `ia://identifier`. */
  target: string;
  /** Endpoint URL, or `''` for the default one of the scheme. */
  endpoint: string;
  /** Object key (S3) or item path (IA). */
  key: string;
  size: number;
  mtimeMs: number | undefined;
  sha256: string | undefined;
  /** The store's ETag of the verified object (compared on re-runs to notice a replaced object). */
  etag: string | undefined;
  uploadId: string | undefined;
  partSizeBytes: number | undefined;
  parts: LedgerPart[];
  state: UploadState;
  lastError: string | undefined;
  updatedAt: string;
  uploadedAt: string | undefined;
}

interface Row {
  file: string;
  target: string;
  endpoint: string;
  key: string;
  size: number;
  mtime_ms: number | null;
  sha256: string | null;
  etag: string | null;
  upload_id: string | null;
  part_size: number | null;
  parts: string;
  state: UploadState;
  last_error: string | null;
  updated_at: string;
  uploaded_at: string | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS uploads (
  file        TEXT NOT NULL,
  target      TEXT NOT NULL,
  endpoint    TEXT NOT NULL DEFAULT '',
  key         TEXT NOT NULL,
  size        INTEGER NOT NULL,
  mtime_ms    REAL,
  sha256      TEXT,
  etag        TEXT,
  upload_id   TEXT,
  part_size   INTEGER,
  parts       TEXT NOT NULL DEFAULT '[]',
  state       TEXT NOT NULL CHECK (state IN ('pending', 'uploading', 'verified')),
  last_error  TEXT,
  updated_at  TEXT NOT NULL,
  uploaded_at TEXT,
  PRIMARY KEY (file, target, endpoint)
)`;

function toRecord(row: Row): UploadRecord {
  return {
    file: row.file,
    target: row.target,
    endpoint: row.endpoint,
    key: row.key,
    size: row.size,
    mtimeMs: row.mtime_ms ?? undefined,
    sha256: row.sha256 ?? undefined,
    etag: row.etag ?? undefined,
    uploadId: row.upload_id ?? undefined,
    partSizeBytes: row.part_size ?? undefined,
    parts: JSON.parse(row.parts) as LedgerPart[],
    state: row.state,
    lastError: row.last_error ?? undefined,
    updatedAt: row.updated_at,
    uploadedAt: row.uploaded_at ?? undefined,
  };
}

export interface LedgerKey {
  file: string;
  target: string;
  endpoint: string;
}

/** Owns one connection to `DIR/shard.sqlite`; close it when the run ends. */
export class UploadLedger {
  readonly #db: Database.Database;
  readonly #get: Database.Statement<[string, string, string], Row>;
  readonly #all: Database.Statement<[], Row>;
  readonly #begin: Database.Statement;
  readonly #setUploadId: Database.Statement;
  readonly #setParts: Database.Statement;
  readonly #verify: Database.Statement;
  readonly #fail: Database.Statement;

  readonly #lock: DirLock;

  private constructor(db: Database.Database, lock: DirLock) {
    this.#db = db;
    this.#lock = lock;
    db.exec(SCHEMA);
    this.#get = db.prepare('SELECT * FROM uploads WHERE file = ? AND target = ? AND endpoint = ?');
    this.#all = db.prepare('SELECT * FROM uploads ORDER BY target, endpoint, file');
    this.#begin = db.prepare(`
      INSERT INTO uploads (file, target, endpoint, key, size, mtime_ms, sha256, upload_id, part_size, parts, state, last_error, updated_at)
      VALUES (@file, @target, @endpoint, @key, @size, @mtimeMs, @sha256, NULL, @partSize, '[]', 'pending', NULL, @now)
      ON CONFLICT (file, target, endpoint) DO UPDATE SET
        key = excluded.key, size = excluded.size, mtime_ms = excluded.mtime_ms, sha256 = excluded.sha256,
        etag = NULL, upload_id = NULL, part_size = excluded.part_size, parts = '[]', state = 'pending', last_error = NULL,
        updated_at = excluded.updated_at, uploaded_at = NULL`);
    this.#setUploadId = db.prepare(
      `UPDATE uploads SET upload_id = ?, state = 'uploading', updated_at = ? WHERE file = ? AND target = ? AND endpoint = ?`,
    );
    this.#setParts = db.prepare(`UPDATE uploads SET parts = ?, updated_at = ? WHERE file = ? AND target = ? AND endpoint = ?`);
    this.#verify = db.prepare(
      `UPDATE uploads SET state = 'verified', upload_id = NULL, last_error = NULL, updated_at = @now, uploaded_at = @now,
         size = @size, mtime_ms = @mtimeMs, sha256 = @sha256, etag = @etag, key = @key
       WHERE file = @file AND target = @target AND endpoint = @endpoint`,
    );
    this.#fail = db.prepare(
      `UPDATE uploads SET last_error = ?, state = CASE WHEN state = 'verified' THEN 'pending' ELSE state END, updated_at = ?
       WHERE file = ? AND target = ? AND endpoint = ?`,
    );
  }

  /**
   * Opens (creating if needed) `DIR/shard.sqlite` and ensures the `uploads` table exists. Takes
   * DIR's lock (dir-lock.ts): an upload never runs beside a crawl, merge or another upload of DIR.
   */
  static open(dir: string): UploadLedger {
    const path = shardDbPath(dir);
    const lock = acquireDirLock(dir, 'upload');
    try {
      const db = new Database(path);
      db.pragma('journal_mode = WAL');
      db.pragma('busy_timeout = 5000');
      return new UploadLedger(db, lock);
    } catch (err) {
      lock.release();
      throw new StorageError(`${path}: cannot open the shard database for the upload ledger: ${(err as Error).message}`, {
        code: 'E_UPLOAD_LEDGER',
        cause: err,
      });
    }
  }

  get(key: LedgerKey): UploadRecord | undefined {
    const row = this.#get.get(key.file, key.target, key.endpoint);
    return row ? toRecord(row) : undefined;
  }

  all(): UploadRecord[] {
    return this.#all.all().map(toRecord);
  }

  /** Starts (or restarts from scratch) the upload of a file: state pending, no parts. */
  begin(key: LedgerKey, info: { key: string; size: number; mtimeMs: number; sha256: string; partSizeBytes?: number }): void {
    this.#begin.run({
      ...key,
      key: info.key,
      size: info.size,
      mtimeMs: info.mtimeMs,
      sha256: info.sha256,
      partSize: info.partSizeBytes ?? null,
      now: new Date().toISOString(),
    });
  }

  setUploadId(key: LedgerKey, uploadId: string): void {
    this.#setUploadId.run(uploadId, new Date().toISOString(), key.file, key.target, key.endpoint);
  }

  /** Records one landed part (replacing an earlier record of the same number) in one transaction. */
  addPart(key: LedgerKey, part: LedgerPart): void {
    this.#db.transaction(() => {
      const row = this.#get.get(key.file, key.target, key.endpoint);
      if (!row) throw new StorageError(`upload ledger: no row for ${key.file} → ${key.target}`, { code: 'E_UPLOAD_LEDGER' });
      const parts = (JSON.parse(row.parts) as LedgerPart[]).filter((p) => p.n !== part.n);
      parts.push(part);
      parts.sort((a, b) => a.n - b.n);
      this.#setParts.run(JSON.stringify(parts), new Date().toISOString(), key.file, key.target, key.endpoint);
    })();
  }

  /** Replaces the part list (after ListParts told us what the store really holds). */
  setParts(key: LedgerKey, parts: LedgerPart[]): void {
    this.#setParts.run(JSON.stringify(parts), new Date().toISOString(), key.file, key.target, key.endpoint);
  }

  /** Marks a file verified: only call after size and checksum were checked on the store. */
  markVerified(key: LedgerKey, info: { key: string; size: number; mtimeMs: number; sha256: string; etag?: string }): void {
    this.#verify.run({ ...key, ...info, etag: info.etag ?? null, now: new Date().toISOString() });
  }

  /** Notes the last error; a row that was verified goes back to pending (the store disagreed). */
  noteError(key: LedgerKey, message: string): void {
    this.#fail.run(message, new Date().toISOString(), key.file, key.target, key.endpoint);
  }

  /** Writes a consistent copy of the whole shard database (WAL included) to `path`. */
  async snapshot(path: string): Promise<void> {
    await this.#db.backup(path);
  }

  close(): void {
    if (this.#db.open) this.#db.close();
    this.#lock.release();
  }
}

/**
 * What was uploaded where, for `lifeboat status`. Returns `[]` for a shard without a database
 * or without an `uploads` table (never creates either).
 */
export function listUploads(dir: string): UploadRecord[] {
  const path = shardDbPath(dir);
  if (!existsSync(path)) return [];
  const db = openForReading(path);
  try {
    db.pragma('busy_timeout = 5000');
    const exists = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'uploads'`).get();
    if (!exists) return [];
    return (db.prepare('SELECT * FROM uploads ORDER BY target, endpoint, file').all() as Row[]).map(toRecord);
  } finally {
    db.close();
  }
}
