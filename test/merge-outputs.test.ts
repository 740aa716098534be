import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';
import { mergeShards } from '../storage/curate/merge.js';
import { readManifest } from '../storage/shard/shard-manifest.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { makeShard } from './fixtures/make-shard.js';
import { decodePayload, readWarcDir } from './fixtures/warc-records.js';

/**
 * Issue 15 §1, §4, §5, §6: what the merge says about its inputs — true version conflicts only,
 * the same content in two encodings, a warcinfo that names its inputs, foreign records indexed
 * the way pywb and jwarc index them.
 */
const run = promisify(execFile);
let tmp: string;
let server: Server;
let base: string;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: process.env });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

/** A platform that compresses when asked (gzip or br) and otherwise answers plain and chunked, as many servers do. */
function postJson(id: number, forWget: boolean): string {
  // Post 3 was edited between the two captures: a real second version.
  return JSON.stringify({ id, author: `user${id}`, text: `Words of post ${id}${id === 3 && forWget ? ' (edited)' : ''}` });
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-merge-outputs-'));
  server = createServer((req, res) => {
    const m = /^\/api\/v1\/posts\/(\d+)$/.exec(req.url ?? '');
    if (!m) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('no');
      return;
    }
    const accept = String(req.headers['accept-encoding'] ?? '');
    const fromWget = /wget/i.test(String(req.headers['user-agent']));
    const body = Buffer.from(postJson(Number(m[1]), fromWget));
    if (/\bbr\b/.test(accept) && Number(m[1]) % 2 === 0) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'br' });
      res.end(brotliCompressSync(body));
    } else if (/gzip/.test(accept)) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(gzipSync(body));
    } else {
      res.writeHead(200, { 'content-type': 'application/json' }); // no length: chunked
      res.write(body.subarray(0, 10));
      res.end(body.subarray(10));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  server?.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('merge outputs (issue 15)', () => {
  it("does not call a post's different media URLs versions of each other (§1)", async () => {
    // Each post has an avatar and its own image, both captured as "media": different URLs, no conflict.
    const shard = join(tmp, 'media-shard');
    await makeShard({ dir: shard, start: 1, end: 20, node: 'dora', mediaBytes: 64 });
    const result = await mergeShards({ inputs: [shard], out: join(tmp, 'media-out') });
    expect(result.coverage.conflicts.versions).toEqual({ count: 0, first: [] });
  });

  it('detects the same content fetched in different encodings; both kept, listed apart from true versions (§6)', async () => {
    const profile = join(tmp, 'enc.yaml');
    await writeFile(
      profile,
      [
        'name: enc',
        `base_url: ${base}`,
        'ids: {codec: integer}',
        'captures:',
        '  - {name: post, url: "{base_url}/api/v1/posts/{id}", type: json}',
        'extract: {fields: {author: "$.author", text: "$.text"}}',
        'status: {archived: [200], missing: [404], gone: [410], restricted: [401, 403, 451]}',
      ].join('\n'),
    );
    const shard = join(tmp, 'enc-shard');
    const crawl = await cli(['crawl', '--profile', profile, '--ids', '1-4', '--out', shard, '--allow-private-network', '--quiet']);
    expect(crawl.code, crawl.stderr).toBe(0);
    const urls = [1, 2, 3, 4].map((id) => `${base}/api/v1/posts/${id}`);
    await run('wget', ['--no-proxy', '-q', '-O', '/dev/null', '-e', 'robots=off', `--warc-file=${join(tmp, 'enc-wget')}`, ...urls]);
    const out = join(tmp, 'enc-out');
    const result = await mergeShards({ inputs: [shard, join(tmp, 'enc-wget.warc.gz')], out });
    expect(result.defects).toEqual([]);

    const records = (await readWarcDir(join(out, 'warcs'))).filter((r) => r.type === 'response');
    for (const url of urls) expect(records.filter((r) => r.url === url)).toHaveLength(2); // both captures kept
    const p1 = records.filter((r) => r.url === urls[0]);
    expect(p1.map((r) => r.httpHeaders['content-encoding'] ?? 'none').sort()).toEqual(['gzip', 'none']);
    // The lifeboat copy, decoded, is the body the platform sent wget (chunked, plain).
    const gz = p1.find((r) => r.httpHeaders['content-encoding'] === 'gzip')!;
    expect(decodePayload(gz).toString()).toBe(postJson(1, false));

    const { same_content: same, versions } = result.coverage.conflicts;
    expect(same.first.map((v) => v.url).sort()).toEqual([urls[0], urls[1], urls[3]].sort());
    expect(same.count).toBe(3);
    for (const v of same.first) {
      expect(v.versions).toHaveLength(2);
      expect(new Set(v.versions.map((x) => x.decoded_digest)).size).toBe(1);
      expect(new Set(v.versions.map((x) => x.digest)).size).toBe(2);
      expect(v.versions.map((x) => x.encoding).sort()).toEqual([Number(v.url.slice(-1)) % 2 === 0 ? 'br' : 'gzip', 'chunked'].sort());
    }
    // Post 3 was edited: a true conflict, whatever the encodings.
    expect(versions.count).toBe(1);
    expect(versions.first[0]!.url).toBe(urls[2]);
    expect(versions.first[0]!.versions.map((x) => x.input).sort()).toEqual([1, 2]);
    expect(new Set(versions.first[0]!.versions.map((x) => x.decoded_digest)).size).toBe(2);
    const json = JSON.parse(await readFile(join(out, 'coverage.json'), 'utf8')) as typeof result.coverage;
    expect(json.conflicts.same_content.count).toBe(3);
  });

  it("names the inputs (file, sha256) in the merge's warcinfo and marks copied warcinfo records (§4)", async () => {
    const a = join(tmp, 'prov-a');
    await makeShard({ dir: a, start: 1, end: 10, node: 'alice', warcSizeBytes: 8000 });
    await run('wget', ['--no-proxy', '-q', '-O', '/dev/null', '-e', 'robots=off', `--warc-file=${join(tmp, 'prov-wget')}`, `${base}/api/v1/posts/1`]);
    const out = join(tmp, 'prov-out');
    const r = await cli(['merge', a, join(tmp, 'prov-wget.warc.gz'), '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('; 0 URLs with differing versions, 0 with the same content in another encoding (coverage.json);');
    const version = (JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    const records = await readWarcDir(join(out, 'warcs'));
    const own = records.filter((x) => x.type === 'warcinfo' && !x.headers['WARC-Lifeboat-Copied-From']);
    expect(own.length).toBeGreaterThan(0);
    const fields = own[0]!.payload.toString('utf8');
    expect(fields).toContain(`software: lifeboat/${version}\r\n`);
    expect(own[0]!.headers['WARC-Filename']).toBe(own[0]!.file);
    const manifest = (await readManifest(a))!;
    expect(manifest.warcs!.length).toBeGreaterThan(1);
    const wgetSha = createHash('sha256').update(await readFile(join(tmp, 'prov-wget.warc.gz'))).digest('hex');
    const listed = [...fields.matchAll(/^input-\d+: (\S+) sha256:([0-9a-f]{64})/gm)].map((m) => `${m[1]} ${m[2]}`);
    expect(listed).toEqual([...manifest.warcs!.map((w) => `prov-a/warcs/${w.name} ${w.sha256}`), `prov-wget.warc.gz ${wgetSha}`]);
    expect(fields).toContain(`input-count: ${listed.length}\r\n`);
    // Every input warcinfo is copied, marked with the input file it came from (its WARC-Filename).
    const copies = records.filter((x) => x.type === 'warcinfo' && x.headers['WARC-Lifeboat-Copied-From']);
    expect(copies.map((c) => c.headers['WARC-Lifeboat-Copied-From']).sort()).toEqual([...manifest.warcs!.map((w) => `prov-a/warcs/${w.name}`), 'prov-wget.warc.gz'].sort());
    for (const c of copies) {
      expect(c.headers['WARC-Lifeboat-Copied-From']!.endsWith(c.headers['WARC-Filename']!)).toBe(true);
      expect(c.blockDigestOk || !c.headers['WARC-Block-Digest']).toBe(true);
    }
    expect((await verifyPaths([out])).defects).toEqual([]);
  });

  it('extends a merged directory written before these changes (no encoding column, no search index)', async () => {
    const a = join(tmp, 'old-a');
    const b = join(tmp, 'old-b');
    await makeShard({ dir: a, start: 1, end: 10, node: 'alice' });
    await makeShard({ dir: b, start: 11, end: 20, node: 'bob' });
    const out = join(tmp, 'old-out');
    await mergeShards({ inputs: [a], out });
    const db = new Database(join(out, 'merged.sqlite'));
    db.exec('ALTER TABLE records DROP COLUMN encoding; DROP TABLE decoded; DROP TABLE post_search; DROP TABLE post_search_docs; DROP TABLE post_search_inputs');
    db.close();
    const r = await cli(['merge', b, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const found = await cli(['search', out, 'number', '--json', '--limit', '100']);
    expect(found.stdout.trimEnd().split('\n').map((l) => (JSON.parse(l) as { id: number }).id).sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 13, 15, 16, 17, 18, 19, 20]);
  });

  it('indexes foreign non-HTTP records (wget log, arguments) with a SURT-style key and no payload digest, as pywb and jwarc do (§5)', async () => {
    const out = join(tmp, 'prov-out');
    const lines = (await readFile(join(out, 'indexes', 'index.cdxj'), 'utf8')).trimEnd().split('\n');
    const foreign = lines.filter((l) => l.includes('"url":"metadata://'));
    expect(foreign.map((l) => l.split(' ', 1)[0]).sort()).toEqual(['org,gnu)/software/wget/warc/wget.log', 'org,gnu)/software/wget/warc/wget_arguments.txt']);
    for (const l of foreign) expect(JSON.parse(l.slice(l.indexOf('{'))) as object).not.toHaveProperty('digest');
    // HTTP records keep their digest.
    const http = lines.filter((l) => l.includes(`"url":"${base}/api/v1/posts/1"`));
    expect(http.length).toBeGreaterThan(0);
    for (const l of http) expect(JSON.parse(l.slice(l.indexOf('{'))) as object).toHaveProperty('digest');
  });
});
