/**
 * The browser fetcher keeps the retry rules of the HTTP fetcher (config/retry.ts): it waits for the
 * server's Retry-After and waits out a host that refuses connections (politeness.max_outage_ms)
 * instead of using up its attempts. Real Chromium; skipped without it unless LIFEBOAT_REQUIRE_ALL=1.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BrowserFetcher } from '../crawler/browser/browser-fetcher.js';
import { BrowserPool } from '../crawler/browser/browser-pool.js';
import { HostLimiter } from '../crawler/fetch/host-limiter.js';
import { RobotsPolicy } from '../crawler/fetch/robots.js';
import { ScopeGuard } from '../crawler/fetch/scope-guard.js';
import { CHROMIUM, describeWithChromium } from './fixtures/environment.js';

const describeBrowser = describeWithChromium('browser-retry');

function fetcherFor(pool: BrowserPool, o: { maxAttempts: number; maxOutageMs?: number; waits: number[] }): BrowserFetcher {
  return new BrowserFetcher({
    pool,
    guard: new ScopeGuard({ hosts: ['127.0.0.1'], allowPrivateNetwork: true }),
    robots: new RobotsPolicy({ userAgent: 'lifeboat', mode: 'ignore', fetchRobots: async () => ({ status: 404, body: '' }) }),
    limiter: new HostLimiter({ ratePerSec: 100, perHostConcurrency: 2 }),
    maxAttempts: o.maxAttempts,
    pageTimeoutMs: 15_000,
    idleMs: 50,
    maxBodyBytes: 1 << 20,
    backoffBaseMs: 50,
    ...(o.maxOutageMs !== undefined ? { maxOutageMs: o.maxOutageMs } : {}),
    events: { onRetry: (_url, _reason, waitMs) => o.waits.push(waitMs) },
  });
}

describeBrowser('browser capture retries like HTTP capture', () => {
  let pool: BrowserPool;
  beforeAll(() => {
    pool = new BrowserPool({ executablePath: CHROMIUM, contexts: 1 });
  });
  afterAll(async () => {
    await pool.close();
  });

  it("waits for the server's Retry-After before the next attempt", async () => {
    let calls = 0;
    const server = http.createServer((req, res) => {
      if (req.url !== '/page') return void res.writeHead(404).end();
      calls++;
      if (calls === 1) res.writeHead(429, { 'retry-after': '2', 'content-type': 'text/html' }).end('<p>slow down</p>');
      else res.writeHead(200, { 'content-type': 'text/html' }).end('<p>hello</p>');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const waits: number[] = [];
      const out = await fetcherFor(pool, { maxAttempts: 3, waits }).fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/page`);
      expect(out.status).toBe(200);
      expect(out.attempts).toBe(2);
      expect(waits).toHaveLength(1);
      expect(waits[0]).toBeGreaterThanOrEqual(2_000);
    } finally {
      server.close();
    }
  });

  it('waits out a host that refuses connections instead of using up its attempts', async () => {
    // A port that answers nothing until the server comes up on it a moment later.
    const probe = http.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<p>back</p>'));
    const waits: number[] = [];
    const fetching = fetcherFor(pool, { maxAttempts: 1, maxOutageMs: 60_000, waits }).fetch(`http://127.0.0.1:${port}/page`);
    // Up once the fetcher has been refused at least twice.
    while (waits.length < 2) await new Promise((r) => setTimeout(r, 50));
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    try {
      const out = await fetching;
      expect(out.status).toBe(200);
      expect(out.attempts).toBe(1);
    } finally {
      server.close();
    }
  });
});
