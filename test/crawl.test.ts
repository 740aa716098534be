import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { startCanary, type Canary } from './fixtures/canary.js';
import { expectComplete } from './fixtures/shard-check.js';

function captureIo() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: {} },
    out: () => out.join(''),
    err: () => err.join(''),
  };
}

async function crawl(args: string[]) {
  const cap = captureIo();
  const code = await main(['crawl', ...args], cap.io);
  return { code, stdout: cap.out(), stderr: cap.err() };
}

describe('lifeboat crawl on the demo platform', () => {
  let platform: DemoPlatform;
  let canary: Canary;
  let tmp: string;
  beforeAll(async () => {
    canary = await startCanary({ host: '127.0.0.2' });
    platform = await startDemoPlatform({ posts: 300, mediaBaseUrl: canary.url });
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-crawl-'));
  });
  afterAll(async () => {
    await platform.close();
    await canary.close();
    await rm(tmp, { recursive: true, force: true });
  });

  it('archives every public post and its media, stores no private body, never leaves scope', async () => {
    const dir = join(tmp, 'clean');
    const r = await crawl(['--profile', 'demo', '--base-url', platform.url, '--ids', '1-300', '--out', dir, '--allow-private-network', '--quiet']);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^shard: archived \d+, missing \d+, gone \d+, restricted \d+, failed 0; this run: ids 300, records \d+, bytes \d+, warcs \d+\n$/);
    const records = await expectComplete(platform, dir, 300);
    // Content-Encoding is kept as sent: the JSON API answered gzip.
    const api = records.find((x) => x.type === 'response' && x.url.includes('/api/v1/posts/') && x.httpStatus === 200)!;
    expect(api.httpHeaders['content-encoding']).toBe('gzip');
    expect(canary.hits).toEqual([]);
    expect(platform.stats.paths.get('/admin/')).toBeUndefined();
    const manifest = JSON.parse(await readFile(join(dir, 'shard.json'), 'utf8'));
    const files = (await readdir(join(dir, 'warcs'))).sort();
    expect(manifest.warcs.map((w: { name: string }) => w.name).sort()).toEqual(files);
    expect(files.every((f) => /^demo-\d{14}-\d{5}-[A-Za-z0-9_]+\.warc\.gz$/.test(f))).toBe(true);
  });

  it('survives 5% chaos and a 429 rate limit with nothing lost', async () => {
    platform.setChaos({ rate: 0.05, stallMs: 1500 });
    platform.setRateLimit({ rps: 80, burst: 10 });
    try {
      const dir = join(tmp, 'chaos');
      const r = await crawl(['--profile', 'demo', '--base-url', platform.url, '--ids', '1-300', '--out', dir, '--allow-private-network', '--quiet', '--warc-size', '200000']);
      expect(r.code).toBe(0);
      expect(platform.stats.rateLimited).toBeGreaterThan(0);
      expect(platform.stats.chaos).toBeGreaterThan(0);
      await expectComplete(platform, dir, 300);
      expect((await readdir(join(dir, 'warcs'))).length).toBeGreaterThan(1);
    } finally {
      platform.setChaos(undefined);
      platform.setRateLimit(undefined);
    }
  }, 180_000);

  it('splits the IDs among 2 worker threads: complete under chaos and 429s, each media URL fetched once, WARC names apart', async () => {
    platform.setChaos({ rate: 0.05, stallMs: 1500 });
    platform.setRateLimit({ rps: 80, burst: 10 });
    try {
      const dir = join(tmp, 'workers');
      const r = await crawl(['--profile', 'demo', '--base-url', platform.url, '--ids', '1-300', '--out', dir, '--allow-private-network', '--quiet', '--workers', '2', '--warc-size', '200000']);
      expect(r.code, r.stderr).toBe(0);
      await expectComplete(platform, dir, 300);
      const db = new Database(join(dir, 'shard.sqlite'), { readonly: true });
      const media = db.prepare("SELECT COUNT(*) AS n, COUNT(DISTINCT url) AS u FROM captures WHERE name = 'media' AND revisit_of IS NULL").get() as { n: number; u: number };
      const serials = db.prepare('SELECT name FROM warcs').all().map((w) => Number(/-(\d{5})-/.exec((w as { name: string }).name)![1]));
      db.close();
      expect(media.u).toBeGreaterThan(100);
      expect(media.n).toBe(media.u);
      // Both workers wrote files (even and odd serials), and no two files share a serial.
      expect(new Set(serials.map((n) => n % 2))).toEqual(new Set([0, 1]));
      expect(new Set(serials).size).toBe(serials.length);
      expect(r.stdout).toMatch(/failed 0;/);
    } finally {
      platform.setChaos(undefined);
      platform.setRateLimit(undefined);
    }
  }, 180_000);

  it('resumes: a second run over the same shard fetches nothing new', async () => {
    const dir = join(tmp, 'resume');
    const args = ['--profile', 'demo', '--base-url', platform.url, '--ids', '1-50', '--out', dir, '--allow-private-network', '--quiet'];
    expect((await crawl(args)).code).toBe(0);
    const before = platform.stats.requests;
    const again = await crawl(args);
    expect(again.code).toBe(0);
    expect(platform.stats.requests - before).toBe(0);
  });
});
