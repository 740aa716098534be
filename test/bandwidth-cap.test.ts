import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BandwidthCap } from '../crawler/fetch/bandwidth-cap.js';
import { HttpCapturer } from '../crawler/fetch/http-capture.js';
import type { Capture } from '../storage/warc/capture.js';
import { RangeSet } from '../config/id-ranges.js';
import { silentLogger } from '../config/logger.js';
import { loadProfile } from '../config/profile.js';
import { runCrawl } from '../crawler/run/crawl.js';
import { runNode } from '../node/loop.js';
import { parseProject } from '../tracker/store/project.js';
import { buildTrackerApp } from '../tracker/server/server.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';

/** Issue 14: `--max-bandwidth`, one budget over every body read of a crawl part. */

describe('BandwidthCap (virtual clock)', () => {
  it('lets a burst of burstMs worth through, then paces to the cap', () => {
    let t = 0;
    const cap = new BandwidthCap({ bytesPerSec: 1000, burstMs: 1000, now: () => t });
    expect(cap.take(1000)).toBe(0); // the burst
    expect(cap.take(500)).toBe(500); // half a second ahead of the budget
    expect(cap.take(500)).toBe(1000);
    t = 1000;
    expect(cap.take(0)).toBe(0);
    expect(cap.take(1000)).toBe(1000);
    expect(cap.chargedBytes).toBe(3000);
  });

  it('over a long run at full speed, what passes is cap × time + one burst', () => {
    let t = 0;
    const cap = new BandwidthCap({ bytesPerSec: 10_000, now: () => t });
    let passed = 0;
    // A reader that reads 4 KiB, then sleeps as told (or 1 ms), for 60 virtual seconds.
    while (t < 60_000) {
      passed += 4096;
      t += Math.max(1, cap.take(4096));
    }
    expect(passed).toBeGreaterThanOrEqual(10_000 * 60);
    expect(passed).toBeLessThanOrEqual(10_000 * 61 + 4096);
  });

  it('refuses a cap that is not a positive number', () => {
    expect(() => new BandwidthCap({ bytesPerSec: 0 })).toThrow(/positive/);
    expect(() => new BandwidthCap({ bytesPerSec: Number.NaN })).toThrow(/positive/);
  });
});

describe('HttpCapturer with a bandwidth cap (local server)', () => {
  const BODY = Buffer.alloc(3 * 1024 * 1024 + 17, 7).map((_, i) => (i * 31) & 0xff);
  const digest = createHash('sha1').update(BODY).digest('hex');
  let url: string;
  let tmp: string;
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BODY.length) });
    res.end(BODY);
  });
  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-bw-'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(tmp, { recursive: true, force: true });
  });

  const bodyOf = (c: Capture) => (c.body.kind === 'file' ? readFileSync(c.body.path) : c.body.data);

  it('three concurrent 3 MiB bodies at 2 MiB/s take about 4 s and arrive intact (behaviour check, generous bounds)', async () => {
    const cap = new BandwidthCap({ bytesPerSec: 2 * 1024 * 1024 });
    const capturer = new HttpCapturer({ userAgent: 't', spoolDir: tmp, connectTimeoutMs: 5000, headersTimeoutMs: 5000, idleTimeoutMs: 10_000, totalTimeoutMs: 60_000, maxBodyBytes: 1 << 30, bandwidthCap: cap });
    try {
      const t0 = performance.now();
      const captures = await Promise.all([1, 2, 3].map((i) => capturer.fetch({ url: `${url}/f${i}` })));
      const secs = (performance.now() - t0) / 1000;
      for (const c of captures) expect(createHash('sha1').update(bodyOf(c)).digest('hex')).toBe(digest);
      expect(cap.chargedBytes).toBe(3 * BODY.length);
      // 9 MiB less the 2 MiB burst at 2 MiB/s is 3.5 s; the cap can only make it slower than that.
      const bytesPerSec = (3 * BODY.length) / secs;
      expect(secs).toBeGreaterThan(3.2);
      expect(bytesPerSec).toBeLessThan(2 * 1024 * 1024 * 1.35);
      expect(bytesPerSec).toBeGreaterThan(2 * 1024 * 1024 * 0.3);
    } finally {
      await capturer.close();
    }
  });
});

describe('--max-bandwidth reaches the crawl and the node (issue 21 §5)', () => {
  // A post of 512 KiB and a profile that gives one fetch 1.5 s: whole in milliseconds on
  // 127.0.0.1, impossible at 8 KiB/s (a minute). So the ID's outcome says whether the cap was applied.
  const POST = Buffer.from(JSON.stringify({ id: 1, body: 'x'.repeat(512 * 1024) }));
  let tmp: string;
  let base: string;
  let profilePath: string;
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/posts/')) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(POST.length) });
      res.end(POST);
    } else res.writeHead(404).end();
  });
  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-bw-reach-'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    profilePath = path.join(tmp, 'bw.yaml');
    writeFileSync(profilePath, `name: bw\nbase_url: ${base}\ncaptures:\n  - {name: post, url: "{base_url}/posts/{id}.json", type: json}\npoliteness: {max_attempts: 1, total_timeout_ms: 1500}\nmedia: {fetch: false}\n`);
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(tmp, { recursive: true, force: true });
  });
  const idRow = (dir: string) => {
    const db = new Database(path.join(dir, 'shard.sqlite'), { readonly: true });
    try {
      return db.prepare('SELECT status, last_error FROM ids WHERE id = 1').get() as { status: string; last_error: string | null };
    } finally {
      db.close();
    }
  };

  it('crawl: the same post is archived without the cap and cut off by its total timeout under it', async () => {
    const profile = loadProfile(profilePath);
    const free = path.join(tmp, 'crawl-free');
    await runCrawl({ profile, ranges: new RangeSet([{ start: 1, end: 1 }]), outDir: free, node: 'n1', logger: silentLogger, allowPrivateNetwork: true });
    expect(idRow(free).status).toBe('archived');
    const capped = path.join(tmp, 'crawl-capped');
    await runCrawl({ profile, ranges: new RangeSet([{ start: 1, end: 1 }]), outDir: capped, node: 'n1', logger: silentLogger, allowPrivateNetwork: true, maxBandwidthBytesPerSec: 8 * 1024 });
    expect(idRow(capped)).toEqual({ status: 'failed', last_error: expect.stringMatching(/no complete response within 1500 ms/) });
  });

  it('node: maxBandwidthBytesPerSec reaches the crawl of each item', async () => {
    const project = parseProject({ name: 'bw', profile: profilePath, item_size: 1, lease_secs: 60, min_client_version: '0.1.0', media: { collect: false } });
    const store = new SqliteItemStore({ path: path.join(tmp, 'bw-tracker.sqlite'), project: project.name });
    await store.init();
    const app = await buildTrackerApp({ store, project, adminToken: 'admin-token-for-bandwidth-tests-01', leaseMs: 60_000, rateLimit: { max: 10_000, timeWindowMs: 60_000 }, expireEveryMs: 0 });
    try {
      const trackerUrl = await app.listen({ port: 0, host: '127.0.0.1' });
      await store.seed([new RangeSet([{ start: 1, end: 1 }])]);
      const outDir = path.join(tmp, 'node-capped');
      await runNode({ trackerUrl, nick: 'slow', outDir, logger: silentLogger, nodeName: 'slow', allowPrivateNetwork: true, maxItems: 1, exitWhenDone: true, maxBandwidthBytesPerSec: 8 * 1024 });
      const [item] = readdirSync(path.join(outDir, 'items'));
      expect(idRow(path.join(outDir, 'items', item!))).toEqual({ status: 'failed', last_error: expect.stringMatching(/no complete response within 1500 ms/) });
    } finally {
      await app.close();
      await store.close();
    }
  });
});
