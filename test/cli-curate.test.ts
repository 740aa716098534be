import http from 'node:http';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { readWarcDir } from './fixtures/warc-records.js';

const S3rver = createRequire(import.meta.url)('s3rver') as new (o: Record<string, unknown>) => { configureBuckets(): Promise<void>; callback(): http.RequestListener };

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: process.env });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

describe('curator commands end to end: crawl → merge → verify → export → status → upload', () => {
  let platform: DemoPlatform;
  let tmp: string;
  let s3: http.Server;
  let endpoint: string;
  beforeAll(async () => {
    platform = await startDemoPlatform({ posts: 150 });
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-curate-'));
    const s3rver = new S3rver({ silent: true, directory: join(tmp, 's3rver'), configureBuckets: [{ name: 'archive', configs: [] }] });
    await s3rver.configureBuckets();
    s3 = http.createServer(s3rver.callback()).listen(0, '127.0.0.1');
    await once(s3, 'listening');
    endpoint = `http://127.0.0.1:${(s3.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await platform.close();
    s3.close();
    await rm(tmp, { recursive: true, force: true });
  });

  it('merges two overlapping shards into a verified set, then packages, reports and uploads it', async () => {
    const a = join(tmp, 'a');
    const b = join(tmp, 'b');
    const crawl = (out: string, ids: string) => run(['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', ids, '--out', out, '--allow-private-network', '--quiet', '--node', out.endsWith('a') ? 'alice' : 'bob']);
    expect((await crawl(a, '1-100')).code).toBe(0);
    expect((await crawl(b, '60-150')).code).toBe(0);

    const merged = join(tmp, 'merged');
    const m = await run(['merge', a, b, '--out', merged]);
    expect(m.code, m.stderr).toBe(0);
    expect(m.stdout).toMatch(/0 IDs without a final status/);
    const coverage = JSON.parse(await readFile(join(merged, 'coverage.json'), 'utf8'));
    expect(Object.values(coverage.statuses as Record<string, number>).reduce((x, y) => x + y, 0)).toBe(150);
    // The overlap (60-100) is kept once: no URL has two full responses with the same payload.
    const records = await readWarcDir(join(merged, 'warcs'));
    const seen = new Set<string>();
    for (const r of records.filter((x) => x.type === 'response')) {
      const key = `${r.url} ${r.headers['WARC-Payload-Digest']}`;
      expect(seen.has(key), key).toBe(false);
      seen.add(key);
    }

    const v = await run(['verify', merged]);
    expect(v.code, v.stdout).toBe(0);
    expect(v.stdout).toMatch(/; 0 defects\n$/);

    const wacz = join(tmp, 'out.wacz');
    const e = await run(['export', merged, '--wacz', wacz]);
    expect(e.code, e.stderr).toBe(0);
    expect((await stat(wacz)).size).toBeGreaterThan(1000);

    const s = await run(['status', a, '--json']);
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout).ids.archived).toBeGreaterThan(0);

    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' });
    const u = await run(['upload', a, '--to', 's3://archive/shards/a', '--endpoint', endpoint]);
    expect(u.code, u.stderr).toBe(0);
    expect(u.stdout).toMatch(/uploaded +warcs\//);
    const again = await run(['upload', a, '--to', 's3://archive/shards/a', '--endpoint', endpoint]);
    expect(again.stdout).not.toMatch(/uploaded +warcs\//);
    expect(again.stdout).toMatch(/skipped +warcs\//);
    const st = await run(['status', a]);
    expect(st.stdout).toMatch(/verified +warcs\/.* -> s3:\/\/archive\/shards\/a/);

    // A merge output goes up with what a curator needs next to its WARCs (issue 22 §3).
    const um = await run(['upload', merged, '--to', 's3://archive/merged', '--endpoint', endpoint]);
    expect(um.code, um.stderr).toBe(0);
    for (const f of ['warcs/', 'indexes/index.cdxj', 'coverage.json', 'missing-ranges.txt', 'merged.sqlite']) expect(um.stdout).toMatch(new RegExp(`uploaded +${f}`));
    expect(um.stdout.trimEnd().split('\n').at(-2)).toMatch(/uploaded +merged\.sqlite$/);

    const bad = await run(['upload', a, '--to', 'ftp://nowhere']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/ftp:\/\/nowhere/);
  });
});
