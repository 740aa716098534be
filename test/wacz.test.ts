import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeShards } from '../storage/merge.js';
import { formatStatus, shardStatus } from '../storage/status.js';
import { exportWacz } from '../storage/wacz.js';
import { makeShard } from './fixtures/make-shard.js';

const run = promisify(execFile);
let tmp: string;
let merged: string;

interface Entry {
  name: string;
  stored: boolean;
  size: number;
  sha256: string;
  text?: string;
  data64?: string;
}

/** Reads the zip with Python's zipfile (an independent reader). */
async function unzip(file: string): Promise<Map<string, Entry>> {
  const script = `
import zipfile, json, hashlib, sys, base64
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
out = []
for i in z.infolist():
    d = z.read(i)
    e = {"name": i.filename, "stored": i.compress_type == zipfile.ZIP_STORED, "size": i.file_size, "sha256": hashlib.sha256(d).hexdigest()}
    if not i.filename.startswith("archive/"):
        e["data64"] = base64.b64encode(d).decode()
    out.append(e)
print(json.dumps(out))`;
  const { stdout } = await run('python3', ['-c', script, file], { maxBuffer: 64 * 1024 * 1024 });
  const entries = JSON.parse(stdout) as Entry[];
  return new Map(entries.map((e) => [e.name, { ...e, text: e.data64 !== undefined ? Buffer.from(e.data64, 'base64').toString('utf8') : undefined }]));
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-wacz-test-'));
  await makeShard({ dir: join(tmp, 'a'), start: 1, end: 30, node: 'alice' });
  await makeShard({ dir: join(tmp, 'b'), start: 25, end: 50, node: 'bob' });
  merged = join(tmp, 'merged');
  await mergeShards({ inputs: [join(tmp, 'a'), join(tmp, 'b')], out: merged, maxWarcBytes: 40_000 });
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('exportWacz', () => {
  it('writes a WACZ 1.1.1 with stored WARCs, the CDXJ, pages and a datapackage whose hashes match', async () => {
    const file = join(tmp, 'archive.wacz');
    const result = await exportWacz({ dir: merged, file });
    const entries = await unzip(file);
    const names = [...entries.keys()];
    expect(names.filter((n) => n.startsWith('archive/')).length).toBeGreaterThan(1);
    expect(names).toContain('indexes/index.cdxj');
    expect(names.slice(-2)).toEqual(['datapackage.json', 'datapackage-digest.json']);
    for (const n of names.filter((n) => n.startsWith('archive/'))) expect(entries.get(n)!.stored).toBe(true);

    const dp = JSON.parse(entries.get('datapackage.json')!.text!) as { profile: string; wacz_version: string; resources: { name: string; path: string; hash: string; bytes: number }[] };
    expect(dp.profile).toBe('data-package');
    expect(dp.wacz_version).toBe('1.1.1');
    expect(dp.resources.map((r) => r.path).sort()).toEqual(names.filter((n) => !n.startsWith('datapackage')).sort());
    for (const r of dp.resources) {
      const e = entries.get(r.path)!;
      expect(r.hash).toBe(`sha256:${e.sha256}`);
      expect(r.bytes).toBe(e.size);
    }
    const digest = JSON.parse(entries.get('datapackage-digest.json')!.text!) as { path: string; hash: string };
    expect(digest).toEqual({ path: 'datapackage.json', hash: `sha256:${entries.get('datapackage.json')!.sha256}` });

    const pages = entries.get('pages/pages.jsonl')!.text!.trimEnd().split('\n').map((l) => JSON.parse(l) as { url?: string; ts?: string; format?: string });
    expect(pages[0]).toEqual({ format: 'json-pages-1.0', id: 'pages', title: 'All Pages' });
    const archived = Array.from({ length: 50 }, (_, i) => i + 1).filter((id) => id % 7 !== 0 && id % 11 !== 0);
    expect(pages.slice(1).map((p) => p.url)).toEqual(archived.map((id) => `http://127.0.0.1:8080/p/${id}`));
    expect(result.pages).toBe(archived.length);
    expect(pages[1]!.ts).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('ships a large index as index.cdx.gz blocks with an index.idx pointing at each', async () => {
    const file = join(tmp, 'archive-idx.wacz');
    await exportWacz({ dir: merged, file, compressIndexAboveBytes: 0, linesPerBlock: 25 });
    const entries = await unzip(file);
    expect(entries.has('indexes/index.cdxj')).toBe(false);
    const idx = entries.get('indexes/index.idx')!.text!.trimEnd().split('\n');
    expect(idx[0]).toBe('!meta 0 {"format":"cdxj-gzip-1.0","filename":"index.cdx.gz"}');
    const gz = Buffer.from(entries.get('indexes/index.cdx.gz')!.data64!, 'base64');
    const allLines: string[] = [];
    for (const line of idx.slice(1)) {
      const m = /^(\S+ \d{14}) (\{.*\})$/.exec(line)!;
      const j = JSON.parse(m[2]!) as { offset: number; length: number; digest: string };
      const block = gz.subarray(j.offset, j.offset + j.length);
      expect(j.digest).toBe(`sha256:${createHash('sha256').update(block).digest('hex')}`);
      const lines = gunzipSync(block).toString().trimEnd().split('\n');
      expect(lines[0]!.startsWith(m[1]!)).toBe(true);
      allLines.push(...lines);
    }
    const { readFile } = await import('node:fs/promises');
    expect(allLines.join('\n')).toBe((await readFile(join(merged, 'indexes', 'index.cdxj'), 'utf8')).trimEnd());
  });
});

describe('shardStatus', () => {
  it('reports a shard: counts, WARCs, provenance, failed IDs as ranges', async () => {
    const s = await shardStatus(join(tmp, 'a'));
    expect(s.kind).toBe('shard');
    expect(s.ids).toEqual({ archived: 24, missing: 4, gone: 0, restricted: 0, failed: 2 });
    expect(s.left.firstRanges).toEqual(['11', '22']);
    expect(s.left.idsToRetry).toBe(2);
    expect(s.provenance).toMatchObject({ kind: 'shard', node: 'alice', ranges: '1-30' });
    expect(formatStatus(s)).toContain('left: 2 IDs to retry (11,22)');
  });

  it('reports a merged directory: inputs and what is left', async () => {
    const s = await shardStatus(merged);
    expect(s.kind).toBe('merged');
    expect(s.ids.failed).toBe(4);
    expect(s.left.idsToRetry).toBe(4);
    expect(s.left.firstRanges).toEqual(['11', '22', '33', '44']);
    expect(s.provenance.kind === 'merged' && s.provenance.inputs.map((i) => i.node)).toEqual(['alice', 'bob']);
    expect(formatStatus(s)).toContain('merged from 2 inputs');
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
  });
});
