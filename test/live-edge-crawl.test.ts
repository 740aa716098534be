import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { createLogger, type LogEntry } from '../config/logger.js';
import { loadProfile } from '../config/profile.js';
import { runCrawl } from '../crawler/run/crawl.js';
import { discoverMaxId } from '../crawler/run/discover.js';
import { followIds, shardFollowAges } from '../crawler/run/follow-ids.js';
import { main } from '../scripts/cli/cli.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';

/**
 * Issue 21 §1 on one machine: `crawl --follow` holds a jump far above the trend until a later poll
 * confirms it, asks again for IDs near the live edge that answered 404 before they were readable,
 * and `crawl --recheck missing` re-asks final-missing IDs on purpose. A real demo platform and real
 * shards; the platform's `setLatest` makes it lag or glitch.
 */

let platform: DemoPlatform;
let tmp: string;
beforeAll(async () => {
  platform = await startDemoPlatform({ posts: 30 });
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-live-edge-'));
});
afterAll(async () => {
  await platform.close();
  await rm(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  platform.setLatest(undefined);
  platform.setPosts(30);
});

const TRUTH = { public: 'archived', missing: 'missing', gone: 'gone', private: 'restricted' } as const;

/** The shard's status of each ID (id → status). */
function shardStatuses(dir: string): Map<number, string> {
  const db = new Database(join(dir, 'shard.sqlite'), { readonly: true });
  try {
    return new Map((db.prepare('SELECT id, status FROM ids ORDER BY id').all() as { id: number; status: string }[]).map((r) => [r.id, r.status]));
  } finally {
    db.close();
  }
}

/** What the platform says each of `ids` is (now that everything is readable). */
function truth(ids: number[]): Map<number, string> {
  return new Map(ids.map((id) => [id, TRUTH[platform.post(id).status]]));
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const hits = (id: number) => platform.stats.paths.get(`/api/v1/posts/${id}`) ?? 0;

function shardCrawler(dir: string, logger = createLogger(() => undefined)) {
  const profile = loadProfile('demo', { baseUrl: platform.url });
  const crawled: string[] = [];
  const crawl = async (ids: RangeSet, live: { recheck: RangeSet; watch: RangeSet }) => {
    crawled.push(ids.format());
    const r = await runCrawl({ profile, ranges: ids, outDir: dir, node: 't', logger, allowPrivateNetwork: true, recheckMissing: live.recheck, watchMissing: live.watch });
    return { aborted: r.aborted, missing: r.missing };
  };
  const discover = () => discoverMaxId(profile, { allowPrivateNetwork: true });
  return { crawl, crawled, discover };
}

describe('crawl --follow at the live edge', () => {
  it('a glitched latest of 10^15 is held and dropped; a real jump is crawled once a later poll confirms it', async () => {
    const dir = join(tmp, 'jump');
    const entries: LogEntry[] = [];
    const { crawl, crawled, discover } = shardCrawler(dir, createLogger((e) => entries.push(e)));
    const stop = new AbortController();
    // Before each poll: a glitch, back to normal and grown, a jump, the jump again; then stop.
    const script = [
      () => platform.setLatest(1e15),
      () => (platform.setLatest(undefined), platform.setPosts(40)),
      () => platform.setPosts(100),
      () => undefined,
    ];
    let polls = 0;
    const result = await followIds({
      first: new RangeSet([{ start: 1, end: 30 }]),
      highest: 30,
      discover: async () => {
        script[polls++]?.();
        if (polls > script.length) stop.abort();
        return discover();
      },
      crawl,
      everyMs: 10,
      signal: stop.signal,
      logger: createLogger((e) => entries.push(e)),
      maxStep: 20,
      confirmMs: 0, // the next poll may confirm (the default waits a minute)
    });
    expect(crawled).toEqual(['1-30', '31-40', '41-100']);
    expect(result.highest).toBe(100);
    const statuses = shardStatuses(dir);
    expect(Math.max(...statuses.keys())).toBeLessThanOrEqual(100);
    expect(statuses.size).toBe(100);
    const messages = entries.map((e) => e.message).join('\n');
    expect(messages).toMatch(/jumped to 1000000000000000, more than 20 above 30 .*held/);
    expect(messages).toMatch(/the jump to 1000000000000000 was not confirmed .*dropped/);
    expect(messages).toMatch(/the jump to 100 was confirmed by a later poll/);
  });

  it('IDs announced before they are readable answer 404 first, are asked again and end archived; archived ones are not fetched again', async () => {
    const dir = join(tmp, 'lag');
    const entries: LogEntry[] = [];
    const { crawl, crawled, discover } = shardCrawler(dir);
    platform.setLatest(40); // 31-40 announced, not yet readable
    const before = new Map(range(1, 40).map((id) => [id, hits(id)]));
    const stop = new AbortController();
    let polls = 0;
    const result = await followIds({
      first: new RangeSet([{ start: 1, end: 40 }]),
      highest: 40,
      discover: async () => {
        if (polls++ === 0) (platform.setLatest(undefined), platform.setPosts(40)); // replication caught up
        if (polls > 5) stop.abort();
        return discover();
      },
      crawl,
      everyMs: 10,
      signal: stop.signal,
      logger: createLogger((e) => entries.push(e)),
      recheck: { window: 20, attempts: 3, delayMs: 1 },
    });
    // The first round saw 31-40 as 404; the rechecks found them.
    expect(crawled[0]).toBe('1-40');
    expect(result.rechecked).toBeGreaterThanOrEqual(10);
    expect(shardStatuses(dir)).toEqual(truth(range(1, 40)));
    const archived = range(1, 40).filter((id) => platform.post(id).status === 'public');
    expect(archived.filter((id) => id > 30).length).toBeGreaterThan(0);
    // Nothing archived in the first round was asked again; a truly missing one near the edge was asked 1 + 3 times at most.
    const asked = (id: number) => hits(id) - before.get(id)!;
    for (const id of range(1, 30).filter((id) => platform.post(id).status === 'public')) expect(asked(id), `ID ${id}`).toBe(1);
    for (const id of range(1, 20).filter((id) => platform.post(id).status === 'missing')) expect(asked(id), `ID ${id}`).toBe(1);
    const edgeMissing = range(21, 40).filter((id) => platform.post(id).status === 'missing');
    expect(edgeMissing.length).toBeGreaterThan(0);
    for (const id of edgeMissing) expect(asked(id), `ID ${id}`).toBe(4);
    expect(entries.map((e) => e.message).join('\n')).toMatch(/asking again for \d+ IDs near the live edge that answered missing/);
  });

  it('with a window of 1, lagging IDs are asked again by their age (counted from the poll that found them); the first range has none; age 0 turns it off', async () => {
    const run = async (dir: string, ageMs: number) => {
      platform.setPosts(30);
      platform.setLatest(undefined);
      const { crawl } = shardCrawler(dir);
      const profileDiscover = shardCrawler(dir).discover;
      const before = new Map(range(1, 40).map((id) => [id, hits(id)]));
      const stop = new AbortController();
      let polls = 0;
      let clock = 1_700_000_000_000;
      await followIds({
        first: new RangeSet([{ start: 1, end: 30 }]),
        highest: 30,
        discover: async () => {
          polls++;
          if (polls === 1) platform.setLatest(40); // 31-40 announced, not yet readable
          if (polls === 2) (platform.setLatest(undefined), platform.setPosts(40)); // replication caught up
          clock += 1000;
          if (polls > 6) stop.abort();
          return profileDiscover();
        },
        crawl,
        everyMs: 10,
        signal: stop.signal,
        logger: createLogger(() => undefined),
        recheck: { window: 1, attempts: 3, delayMs: 1, ageMs },
        now: () => clock,
      });
      return (id: number) => hits(id) - before.get(id)!;
    };
    const aged = join(tmp, 'aged');
    const asked = await run(aged, 60_000);
    expect(shardStatuses(aged)).toEqual(truth(range(1, 40)));
    // The first range has no age and only 30 is within the window: a missing one of 1-29 was asked once.
    const firstMissing = range(1, 29).filter((id) => platform.post(id).status === 'missing');
    expect(firstMissing.length).toBeGreaterThan(0);
    for (const id of firstMissing) expect(asked(id), `ID ${id}`).toBe(1);
    // 31-39 are outside the window, young by their age: asked again until they answered.
    for (const id of range(31, 39)) expect(asked(id), `ID ${id}`).toBeGreaterThan(1);

    // Age 0: the window alone; 31-39 answered 404 once and that is final.
    const off = join(tmp, 'aged-off');
    const askedOff = await run(off, 0);
    for (const id of range(31, 39)) {
      expect(askedOff(id), `ID ${id}`).toBe(1);
      expect(shardStatuses(off).get(id), `ID ${id}`).toBe('missing');
    }
  });

  it('a run started again on the shard knows how young the IDs its last run found are', async () => {
    const T = 1_700_000_000_000;
    const o = { window: 1, attempts: 3, delayMs: 1, ageMs: 60_000 };
    /** Run 1: follows from 1-30; the first poll finds 31-40, and the run is stopped before crawling them. */
    const firstRun = async (dir: string) => {
      platform.setPosts(30);
      platform.setLatest(undefined);
      const { crawl, crawled, discover } = shardCrawler(dir);
      const stop = new AbortController();
      await followIds({
        first: new RangeSet([{ start: 1, end: 30 }]),
        highest: 30,
        discover: async () => (platform.setLatest(40), stop.abort(), discover()),
        crawl,
        everyMs: 10,
        signal: stop.signal,
        logger: createLogger(() => undefined),
        recheck: o,
        ages: shardFollowAges(dir),
        now: () => T,
      });
      expect(crawled).toEqual(['1-30']);
    };
    /** Run 2 at `at`: 1-40 (latest 40, 31-40 still 404 at first); replication catches up at its first poll. */
    const secondRun = async (dir: string, at: number) => {
      const { crawl, crawled, discover } = shardCrawler(dir);
      const stop = new AbortController();
      let polls = 0;
      let clock = at;
      await followIds({
        first: new RangeSet([{ start: 1, end: 40 }]),
        highest: 40,
        discover: async () => {
          if (polls++ === 0) (platform.setLatest(undefined), platform.setPosts(40));
          clock += 1000;
          if (polls > 4) stop.abort();
          return discover();
        },
        crawl,
        everyMs: 10,
        signal: stop.signal,
        logger: createLogger(() => undefined),
        recheck: o,
        ages: shardFollowAges(dir),
        now: () => clock,
      });
      return crawled;
    };
    const young = join(tmp, 'rerun-young');
    await firstRun(young);
    // 59.999 s after run 1 found them: young, so the 404s are watched and asked again.
    expect((await secondRun(young, T + 59_999)).length).toBeGreaterThan(1);
    expect(shardStatuses(young)).toEqual(truth(range(1, 40)));
    const old = join(tmp, 'rerun-old');
    await firstRun(old);
    // 60 s after: too old; outside the window of 1, their 404s are final in the first round (40, in the window, may be asked again).
    const rounds = await secondRun(old, T + 60_000);
    expect(rounds[0]).toBe('1-40');
    expect(rounds.slice(1).filter((r) => r !== '40')).toEqual([]);
    expect([...shardStatuses(old)].filter(([id, s]) => id > 30 && id < 40 && s !== 'missing')).toEqual([]);
  });

  it('crawl --follow asks again for lagging IDs (flags), and crawl --recheck missing re-asks final-missing IDs on purpose', async () => {
    const io = (err: string[]) => ({ stdout: { write: () => true }, stderr: { write: (s: string) => err.push(s) }, env: {} });
    // --recheck missing on an existing shard: 31-40 were final missing; a plain rerun does nothing, --recheck missing finds them.
    const dir = join(tmp, 'recheck');
    const err: string[] = [];
    const args = ['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-40', '--out', dir, '--allow-private-network', '--quiet'];
    expect(await main(args, io(err))).toBe(0);
    expect([...shardStatuses(dir)].filter(([id, s]) => id > 30 && s !== 'missing')).toEqual([]);
    platform.setPosts(40);
    const h5 = hits(5);
    const h35 = hits(35);
    expect(await main(args, io(err))).toBe(0);
    expect(hits(35)).toBe(h35);
    expect(await main([...args, '--recheck', 'missing'], io(err))).toBe(0);
    expect(shardStatuses(dir)).toEqual(truth(range(1, 40)));
    expect(hits(5)).toBe(h5); // archived: not fetched again
    expect(await main([...args, '--recheck', 'archived'], io(err))).toBe(2);
    expect(err.join('')).toMatch(/--recheck archived: only "missing" can be asked again/);

    // crawl --follow with the recheck flags: the posts become readable after the second ask for latest.
    platform.setPosts(30);
    platform.setLatest(40);
    const fdir = join(tmp, 'follow-lag');
    const latestHits = () => platform.stats.paths.get('/api/v1/latest') ?? 0;
    const from = latestHits();
    const catchUp = setInterval(() => {
      if (latestHits() - from >= 2) (platform.setLatest(undefined), platform.setPosts(40), clearInterval(catchUp));
    }, 20);
    const until = new Date(Date.now() + 6000).toISOString();
    try {
      const ferr: string[] = [];
      const code = await main(['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-latest', '--follow', '--follow-secs', '1', '--recheck-delay-secs', '1', '--recheck-window', '50', '--until', until, '--out', fdir, '--allow-private-network'], io(ferr));
      expect(code).toBe(0);
      expect(shardStatuses(fdir)).toEqual(truth(range(1, 40)));
      expect(ferr.join('')).toMatch(/asking again for \d+ IDs near the live edge/);
    } finally {
      clearInterval(catchUp);
    }
  });

  it('crawl --follow --recheck-window 1 --recheck-age-secs 0: IDs a poll found that answer 404 are not asked again; a negative age is refused', async () => {
    const io = (err: string[]) => ({ stdout: { write: () => true }, stderr: { write: (s: string) => err.push(s) }, env: {} });
    const err: string[] = [];
    expect(await main(['crawl', '--profile', 'demo', '--ids', '1-latest', '--follow', '--recheck-age-secs', '-1', '--out', join(tmp, 'never')], io(err))).toBe(2);
    expect(err.join('')).toMatch(/--recheck-age-secs must be a whole number \(0 or more\), got "-1"/);
    expect(await main(['crawl', '--profile', 'demo', '--ids', '1-latest', '--follow', '--follow-confirm-secs', 'soon', '--out', join(tmp, 'never')], io(err))).toBe(2);
    expect(err.join('')).toMatch(/--follow-confirm-secs must be a whole number \(0 or more\), got "soon"/);
    // Live-edge settings without --follow would do nothing: refused, naming them.
    const without: string[] = [];
    expect(await main(['crawl', '--profile', 'demo', '--ids', '1-10', '--follow-confirm-secs', '5', '--recheck-window', '3', '--out', join(tmp, 'never')], io(without))).toBe(2);
    expect(without.join('')).toMatch(/--follow-confirm-secs, --recheck-window only apply with --follow/);
    const dir = join(tmp, 'age-flag');
    const latestHits = () => platform.stats.paths.get('/api/v1/latest') ?? 0;
    const from = latestHits();
    // After the crawl resolved latest (30): 31-40 announced but unreadable at the first poll; readable from the second.
    const script = setInterval(() => {
      const n = latestHits() - from;
      if (n === 1) platform.setLatest(40);
      if (n >= 3) (platform.setLatest(undefined), platform.setPosts(40), clearInterval(script));
    }, 5);
    const until = new Date(Date.now() + 6000).toISOString();
    try {
      const code = await main(['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-latest', '--follow', '--follow-secs', '1', '--recheck-delay-secs', '1', '--recheck-window', '1', '--recheck-age-secs', '0', '--until', until, '--out', dir, '--allow-private-network', '--quiet'], io([]));
      expect(code).toBe(0);
    } finally {
      clearInterval(script);
    }
    const statuses = shardStatuses(dir);
    expect(statuses.size).toBe(40);
    // Some of 31-39 are public now: asked again (as with the default age, 600 s), they would be archived.
    expect(range(31, 39).some((id) => platform.post(id).status === 'public')).toBe(true);
    for (const id of range(31, 39)) expect(statuses.get(id), `ID ${id}`).toBe('missing');
  });

  it('crawl --follow --follow-confirm-secs 1: a jump above --follow-max-step is crawled once polls saw it for a second (the default waits a minute)', async () => {
    platform.setLatest(undefined);
    platform.setPosts(30);
    const dir = join(tmp, 'confirm-flag');
    const latestHits = () => platform.stats.paths.get('/api/v1/latest') ?? 0;
    const from = latestHits();
    // After the crawl resolved latest (30), the platform jumps by 20, above --follow-max-step 5: held, then confirmed.
    const script = setInterval(() => {
      if (latestHits() - from >= 1) (platform.setPosts(50), clearInterval(script));
    }, 5);
    const until = new Date(Date.now() + 5000).toISOString();
    try {
      const code = await main(['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-latest', '--follow', '--follow-secs', '1', '--follow-max-step', '5', '--follow-confirm-secs', '1', '--until', until, '--out', dir, '--allow-private-network', '--quiet'], { stdout: { write: () => true }, stderr: { write: () => true }, env: {} });
      expect(code).toBe(0);
    } finally {
      clearInterval(script);
    }
    expect(shardStatuses(dir).size).toBe(50);
  });
});
