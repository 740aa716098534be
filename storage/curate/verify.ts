import { lstat, readdir, stat } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type Database from 'better-sqlite3';
import { MERGED_TABLES, openInputDb, SHARD_TABLES } from './input/input-db.js';
import { MergedDbReader } from './merge-db.js';
import { ShardDbReader, type RecordLocation } from '../shard/shard-db-read.js';
import { checkInputFile } from '../warc/input-file.js';
import { readManifest } from '../shard/shard-manifest.js';
import { lockHolder } from '../shard/dir-lock.js';
import { nodeFolderOf } from '../shard/shard-dir.js';
import type { ScanEvent, VerifyRecord } from './input/scan-files.js';
import { ScanPool } from './input/scan-pool.js';
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
  /** Files read and digest-checked at once, on worker threads (default: the number of cores; 1: in-process). */
  jobs?: number;
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
function checkRecord(file: string, r: VerifyRecord, out: Collector): void {
  for (const p of r.problems) out.add({ file, offset: r.offset, what: `${r.type} record ${r.recordId ?? ''}: ${p}` });
  if (!r.recordId) out.add({ file, offset: r.offset, what: `${r.type} record has no WARC-Record-ID` });
  if (!r.date) out.add({ file, offset: r.offset, what: `${r.type} record has no WARC-Date` });
}

/** Consumes one WARC's scan (the file already checked to be a regular file); returns its sha256 when the scan hashed it. */
async function verifyWarc(path: string, size: number, scan: AsyncIterable<ScanEvent>, out: Collector, opts: VerifyOptions, onRecord?: (r: VerifyRecord) => void): Promise<{ sha256: string; size: number } | Error | undefined> {
  out.report.files++;
  out.report.bytes += size;
  let hashed: { sha256: string; size: number } | Error | undefined;
  for await (const ev of scan) {
    if (ev.k === 'defect') out.add({ file: ev.file, offset: ev.offset, what: ev.what });
    else if (ev.k === 'vrecord') {
      const r = ev.rec;
      out.report.records++;
      out.report.counts.types[r.type] = (out.report.counts.types[r.type] ?? 0) + 1;
      checkRecord(path, r, out);
      onRecord?.(r);
    } else if (ev.k === 'progress') opts.onProgress?.({ file: path, records: out.report.records, bytes: out.report.bytes });
    else if (ev.k === 'hashed') hashed = ev;
    // Not a WARC defect but the file itself (swapped for a FIFO after the check, an I/O error).
    else if (ev.k === 'unreadable') {
      if (ev.stage === 'hash') hashed = new Error(ev.message);
      else out.add({ file: path, what: `cannot be read: ${ev.message}` });
    }
  }
  return hashed;
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
  record(name: string, r: VerifyRecord): void {
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
async function openDirDb(dir: string, out: { add: (d: Defect) => void }, opts: VerifyOptions): Promise<{ db: ShardDbReader | MergedDbReader; path: string; close: () => Promise<void> } | undefined> {
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

/**
 * A directory's plan, made before any file is read so that every file's scan can be started at
 * once (on `jobs` workers): its WARCs and their checks, its manifest and database, and the
 * defects found on the way, reported in the order a file-by-file run reports them.
 *
 * An index-only merge output (merged.sqlite `meta.mode` = `index-only`) has no WARCs of its own:
 * its files are the input WARCs merged.sqlite's `warcs` table references (by paths relative to
 * the folder), each checked against the size and sha256 recorded when it was merged.
 */
interface DirPlan {
  dir: string;
  early: Defect[];
  manifest: Awaited<ReturnType<typeof readManifest>>;
  input: Awaited<ReturnType<typeof openDirDb>>;
  /** Where the database's `warc` names are relative to. */
  base: string;
  files: { name: string; path: string; finalName: string; what?: string; size: number; scan?: AsyncIterable<ScanEvent>; expect?: { size: number | undefined; sha256: string | undefined } | null; skip?: boolean }[];
  /** A crawl (or a node's crawl of this item) is writing here now: its .open WARC is its own, not read and not a defect. */
  live: boolean;
  /** The node folder this item belongs to, if any (for the message about an .open WARC). */
  node: string | undefined;
  /** Listed (in shard.json, or referenced by an index-only merge) but not found. */
  listedMissing: string[];
}

async function planDir(dir: string, opts: VerifyOptions, pool: ScanPool): Promise<DirPlan | Defect> {
  const warcDir = warcsDir(dir);
  let names: string[];
  try {
    names = (await readdir(warcDir)).filter((n) => /\.warc(\.gz)?(\.open)?$/.test(n)).sort();
  } catch {
    return { file: dir, what: 'not a shard or merge directory (no warcs/)' };
  }
  const early: Defect[] = [];
  const manifest = await readManifest(dir).catch((err: Error) => {
    early.push({ file: manifestPath(dir), what: err.message });
    return undefined;
  });
  const input = await openDirDb(dir, { add: (d) => early.push(d) }, opts);
  const referenced = input?.db instanceof MergedDbReader && input.db.meta('mode') === 'index-only' ? input.db.referencedWarcs() : undefined;
  const plan: DirPlan = { dir, early, manifest, input, base: referenced ? dir : warcDir, files: [], listedMissing: [], live: lockHolder(dir) !== undefined, node: nodeFolderOf(dir) };
  if (referenced) {
    for (const w of referenced) {
      const path = resolve(dir, w.name);
      const check = await checkInputFile(path);
      if (!check.ok) {
        if (/ENOENT/.test(check.what)) plan.listedMissing.push(w.name);
        else plan.files.push({ name: w.name, path, finalName: w.name, what: check.what, size: 0 });
        continue;
      }
      plan.files.push({ name: w.name, path, finalName: w.name, size: check.size, expect: w, scan: pool.submit({ kind: 'verify', path, hash: true }) });
    }
    return plan;
  }
  const listed = new Map((manifest?.warcs ?? []).map((w) => [w.name, w]));
  for (const name of names) {
    const path = join(warcDir, name);
    const finalName = name.replace(/\.open$/, '');
    const check = await checkInputFile(path, dir);
    listed.delete(name);
    if (name.endsWith('.open') && plan.live && (check.ok || !(await lstat(path).catch(() => undefined)))) {
      // A running crawl's own file (or closed and renamed by it since the listing): passed over, not read.
      plan.files.push({ name, path, finalName, size: 0, skip: true });
      continue;
    }
    if (!check.ok) {
      plan.files.push({ name, path, finalName, what: check.what, size: 0 });
      continue;
    }
    const entry = manifest && !name.endsWith('.open') ? (manifest.warcs?.find((w) => w.name === name) ?? null) : undefined;
    const expect = entry === undefined ? undefined : entry && { size: entry.size, sha256: entry.sha256 };
    plan.files.push({ name, path, finalName, size: check.size, expect, scan: pool.submit({ kind: 'verify', path, hash: !!expect }) });
  }
  plan.listedMissing = [...listed.keys()];
  return plan;
}

async function verifyDir(plan: DirPlan, out: Collector, opts: VerifyOptions): Promise<void> {
  const { dir, manifest, input } = plan;
  for (const d of plan.early) out.add(d);
  const index = plan.base === dir;
  try {
    const join_ = new RowJoin(input ? input.db.recordLocations() : [], out, plan.base);
    for (const f of plan.files) {
      if (f.skip) {
        join_.skipTo(f.finalName);
        join_.skipFile(f.finalName);
        continue;
      }
      if (!f.scan) {
        out.add({ file: f.path, what: f.what! });
        continue;
      }
      if (f.name.endsWith('.open')) {
        out.add({
          file: f.path,
          what: plan.node
            ? `unfinished WARC (.open): the node stopped during this item; start the node again on ${plan.node} (lifeboat node --out ${plan.node} …) to repair it`
            : 'unfinished WARC (.open): a crawl is running or crashed; run the crawl again to repair it',
        });
      }
      join_.skipTo(f.finalName);
      const actual = await verifyWarc(f.path, f.size, f.scan, out, opts, (r) => join_.record(f.finalName, r));
      join_.endFile(f.finalName);
      if (f.expect === null) {
        if (!plan.live) out.add({ file: f.path, what: 'not listed in shard.json' });
      }
      else if (f.expect) {
        const whose = index ? 'merged.sqlite' : 'shard.json';
        if (actual instanceof Error) out.add({ file: f.path, what: `cannot be read: ${actual.message}` });
        else if (actual && actual.size !== f.expect.size) out.add({ file: f.path, what: `size ${actual.size}, ${whose} says ${f.expect.size}` });
        else if (actual && actual.sha256 !== f.expect.sha256) out.add({ file: f.path, what: `sha256 differs from ${whose}${index ? ' (changed since it was merged)' : ''}` });
      }
    }
    join_.finish();
    for (const name of plan.listedMissing) out.add({ file: index ? resolve(dir, name) : join(plan.base, name), what: index ? 'referenced by merged.sqlite but missing' : 'listed in shard.json but missing' });
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
  const pool = new ScanPool(options.jobs ?? availableParallelism());
  type Item = { defect: Defect } | { plan: DirPlan } | { file: string; size: number; scan: AsyncIterable<ScanEvent> };
  const items: Item[] = [];
  try {
    for (const p of paths) {
      let isDir: boolean;
      try {
        isDir = (await stat(p)).isDirectory();
      } catch {
        items.push({ defect: { file: p, what: 'no such file or directory' } });
        continue;
      }
      if (isDir) {
        const plan = await planDir(p, options, pool);
        items.push('dir' in plan ? { plan } : { defect: plan });
        continue;
      }
      const check = await checkInputFile(p);
      if (check.ok) items.push({ file: p, size: check.size, scan: pool.submit({ kind: 'verify', path: p, hash: false }) });
      else items.push({ defect: { file: p, what: check.what } });
    }
    for (const item of items) {
      if ('defect' in item) out.add(item.defect);
      else if ('plan' in item) await verifyDir(item.plan, out, options);
      else await verifyWarc(item.file, item.size, item.scan, out, options);
    }
  } finally {
    for (const item of items) if ('plan' in item) await item.plan.input?.close().catch(() => undefined);
    await pool.close();
  }
  return out.report;
}
