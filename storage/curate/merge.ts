import { lstat, mkdir, readdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, relative, sep } from 'node:path';
import { InputError } from '../../config/errors.js';
import { writeCdxj } from './cdxj.js';
import { writeCoverage, type CoverageReport } from './coverage.js';
import { LOCK_DB, LOCK_FILE, acquireDirLock } from '../shard/dir-lock.js';
import { openInputDb, SHARD_TABLES } from './input/input-db.js';
import { hashInput, inputDigest, listInputs, submitHashes, type InputWarc, type Listing } from './input/merge-inputs.js';
import { MergedDb } from './merge-db.js';
import { MergeOutput, type MergeCounts } from './merge-output.js';
import { mergeWarcinfo } from './merge-warcinfo.js';
import { syncPostSearch } from './post-search.js';
import { importShardDb } from './merge-shard-db.js';
import type { ScanEvent } from './input/scan-files.js';
import { ScanPool } from './input/scan-pool.js';
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
  /** Input files read, inflated and digest-checked at once, on worker threads (default: the number of cores; 1: in-process). */
  jobs?: number;
  /**
   * Leave the WARCs where they are (issue 25): the index and merged.sqlite point into the input
   * files by paths relative to `out`; nothing is copied. A WARC whose size and sha256 match its
   * shard.json is not re-hashed record by record (the file hash proves it unchanged).
   */
  indexOnly?: boolean;
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
  jobs: number;
  /** Set by an index-only merge: how its input WARCs were checked, and what was not re-checked. */
  indexOnly?: { warcsReferenced: number; trusted: number; recordChecked: number };
}

/** Folds a shard's database in; a database that cannot be read is a defect and the WARCs stand alone. */
async function importInputDb(mdb: MergedDb, listing: Listing, tmpDir: string, inputId: number, onDefect: (inputId: number, file: string, offset: number | undefined, what: string) => void): Promise<void> {
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
  const pool = new ScanPool(o.jobs ?? availableParallelism());
  try {
    const listings = await listInputs(o.inputs);
    if (!o.indexOnly) {
      for (const l of listings) submitHashes(l, pool);
      for (const l of listings) await hashInput(l, pool);
    }
    await checkMergeOut(o.out);
    const warcDir = warcsDir(o.out);
    await mkdir(warcDir, { recursive: true });
    const lock = acquireDirLock(o.out, 'merge');
    try {
      return await mergeLocked(o, listings, started, pool);
    } finally {
      lock.release();
    }
  } finally {
    await pool.close();
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

/** How an index-only merge names an input WARC: its path relative to the output folder, with `/` (what the CDXJ `filename` holds). */
export function referencedName(out: string, path: string): string {
  return relative(out, path).split(sep).join('/');
}

async function mergeLocked(o: MergeOptions, listings: Listing[], started: number, pool: ScanPool): Promise<MergeResult> {
  const warcDir = warcsDir(o.out);
  const indexOnly = !!o.indexOnly;
  const mdb = new MergedDb(mergedDbPath(o.out));
  const earlierMode = mdb.meta('mode') ?? (mdb.inputCount() > 0 ? 'full' : undefined);
  const mode = indexOnly ? 'index-only' : 'full';
  if (earlierMode && earlierMode !== mode) {
    mdb.close();
    throw new InputError(`--out ${o.out} holds a${earlierMode === 'full' ? ' full' : 'n index-only'} merge; merge into it ${earlierMode === 'full' ? 'without' : 'with'} --index-only, or into a new folder`, { code: 'E_MERGE_OUT' });
  }
  mdb.setMeta('mode', mode);
  if (!indexOnly) await repairOpenWarcs(warcDir); // a merge that crashed: cut its last file back to whole records
  const prefix = mdb.meta('prefix') ?? listings.find((l) => l.profile)?.profile ?? 'lifeboat';
  mdb.setMeta('prefix', prefix);
  const writer = indexOnly
    ? undefined
    : new WarcWriter({
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
  const output = new MergeOutput(mdb, writer ?? { out: o.out }, (id, file, offset, what) => onDefect(id, file, offset, what));
  const result: MergeResult['inputs'] = [];
  let bytesRead = 0;
  const summary = { warcsReferenced: 0, trusted: 0, recordChecked: 0 };

  // What will be read, predicted as the loop below decides it, so the pool can read ahead; the
  // loop still decides for itself (a prediction that proves wrong only costs a wasted read).
  // A full merge predicts every input at once; an index-only merge one input at a time, its
  // hashes just before (and the next input's hashes queued behind its reads).
  const scans = new Map<string, AsyncIterable<ScanEvent>>();
  const scanTask = (w: InputWarc) => ({ kind: 'merge' as const, path: w.path, trust: indexOnly && w.matchesManifest, spool: !indexOnly });
  const digests = new Set<string>();
  const shas = new Set<string>();
  const predict = (input: Listing): void => {
    const digest = inputDigest(input);
    if (input.warcs.length > 0 && (digests.has(digest) || mdb.inputByDigest(digest))) return;
    digests.add(digest);
    for (const w of input.warcs) {
      if (shas.has(w.sha256) || mdb.mergedWarc(w.sha256) !== undefined) continue;
      shas.add(w.sha256);
      scans.set(w.path, pool.submit(scanTask(w)));
    }
  };
  if (!indexOnly) for (const input of listings) predict(input);

  try {
    for (const [i, input] of listings.entries()) {
      if (indexOnly) {
        await hashInput(input, pool);
        predict(input);
        const next = listings[i + 1];
        if (next) submitHashes(next, pool);
      }
      const digest = inputDigest(input);
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
        const scan = scans.get(w.path);
        scans.delete(w.path);
        if (mdb.mergedWarc(w.sha256) !== undefined) {
          if (scan) for await (const _ of scan) void _; // predicted wrongly: let the worker finish
          skipped++;
          continue;
        }
        const readBefore = output.counts.recordsRead;
        const read = await mergeWarcFile(w.path, scan ?? pool.submit(scanTask(w)), inputId, output, onDefect, (n) =>
          o.onProgress?.({ ...output.counts, input: input.path, file: w.path, bytesRead: bytesRead + inputBytes + n, defects: defectCount }),
        );
        if (!read) continue;
        await output.settlePending();
        await output.flush();
        inputBytes += w.size;
        merged++;
        mdb.putInputWarc(w.sha256, w.name, w.size, inputId);
        if (indexOnly) {
          summary.warcsReferenced++;
          if (w.matchesManifest) summary.trusted++;
          else summary.recordChecked++;
          mdb.putWarc({ name: referencedName(o.out, w.path), size: w.size, sha256: w.sha256, records: output.counts.recordsRead - readBefore }, 'referenced');
        }
        o.onProgress?.({ ...output.counts, input: input.path, file: w.path, bytesRead: bytesRead + inputBytes, defects: defectCount });
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
    await writer?.close();
  }
  const cdxjLines = await writeCdxj(mdb.db, join(o.out, 'indexes', 'index.cdxj'));
  syncPostSearch(mdb.db, warcsDir(o.out));
  const coverage = await writeCoverage(mdb.db, o.out, { formatId: o.formatId });
  mdb.close();
  return {
    ...output.counts,
    inputs: result,
    bytesRead,
    defectCount,
    defects,
    cdxjLines,
    coverage,
    seconds: (Date.now() - started) / 1000,
    jobs: pool.jobs,
    ...(indexOnly ? { indexOnly: summary } : {}),
  };
}

/** Consumes one file's scan in order; false when the file could not be read at all (a defect). */
async function mergeWarcFile(
  path: string,
  scan: AsyncIterable<ScanEvent>,
  inputId: number,
  output: MergeOutput,
  onDefect: (inputId: number, file: string, offset: number | undefined, what: string) => void,
  progress: (bytes: number) => void,
): Promise<boolean> {
  let ok = true;
  for await (const ev of scan) {
    if (ev.k === 'defect') onDefect(inputId, ev.file, ev.offset, ev.what);
    else if (ev.k === 'progress') progress(ev.offset);
    else if (ev.k === 'unreadable') {
      // Swapped for a FIFO or device after it was listed: a defect, never a hang.
      if (ev.code !== 'E_NOT_REGULAR_FILE') throw Object.assign(new Error(ev.message), { code: ev.code });
      onDefect(inputId, path, undefined, ev.message);
      ok = false;
    } else if (ev.k === 'record') {
      const item = ev.rec;
      output.counts.recordsRead++;
      if (item.problems.length > 0 || !item.recordId) {
        for (const p of item.problems.length > 0 ? item.problems : ['no WARC-Record-ID']) onDefect(inputId, path, item.offset, `${item.type} record ${item.recordId ?? ''}: ${p}; not merged`);
        output.rejected(item);
        await ev.spool?.dispose();
        continue;
      }
      await output.offer(item, { inputId, path, spool: ev.spool });
    }
  }
  return ok;
}
