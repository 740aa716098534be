import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeShards } from '../storage/curate/merge.js';
import { formatStatus, shardStatus } from '../storage/curate/status.js';
import { exportWacz } from '../storage/export/wacz.js';
import { warcDate } from '../storage/warc/warc-record.js';
import { makeShard, statusFor } from './fixtures/make-shard.js';

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

interface StreamEntry {
  method: number;
  size: number;
  sha256: string;
}

/** Reads the zip with Java's ZipInputStream: a streaming reader that sees local headers only. */
async function streamUnzip(file: string): Promise<Map<string, StreamEntry>> {
  const { stdout } = await run('java', [fileURLToPath(new URL('./fixtures/ZipStreamCheck.java', import.meta.url)), file], { maxBuffer: 16 * 1024 * 1024 });
  return new Map(
    stdout
      .trimEnd()
      .split('\n')
      .map((l) => l.split('\t'))
      .map(([name, method, size, sha256]) => [name!, { method: Number(method), size: Number(size), sha256: sha256! }]),
  );
}

/** Walks the local file headers from the start of the file: each must carry its CRC and sizes (no data descriptor). */
async function localHeaders(file: string): Promise<{ name: string; flags: number; method: number; size: number }[]> {
  const buf = await readFile(file);
  const out = [];
  let at = 0;
  while (buf.readUInt32LE(at) === 0x04034b50) {
    const flags = buf.readUInt16LE(at + 6);
    let size = buf.readUInt32LE(at + 22);
    const nameLength = buf.readUInt16LE(at + 26);
    const extraLength = buf.readUInt16LE(at + 28);
    if (size === 0xffffffff) size = Number(buf.readBigUInt64LE(at + 30 + nameLength + 4));
    out.push({ name: buf.toString('utf8', at + 30, at + 30 + nameLength), flags, method: buf.readUInt16LE(at + 8), size });
    if (flags & 8) break; // sizes unknown here: a streaming reader cannot go on without a descriptor
    at += 30 + nameLength + extraLength + size;
  }
  return out;
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
    expect(pages[0]).toEqual({ format: 'json-pages-1.0', id: 'pages', title: 'All Pages', hasText: true });
    const archived = Array.from({ length: 50 }, (_, i) => i + 1).filter((id) => id % 7 !== 0 && id % 11 !== 0);
    expect(pages.slice(1).map((p) => p.url)).toEqual(archived.map((id) => `http://127.0.0.1:8080/p/${id}`));
    expect(result.pages).toBe(archived.length);
    expect(pages[1]!.ts).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('opens with a streaming zip reader (Java ZipInputStream) as well as a central-directory one (Python zipfile) (issue 15 §2)', async () => {
    const file = join(tmp, 'archive-stream.wacz');
    await exportWacz({ dir: merged, file, compressIndexAboveBytes: 0, linesPerBlock: 25 });
    const headers = await localHeaders(file);
    const central = await unzip(file);
    expect(headers.map((h) => h.name)).toEqual([...central.keys()]);
    for (const h of headers) {
      expect(h.flags & 8, `${h.name}: data descriptor flag`).toBe(0);
      expect(h.size).toBe(central.get(h.name)!.size);
    }
    const streamed = await streamUnzip(file);
    expect([...streamed.keys()]).toEqual([...central.keys()]);
    for (const [name, e] of streamed) {
      expect(e.method).toBe(0);
      expect(e.size).toBe(central.get(name)!.size);
      expect(e.sha256).toBe(central.get(name)!.sha256);
    }
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

describe('exportWacz metadata and sources (issue 15 §3 §7, issue 10 §3)', () => {
  const archivedIn = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => i + from).filter((id) => statusFor(id) === 'archived');
  const readPackage = async (file: string) => {
    const entries = await unzip(file);
    const dp = JSON.parse(entries.get('datapackage.json')!.text!) as Record<string, unknown>;
    const pages = entries.get('pages/pages.jsonl')!.text!.trimEnd().split('\n').slice(1).map((l) => JSON.parse(l) as { id: string; url: string; ts: string; title?: string; text?: string });
    return { entries, dp, pages };
  };

  it('describes the collection: title, description, main page and its date, from the merge by default', async () => {
    const file = join(tmp, 'meta-default.wacz');
    const r = await exportWacz({ dir: merged, file });
    const { dp, pages } = await readPackage(file);
    expect(dp.title).toBe('demo archive');
    const archived = archivedIn(1, 50).length;
    const missing = Array.from({ length: 50 }, (_, i) => i + 1).filter((id) => statusFor(id) === 'missing').length;
    expect(dp.description).toBe(`demo: ${archived} posts archived (${missing} missing, 0 gone, 0 restricted), captured 2024-05-01 to 2024-05-01 by lifeboat, merged from 2 inputs.`);
    expect(dp.mainPageUrl).toBe('http://127.0.0.1:8080/p/1');
    expect(dp.mainPageDate).toBe(pages[0]!.ts);
    expect(r.mainPageUrl).toBe(dp.mainPageUrl);
  });

  it('takes --title, --description and --main-page; a main page that is not archived is refused', async () => {
    const file = join(tmp, 'meta-given.wacz');
    await exportWacz({ dir: merged, file, title: 'The rescue', description: 'Everything we saved.', mainPageUrl: 'http://127.0.0.1:8080/p/5' });
    const { dp } = await readPackage(file);
    expect(dp).toMatchObject({ title: 'The rescue', description: 'Everything we saved.', mainPageUrl: 'http://127.0.0.1:8080/p/5', mainPageDate: warcDate(new Date('2024-05-01T12:00:00Z')) });
    await expect(exportWacz({ dir: merged, file, mainPageUrl: 'http://127.0.0.1:8080/p/7' })).rejects.toThrow(/--main-page http:\/\/127\.0\.0\.1:8080\/p\/7 is not archived/);
  });

  it("puts each post's title, author and text in its page entry, for ReplayWeb.page's search", async () => {
    const { pages } = await readPackage(join(tmp, 'meta-default.wacz'));
    const p40 = pages.find((p) => p.id === 'post-40')!;
    expect(p40.title).toBe('Post 40 by user1');
    expect(p40.text!.split('\n')).toEqual(['Post number 40', 'user1']);
  });

  it('exports a crawl shard as it is: its WARCs, an index of them, its pages', async () => {
    const file = join(tmp, 'shard.wacz');
    const r = await exportWacz({ dir: join(tmp, 'a'), file });
    expect(r.source).toBe('shard');
    const { entries, dp, pages } = await readPackage(file);
    const { readdir } = await import('node:fs/promises');
    const shardWarcs = (await readdir(join(tmp, 'a', 'warcs'))).sort();
    expect([...entries.keys()].filter((n) => n.startsWith('archive/'))).toEqual(shardWarcs.map((n) => `archive/${n}`));
    for (const n of shardWarcs) expect(entries.get(`archive/${n}`)!.sha256).toBe(createHash('sha256').update(await readFile(join(tmp, 'a', 'warcs', n))).digest('hex'));
    expect(pages.map((p) => p.url)).toEqual(archivedIn(1, 30).map((id) => `http://127.0.0.1:8080/p/${id}`));
    expect(dp.description).toMatch(/^demo: 24 posts archived .* from one crawl shard\.$/);
    // Every index line points at its record in the shard's own files.
    const lines = entries.get('indexes/index.cdxj')!.text!.trimEnd().split('\n');
    expect(lines.length).toBeGreaterThan(24 * 3 - 1);
    for (const line of lines) {
      const j = JSON.parse(line.slice(line.indexOf('{'))) as { url: string; offset: string; length: string; filename: string };
      const data = (await readFile(join(tmp, 'a', 'warcs', j.filename))).subarray(Number(j.offset), Number(j.offset) + Number(j.length));
      expect(gunzipSync(data).toString('latin1')).toContain(`WARC-Target-URI: ${j.url}\r\n`);
    }
    expect((await streamUnzip(file)).size).toBe(entries.size);
  });

  it('refuses a shard whose crawl is unfinished (an .open WARC), naming the file', async () => {
    const open = join(tmp, 'open-shard');
    await makeShard({ dir: open, start: 1, end: 5, leaveOpen: true });
    await expect(exportWacz({ dir: open, file: join(tmp, 'open.wacz') })).rejects.toThrow(/open-shard\/warcs\/.*\.warc\.gz\.open is unfinished/);
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
    expect(s.left).toMatchObject({ ids: 2, neverAttempted: 0 });
    expect(formatStatus(s)).toContain('left: 2 IDs (0 never attempted, 2 to retry)');
    expect(formatStatus(s)).toContain('IDs left: 11,22\n');
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
