import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';
import { readWarcDir } from './fixtures/warc-records.js';

// Revisits in a plain HTTP crawl (no Chromium): every post's page redirects to one shared page,
// so the crawler fetches the same URL with the same payload once per post. The first fetch is
// stored as a response; every later one as a revisit pointing at it — found among records not
// yet committed, among records committed earlier in the run, and (in a second run on the same
// shard) in the shard database.

const SHARED = '<!doctype html><html><body><h1>This post moved to the shared page</h1></body></html>';
let tmp: string;
let server: http.Server;
let base: string;
let sharedFetches = 0;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-revisit-'));
  server = http.createServer((req, res) => {
    void (async () => {
      const url = req.url ?? '';
      const post = /^\/api\/v1\/posts\/(\d+)$/.exec(url);
      if (post) {
        await sleep(15); // spreads the run over several group commits (every 250 ms)
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: Number(post[1]) }));
      } else if (/^\/p\/\d+$/.test(url)) {
        res.writeHead(302, { location: '/shared/page' }).end();
      } else if (url === '/shared/page') {
        sharedFetches++;
        res.writeHead(200, { 'content-type': 'text/html' }).end(SHARED);
      } else res.writeHead(404).end();
    })();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.close();
  await rm(tmp, { recursive: true, force: true });
});

async function crawl(profile: string, out: string, ids: string): Promise<void> {
  const err: string[] = [];
  const io = { stdout: { write: () => true }, stderr: { write: (s: string) => err.push(s) }, env: {} };
  const code = await main(['crawl', '--profile', profile, '--ids', ids, '--out', out, '--allow-private-network', '--quiet'], io);
  expect(code, err.join('')).toBe(0);
}

describe('revisit records in an HTTP crawl', () => {
  it('the same URL with the same payload fetched again becomes a revisit of the first response, within a run and across runs', async () => {
    const profile = join(tmp, 'moved.yaml');
    await writeFile(
      profile,
      [
        'name: moved',
        `base_url: ${base}`,
        'captures:',
        '  - {name: post, url: "{base_url}/api/v1/posts/{id}", type: json}',
        '  - {name: page, url: "{base_url}/p/{id}", type: html}',
        'politeness: {concurrency: 2, per_host_concurrency: 2, rate: 1000, robots: ignore}',
        '',
      ].join('\n'),
    );
    const out = join(tmp, 'shard');
    await crawl(profile, out, '1-40');
    const firstRun = sharedFetches;
    expect(firstRun).toBe(40);
    await crawl(profile, out, '41-50');
    expect(sharedFetches).toBe(50);

    const records = await readWarcDir(join(out, 'warcs'));
    const shared = records.filter((r) => r.url === `${base}/shared/page` && (r.type === 'response' || r.type === 'revisit'));
    const responses = shared.filter((r) => r.type === 'response');
    const revisits = shared.filter((r) => r.type === 'revisit');
    expect(responses).toHaveLength(1);
    expect(revisits).toHaveLength(49);
    const original = responses[0]!;
    expect(original.payload.toString()).toBe(SHARED);
    for (const r of revisits) {
      expect(r.headers['WARC-Profile']).toBe('http://netpreserve.org/warc/1.1/revisit/identical-payload-digest');
      expect(r.headers['WARC-Refers-To']).toBe(original.headers['WARC-Record-ID']);
      expect(r.headers['WARC-Refers-To-Target-URI']).toBe(original.url);
      expect(r.headers['WARC-Payload-Digest']).toBe(original.headers['WARC-Payload-Digest']);
      expect(r.blockDigestOk).toBe(true);
    }
    // Each run wrote one file: the second run's 10 revisits point into the first run's file
    // (found in shard.sqlite, not in memory).
    expect(new Set(records.map((r) => r.file)).size).toBe(2);
    expect(revisits.filter((r) => r.file !== original.file)).toHaveLength(10);
    // Everything else was stored in full: each post's JSON once, each redirect once.
    expect(records.filter((r) => r.type === 'response' && r.url.includes('/api/v1/posts/'))).toHaveLength(50);
    expect(records.filter((r) => r.type === 'response' && /\/p\/\d+$/.test(r.url))).toHaveLength(50);
  }, 60_000);
});
