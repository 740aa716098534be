import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RetryableFetchError, ScopeError } from '../config/errors.js';
import { RobotsPolicy, type RobotsResponse } from '../crawler/fetch/robots.js';

const ROBOTS_TXT = `
User-agent: *
Disallow: /private/
Crawl-delay: 2

User-agent: lifeboat
Disallow: /api/v1/secret/
Allow: /api/v1/secret/ok
Crawl-delay: 0.5
`;

/** A real server on 127.0.0.1: each test sets what /robots.txt answers and reads how often it was asked. */
let server: http.Server;
let base: string;
let robotsStatus = 200;
let robotsBody = ROBOTS_TXT;
let robotsDelayMs = 0;
let robotsHits = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.url !== '/robots.txt') {
      res.statusCode = 404;
      res.end();
      return;
    }
    robotsHits += 1;
    setTimeout(() => {
      res.statusCode = robotsStatus;
      res.end(robotsBody);
    }, robotsDelayMs);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
afterEach(() => {
  robotsStatus = 200;
  robotsBody = ROBOTS_TXT;
  robotsDelayMs = 0;
  robotsHits = 0;
});

async function fetchRobots(robotsUrl: string): Promise<RobotsResponse> {
  const res = await request(robotsUrl); // undici's request does not follow redirects
  return { status: res.statusCode, body: await res.body.text() };
}

function policy(opts: Partial<ConstructorParameters<typeof RobotsPolicy>[0]> = {}): RobotsPolicy {
  return new RobotsPolicy({ userAgent: 'lifeboat/0.1 (+https://example.org/contact)', mode: 'obey', fetchRobots, ...opts });
}

describe('RobotsPolicy', () => {
  it('applies the group of our product token, with allow overriding disallow', async () => {
    const robots = policy();
    expect(await robots.isAllowed(`${base}/api/v1/posts/1`)).toBe(true);
    expect(await robots.isAllowed(`${base}/api/v1/secret/x`)).toBe(false);
    expect(await robots.isAllowed(`${base}/api/v1/secret/ok`)).toBe(true);
    // Our group replaces `*`, so /private/ is not disallowed for us.
    expect(await robots.isAllowed(`${base}/private/x`)).toBe(true);
    expect(await robots.crawlDelayMs(`${base}/`)).toBe(500);
    expect(robotsHits).toBe(1);
  });

  it('falls back to the * group for another user agent', async () => {
    const robots = policy({ userAgent: 'otherbot/2.0' });
    expect(await robots.isAllowed(`${base}/private/x`)).toBe(false);
    expect(await robots.isAllowed(`${base}/api/v1/secret/x`)).toBe(true);
    expect(await robots.crawlDelayMs(`${base}/x`)).toBe(2000);
  });

  it('fetches once per origin, sharing the in-flight fetch between concurrent callers', async () => {
    robotsDelayMs = 30;
    const robots = policy();
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => robots.isAllowed(`${base}/api/v1/${i % 2 ? 'secret/' : 'posts/'}${i}`)),
    );
    expect(answers.filter(Boolean)).toHaveLength(10);
    expect(await robots.crawlDelayMs(`${base}/`)).toBe(500);
    expect(robotsHits).toBe(1);
  });

  it('allows everything when robots.txt is a 4xx', async () => {
    for (const status of [404, 401, 403, 410]) {
      robotsStatus = status;
      robotsBody = 'User-agent: *\nDisallow: /\n';
      const robots = policy();
      expect(await robots.check(`${base}/private/x`)).toEqual({ allowed: true, decision: 'unavailable' });
      expect(await robots.crawlDelayMs(`${base}/`)).toBeUndefined();
    }
  });

  it('disallows everything for a while when robots.txt is a 5xx or 429, then fetches it again', async () => {
    let nowMs = 1_000_000;
    for (const status of [500, 503, 429]) {
      robotsHits = 0;
      robotsStatus = status;
      const robots = policy({ now: () => nowMs, unreachableRetryMs: 60_000 });
      expect(await robots.check(`${base}/api/v1/posts/1`)).toEqual({ allowed: false, decision: 'unreachable', retryAfterMs: 60_000 });
      await expect(robots.assertAllowed(`${base}/api/v1/posts/1`)).rejects.toBeInstanceOf(RetryableFetchError);
      robotsStatus = 200;
      nowMs += 59_000;
      expect(await robots.isAllowed(`${base}/api/v1/posts/1`)).toBe(false);
      expect(robotsHits).toBe(1);
      nowMs += 1_000;
      expect(await robots.isAllowed(`${base}/api/v1/posts/1`)).toBe(true);
      expect(await robots.isAllowed(`${base}/api/v1/secret/1`)).toBe(false);
      expect(robotsHits).toBe(2);
    }
  });

  it('disallows everything for now on a network error', async () => {
    const dead = 'http://127.0.0.1:1'; // nothing listens on port 1
    let nowMs = 0;
    let calls = 0;
    const robots = policy({
      now: () => nowMs,
      fetchRobots: (url) => {
        calls += 1;
        return fetchRobots(url);
      },
    });
    expect(await robots.isAllowed(`${dead}/x`)).toBe(false);
    expect(await robots.isAllowed(`${dead}/y`)).toBe(false);
    expect(calls).toBe(1);
    nowMs += 60_000;
    expect(await robots.isAllowed(`${dead}/x`)).toBe(false);
    expect(calls).toBe(2);
  });

  it('re-fetches a good robots.txt after the cache TTL', async () => {
    let nowMs = 0;
    const robots = policy({ now: () => nowMs, cacheTtlMs: 1000 });
    expect(await robots.isAllowed(`${base}/api/v1/secret/x`)).toBe(false);
    robotsBody = 'User-agent: *\nAllow: /\n';
    nowMs = 999;
    expect(await robots.isAllowed(`${base}/api/v1/secret/x`)).toBe(false);
    nowMs = 1000;
    expect(await robots.isAllowed(`${base}/api/v1/secret/x`)).toBe(true);
    expect(robotsHits).toBe(2);
  });

  it('treats a 3xx the fetcher did not follow as unavailable', async () => {
    robotsStatus = 301;
    expect(await policy().isAllowed(`${base}/api/v1/secret/x`)).toBe(true);
  });

  it('never fetches in ignore mode', async () => {
    const robots = policy({
      mode: 'ignore',
      fetchRobots: () => {
        throw new Error('must not fetch');
      },
    });
    expect(await robots.isAllowed(`${base}/api/v1/secret/x`)).toBe(true);
    expect(await robots.crawlDelayMs(`${base}/`)).toBeUndefined();
    expect(await robots.check(`${base}/x`)).toEqual({ allowed: true, decision: 'ignored' });
  });

  it('assertAllowed gives up with ScopeError E_ROBOTS on a disallowed URL', async () => {
    const robots = policy();
    await expect(robots.assertAllowed(`${base}/api/v1/posts/1`)).resolves.toBeUndefined();
    const err = await robots.assertAllowed(`${base}/api/v1/secret/x`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ScopeError);
    expect(err).toMatchObject({ code: 'E_ROBOTS', policy: 'give-up' });
  });

  it('keeps origins apart', async () => {
    const seen: string[] = [];
    const robots = policy({
      fetchRobots: async (url) => {
        seen.push(url);
        return url === 'http://a.test/robots.txt' ? { status: 200, body: 'User-agent: *\nDisallow: /\n' } : { status: 404, body: '' };
      },
    });
    expect(await robots.isAllowed('http://a.test/x')).toBe(false);
    expect(await robots.isAllowed('http://b.test/x')).toBe(true);
    expect(await robots.isAllowed('https://a.test/x')).toBe(true);
    expect(await robots.isAllowed('http://a.test:8080/x')).toBe(true);
    expect(seen).toEqual(['http://a.test/robots.txt', 'http://b.test/robots.txt', 'https://a.test/robots.txt', 'http://a.test:8080/robots.txt']);
  });
});

describe('robots.txt that keeps the crawl waiting (issue 11 §3)', () => {
  it('says once that a robots.txt still downloading holds up its host', async () => {
    const slow: string[] = [];
    let finish: (r: RobotsResponse) => void = () => undefined;
    const p = new RobotsPolicy({
      userAgent: 'lifeboat',
      mode: 'obey',
      slowNoticeMs: 20,
      onSlow: (origin) => {
        slow.push(origin);
        finish({ status: 200, body: 'User-agent: *\nDisallow: /x\n' });
      },
      fetchRobots: () => new Promise<RobotsResponse>((resolve) => (finish = resolve)),
    });
    expect(await p.isAllowed(`${base}/x`)).toBe(false);
    expect(slow).toEqual([base]);
    // A quick answer says nothing.
    const quiet: string[] = [];
    const q = new RobotsPolicy({ userAgent: 'lifeboat', mode: 'obey', slowNoticeMs: 60_000, onSlow: (o) => quiet.push(o), fetchRobots });
    expect(await q.isAllowed(`${base}/y`)).toBe(true);
    expect(quiet).toEqual([]);
  });
});

describe('robots.txt redirected out of scope (issue 21 §5)', () => {
  it('is never fetched there: the redirect ends as "unavailable" with a note, and the other host gets no request', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { HttpCapturer } = await import('../crawler/fetch/http-capture.js');
    const { robotsFetcher } = await import('../crawler/fetch/robots-fetch.js');
    const { ScopeGuard } = await import('../crawler/fetch/scope-guard.js');
    let elsewhereHits = 0;
    // Another loopback address stands in for a host outside the profile's scope.
    const elsewhere = http.createServer((_req, res) => {
      elsewhereHits++;
      res.end('User-agent: *\nDisallow: /\n');
    });
    await new Promise<void>((r) => elsewhere.listen(0, '127.0.0.2', r));
    const out = `http://127.0.0.2:${(elsewhere.address() as AddressInfo).port}/robots.txt`;
    const platform = http.createServer((req, res) => {
      if (req.url === '/robots.txt') res.writeHead(302, { location: out }).end();
      else if (req.url === '/hop') res.writeHead(301, { location: '/robots.txt' }).end();
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => platform.listen(0, '127.0.0.1', r));
    const at = `http://127.0.0.1:${(platform.address() as AddressInfo).port}`;
    const tmp = await mkdtemp(join(tmpdir(), 'lifeboat-robots-redirect-'));
    const capturer = new HttpCapturer({ userAgent: 't', spoolDir: tmp, connectTimeoutMs: 5000, headersTimeoutMs: 5000, idleTimeoutMs: 60_000, totalTimeoutMs: 120_000, maxBodyBytes: 1 << 20 });
    try {
      const fetchRobots = robotsFetcher(capturer, new ScopeGuard({ hosts: ['127.0.0.1'], allowPrivateNetwork: true }));
      for (const start of [`${at}/robots.txt`, `${at}/hop`]) {
        const got = await fetchRobots(start);
        expect(got).toEqual({ status: 302, body: '', note: expect.stringMatching(/^redirect refused: .*127\.0\.0\.2/) });
      }
      expect(elsewhereHits).toBe(0);
      // The policy reads it as unavailable (3xx not followed): allow-all, not the other host's "Disallow: /".
      const policy = new RobotsPolicy({ userAgent: 'lifeboat', mode: 'obey', fetchRobots });
      await expect(policy.isAllowed(`${at}/posts/1`)).resolves.toBe(true);
      expect(elsewhereHits).toBe(0);
    } finally {
      await capturer.close();
      await rm(tmp, { recursive: true, force: true });
      await new Promise((r) => platform.close(r));
      await new Promise((r) => elsewhere.close(r));
    }
  });
});
