import { lstat, readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { MERGED_TABLES, openInputDb, SHARD_TABLES } from './input-db.js';
import { MergedDbReader } from './merge-db.js';
import { ShardDbReader, type RecordLocation } from '../shard/shard-db-read.js';
import { checkInputFile, hashRegularFile } from '../warc/input-file.js';
import { readManifest } from '../shard/shard-manifest.js';
import { lockHolder } from '../shard/dir-lock.js';
import { nodeFolderOf } from '../shard/shard-dir.js';
import { readWarc, type ReadRecord } from '../warc/warc-reader.js';
import { manifestPath, mergedDbPath, shardDbPath, warcsDir } from '../shard/layout.js';

/**
 * `lifeboat verify` (ARCHITECTURE.md "Curator commands"): re-reads every record of every WARC, recomputes its digests,
 * and checks that the shard (or merged) database and manifest agree with the files: every
 * `captures` row points at the start of a real record of the right type, ID and URI, every
 * `archived` ID has its response, every WARC listed in shard.json has that size and sha256.
 * Memory stays flat: the database rows are streamed in (file, offset) order and joined with
 * the records as they are read.
 */
export interface Defect {
  file: string;
  offset?: number;
  what: string;
}

export interface VerifyReport {
  files: number;
  records: number;
  bytes: number;
  /** The first `maxDefects` defects; `defectCount` has them all. */
  defects: Defect[];
  defectCount: number;
  counts: { types: Record<string, number>; ids?: Record<string, number>; dbRows: number };
}

export interface VerifyOptions {
  maxDefects?: number;
  /** Where input databases are snapshotted (they are never opened in place); default the OS temp dir. */
  tmpDir?: string;
  onProgress?: (p: { file: string; records: number; bytes: number }) => void;
}

class Collector {
  readonly report: VerifyReport = { files: 0, records: 0, bytes: 0, defects: [], defectCount: 0, counts: { types: {}, dbRows: 0 } };
  constructor(private readonly max: number) {}
  add(d: Defect): void {
    this.report.defectCount++;
    if (this.report.defects.length < this.max) this.report.defects.push(d);
  }
}


/** Checks one record on its own: digests, required fields. */
function checkRecord(r: ReadRecord, out: Collector): void {
  for (const p of r.problems) out.add({ file: r.file, offset: r.offset, what: `${r.type} record ${r.recordId ?? ''}: ${p}` });
  if (!r.recordId) out.add({ file: r.file, offset: r.offset, what: `${r.type} record has no WARC-Record-ID` });
  if (!r.date) out.add({ file: r.file, offset: r.offset, what: `${r.type} record has no WARC-Date` });
}

/** Reads one WARC (already checked to be a regular file) record by record. */
async function verifyWarc(path: string, size: number, out: Collector, opts: VerifyOptions, onRecord?: (r: ReadRecord) => void): Promise<void> {
  out.report.files++;
  out.report.bytes += size;
  let n = 0;
  try {
    for await (const item of readWarc(path)) {
      if (item.kind === 'defect') {
        out.add({ file: item.file, offset: item.offset, what: item.what });
        continue;
      }
      n++;
      out.report.records++;
      out.report.counts.types[item.type] = (out.report.counts.types[item.type] ?? 0) + 1;
      checkRecord(item, out);
      onRecord?.(item);
      if (opts.onProgress && n % 10000 === 0) opts.onProgress({ file: path, records: out.report.records, bytes: out.report.bytes });
    }
  } catch (err) {
    // Not a WARC defect but the file itself (swapped for a FIFO after the check, an I/O error).
    out.add({ file: path, what: `cannot be read: ${(err as Error).message}` });
  }
}

/** Joins the sorted rows with the records of each file as they are read. */
class RowJoin {
  readonly #it: Iterator<RecordLocation>;
  #row: RecordLocation | undefined;
  constructor(rows: Iterable<RecordLocation>, private readonly out: Collector, private readonly dir: string) {
    this.#it = rows[Symbol.iterator]();
    this.#next();
  }
  #next(): void {
    const r = this.#it.next();
    this.#row = r.done ? undefined : r.value;
    if (this.#row) this.out.report.counts.dbRows++;
  }
  #bad(row: RecordLocation, what: string): void {
    this.out.add({ file: join(this.dir, row.warc), offset: row.offset, what: `${row.what} for ${row.url}: ${what}` });
  }
  /** Rows for files that sort before `name` point at files that do not exist. */
  skipTo(name: string): void {
    while (this.#row && this.#row.warc < name) {
      this.#bad(this.#row, 'its WARC file does not exist');
      this.#next();
    }
  }
  record(name: string, r: ReadRecord): void {
    while (this.#row && this.#row.warc === name && this.#row.offset < r.offset) {
      this.#bad(this.#row, 'no record starts at this offset');
      this.#next();
    }
    while (this.#row && this.#row.warc === name && this.#row.offset === r.offset) {
      const row = this.#row;
      const problems: string[] = [];
      if (r.length !== 0 && row.length !== r.length) problems.push(`length ${row.length}, record is ${r.length}`);
      if (row.type !== r.type) problems.push(`type ${row.type}, record is ${r.type}`);
      if (row.recordId && row.recordId !== r.recordId) problems.push(`record ID ${row.recordId}, record is ${r.recordId}`);
      if (row.url && r.targetUri !== undefined && row.url !== r.targetUri) problems.push(`URL differs from the record's ${r.targetUri}`);
      if (problems.length > 0) this.#bad(row, problems.join('; '));
      this.#next();
    }
  }
  /** Rows of a file that is not read (a running crawl's .open WARC): passed over, not defects. */
  skipFile(name: string): void {
    while (this.#row && this.#row.warc === name) this.#next();
  }
  endFile(name: string): void {
    while (this.#row && this.#row.warc === name) {
      this.#bad(this.#row, 'no record starts at this offset (past the last record)');
      this.#next();
    }
  }
  finish(): void {
    this.skipTo('\uffff');
  }
}

/** The directory's database: `shard.sqlite` (or a merge's `merged.sqlite`), opened from a snapshot. */
async function openDirDb(dir: string, out: Collector, opts: VerifyOptions): Promise<{ db: ShardDbReader | MergedDbReader; path: string; close: () => Promise<void> } | undefined> {
  const candidates = [
    { path: shardDbPath(dir), tables: SHARD_TABLES, reader: (db: Database.Database) => new ShardDbReader(db) },
    { path: mergedDbPath(dir), tables: MERGED_TABLES, reader: (db: Database.Database) => new MergedDbReader(db) },
  ];
  for (const c of candidates) {
    if (!(await lstat(c.path).catch(() => undefined))) continue;
    const opened = await openInputDb(c.path, { root: dir, tmpDir: opts.tmpDir ?? tmpdir(), tables: c.tables });
    if (opened.ok) return { db: c.reader(opened.db), path: c.path, close: opened.close };
    out.add({ file: c.path, what: `${opened.what}; the WARCs are checked on their own` });
    return undefined;
  }
  out.add({ file: dir, what: 'no shard.sqlite or merged.sqlite' });
  return undefined;
}

async function verifyDir(dir: string, out: Collector, opts: VerifyOptions): Promise<void> {
  const warcDir = warcsDir(dir);
  let names: string[];
  try {
    names = (await readdir(warcDir)).filter((n) => /\.warc(\.gz)?(\.open)?$/.test(n)).sort();
  } catch {
    out.add({ file: dir, what: 'not a shard or merge directory (no warcs/)' });
    return;
  }
  const manifest = await readManifest(dir).catch((err: Error) => {
    out.add({ file: manifestPath(dir), what: err.message });
    return undefined;
  });
  const listed = new Map((manifest?.warcs ?? []).map((w) => [w.name, w]));
  // A crawl (or a node's crawl of this item) writing here now: its .open WARC is its own, not a
  // defect, and not read (its last record may be half-written); shard.json is written when it ends.
  const live = lockHolder(dir) !== undefined;
  const node = nodeFolderOf(dir);
  const input = await openDirDb(dir, out, opts);
  try {
    const join_ = new RowJoin(input ? input.db.recordLocations() : [], out, warcDir);
    for (const name of names) {
      const path = join(warcDir, name);
      const finalName = name.replace(/\.open$/, '');
      const check = await checkInputFile(path, dir);
      listed.delete(name);
      if (name.endsWith('.open') && live && !check.ok && !(await lstat(path).catch(() => undefined))) {
        // The running crawl closed it (renamed to its final name) since the listing.
        join_.skipTo(finalName);
        join_.skipFile(finalName);
        continue;
      }
      if (!check.ok) {
        out.add({ file: path, what: check.what });
        continue;
      }
      if (name.endsWith('.open') && live) {
        join_.skipTo(finalName);
        join_.skipFile(finalName);
        continue;
      }
      if (name.endsWith('.open')) {
        out.add({
          file: path,
          what: node
            ? `unfinished WARC (.open): the node stopped during this item; start the node again on ${node} (lifeboat node --out ${node} …) to repair it`
            : 'unfinished WARC (.open): a crawl is running or crashed; run the crawl again to repair it',
        });
      }
      join_.skipTo(finalName);
      await verifyWarc(path, check.size, out, opts, (r) => join_.record(finalName, r));
      join_.endFile(finalName);
      if (manifest && !name.endsWith('.open')) {
        const entry = manifest.warcs?.find((w) => w.name === name);
        if (!entry) {
          if (!live) out.add({ file: path, what: 'not listed in shard.json' });
        }
        else {
          const actual = await hashRegularFile(path).catch((err: Error) => err);
          if (actual instanceof Error) out.add({ file: path, what: `cannot be read: ${actual.message}` });
          else if (actual.size !== entry.size) out.add({ file: path, what: `size ${actual.size}, shard.json says ${entry.size}` });
          else if (actual.sha256 !== entry.sha256) out.add({ file: path, what: 'sha256 differs from shard.json' });
        }
      }
    }
    join_.finish();
    for (const name of listed.keys()) out.add({ file: join(warcDir, name), what: 'listed in shard.json but missing' });
    if (input) checkIds(input.db, input.path, out, manifest?.counts);
    else if ((manifest?.counts?.archived ?? 0) > 0) {
      out.add({ file: manifestPath(dir), what: `lists ${manifest!.counts!.archived} archived IDs that no readable database confirms` });
    }
  } finally {
    await input?.close();
  }
}

function checkIds(db: ShardDbReader | MergedDbReader, dbPath: string, out: Collector, manifestCounts: Record<string, number> | undefined): void {
  if (!db.hasTables('ids', 'captures')) return;
  const ids = db.idCounts();
  out.report.counts.ids = ids;
  const listedArchived = manifestCounts?.archived;
  if (typeof listedArchived === 'number' && listedArchived > (ids.archived ?? 0)) {
    out.add({ file: dbPath, what: `${ids.archived ?? 0} archived IDs, but shard.json counts ${listedArchived}` });
  }
  for (const id of db.archivedWithoutCapture()) out.add({ file: dbPath, what: `ID ${id} is archived but has no 2xx capture` });
}

/** Verifies shard directories, merge directories and bare WARC files. Non-zero `defectCount`: the CLI exits 1. */
export async function verifyPaths(paths: string[], options: VerifyOptions = {}): Promise<VerifyReport> {
  const out = new Collector(options.maxDefects ?? 10_000);
  for (const p of paths) {
    let isDir: boolean;
    try {
      isDir = (await stat(p)).isDirectory();
    } catch {
      out.add({ file: p, what: 'no such file or directory' });
      continue;
    }
    if (isDir) {
      await verifyDir(p, out, options);
      continue;
    }
    const check = await checkInputFile(p);
    if (check.ok) await verifyWarc(p, check.size, out, options);
    else out.add({ file: p, what: check.what });
  }
  return out.report;
}
