import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';

// Retry-After end to end: a platform answers one request with 429 and `Retry-After: 3`. From the
// platform's own request log: nothing arrives from the crawler for 3 seconds, then requests come
// again at a lower rate than before. Gaps between requests are behaviour, not speed: a slow
// machine only makes them longer, and the assertions are lower bounds.

const RETRY_AFTER_SECS = 3;
/** The request (counted from 1, post API only) answered 429. */
const THROTTLED_AT = 25;
const RATE = 20;

interface Hit {
  at: number;
  path: string;
  status: number;
}

let tmp: string;
let server: http.Server;
let base: string;
const log: Hit[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-retry-after-'));
  let posts = 0;
  server = http.createServer((req, res) => {
    const at = performance.now();
    const m = /^\/api\/v1\/posts\/(\d+)$/.exec(req.url ?? '');
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    posts++;
    if (posts === THROTTLED_AT) {
      log.push({ at, path: req.url!, status: 429 });
      res.writeHead(429, { 'retry-after': String(RETRY_AFTER_SECS), 'content-type': 'text/plain' }).end('slow down');
      return;
    }
    log.push({ at, path: req.url!, status: 200 });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: Number(m[1]) }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.close();
  await rm(tmp, { recursive: true, force: true });
});

function quietIo() {
  const err: string[] = [];
  return { io: { stdout: { write: () => true }, stderr: { write: (s: string) => err.push(s) }, env: {} }, err };
}

describe('a 429 with Retry-After, end to end', () => {
  it(`the host gets nothing for ${RETRY_AFTER_SECS} s, then requests resume at a reduced rate; nothing is lost`, async () => {
    const profile = join(tmp, 'throttling.yaml');
    await writeFile(
      profile,
      [
        'name: throttling',
        `base_url: ${base}`,
        'captures:',
        '  - {name: post, url: "{base_url}/api/v1/posts/{id}", type: json}',
        `politeness: {concurrency: 4, per_host_concurrency: 4, rate: ${RATE}, robots: ignore, max_attempts: 4}`,
        '',
      ].join('\n'),
    );
    const { io, err } = quietIo();
    const code = await main(['crawl', '--profile', profile, '--ids', '1-70', '--out', join(tmp, 'out'), '--allow-private-network', '--quiet'], io);
    expect(code, err.join('')).toBe(0);

    const throttled = log.findIndex((h) => h.status === 429);
    expect(throttled).toBe(THROTTLED_AT - 1);
    const t429 = log[throttled]!.at;
    // Requests sent before the crawler read the 429 may still arrive just after it.
    const after = log.slice(throttled + 1).filter((h) => h.at > t429 + 50);
    const resumedAt = after[0]!.at;
    // Nothing for Retry-After seconds (100 ms of tolerance for timer granularity).
    expect(resumedAt - t429).toBeGreaterThanOrEqual(RETRY_AFTER_SECS * 1000 - 100);
    // The 429'd ID was fetched again and archived: every ID once with 200.
    expect(log.filter((h) => h.status === 200)).toHaveLength(70);
    expect(new Set(log.filter((h) => h.status === 200).map((h) => h.path)).size).toBe(70);
    // Reduced rate: the spacing of the next 10 requests is at least 1.6 × the configured 1/RATE
    // (the limiter halves the rate and recovers by about 10% per second of successes).
    const gaps = after.slice(0, 11).map((h, i, a) => (i === 0 ? 0 : h.at - a[i - 1]!.at)).slice(1);
    const sorted = [...gaps].sort((x, y) => x - y);
    expect(sorted[Math.floor(sorted.length / 2)]).toBeGreaterThanOrEqual((1.6 * 1000) / RATE);
  }, 60_000);
});
