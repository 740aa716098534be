import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { createLogger, type LogEntry } from '../config/logger.js';
import { loadProfile } from '../config/profile.js';
import { discoverMaxId } from '../crawler/run/discover.js';
import { followIds } from '../crawler/run/follow-ids.js';
import { main } from '../scripts/cli/cli.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';

/** Issue 14: `crawl --ids 1-latest --follow [--until]` on one machine. */

let platform: DemoPlatform;
let tmp: string;
beforeAll(async () => {
  platform = await startDemoPlatform({ posts: 30, trackPaths: false });
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-crawl-follow-'));
});
afterAll(async () => {
  await platform.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('followIds', () => {
  it('crawls each new range once; a failing or backwards discover is logged and the range never shrinks', async () => {
    platform.setPosts(30);
    const entries: LogEntry[] = [];
    const logger = createLogger((e) => entries.push(e));
    const realDiscover = () => discoverMaxId(loadProfile('demo', { baseUrl: platform.url }), { allowPrivateNetwork: true });
    // What the platform does before each poll: grow, fail, go backwards, grow again; then stop.
    const script: (() => void)[] = [
      () => platform.setPosts(40),
      () => platform.setChaos({ rate: 1, kinds: ['5xx'] }),
      () => (platform.setChaos(undefined), platform.setPosts(35)),
      () => platform.setPosts(40),
      () => platform.setPosts(52),
    ];
    const stop = new AbortController();
    let polls = 0;
    const discover = async () => {
      script[polls++]?.();
      if (polls > script.length) stop.abort();
      return realDiscover();
    };
    const crawled: string[] = [];
    const result = await followIds({
      first: new RangeSet([{ start: 1, end: 30 }]),
      highest: 30,
      discover,
      crawl: async (ids) => (crawled.push(ids.format()), { aborted: false, missing: [] }),
      everyMs: 10,
      signal: stop.signal,
      logger,
    });
    expect(crawled).toEqual(['1-30', '31-40', '41-52']);
    expect(result).toEqual({ highest: 52, rounds: 3, ids: 52, rechecked: 0, pendingRechecks: 0 });
    const warnings = entries.filter((e) => e.level === 'warn').map((e) => e.message);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/discovering the latest ID failed .*HTTP 5\d\d/);
    expect(warnings[1]).toBe("the platform's latest ID went backwards (35 < 40); keeping 40");
  });
});

describe('lifeboat crawl --follow', () => {
  it('follows a growing platform until --until: every ID up to the last highest archived once, exit 0', async () => {
    platform.setPosts(30);
    const dir = join(tmp, 'follow');
    const out: string[] = [];
    const err: string[] = [];
    const io = { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: {} };
    const until = new Date(Date.now() + 5000).toISOString();
    const grow = setTimeout(() => platform.setPosts(47), 1500);
    let code: number;
    try {
      code = await main(['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-latest', '--follow', '--follow-secs', '1', '--until', until, '--out', dir, '--allow-private-network', '--quiet'], io);
    } finally {
      clearTimeout(grow);
    }
    expect(err.join('')).toMatch(/stopped: --until .* reached; run the same command again to go on/);
    expect(code).toBe(0);
    const db = new Database(join(dir, 'shard.sqlite'), { readonly: true });
    try {
      const row = db.prepare('SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS d, MIN(id) AS lo, MAX(id) AS hi FROM ids WHERE status IS NOT NULL').get() as { n: number; d: number; lo: number; hi: number };
      expect(row).toEqual({ n: 47, d: 47, lo: 1, hi: 47 });
    } finally {
      db.close();
    }
  });

  it('refuses --follow without a range ending in latest, and a --until that is not RFC 3339', async () => {
    const err: string[] = [];
    const io = { stdout: { write: () => true }, stderr: { write: (s: string) => err.push(s) }, env: {} };
    expect(await main(['crawl', '--profile', 'demo', '--ids', '1-10', '--follow', '--out', join(tmp, 'x')], io)).toBe(2);
    expect(await main(['crawl', '--profile', 'demo', '--ids', '1-10', '--until', 'tomorrow', '--out', join(tmp, 'x')], io)).toBe(2);
    expect(err.join('')).toMatch(/--follow needs an ID range ending in latest[\s\S]*--until tomorrow: use an RFC 3339 time/);
  });
});

describe('lifeboat crawl with caps', () => {
  it('--max-disk stops the crawl soon after the shard reaches the cap; run again, it resumes', async () => {
    platform.setPosts(400);
    const dir = join(tmp, 'disk');
    const err: string[] = [];
    const io = { stdout: { write: () => true }, stderr: { write: (s: string) => err.push(s) }, env: {} };
    const args = ['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-400', '--out', dir, '--allow-private-network', '--quiet', '--rate', '400'];
    expect(await main([...args, '--max-disk', '300K'], io)).toBe(0);
    expect(err.join('')).toMatch(/stopped: --max-disk 307200 bytes reached; run the same command again to go on/);
    const finalIds = () => {
      const db = new Database(join(dir, 'shard.sqlite'), { readonly: true });
      try {
        return (db.prepare('SELECT COUNT(*) AS n FROM ids').get() as { n: number }).n;
      } finally {
        db.close();
      }
    };
    const first = finalIds();
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThan(400);
    // Already at the cap: a second run with the same cap stops at once.
    expect(await main([...args, '--max-disk', '300K'], io)).toBe(0);
    expect(err.join('')).toMatch(/--max-disk 307200 bytes reached before the start/);
    expect(await main(args, io)).toBe(0);
    expect(finalIds()).toBe(400);
  });
});
