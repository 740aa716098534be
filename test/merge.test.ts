import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { WARCParser } from 'warcio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCodec } from '../config/id-codec.js';
import { parseRanges, RangeSet } from '../config/id-ranges.js';
import { mergeShards } from '../storage/curate/merge.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { readWarc, type ReadRecord } from '../storage/warc/warc-reader.js';
import { warcDate } from '../storage/warc/warc-record.js';
import { repairOpenWarcs } from '../storage/warc/warc-repair.js';
import { makeShard, pageBody, statusFor } from './fixtures/make-shard.js';

const run = promisify(execFile);
let tmp: string;
let server: Server;
let base: string;
const shards: Record<string, string> = {};

async function outputRecords(dir: string): Promise<ReadRecord[]> {
  const out: ReadRecord[] = [];
  for (const name of (await readdir(join(dir, 'warcs'))).sort()) {
    for await (const item of readWarc(join(dir, 'warcs', name))) {
      if (item.kind === 'defect') throw new Error(`defect in merged output: ${item.what}`);
      out.push(item);
    }
  }
  return out;
}

function expectNoDuplicates(records: ReadRecord[]): void {
  const ids = records.map((r) => r.recordId);
  expect(new Set(ids).size).toBe(ids.length);
  const keys = records.filter((r) => r.type === 'response' || r.type === 'resource').map((r) => `${r.targetUri} ${r.payloadSha1}`);
  expect(new Set(keys).size).toBe(keys.length);
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-merge-'));
  // A demo-like platform for wget to crawl.
  server = createServer((req, res) => {
    const m = /^\/p\/(\d+)$/.exec(req.url ?? '');
    if (m) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(pageBody(Number(m[1])));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not here');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  shards.a = join(tmp, 'shard-a');
  shards.b = join(tmp, 'shard-b');
  shards.c = join(tmp, 'shard-c');
  await makeShard({ dir: shards.a, start: 1, end: 60, node: 'alice', warcSizeBytes: 20_000 });
  // B overlaps A on 40-60; posts 50-52 were edited in between: different versions.
  await makeShard({ dir: shards.b, start: 40, end: 100, node: 'bob', variant: 'edited', variantIds: (id) => id >= 50 && id <= 52, date: new Date('2024-05-02T08:00:00Z') });
  // C was killed (its last WARC left .open) and resumed: the crawler repairs, then goes on.
  await makeShard({ dir: shards.c, start: 95, end: 120, node: 'carol', leaveOpen: true });
  await repairOpenWarcs(join(shards.c, 'warcs'));
  await makeShard({ dir: shards.c, start: 121, end: 140, node: 'carol', date: new Date('2024-05-03T08:00:00Z') });
  const db = new Database(join(shards.c, 'shard.sqlite'));
  db.prepare(`UPDATE meta SET value = ? WHERE key = 'ranges'`).run(JSON.stringify([[95, 140]]));
  db.close();
  // As the crawler does on resume, shard.json lists every closed WARC, the repaired one too.
  const manifestC = JSON.parse(await readFile(join(shards.c, 'shard.json'), 'utf8')) as { warcs: { name: string; size: number; sha256: string }[] };
  for (const name of (await readdir(join(shards.c, 'warcs'))).filter((n) => !manifestC.warcs.some((w) => w.name === n))) {
    const bytes = await readFile(join(shards.c, 'warcs', name));
    manifestC.warcs.push({ name, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
  }
  await writeFile(join(shards.c, 'shard.json'), JSON.stringify(manifestC));
  // A wget WARC of pages 1-3 and one 404, from a real wget.
  await run('wget', ['--no-proxy', '-q', '-O', '/dev/null', '-e', 'robots=off', `--warc-file=${join(tmp, 'wget')}`, `${base}/p/1`, `${base}/p/2`, `${base}/p/3`, `${base}/nothing`]).catch((err: { code?: number }) => {
    if (err.code !== 8) throw err; // wget exits 8 when a URL answered 404
  });
});

afterAll(async () => {
  server?.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('mergeShards', () => {
  it('merges overlapping, killed-and-resumed and foreign (wget) inputs into a union without duplicate records', async () => {
    const out = join(tmp, 'out-all');
    const result = await mergeShards({ inputs: [shards.a!, shards.b!, shards.c!, join(tmp, 'wget.warc.gz')], out, maxWarcBytes: 64 * 1024 });
    expect(result.defects).toEqual([]);
    expect(result.duplicates).toBeGreaterThan(0);
    const records = await outputRecords(out);
    expectNoDuplicates(records);
    expect((await readdir(join(out, 'warcs'))).length).toBeGreaterThan(1);
    // Every archived ID of the union is there with its post and page; the avatar once.
    const urls = new Set(records.filter((r) => r.type === 'response').map((r) => r.targetUri));
    for (let id = 1; id <= 140; id++) {
      if (statusFor(id) === 'archived') {
        expect(urls.has(`http://127.0.0.1:8080/api/v1/posts/${id}`)).toBe(true);
        expect(urls.has(`http://127.0.0.1:8080/p/${id}`)).toBe(true);
      }
    }
    expect(records.filter((r) => r.targetUri === 'http://127.0.0.1:8080/media/avatar.gif' && r.type !== 'request')).toHaveLength(1);
    // The wget records are in, with their request records.
    expect(records.filter((r) => r.targetUri === `${base}/p/2`).map((r) => r.type).sort()).toEqual(['request', 'response']);
    // Different versions of the same post are both kept and listed.
    expect(records.filter((r) => r.type === 'response' && r.targetUri === 'http://127.0.0.1:8080/p/51')).toHaveLength(2);
    // A conflict is one URL with different payloads, each listed with its date and input (issue 15 §1).
    const versions = result.coverage.conflicts.versions;
    expect(versions.count).toBe(6);
    expect(versions.first.map((v) => v.url)).toEqual([50, 51, 52].map((id) => `http://127.0.0.1:8080/api/v1/posts/${id}`).concat([50, 51, 52].map((id) => `http://127.0.0.1:8080/p/${id}`)));
    for (const v of versions.first) {
      expect(v.versions.map((x) => [x.input, x.date])).toEqual([
        [1, warcDate(new Date('2024-05-01T12:00:00Z'))],
        [2, warcDate(new Date('2024-05-02T08:00:00Z'))],
      ]);
      const held = records.filter((r) => r.type === 'response' && r.targetUri === v.url).map((r) => r.payloadSha1);
      expect(v.versions.map((x) => x.digest).sort()).toEqual(held.sort());
    }
    expect(result.coverage.conflicts.same_content.count).toBe(0);
    // Coverage is exact: statuses of the union, and the failed IDs (no final status) as ranges.
    const expected: Record<string, number> = { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0 };
    for (let id = 1; id <= 140; id++) expected[statusFor(id)]!++;
    expect(result.coverage.statuses).toEqual(expected);
    const missing = parseRanges(await readFile(join(out, 'missing-ranges.txt'), 'utf8'), createCodec('integer'));
    expect([...missing.ids()]).toEqual([...new RangeSet([{ start: 1, end: 140 }]).ids()].filter((id) => statusFor(id) === 'failed'));
    expect(result.coverage.inputs.map((i) => i.node)).toEqual(['alice', 'bob', 'carol', null]);
    const json = JSON.parse(await readFile(join(out, 'coverage.json'), 'utf8'));
    expect(json.missing_ids).toBe(expected.failed);
    // The merged directory verifies.
    const report = await verifyPaths([out]);
    expect(report.defects).toEqual([]);
    expect(report.records).toBe(records.length);
  });

  it('writes a CDXJ sorted by SURT whose every line points at its record', async () => {
    const out = join(tmp, 'out-all');
    const lines = (await readFile(join(out, 'indexes', 'index.cdxj'), 'utf8')).trimEnd().split('\n');
    expect(lines.length).toBeGreaterThan(200);
    for (let i = 1; i < lines.length; i++) expect(Buffer.compare(Buffer.from(lines[i - 1]!), Buffer.from(lines[i]!))).toBeLessThanOrEqual(0);
    expect(lines.some((l) => l.startsWith('com,example') || l.includes(`"url":"${base}/p/1"`))).toBe(true);
    const handles = new Map<string, Awaited<ReturnType<typeof open>>>();
    try {
      for (const line of lines) {
        const m = /^(\S+) (\d{14}) (\{.*\})$/.exec(line);
        expect(m).not.toBeNull();
        const j = JSON.parse(m![3]!) as { url: string; mime?: string; status?: string; digest?: string; length: string; offset: string; filename: string };
        let fh = handles.get(j.filename);
        if (!fh) handles.set(j.filename, (fh = await open(join(out, 'warcs', j.filename), 'r')));
        const buf = Buffer.alloc(Number(j.length));
        await fh.read(buf, 0, buf.length, Number(j.offset));
        const parser = new WARCParser([buf]);
        const rec = (await parser.parse())!;
        expect(rec.warcTargetURI).toBe(j.url);
        if (rec.warcPayloadDigest) expect(rec.warcPayloadDigest.split(':')[1]).toBe(j.digest);
        if (j.status) expect(String(rec.httpHeaders?.statusCode)).toBe(j.status);
        expect(m![2]).toBe(rec.warcDate!.replace(/[-:T]/g, '').slice(0, 14));
      }
    } finally {
      for (const fh of handles.values()) await fh.close();
    }
  });

  it('keeps the good records of a damaged shard (flipped byte, torn tail), reports file and offset, and goes on', async () => {
    const bad = join(tmp, 'shard-bad');
    await cp(shards.b!, bad, { recursive: true });
    const warc = join(bad, 'warcs', (await readdir(join(bad, 'warcs')))[0]!);
    const recs: ReadRecord[] = [];
    for await (const item of readWarc(warc)) if (item.kind === 'record') recs.push(item);
    const flipped = recs.find((r) => r.type === 'response' && r.targetUri === 'http://127.0.0.1:8080/api/v1/posts/90')!;
    const data = Buffer.from(await readFile(warc));
    data[flipped.offset + 40]! ^= 0x10;
    const last = recs[recs.length - 1]!;
    await writeFile(warc, data.subarray(0, last.offset + 15));
    const out = join(tmp, 'out-bad');
    const result = await mergeShards({ inputs: [bad, shards.c!], out });
    expect(result.defects.map((d) => [d.file, d.offset])).toEqual([
      [warc, undefined], // changed since shard.json was written: reported, and merged by its records
      [warc, flipped.offset],
      [warc, last.offset],
    ]);
    const records = await outputRecords(out);
    expectNoDuplicates(records);
    expect(records.length).toBeGreaterThan(recs.length); // B's good records and all of C
    expect(records.some((r) => r.type === 'response' && r.targetUri === 'http://127.0.0.1:8080/api/v1/posts/90')).toBe(false);
    expect(records.some((r) => r.targetUri === 'http://127.0.0.1:8080/p/90')).toBe(true);
    // Post 90 lost its primary record: not final, so it is listed to be crawled again.
    const missing = await readFile(join(out, 'missing-ranges.txt'), 'utf8');
    expect(parseRanges(missing, createCodec('integer')).has(90)).toBe(true);
    expect((await verifyPaths([out])).defects).toEqual([]);
  });

  it('merges incrementally: a new shard is added without re-reading the rest; an input merged before is skipped', async () => {
    const out = join(tmp, 'out-inc');
    const first = await mergeShards({ inputs: [shards.a!, shards.b!], out });
    expect(first.inputs.map((i) => i.status)).toEqual(['merged', 'merged']);
    const before = await readdir(join(out, 'warcs'));
    const second = await mergeShards({ inputs: [shards.c!, shards.a!], out });
    expect(second.inputs.map((i) => i.status)).toEqual(['merged', 'skipped']);
    let cBytes = 0;
    for (const n of await readdir(join(shards.c!, 'warcs'))) cBytes += (await readFile(join(shards.c!, 'warcs', n))).length;
    expect(second.bytesRead).toBe(cBytes);
    const after = await readdir(join(out, 'warcs'));
    expect(after.filter((n) => before.includes(n))).toEqual(before); // earlier merged WARCs untouched
    expectNoDuplicates(await outputRecords(out));
    const full = await mergeShards({ inputs: [shards.a!, shards.b!, shards.c!], out: join(tmp, 'out-full') });
    expect(second.coverage.statuses).toEqual(full.coverage.statuses);
    expect(second.coverage.missing_ids).toBe(full.coverage.missing_ids);
    expect(second.cdxjLines).toBe(full.cdxjLines);
    expect((await verifyPaths([out])).defects).toEqual([]);
  });

  it('merges plain and whole-file-gzip WARCs by re-compressing each record into its own member', async () => {
    const { gunzipSync, gzipSync } = await import('node:zlib');
    const dir = join(tmp, 'foreign');
    await mkdir(dir, { recursive: true });
    const plain = gunzipSync(await readFile(join(tmp, 'wget.warc.gz')));
    await writeFile(join(dir, 'plain.warc'), plain);
    await writeFile(join(dir, 'whole.warc.gz'), gzipSync(plain));
    const out = join(tmp, 'out-foreign');
    const result = await mergeShards({ inputs: [join(dir, 'plain.warc'), join(dir, 'whole.warc.gz')], out });
    expect(result.defects).toEqual([]);
    const records = await outputRecords(out);
    expectNoDuplicates(records);
    expect(records.every((r) => r.exact)).toBe(true);
    expect(result.alreadyMerged).toBeGreaterThan(0); // the second file holds the same records
    expect((await verifyPaths([out])).defects).toEqual([]);
  });
});

describe('merge: one ID gone in one shard and restricted in another (issue 21 §5)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lifeboat-merge-gone-restricted-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const setStatus = (shard: string, id: number, status: string, http: number) => {
    const db = new Database(join(shard, 'shard.sqlite'));
    try {
      db.prepare('UPDATE ids SET status = ?, http_status = ? WHERE id = ?').run(status, http, id);
    } finally {
      db.close();
    }
  };

  it('restricted wins in either input order, the conflict is listed, and each status is counted once', async () => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    await makeShard({ dir: a, start: 1, end: 6, node: 'a' });
    await makeShard({ dir: b, start: 1, end: 6, node: 'b' });
    setStatus(a, 5, 'gone', 410);
    setStatus(b, 5, 'restricted', 403);
    for (const [name, inputs] of [['ab', [a, b]], ['ba', [b, a]]] as const) {
      const out = join(dir, name);
      const result = await mergeShards({ inputs: [...inputs], out });
      const db = new Database(join(out, 'merged.sqlite'), { readonly: true });
      try {
        expect(db.prepare('SELECT status, http_status FROM ids WHERE id = 5').get()).toEqual({ status: 'restricted', http_status: 403 });
      } finally {
        db.close();
      }
      expect(result.coverage.statuses).toMatchObject({ restricted: 1, gone: 0 });
      expect(result.coverage.conflicts.statuses.count).toBe(1);
      expect(result.coverage.conflicts.statuses.first).toEqual([expect.objectContaining({ id: 5 })]);
      const pair = result.coverage.conflicts.statuses.first[0]!;
      expect([pair.status, pair.other_status].sort()).toEqual(['gone', 'restricted']);
    }
  });
});
