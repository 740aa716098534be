/**
 * Issue 11 §1–§3: one hostile post must never stop a rescue. Poison responses (deep JSON, huge
 * lists, deeply nested HTML), bodies over `max_body_bytes` above the spool threshold, attempts
 * that count every request, and robots.txt that holds (large, redirected, endless, 5xx forever).
 * Everything runs against the hostile platform on 127.0.0.1.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../config/logger.js';
import { loadProfile } from '../config/profile.js';
import { runCrawl } from '../crawler/run/crawl.js';
import { parseHtmlBounded } from '../crawler/extract/html-extract.js';
import { createCodec } from '../config/id-codec.js';
import { parseRanges } from '../config/id-ranges.js';
import { runCli } from '../scripts/soak/harness.js';
import { hostileCrawl } from '../scripts/soak/reliability-scenarios.js';
import { faultProfile, poison, poisonRoute, startHostileServer, type Plan, type Route } from './fixtures/hostile-server.js';
import { readWarcDir } from './fixtures/warc-records.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-poison-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function idRows(out: string): Map<number, { status: string; attempts: number; last_error: string | null; fields: string | null }> {
  const db = new Database(join(out, 'shard.sqlite'), { readonly: true });
  try {
    const rows = db
      .prepare<[], { id: number; status: string; attempts: number; last_error: string | null; fields: string | null }>(
        'SELECT i.id, i.status, i.attempts, i.last_error, p.fields FROM ids i LEFT JOIN posts p ON p.id = i.id',
      )
      .all();
    return new Map(rows.map((r) => [r.id, r]));
  } finally {
    db.close();
  }
}

function count(out: string, sql: string, ...args: unknown[]): number {
  const db = new Database(join(out, 'shard.sqlite'), { readonly: true });
  try {
    return (db.prepare(sql).get(...args) as { n: number }).n;
  } finally {
    db.close();
  }
}

function depthOf(v: unknown): number {
  let depth = 0;
  for (let cur: unknown = v; Array.isArray(cur) && cur.length > 0; cur = cur[0]) depth++;
  return depth;
}

describe('poison responses (issue 11 §1)', () => {
  it('deep JSON and a 200k-entry media list: the crawl finishes, the poison is archived with a note', async () => {
    const kinds = new Map([[3, 'deep-json' as const], [5, 'huge-list' as const]]);
    const r = await hostileCrawl({ dir: join(tmp, 'deep-wide'), posts: 8, route: (s) => poisonRoute(kinds, () => s().url), page: false });
    expect(r.exits, r.notes.stderr as string).toEqual([0]);
    expect(r.judgement.final).toBe(8);
    expect(r.judgement.defects).toEqual([]);
    const ids = idRows(r.out);
    const deep = ids.get(3)!;
    expect(deep.status).toBe('archived');
    expect(deep.last_error).toMatch(/^extraction: post: field author: nested deeper than 32 levels/);
    const fields = JSON.parse(deep.fields!) as { author: unknown };
    expect(depthOf(fields.author)).toBeLessThanOrEqual(32);
    const wide = ids.get(5)!;
    expect(wide.status).toBe('archived');
    expect(wide.last_error).toMatch(/more than 100 media references \(media\.max_per_post\): the first 100 kept/);
    // media.max_per_post (100) applies before anything is queued: 100 of the 200,000.
    expect(count(r.out, 'SELECT count(*) AS n FROM urls WHERE post_id = ?', 5)).toBe(100);
    for (const id of [1, 2, 4, 6, 7, 8]) expect(ids.get(id)).toMatchObject({ status: 'archived', last_error: null });
    // The crawl said so at the end, and `status` says so later.
    expect(r.notes.stderr).toMatch(/note: 2 IDs were archived with extraction cut short or failed/);
    const status = await runCli(['status', r.out]);
    expect(status.stdout).toMatch(/extraction notes: 2 IDs archived with extraction cut short or failed/);
    expect(status.stdout).toMatch(/ 1 × post: field author: nested deeper than 32 levels, cut there/);
    // The poison responses are archived whole, as sent.
    const records = await readWarcDir(join(r.out, 'warcs'));
    const body = (id: number) => records.find((x) => x.type === 'response' && x.url.endsWith(`/api/v1/posts/${id}`))!.payload;
    expect(body(3).equals(poison.deepJson(3, r.server.url))).toBe(true);
    expect(body(5).length).toBe(poison.hugeList(5, r.server.url).length);
  });

  it('200k nested <div>s: parsing stops at max_html_depth, the page is archived, the media before it is kept', async () => {
    const kinds = new Map([[2, 'nested-html' as const]]);
    const r = await hostileCrawl({ dir: join(tmp, 'nested'), posts: 4, route: (s) => poisonRoute(kinds, () => s().url) });
    expect(r.exits, r.notes.stderr as string).toEqual([0]);
    expect(r.judgement.final).toBe(4);
    const ids = idRows(r.out);
    expect(ids.get(2)!.status).toBe('archived');
    expect(ids.get(2)!.last_error).toMatch(/^extraction: page: HTML nested deeper than 512 levels/);
    expect(count(r.out, `SELECT count(*) AS n FROM urls WHERE post_id = 2 AND url LIKE '%/media/2.jpg'`)).toBe(1);
    const records = await readWarcDir(join(r.out, 'warcs'));
    const page = records.find((x) => x.type === 'response' && x.url.endsWith('/p/2'))!;
    expect(page.payload.length).toBe(poison.nestedHtml(2).length);
  });

  it('HTML parsing leaves the event loop free between slices and stops when the crawl stops', async () => {
    const html = poison.nestedHtml(1, 3_000_000).toString('utf8');
    const stop = new AbortController();
    let turns = 0;
    const tick = (): void => {
      turns++;
      if (turns === 3) stop.abort();
      else setImmediate(tick);
    };
    setImmediate(tick);
    // A depth cap far above the document's start, so only the signal can end this early.
    const parsed = await parseHtmlBounded(html, { maxDepth: 100_000, deadlineMs: Number.POSITIVE_INFINITY, signal: stop.signal });
    expect(turns).toBe(3);
    expect(parsed.problem).toBe('extraction stopped: the crawl is stopping');
  });
});

describe('limits that do what the README says (issue 11 §2)', () => {
  it('a 5 MiB body over max_body_bytes 4.5 MiB (above the 4 MiB spool threshold) is archived truncated, final', async () => {
    const kinds = new Map([[2, 'oversize' as const]]);
    const r = await hostileCrawl({ dir: join(tmp, 'oversize'), posts: 3, route: (s) => poisonRoute(kinds, () => s().url), politeness: { max_body_bytes: 4.5 * 2 ** 20 }, page: false });
    expect(r.exits, r.notes.stderr as string).toEqual([0]);
    expect(r.judgement.final).toBe(3);
    const ids = idRows(r.out);
    expect(ids.get(2)!.status).toBe('archived');
    expect(ids.get(2)!.last_error).toMatch(/^extraction: post: not JSON/);
    const records = await readWarcDir(join(r.out, 'warcs'));
    const rec = records.find((x) => x.type === 'response' && x.url.endsWith('/api/v1/posts/2'))!;
    expect(rec.headers['WARC-Truncated']).toBe('length');
    expect(rec.payload.length).toBe(4.5 * 2 ** 20);
    expect(rec.payloadDigestOk).toBe(true);
  });

  it('ids.attempts counts every request the platform saw, for failed and for retried-then-archived IDs', async () => {
    const route: Route = (path, hit) => {
      if (path === '/api/v1/posts/2') return { kind: 'reply', status: 503, body: 'down' };
      if (path === '/api/v1/posts/3' && hit <= 2) return { kind: 'reply', status: 502, body: 'bad gateway' };
      return undefined;
    };
    const r = await hostileCrawl({ dir: join(tmp, 'attempts'), posts: 3, route: () => route, politeness: { max_attempts: 3 }, page: false, media: false });
    expect(r.exits).toEqual([3]);
    const ids = idRows(r.out);
    expect(r.server.hits.get('/api/v1/posts/2')).toBe(3);
    expect(ids.get(2)).toMatchObject({ status: 'failed', attempts: 3 });
    expect(r.server.hits.get('/api/v1/posts/3')).toBe(3);
    expect(ids.get(3)).toMatchObject({ status: 'archived', attempts: 3 });
    expect(ids.get(1)).toMatchObject({ status: 'archived', attempts: 1 });
  });
});

describe('robots.txt that holds (issue 11 §3)', () => {
  const rules = 'User-agent: *\nDisallow: /api/v1/posts/2\n';

  it('a robots.txt over 1 MiB is parsed (its first 500 KiB), not read as empty', async () => {
    const big = Buffer.concat([Buffer.from(rules), Buffer.alloc(3 << 19, '# padding line of a very large robots.txt\n')]);
    const route: Route = (p) => (p === '/robots.txt' ? { kind: 'reply', headers: { 'content-type': 'text/plain' }, body: big } : undefined);
    const r = await hostileCrawl({ dir: join(tmp, 'robots-big'), posts: 3, route: () => route, page: false, media: false });
    expect(r.server.hits.get('/api/v1/posts/2')).toBeUndefined();
    expect(idRows(r.out).get(2)!.last_error).toMatch(/robots\.txt disallows it/);
    expect(idRows(r.out).get(3)!.status).toBe('archived');
  });

  it('follows five redirects in scope to the real robots.txt; a sixth means unavailable (allow-all)', async () => {
    const chain = (hops: number): Route => (path): Plan | undefined => {
      if (path === '/robots.txt') return { kind: 'reply', status: 301, headers: { location: '/r/1' } };
      const m = /^\/r\/(\d+)$/.exec(path);
      if (!m) return undefined;
      const n = Number(m[1]);
      if (n < hops) return { kind: 'reply', status: [302, 307, 308, 301][n % 4]!, headers: { location: `/r/${n + 1}` } };
      return { kind: 'reply', headers: { 'content-type': 'text/plain' }, body: rules };
    };
    const five = await hostileCrawl({ dir: join(tmp, 'robots-5'), posts: 3, route: () => chain(5), page: false, media: false });
    expect(five.server.hits.get('/r/5')).toBe(1);
    expect(five.server.hits.get('/api/v1/posts/2')).toBeUndefined();
    expect(idRows(five.out).get(3)!.status).toBe('archived');
    const six = await hostileCrawl({ dir: join(tmp, 'robots-6'), posts: 3, route: () => chain(6), page: false, media: false });
    expect(six.server.hits.get('/r/6')).toBeUndefined();
    expect(six.exits).toEqual([0]);
    expect(six.server.hits.get('/api/v1/posts/2')).toBe(1);
  });

  it('an endless robots.txt costs 500 KiB, not max_body_bytes', async () => {
    const route: Route = (path) => (path === '/robots.txt' ? { kind: 'endless', headers: { 'content-type': 'text/plain' } } : undefined);
    const r = await hostileCrawl({ dir: join(tmp, 'robots-endless'), posts: 3, route: () => route, politeness: { max_body_bytes: 256 << 20 }, page: false, media: false });
    expect(r.exits).toEqual([0]);
    expect(r.judgement.final).toBe(3);
    // What the server managed to write before the socket closed: the 500 KiB read plus socket buffers.
    expect(r.server.endlessBytes).toBeLessThan(32 << 20);
  });

  it('a robots.txt that answers 503 forever: nothing is fetched from the host, and the log says why', async () => {
    const server = await startHostileServer({ route: (path) => (path === '/robots.txt' ? { kind: 'reply', status: 503, body: 'busy' } : undefined) });
    const dir = join(tmp, 'robots-503');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'profile.yaml'), faultProfile({ page: false, media: false }));
    const lines: string[] = [];
    const stop = new AbortController();
    try {
      const profile = loadProfile(join(dir, 'profile.yaml'), { baseUrl: server.url });
      const result = await runCrawl({
        profile,
        ranges: parseRanges('1-3', createCodec(profile.codec)),
        outDir: join(dir, 'shard'),
        node: 'test',
        allowPrivateNetwork: true,
        signal: stop.signal,
        logger: createLogger((e) => {
          lines.push(`${e.level} ${e.message}`);
          if (/waiting for robots\.txt/.test(e.message)) stop.abort();
        }),
      });
      expect(result.aborted).toBe(true);
    } finally {
      await server.close();
    }
    expect(lines.find((l) => l.includes('waiting for robots.txt'))).toMatch(new RegExp(`^warn ${server.url}: waiting for robots\\.txt \\(HTTP 503\\); nothing is fetched from this host until it answers`));
    expect([...server.hits.keys()].filter((p) => p !== '/robots.txt')).toEqual([]);
  });
});
