import { createHash } from 'node:crypto';
import { access, lstat, mkdir, readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { InputError } from '../../config/errors.js';
import { writeCdxj } from './cdxj.js';
import { writeCoverage, type CoverageReport } from './coverage.js';
import { LOCK_DB, LOCK_FILE, acquireDirLock } from '../shard/dir-lock.js';
import { openInputDb, SHARD_TABLES } from './input-db.js';
import { checkInputFile, hashRegularFile } from '../warc/input-file.js';
import { MergedDb } from './merge-db.js';
import { MergeOutput, type MergeCounts } from './merge-output.js';
import { mergeWarcinfo } from './merge-warcinfo.js';
import { syncPostSearch } from './post-search.js';
import { importShardDb } from './merge-shard-db.js';
import { RecordSpool } from './merge-spool.js';
import { readManifest } from '../shard/shard-manifest.js';
import { detectWarcFormat, readWarc } from '../warc/warc-reader.js';
import { repairOpenWarcs } from '../warc/warc-repair.js';
import { WarcWriter } from '../warc/warc-writer.js';
import { MERGED_DB, SHARD_DB, SHARD_MANIFEST, WARCS_DIR, mergedDbPath, shardDbPath, warcsDir } from '../shard/layout.js';

/**
 * `lifeboat merge SHARD... --out DIR` (ARCHITECTURE.md "Curator commands"). Reads shard directories and bare
 * WARC files (lifeboat's, or other tools' such as `wget --warc-file`: per-record gzip, whole-file
 * gzip or plain), verifies every record while reading it, and writes into DIR:
 *   warcs/*.warc.gz          merged WARCs (~maxWarcBytes each); one copy per (URL, payload) — see merge-output.ts
 *   merged.sqlite            records (where each kept record is), duplicates, ids (final status and which input),
 *                            captures, posts, provenance (inputs, input_warcs), defects
 *   indexes/index.cdxj       CDXJ sorted by SURT (cdxj.ts)
 *   coverage.json, missing-ranges.txt   (coverage.ts)
 * Damage is reported by file and offset and the good records around it are kept; the merge goes
 * on. Memory does not grow with the number of records: records stream through, lookups go to
 * merged.sqlite, the index is sorted by SQLite. Incremental: each input WARC's sha256 is recorded,
 * so merging into an existing DIR reads only what is new (a shard's WARCs already merged are
 * skipped; the merged WARCs are never re-read; index and coverage are rebuilt from the DB).
 */
export interface MergeOptions {
  inputs: string[];
  out: string;
  /** Rotate merged WARCs at this size (default 1 GiB). */
  maxWarcBytes?: number;
  onProgress?: (p: MergeProgress) => void;
  onDefect?: (d: MergeDefect) => void;
  /** How missing-ranges.txt writes an ID (the profile codec's notation); default decimal. */
  formatId?: (id: number) => string;
  software?: string;
}

export interface MergeProgress extends MergeCounts {
  input: string;
  file: string;
  bytesRead: number;
  defects: number;
}

export interface MergeDefect {
  file: string;
  offset?: number;
  what: string;
}

export interface MergeResult extends MergeCounts {
  inputs: { path: string; status: 'merged' | 'skipped'; reason?: string; warcs: number; warcsSkipped: number }[];
  bytesRead: number;
  defectCount: number;
  /** The first 1000 defects. */
  defects: MergeDefect[];
  cdxjLines: number;
  coverage: CoverageReport;
  seconds: number;
}

const WARC_NAME = /\.warc(\.gz)?(\.open)?$/;

interface InputWarc {
  path: string;
  name: string;
  size: number;
  sha256: string;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

interface InputListing {
  kind: 'shard' | 'warc';
  warcs: InputWarc[];
  /** Files of the shard that are not read or not as shard.json says (issue 11 §4); reported once the input is merged. */
  problems: { file: string; what: string }[];
  archivedListed?: number;
  profile?: string;
  node?: string;
  software?: string;
}

/**
 * An input's WARCs. Only regular files are read (input-file.ts). Each WARC is hashed and compared
 * with shard.json: a file changed since the manifest was written (or not listed in it) is a
 * defect, and is still merged by its records — each record is checked against its own digests,
 * so the good ones are kept, as for any damaged input.
 */
async function listInput(path: string): Promise<InputListing> {
  let st;
  try {
    st = await stat(path);
  } catch {
    throw new InputError(`merge input ${path} does not exist`, { code: 'E_MERGE_INPUT' });
  }
  if (!st.isDirectory()) {
    const check = await checkInputFile(path);
    if (!check.ok) throw new InputError(`merge input ${path}: ${check.what}`, { code: 'E_MERGE_INPUT' });
    const { sha256, size } = await hashRegularFile(path);
    return { kind: 'warc', warcs: [{ path, name: basename(path), size, sha256 }], problems: [] };
  }
  const manifest = await readManifest(path);
  const listed = new Map((manifest?.warcs ?? []).map((w) => [w.name, w]));
  const dir = warcsDir(path);
  if (!(await exists(dir))) throw new InputError(`merge input ${path} is neither a WARC file nor a shard directory (no warcs/)`, { code: 'E_MERGE_INPUT' });
  const warcs: InputWarc[] = [];
  const problems: InputListing['problems'] = [];
  for (const name of (await readdir(dir)).filter((n) => WARC_NAME.test(n)).sort()) {
    const p = join(dir, name);
    const check = await checkInputFile(p, path);
    if (!check.ok) {
      problems.push({ file: p, what: check.what });
      continue;
    }
    const { sha256, size } = await hashRegularFile(p);
    const entry = listed.get(name);
    if (manifest && !name.endsWith('.open')) {
      if (!entry) problems.push({ file: p, what: 'not listed in shard.json; merged by its records' });
      else if (entry.size !== size || entry.sha256 !== sha256) {
        const how = entry.size !== size ? `size ${size}, shard.json says ${entry.size}` : 'sha256 differs from shard.json';
        problems.push({ file: p, what: `changed since shard.json was written (${how}); merged by its records, each checked on its own digests` });
      }
    }
    warcs.push({ path: p, name, size, sha256 });
  }
  const archived = manifest?.counts?.archived;
  return { kind: 'shard', warcs, problems, archivedListed: typeof archived === 'number' ? archived : undefined, profile: manifest?.profile, node: manifest?.node, software: manifest?.software };
}

/** Folds a shard's database in; a database that cannot be read is a defect and the WARCs stand alone. */
async function importInputDb(mdb: MergedDb, listing: InputListing & { path: string }, tmpDir: string, inputId: number, onDefect: (inputId: number, file: string, offset: number | undefined, what: string) => void): Promise<void> {
  const dbPath = shardDbPath(listing.path);
  if (!(await lstat(dbPath).catch(() => undefined))) {
    if ((listing.archivedListed ?? 0) > 0) onDefect(inputId, dbPath, undefined, `missing, but shard.json counts ${listing.archivedListed} archived IDs; the WARCs were merged by their records`);
    return;
  }
  const opened = await openInputDb(dbPath, { root: listing.path, tmpDir, tables: SHARD_TABLES });
  if (!opened.ok) {
    onDefect(inputId, dbPath, undefined, `${opened.what}; the WARCs were merged by their records, its IDs' statuses are not known`);
    return;
  }
  try {
    importShardDb(mdb, opened.snapshotPath, inputId);
  } catch (err) {
    onDefect(inputId, dbPath, undefined, `cannot be merged (${(err as Error).message}); the WARCs were merged by their records`);
  } finally {
    await opened.close();
  }
}

export async function mergeShards(o: MergeOptions): Promise<MergeResult> {
  const started = Date.now();
  if (o.inputs.length === 0) throw new InputError('merge needs at least one shard directory or WARC file', { code: 'E_MERGE_INPUT' });
  const listings = [];
  for (const p of o.inputs) listings.push({ path: resolve(p), ...(await listInput(p)) });

  await checkMergeOut(o.out);
  const warcDir = warcsDir(o.out);
  await mkdir(warcDir, { recursive: true });
  const lock = acquireDirLock(o.out, 'merge');
  try {
    return await mergeLocked(o, listings, started);
  } finally {
    lock.release();
  }
}

/**
 * `--out` must be new, empty, or an earlier merge's output (extended incrementally); anything
 * else — a crawl shard, a folder of other files — is refused before a byte of it changes.
 */
async function checkMergeOut(out: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(out);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new InputError(`--out ${out} is a file, not a folder`, { code: 'E_MERGE_OUT' });
    throw err;
  }
  if (entries.includes(MERGED_DB)) return;
  if (entries.includes(SHARD_DB) || entries.includes(SHARD_MANIFEST)) {
    throw new InputError(`--out ${out} is a crawl shard; merge into a new folder (or an earlier merge output) and give the shard as an input`, { code: 'E_MERGE_OUT' });
  }
  const others = [];
  for (const name of entries) {
    if (name === LOCK_FILE || name === LOCK_DB) continue;
    // An empty warcs/ is what a merge killed before its database existed leaves behind.
    if (name === WARCS_DIR && (await readdir(join(out, name)).catch(() => ['?'])).length === 0) continue;
    others.push(name);
  }
  if (others.length > 0) {
    throw new InputError(`--out ${out} is not empty and not an earlier merge output (it holds ${others.slice(0, 3).join(', ')}${others.length > 3 ? ', …' : ''}); give a new or empty folder`, {
      code: 'E_MERGE_OUT',
    });
  }
}

async function mergeLocked(o: MergeOptions, listings: ({ path: string } & Awaited<ReturnType<typeof listInput>>)[], started: number): Promise<MergeResult> {
  const warcDir = warcsDir(o.out);
  await repairOpenWarcs(warcDir); // a merge that crashed: cut its last file back to whole records
  const mdb = new MergedDb(mergedDbPath(o.out));
  const prefix = mdb.meta('prefix') ?? listings.find((l) => l.profile)?.profile ?? 'lifeboat';
  mdb.setMeta('prefix', prefix);
  const writer = new WarcWriter({
    dir: warcDir,
    prefix,
    node: 'merged',
    maxFileBytes: o.maxWarcBytes ?? 1024 * 1024 * 1024,
    warcinfo: mergeWarcinfo({ software: o.software ?? 'lifeboat', inputs: listings, alreadyMerged: (sha) => mdb.mergedWarc(sha) !== undefined }),
    onFileClosed: (w) => mdb.putWarc(w, 'closed'),
  });
  const defects: MergeDefect[] = [];
  let defectCount = 0;
  const onDefect = (inputId: number | null, file: string, offset: number | undefined, what: string): void => {
    defectCount++;
    if (defects.length < 1000) defects.push({ file, offset, what });
    mdb.putDefect(inputId, file, offset, what);
    o.onDefect?.({ file, offset, what });
  };
  const output = new MergeOutput(mdb, writer, (id, file, offset, what) => onDefect(id, file, offset, what));
  const result: MergeResult['inputs'] = [];
  let bytesRead = 0;

  try {
    for (const input of listings) {
      const digest = createHash('sha256').update(input.warcs.map((w) => w.sha256).sort().join('\n')).digest('hex');
      const earlier = mdb.inputByDigest(digest);
      if (earlier && input.warcs.length > 0) {
        result.push({ path: input.path, status: 'skipped', reason: `already merged (as ${earlier.path})`, warcs: 0, warcsSkipped: input.warcs.length });
        continue;
      }
      const inputId = mdb.addInput({ path: input.path, kind: input.kind, digest, profile: input.profile, node: input.node, software: input.software });
      const before = { ...output.counts };
      const defectsBefore = defectCount;
      for (const p of input.problems) onDefect(inputId, p.file, undefined, p.what);
      let inputBytes = 0;
      let merged = 0;
      let skipped = 0;
      for (const w of input.warcs) {
        if (mdb.mergedWarc(w.sha256) !== undefined) {
          skipped++;
          continue;
        }
        const read = await mergeWarcFile(w.path, inputId, output, onDefect, (n) => o.onProgress?.({ ...output.counts, input: input.path, file: w.path, bytesRead: bytesRead + inputBytes + n, defects: defectCount })).then(
          () => true,
          (err: unknown) => {
            // Swapped for a FIFO or device after it was listed: a defect, never a hang.
            if ((err as { code?: string }).code !== 'E_NOT_REGULAR_FILE') throw err;
            onDefect(inputId, w.path, undefined, (err as Error).message);
            return false;
          },
        );
        if (!read) continue;
        await output.settlePending();
        await output.flush();
        inputBytes += w.size;
        merged++;
        mdb.putInputWarc(w.sha256, w.name, w.size, inputId);
      }
      bytesRead += inputBytes;
      if (input.kind === 'shard') await importInputDb(mdb, input, o.out, inputId, onDefect);
      const c = output.counts;
      mdb.updateInput(inputId, {
        recordsRead: c.recordsRead - before.recordsRead,
        recordsKept: c.recordsKept - before.recordsKept,
        duplicates: c.duplicates - before.duplicates + c.alreadyMerged - before.alreadyMerged,
        defects: defectCount - defectsBefore,
        bytesRead: inputBytes,
      });
      result.push({ path: input.path, status: 'merged', warcs: merged, warcsSkipped: skipped });
    }
    await output.flush();
  } finally {
    await writer.close();
  }
  const cdxjLines = await writeCdxj(mdb.db, join(o.out, 'indexes', 'index.cdxj'));
  syncPostSearch(mdb.db, warcsDir(o.out));
  const coverage = await writeCoverage(mdb.db, o.out, { formatId: o.formatId });
  mdb.close();
  return { ...output.counts, inputs: result, bytesRead, defectCount, defects, cdxjLines, coverage, seconds: (Date.now() - started) / 1000 };
}

async function mergeWarcFile(
  path: string,
  inputId: number,
  output: MergeOutput,
  onDefect: (inputId: number, file: string, offset: number | undefined, what: string) => void,
  progress: (bytes: number) => void,
): Promise<void> {
  const format = await detectWarcFormat(path);
  const spools = new Map<number, RecordSpool>();
  const rawSink =
    format === 'plain' || format === 'gzip-whole'
      ? (at: number) => {
          const s = new RecordSpool();
          spools.set(at, s);
          return s;
        }
      : undefined;
  let n = 0;
  try {
    for await (const item of readWarc(path, { format, rawSink })) {
      if (item.kind === 'defect') {
        onDefect(inputId, item.file, item.offset, item.what);
        continue;
      }
      output.counts.recordsRead++;
      const spool = spools.get(item.streamOffset);
      spools.delete(item.streamOffset);
      if (item.problems.length > 0 || !item.recordId) {
        for (const p of item.problems.length > 0 ? item.problems : ['no WARC-Record-ID']) onDefect(inputId, path, item.offset, `${item.type} record ${item.recordId ?? ''}: ${p}; not merged`);
        output.rejected(item);
        await spool?.dispose();
        continue;
      }
      await output.offer(item, { inputId, path, spool });
      if (++n % 5000 === 0) progress(item.offset);
    }
  } finally {
    for (const s of spools.values()) await s.dispose();
  }
}
