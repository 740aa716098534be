import { copyFile, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codecSpecFromName, createCodec } from '../config/id-codec.js';
import { mergeShards } from '../storage/curate/merge.js';
import { MergedDbReader } from '../storage/curate/merge-db.js';
import { ShardDbReader } from '../storage/shard/shard-db-read.js';
import { makeShard, statusFor } from './fixtures/make-shard.js';

/** The read modules of the two databases, on a real shard (make-shard.ts) and its merge. */
let tmp: string;
let shard: string;
let merged: string;
const BASE = 'http://127.0.0.1:8080';

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-readers-'));
  shard = join(tmp, 'shard');
  await makeShard({ dir: shard, start: 1, end: 30 });
  merged = join(tmp, 'merged');
  await mergeShards({ inputs: [shard], out: merged });
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

const expectedCounts = (): Record<string, number> => {
  const out: Record<string, number> = {};
  for (let id = 1; id <= 30; id++) out[statusFor(id)] = (out[statusFor(id)] ?? 0) + 1;
  return out;
};

describe('ShardDbReader', () => {
  it('counts IDs, lists failed runs and their errors', () => {
    const r = ShardDbReader.open(join(shard, 'shard.sqlite'));
    try {
      expect(r.idCounts()).toEqual(expectedCounts());
      expect(r.failedRanges(20)).toEqual([{ start: 11, end: 11 }, { start: 22, end: 22 }]);
      expect(r.failedRanges(1)).toEqual([{ start: 11, end: 11 }]);
      expect(r.failedErrors()).toEqual([{ lastError: 'HTTP 503', count: 2 }]);
      expect(r.extractionErrors()).toEqual([]);
      expect(r.hasTables('ids', 'captures')).toBe(true);
      expect(r.hasTables('ids', 'records')).toBe(false);
      expect([...r.archivedWithoutCapture()]).toEqual([]);
    } finally {
      r.close();
    }
  });

  it('gives every capture row as two record locations (response, request), sorted by file and offset', () => {
    const r = ShardDbReader.open(join(shard, 'shard.sqlite'));
    try {
      const rows = [...r.recordLocations()];
      const archived = expectedCounts().archived!;
      const missing = expectedCounts().missing!;
      expect(rows.length).toBe(2 * (3 * archived + missing));
      const keys = rows.map((x) => `${x.warc}\u0000${String(x.offset).padStart(12, '0')}`);
      expect(keys).toEqual([...keys].sort());
      expect(rows.filter((x) => x.type === 'request').every((x) => x.recordId === null && x.what.endsWith(', request)'))).toBe(true);
      expect(rows.find((x) => x.url === `${BASE}/api/v1/posts/1` && x.type === 'response')).toMatchObject({ what: 'captures row (post)' });
    } finally {
      r.close();
    }
  });

  it("reads the codec a shard was crawled with, and the spec comes back from that name", () => {
    const db = new Database(join(shard, 'shard.sqlite'));
    db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('codec', 'padded-6')").run();
    db.close();
    const r = ShardDbReader.open(join(shard, 'shard.sqlite'));
    try {
      expect(r.codecName()).toBe('padded-6');
      expect(codecSpecFromName(r.codecName()!)).toEqual({ padded: 6 });
      expect(createCodec(codecSpecFromName(createCodec('base36').name)!).encode(35)).toBe('z');
      expect(codecSpecFromName('padded-99')).toBeUndefined();
      expect(codecSpecFromName('octal')).toBeUndefined();
    } finally {
      r.close();
    }
  });

  it('finds an archived ID whose 2xx captures are gone', async () => {
    const db = new Database(join(shard, 'shard.sqlite'));
    db.prepare("UPDATE captures SET http_status = 500 WHERE post_id = 2").run();
    db.close();
    const r = ShardDbReader.open(join(shard, 'shard.sqlite'));
    try {
      expect([...r.archivedWithoutCapture()]).toEqual([2]);
    } finally {
      r.close();
      const w = new Database(join(shard, 'shard.sqlite'));
      w.prepare("UPDATE captures SET http_status = 200 WHERE post_id = 2").run();
      w.close();
    }
  });
});

describe('MergedDbReader', () => {
  it('reads counts, inputs, the capture span, responses and the first usable capture of a URL', () => {
    const r = MergedDbReader.open(join(merged, 'merged.sqlite'));
    try {
      expect(r.idCounts()).toEqual(expectedCounts());
      expect(r.meta('prefix')).toBe('demo');
      expect(r.inputCount()).toBe(1);
      expect(r.inputSummaries()).toEqual([expect.objectContaining({ path: shard, kind: 'shard', node: 'test' })]);
      expect(r.responseCount()).toBe(2 * expectedCounts().archived! + expectedCounts().missing! + 1); // the avatar once, then revisits
      expect(r.captureSpan()).toEqual({ first: '2024-05-01T12:00:00.000Z', last: '2024-05-01T12:00:00.000Z' });
      expect(r.firstGoodCaptureDate(`${BASE}/p/1`)).toBe('2024-05-01T12:00:00.000Z');
      expect(r.firstGoodCaptureDate(`${BASE}/api/v1/posts/7`)).toBeUndefined(); // a 404
      expect(r.firstGoodCaptureDate(`${BASE}/nowhere`)).toBeUndefined();
      expect([...r.missingRanges()]).toEqual([{ start: 11, end: 11 }, { start: 22, end: 22 }]);
      expect(r.unfetchedMediaStates()).toEqual({});
      const rows = [...r.recordLocations()];
      expect(rows.every((x) => x.what === 'records row')).toBe(true);
      expect(rows.map((x) => `${x.warc}\u0000${String(x.offset).padStart(12, '0')}`)).toEqual(rows.map((x) => `${x.warc}\u0000${String(x.offset).padStart(12, '0')}`).sort());
      expect([...r.archivedWithoutCapture()]).toEqual([]);
    } finally {
      r.close();
    }
  });

  it('an index-only merge: lists the input WARCs it points into (name relative to its folder, size, sha256); a merged.sqlite without a warcs table lists none', async () => {
    const out = join(tmp, 'index-only');
    await mergeShards({ inputs: [shard], out, indexOnly: true });
    const names = (await readdir(join(shard, 'warcs'))).filter((f) => f.endsWith('.warc.gz')).sort();
    const r = MergedDbReader.open(join(out, 'merged.sqlite'));
    try {
      expect(r.meta('mode')).toBe('index-only');
      expect(r.meta('no such key')).toBeUndefined();
      const refs = r.referencedWarcs();
      expect(refs.map((w) => w.name.split('/').at(-1))).toEqual(names);
      for (const [i, w] of refs.entries()) {
        const bytes = await readFile(join(shard, 'warcs', names[i]!));
        expect(w).toMatchObject({ size: (await stat(join(shard, 'warcs', names[i]!))).size, sha256: createHash('sha256').update(bytes).digest('hex') });
        expect((await stat(join(out, w.name))).size, 'named relative to the output folder').toBe(w.size);
      }
    } finally {
      r.close();
    }
    const old = join(tmp, 'old-merged');
    await mkdir(old);
    await copyFile(join(out, 'merged.sqlite'), join(old, 'merged.sqlite'));
    const db = new Database(join(old, 'merged.sqlite'));
    db.exec('DROP TABLE warcs');
    db.close();
    const o = MergedDbReader.open(join(old, 'merged.sqlite'));
    try {
      expect(o.referencedWarcs()).toEqual([]);
    } finally {
      o.close();
    }
  });
});

