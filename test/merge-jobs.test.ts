import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeShards, type MergeResult } from '../storage/curate/merge.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { makeShard } from './fixtures/make-shard.js';

/**
 * `--jobs` (issue 25 §1): files are read on worker threads, decisions and output stay serial, so
 * a merge or a verify with two jobs gives exactly what one job gives — compared byte for byte
 * where the output is deterministic (index, coverage, missing lists, merged.sqlite's rows, the
 * defect list), with only the merged WARCs' time-stamped names and `generated_at` told apart.
 */

/** Merged WARC names carry the time of the run: replaced by their serial number. */
const normal = (text: string): string => text.replace(/[a-z0-9]+-\d{14}-(\d{5})-merged\.warc\.gz/g, 'MERGED-$1').replace(/"generated_at":\s*"[^"]*"/, '"generated_at": ""');

/**
 * A merged WARC starts with the merge's own warcinfo (its date and file name), whose compressed
 * size varies by a byte from run to run; so a record's place is compared as (file, rank in file).
 */
async function outputs(out: string): Promise<Record<string, unknown>> {
  const db = new Database(join(out, 'merged.sqlite'), { readonly: true });
  try {
    const place = new Map<string, string>();
    const ranked = db.prepare<[], { warc: string; offset: number; rank: number }>('SELECT warc, offset, RANK() OVER (PARTITION BY warc ORDER BY offset) AS rank FROM records').all();
    for (const r of ranked) place.set(`${r.warc}@${r.offset}`, `${normal(r.warc)}#${r.rank}`);
    const files: Record<string, string> = {};
    for (const f of ['indexes/index.cdxj', 'coverage.json', 'missing-ranges.txt', 'missing-media.txt']) {
      const text = (await readFile(join(out, f), 'utf8')).replace(/"offset":"(\d+)","filename":"([^"]+)"/g, (_, o: string, w: string) => `"at":"${place.get(`${w}@${o}`)}"`);
      files[f] = normal(text);
    }
    const rows = (sql: string): string => normal(JSON.stringify(db.prepare(sql).all()));
    const records = db.prepare<[], Record<string, unknown>>('SELECT * FROM records ORDER BY record_id').all().map(({ warc, offset, ...r }) => ({ ...r, at: place.get(`${String(warc)}@${String(offset)}`) }));
    return {
      files,
      records,
      duplicates: rows('SELECT * FROM duplicates ORDER BY record_id'),
      defects: rows('SELECT input_id, file, offset, what FROM defects ORDER BY rowid'),
      ids: rows('SELECT * FROM ids ORDER BY id'),
      captures: rows('SELECT * FROM captures ORDER BY rowid'),
      inputs: rows('SELECT id, path, kind, digest, records_read, records_kept, duplicates, defects, bytes_read FROM inputs ORDER BY id'),
      warcs: rows('SELECT name, records FROM warcs ORDER BY name'),
      places: ranked.length,
    };
  } finally {
    db.close();
  }
}

function comparable(r: MergeResult): unknown {
  const { seconds, jobs, ...rest } = r;
  void seconds;
  void jobs;
  return JSON.parse(normal(JSON.stringify(rest)));
}

describe('merge and verify --jobs (issue 25 §1)', () => {
  let tmp: string;
  let inputs: string[];
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-jobs-'));
    const a = join(tmp, 'shard-a');
    const b = join(tmp, 'shard-b');
    const c = join(tmp, 'shard-c');
    const d = join(tmp, 'shard-d');
    // Small WARCs, so each shard has several files and the workers really run ahead.
    await makeShard({ dir: a, start: 1, end: 60, node: 'alice', warcSizeBytes: 16 * 1024 });
    await makeShard({ dir: b, start: 40, end: 100, node: 'bob', warcSizeBytes: 16 * 1024 });
    await makeShard({ dir: c, start: 90, end: 130, node: 'carol', variant: 'edited', variantIds: (id) => id % 3 === 0, warcSizeBytes: 16 * 1024 });
    // A damaged copy of b: one byte flipped in the middle of a WARC.
    await makeShard({ dir: d, start: 120, end: 160, node: 'dave', warcSizeBytes: 16 * 1024 });
    const dw = (await readdir(join(d, 'warcs'))).sort();
    const victim = join(d, 'warcs', dw[1]!);
    const bytes = await readFile(victim);
    const mid = Math.floor(bytes.length / 2);
    bytes[mid] = bytes[mid]! ^ 0xff;
    await writeFile(victim, bytes);
    // Foreign layouts, re-compressed record by record (the spool path, on the workers too).
    const aw = (await readdir(join(a, 'warcs'))).sort();
    const foreign = join(tmp, 'foreign');
    await mkdir(foreign);
    const plain = gunzipSync(await readFile(join(a, 'warcs', aw[0]!)));
    await writeFile(join(foreign, 'plain.warc'), plain);
    await writeFile(join(foreign, 'whole.warc.gz'), gzipSync(gunzipSync(await readFile(join(b, 'warcs', (await readdir(join(b, 'warcs'))).sort()[2]!)))));
    await copyFile(join(a, 'warcs', aw[1]!), join(foreign, 'copy.warc.gz'));
    inputs = [a, b, join(foreign, 'plain.warc'), c, d, join(foreign, 'whole.warc.gz'), join(foreign, 'copy.warc.gz')];
    expect(dw.length).toBeGreaterThan(2);
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('merge --jobs 2 writes what --jobs 1 writes: index, coverage, missing lists, rows, defects', async () => {
    const one = await mergeShards({ inputs, out: join(tmp, 'out-1'), jobs: 1 });
    const two = await mergeShards({ inputs, out: join(tmp, 'out-2'), jobs: 2 });
    expect(one.jobs).toBe(1);
    expect(two.jobs).toBe(2);
    expect(one.defectCount).toBeGreaterThan(0); // the flipped byte
    expect(one.duplicates).toBeGreaterThan(0);
    expect(comparable(two)).toEqual(comparable(one));
    expect(await outputs(join(tmp, 'out-2'))).toEqual(await outputs(join(tmp, 'out-1')));
    // The merged WARCs hold the same records in the same order.
    const names = async (out: string) => (await readdir(join(out, 'warcs'))).sort();
    expect((await names(join(tmp, 'out-2'))).length).toBe((await names(join(tmp, 'out-1'))).length);
  });

  it('an incremental merge with --jobs 2 equals one with --jobs 1', async () => {
    for (const [jobs, out] of [[1, join(tmp, 'inc-1')], [2, join(tmp, 'inc-2')]] as const) {
      await mergeShards({ inputs: inputs.slice(0, 3), out, jobs });
      const again = await mergeShards({ inputs, out, jobs });
      expect(again.inputs.slice(0, 3).every((i) => i.status === 'skipped')).toBe(true);
    }
    expect(await outputs(join(tmp, 'inc-2'))).toEqual(await outputs(join(tmp, 'inc-1')));
  });

  it('verify --jobs 2 reports what --jobs 1 reports, defect for defect and in the same order', async () => {
    const paths = [...inputs, join(tmp, 'out-1')];
    const one = await verifyPaths(paths, { jobs: 1 });
    const two = await verifyPaths(paths, { jobs: 2 });
    expect(one.defectCount).toBeGreaterThan(0);
    expect(one.defects.some((d) => /shard-d/.test(d.file) && /sha256 differs from shard.json/.test(d.what))).toBe(true);
    expect(one.records).toBeGreaterThan(500);
    expect(two).toEqual(one);
  });
});
