/**
 * Issue 7, hostile input: what a collapsing or malicious platform, a tampered shard, or an
 * abusive client can send, and what lifeboat does with it. Everything runs on loopback; private
 * and link-local addresses are judged by the scope guard's decision functions, never contacted.
 * Scope-guard basics (every address class, credentials, wildcard hosts, localhost via undici)
 * are in test/scope-guard.test.ts; tracker token/body/nick abuse in test/tracker-api.test.ts.
 */
import type dns from 'node:dns';
import { createServer, type Server } from 'node:http';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, constants as zc, gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScopeError } from '../config/errors.js';
import { silentLogger } from '../config/logger.js';
import { runNode } from '../node/loop.js';
import { ScopeGuard } from '../crawler/fetch/scope-guard.js';
import { mergeShards } from '../storage/curate/merge.js';
import { readWarc } from '../storage/warc/warc-reader.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { packItems } from '../tracker/store/item-store.js';
import { RangeSet } from '../config/id-ranges.js';
import { parseProject } from '../tracker/store/project.js';
import { buildTrackerApp } from '../tracker/server/server.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';
import { prng } from '../scripts/soak/harness.js';
import { hostileCrawl } from '../scripts/soak/reliability-scenarios.js';
import { postJson, startHostileServer, type Route } from './fixtures/hostile-server.js';
import { makeShard } from './fixtures/make-shard.js';
import { readWarcDir } from './fixtures/warc-records.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-hostile-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const peakRssMiB = () => process.resourceUsage().maxRSS / 1024;

describe('hostile responses from the platform', () => {
  it('gzip and brotli bombs: extraction capped, raw bytes archived as sent, memory bounded', async () => {
    // 256 MiB of zeros each: gzip as 16 members of 16 MiB (~260 KB), brotli (~400 bytes).
    const member = gzipSync(Buffer.alloc(16 << 20));
    const gzipBomb = Buffer.concat(Array.from({ length: 16 }, () => member));
    const brBomb = brotliCompressSync(Buffer.alloc(256 << 20), { params: { [zc.BROTLI_PARAM_QUALITY]: 1 } });
    const route: Route = (path) => {
      if (path === '/api/v1/posts/1') return { kind: 'reply', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipBomb };
      if (path === '/api/v1/posts/2') return { kind: 'reply', headers: { 'content-type': 'application/json', 'content-encoding': 'br' }, body: brBomb };
      return undefined;
    };
    const before = peakRssMiB();
    const r = await hostileCrawl({ dir: join(tmp, 'bombs'), posts: 3, route: () => route, politeness: { max_body_bytes: 8 << 20, max_extract_bytes: 1 << 20 } });
    const grew = peakRssMiB() - before;
    expect(r.exits).toEqual([0]);
    expect(r.judgement.defects).toEqual([]);
    expect(r.judgement.final).toBe(3);
    const records = await readWarcDir(join(r.out, 'warcs'));
    const payloadOf = (id: number) => records.find((x) => x.type === 'response' && x.url.endsWith(`/api/v1/posts/${id}`))!;
    expect(payloadOf(1).payload.equals(gzipBomb)).toBe(true);
    expect(payloadOf(1).httpHeaders['content-encoding']).toBe('gzip');
    expect(payloadOf(2).payload.equals(brBomb)).toBe(true);
    // Decoding 2 × 256 MiB would show up in the peak RSS; the 1 MiB extraction cap keeps it small.
    expect(grew).toBeLessThan(150);
  }, 60_000);

  it('endless headers, invalid UTF-8, malformed JSON and HTML: archived or failed, never a crash', async () => {
    const badUtf8 = Buffer.concat([Buffer.from('{"id": 4, "author": {"handle": "'), Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80]), Buffer.from('"}, "media": []}')]);
    const badJson = Buffer.from('{"id": 5, "media": [{"url": "/media/5.jpg"}, {"url": ');
    const badHtml = Buffer.concat([Buffer.from('<html><body><img class="media" src="'), Buffer.from([0xff, 0x00, 0x3c]), Buffer.from('"><div><<<</p></td><img src=></body')]);
    const route: Route = (path) => {
      if (path === '/api/v1/posts/3') return { kind: 'endless-headers' };
      if (path === '/api/v1/posts/4') return { kind: 'reply', headers: { 'content-type': 'application/json; charset=utf-8' }, body: badUtf8 };
      if (path === '/api/v1/posts/5') return { kind: 'reply', headers: { 'content-type': 'application/json' }, body: badJson };
      if (path === '/p/4' || path === '/p/5') return { kind: 'reply', headers: { 'content-type': 'text/html; charset=utf-8' }, body: badHtml };
      return undefined;
    };
    const r = await hostileCrawl({ dir: join(tmp, 'malformed'), posts: 6, route: () => route, politeness: { max_attempts: 3 } });
    expect(r.exits).toEqual([3]);
    expect(r.judgement.defects).toEqual([]);
    expect(r.judgement.failed.map((f) => f.id)).toEqual([3]);
    expect(r.judgement.failed[0]!.lastError).toMatch(/header/i);
    // Each of the 3 attempts stops at undici's 256 KiB header cap (plus what sat in socket buffers).
    expect(r.server.endlessBytes).toBeLessThan(64 << 20);
    expect(r.judgement.final).toBe(5);
    const records = await readWarcDir(join(r.out, 'warcs'));
    const payloadOf = (path: string) => records.find((x) => x.type === 'response' && x.url.endsWith(path))!.payload;
    expect(payloadOf('/api/v1/posts/4').equals(badUtf8)).toBe(true);
    expect(payloadOf('/api/v1/posts/5').equals(badJson)).toBe(true);
    expect(payloadOf('/p/4').equals(badHtml)).toBe(true);
  }, 60_000);

  it('media URLs and redirects out of scope never reach the canary on 127.0.0.2', async () => {
    const canary = await startHostileServer({ host: '127.0.0.2' });
    try {
      const hostile = [
        `${canary.url}/stolen.jpg`,
        `http://127.0.0.2:${canary.port}/again.jpg`,
        `gopher://127.0.0.2:${canary.port}/x`,
        'file:///etc/passwd',
        'data:image/png;base64,iVBORw0KGgo=',
        'javascript:alert(1)',
        'ftp://127.0.0.2/x',
      ];
      const route: Route = (path) => {
        if (path === '/api/v1/posts/1') return { kind: 'reply', headers: { 'content-type': 'application/json' } as Record<string, string>, body: postJson(1, '', { media: hostile.map((url) => ({ url })) }) };
        // The platform itself redirects a media file and a post to the canary.
        if (path === '/media/2.jpg') return { kind: 'reply', status: 302, headers: { location: `${canary.url}/via-redirect.jpg` } as Record<string, string> };
        if (path === '/api/v1/posts/3') return { kind: 'reply', status: 301, headers: { location: `http://127.0.0.2:${canary.port}/api/v1/posts/3` } };
        return undefined;
      };
      const r = await hostileCrawl({ dir: join(tmp, 'scope'), posts: 3, route: () => route });
      expect(canary.hits.size).toBe(0);
      expect(r.judgement.defects).toEqual([]);
      // Post 3 answered only with a redirect out of scope: recorded, not followed, failed with the reason.
      expect(r.judgement.failed.map((f) => f.id)).toEqual([3]);
      expect(r.judgement.failed[0]!.lastError).toMatch(/not in the profile's scope/);
      const db = new Database(join(r.out, 'shard.sqlite'), { readonly: true });
      const urls = db.prepare<[], { url: string; state: string; last_error: string | null }>('SELECT url, state, last_error FROM urls').all();
      db.close();
      for (const u of hostile) {
        const row = urls.find((x) => x.url.startsWith(u.slice(0, 20)));
        expect(row, u).toBeDefined();
        expect(row!.state, u).toBe('skipped');
        expect(row!.last_error, u).toMatch(/refused|not in the profile's scope/);
      }
      const redirected = urls.find((x) => x.url.endsWith('/media/2.jpg'))!;
      expect(redirected.last_error).toMatch(/127\.0\.0\.2 is not in the profile's scope/);
    } finally {
      await canary.close();
    }
  }, 60_000);
});

describe('the scope guard on addresses no test may contact', () => {
  const fakeDns = (table: Record<string, dns.LookupAddress[]>): typeof dns.lookup =>
    ((hostname: string, _o: unknown, cb: (e: Error | null, a: dns.LookupAddress[]) => void) => cb(null, table[hostname] ?? [])) as unknown as typeof dns.lookup;
  const lookup = (g: ScopeGuard, host: string) => new Promise<NodeJS.ErrnoException | null>((res) => g.lookup(host, { all: true }, (err) => res(err)));

  it('refuses media URLs at private, link-local and metadata addresses even when listed in scope', () => {
    const guard = new ScopeGuard({ hosts: ['169.254.169.254', '10.0.0.1', '192.168.1.1', '172.16.0.1', '[fd00::1]', 'cdn.example.org'], allowPrivateNetwork: false });
    for (const url of ['http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/a.jpg', 'http://192.168.1.1/', 'http://172.16.0.1/', 'http://[fd00::1]/', 'http://0xa9fea9fe/', 'http://2852039166/']) {
      expect(() => guard.checkUrl(url), url).toThrow(ScopeError);
    }
  });

  it('refuses DNS names that resolve to such addresses (rebinding, mapped and NAT64 forms), with or without the flag for unspecified', async () => {
    const dnsLookup = fakeDns({
      'meta.example.org': [{ address: '169.254.169.254', family: 4 }],
      'mapped.example.org': [{ address: '::ffff:169.254.169.254', family: 6 }],
      'nat64.example.org': [{ address: '64:ff9b::a9fe:a9fe', family: 6 }],
      'zero.example.org': [{ address: '0.0.0.0', family: 4 }],
      'lan.example.org': [{ address: '192.168.0.7', family: 4 }],
    });
    const strict = new ScopeGuard({ hosts: ['*.example.org'], allowPrivateNetwork: false, dnsLookup });
    for (const host of ['meta.example.org', 'mapped.example.org', 'nat64.example.org', 'zero.example.org', 'lan.example.org']) {
      expect((await lookup(strict, host))?.code, host).toBe('E_SCOPE_ADDRESS');
    }
    const open = new ScopeGuard({ hosts: ['*.example.org'], allowPrivateNetwork: true, dnsLookup });
    expect((await lookup(open, 'zero.example.org'))?.code).toBe('E_SCOPE_ADDRESS');
  });
});

describe('names from outside never become paths outside the shard', () => {
  it('a shard.json listing ../ names: verify reports it, merge refuses the shard, nothing outside is read', async () => {
    const shard = join(tmp, 'trav', 'shard');
    await makeShard({ dir: shard, start: 1, end: 10 });
    // A valid WARC sits outside the shard, where a ../ name would reach.
    const [name] = await readdir(join(shard, 'warcs'));
    await copyFile(join(shard, 'warcs', name!), join(tmp, 'trav', 'outside.warc.gz'));
    const manifest = JSON.parse(await readFile(join(shard, 'shard.json'), 'utf8'));
    manifest.warcs.push({ name: '../../outside.warc.gz', size: 1, sha256: 'a'.repeat(64), records: 1 });
    await writeFile(join(shard, 'shard.json'), JSON.stringify(manifest));
    const report = await verifyPaths([shard]);
    expect(report.defects.map((d) => d.what).join('\n')).toMatch(/WARC name "\.\.\/\.\.\/outside\.warc\.gz" is not a plain file name/);
    expect(report.files).toBe(1);
    await expect(mergeShards({ inputs: [shard], out: join(tmp, 'trav', 'merged') })).rejects.toMatchObject({ code: 'E_MANIFEST' });
  });

  it('a node refuses an item whose ID is not a plain integer (it would name a directory)', async () => {
    let claimed = 0;
    const fake: Server = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/api/v1/register') return res.end(JSON.stringify({ node_id: 1, nick: 'v', token: 't'.repeat(40) }));
      claimed++;
      res.end(JSON.stringify({ item: { id: '../../../escaped', ranges: [[1, 2]], lease_id: 'l', lease_expires_at: new Date().toISOString() }, profile: 'demo', lease_secs: 60, upload: null }));
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(fake.address() as { port: number }).port}`;
    const out = join(tmp, 'trav', 'node', 'a', 'b');
    try {
      await expect(runNode({ trackerUrl: url, nick: 'v', outDir: out, logger: silentLogger, nodeName: 'v', allowPrivateNetwork: true, exitWhenDone: true })).rejects.toMatchObject({ code: 'E_TRACKER_REPLY' });
      expect(claimed).toBe(1);
      expect(existsSync(join(out, '../../../escaped'))).toBe(false);
      expect(await readdir(join(out, 'items'))).toEqual([]);
    } finally {
      await new Promise<void>((r) => fake.close(() => r()));
    }
  });
});

describe('the WARC reader under random damage (seeded fuzz)', () => {
  it('never throws, hangs or allocates without bound on 2,000 mutated WARCs', async () => {
    const shard = join(tmp, 'fuzz', 'shard');
    await makeShard({ dir: shard, start: 1, end: 3 });
    const [name] = await readdir(join(shard, 'warcs'));
    const gz = await readFile(join(shard, 'warcs', name!));
    const { gunzipSync } = await import('node:zlib');
    const plain = gunzipSync(gz);
    const rand = prng(7);
    const int = (n: number) => Math.floor(rand() * n);
    const mutate = (src: Buffer): Buffer => {
      let b = Buffer.from(src);
      const ops = 1 + int(4);
      for (let k = 0; k < ops; k++) {
        const at = int(b.length);
        switch (int(7)) {
          case 0: // flip bytes
            for (let i = 0; i < 1 + int(8); i++) b[int(b.length)] = int(256);
            break;
          case 1: // truncate
            b = b.subarray(0, at);
            break;
          case 2: // insert garbage
            b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + int(64) }, () => int(256))), b.subarray(at)]);
            break;
          case 3: // duplicate a slice
            b = Buffer.concat([b.subarray(0, at), b.subarray(int(b.length), int(b.length)), b.subarray(at)]);
            break;
          case 4: { // absurd Content-Length
            const s = b.toString('latin1').replace(/Content-Length: \d+/, `Content-Length: ${['99999999999999', '-5', '1e9', '0', String(2 ** 53)][int(5)]}`);
            b = Buffer.from(s, 'latin1');
            break;
          }
          case 5: // delete a slice
            b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + int(200)))]);
            break;
          default: // swap CRLFs for LFs somewhere
            b = Buffer.from(b.toString('latin1').replace('\r\n\r\n', '\n\n'), 'latin1');
        }
      }
      return b;
    };
    const file = join(tmp, 'fuzz', 'case.warc');
    const heapStart = process.memoryUsage().heapUsed;
    let worstMs = 0;
    let items = 0;
    const cases = Number(process.env.LIFEBOAT_FUZZ_CASES ?? 2000);
    let worstCase = -1;
    for (let i = 0; i < cases; i++) {
      // Half the cases damage the compressed file, half the plain one; a few gzip the damaged plain WARC.
      const base = i % 2 === 0 ? gz : plain;
      let bytes = mutate(base);
      if (i % 10 === 1) bytes = gzipSync(bytes);
      await writeFile(file, bytes);
      const t0 = performance.now();
      try {
        for await (const item of readWarc(file)) {
          items++;
          if (performance.now() - t0 > 5000) throw new Error(`case ${i}: still reading after 5 s`);
          void item;
        }
      } catch (err) {
        throw new Error(`case ${i} (seed 7) threw: ${(err as Error).stack}`);
      }
      const ms = performance.now() - t0;
      if (ms > worstMs) [worstMs, worstCase] = [ms, i];
    }
    const heapGrowth = (process.memoryUsage().heapUsed - heapStart) / 2 ** 20;
    expect(items).toBeGreaterThan(cases);
    expect(worstMs, `slowest: case ${worstCase}`).toBeLessThan(2000);
    expect(heapGrowth).toBeLessThan(200);
  }, 120_000);
});

describe('tracker API abuse (beyond test/tracker-api.test.ts)', () => {
  const ADMIN = 'admin-token-for-hostile-tests-0123';
  const VERSION = '0.1.0';
  let app: FastifyInstance;
  let store: SqliteItemStore;
  let base: string;
  const project = parseProject({ name: 'abuse', profile: 'demo', item_size: 10, lease_secs: 60, min_client_version: VERSION });
  const stats = { counts: { archived: 10, missing: 0, gone: 0, restricted: 0, failed: 0 }, bytes: 1, warcs: [{ name: 'demo-1.warc.gz', size: 1, sha256: 'c'.repeat(64) }] };

  async function call(path: string, body: unknown, token?: string) {
    const headers: Record<string, string> = { 'x-lifeboat-version': VERSION, 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await request(`${base}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    const text = await res.body.text();
    return { status: res.statusCode, json: text ? JSON.parse(text) : undefined };
  }
  const snapshot = async () => {
    const s = (await (await request(`${base}/api/v1/stats`)).body.json()) as { items: unknown; ids: unknown; bytes: number };
    return { items: s.items, ids: s.ids, bytes: s.bytes };
  };

  beforeAll(async () => {
    await mkdir(join(tmp, 'abuse'), { recursive: true });
    store = new SqliteItemStore({ path: join(tmp, 'abuse', 't.sqlite'), project: project.name });
    await store.init();
    await store.seed(packItems(new RangeSet([{ start: 1, end: 30 }]), 10));
    app = await buildTrackerApp({ store, project, adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 40, timeWindowMs: 60_000 }, statsCacheMs: 0, expireEveryMs: 0 });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    await app?.close();
    await store?.close();
  });

  it("another node's lease: heartbeat, done, release and fail are refused and change nothing", async () => {
    const alice = (await call('/api/v1/register', { nick: 'alice' })).json.token as string;
    const mallory = (await call('/api/v1/register', { nick: 'mallory' })).json.token as string;
    const lease = (await call('/api/v1/claim', {}, alice)).json.item.lease_id as string;
    const before = await snapshot();
    for (const [path, body] of [
      ['/api/v1/heartbeat', { lease_id: lease, finished: [[1, 10]] }],
      ['/api/v1/done', { lease_id: lease, stats }],
      ['/api/v1/release', { lease_id: lease }],
      ['/api/v1/fail', { lease_id: lease, error: 'x' }],
    ] as const) {
      const r = await call(path, body, mallory);
      expect(r.status, path).toBe(409);
      expect(r.json.error, path).toMatch(/E_LEASE/);
    }
    expect(await snapshot()).toEqual(before);
    // A replayed done is idempotent; after the lease is finished, its heartbeat is refused.
    expect((await call('/api/v1/done', { lease_id: lease, stats }, alice)).json).toEqual({ ok: true, duplicate: false });
    expect((await call('/api/v1/done', { lease_id: lease, stats }, alice)).json).toEqual({ ok: true, duplicate: true });
    const afterDone = await snapshot();
    expect((await call('/api/v1/heartbeat', { lease_id: lease, finished: [] }, alice)).status).toBe(409);
    expect(await snapshot()).toEqual(afterDone);
  });

  it('SQL-injection strings in lease IDs, errors and seed ranges are data, not SQL', async () => {
    const token = (await call('/api/v1/register', { nick: 'sqli' })).json.token as string;
    const before = await snapshot();
    for (const evil of ["x' OR '1'='1", "'; DROP TABLE items; --", '1; DELETE FROM leases', '\u0000']) {
      expect((await call('/api/v1/heartbeat', { lease_id: evil, finished: [] }, token)).status).toBe(409);
      expect((await call('/api/v1/fail', { lease_id: evil, error: evil }, token)).status).toBe(409);
      expect((await call('/api/v1/admin/seed', { ranges: evil }, ADMIN)).status).toBe(400);
    }
    expect(await snapshot()).toEqual(before);
    expect((await call('/api/v1/claim', {}, token)).status).toBe(200);
  });

  it('a flood with a fresh made-up token per request is rate-limited like one without a token', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) statuses.push((await call('/api/v1/claim', {}, `made-up-token-${i}`)).status);
    expect(statuses).toContain(429);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(40);
  });
});
