import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';
import { ShardDb } from '../storage/shard/shard-db.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';
import { makeShard } from './fixtures/make-shard.js';

/**
 * Issue 13: merge reports media across all inputs — coverage.json's media counts and
 * missing-media.txt (URLs some shard queued or failed, none archived) — and `tracker seed
 * --media-from-file` queues those URLs again, URLs of finished media items included.
 */

const dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-media-cov-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const base = 'http://127.0.0.1:8080';

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: process.env });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

function queue(shard: string, urls: [string, 'queued' | 'failed' | 'done', string?][]) {
  const db = new ShardDb(path.join(shard, 'shard.sqlite'));
  try {
    for (const [url, state, lastError] of urls) {
      db.queueUrl(url, 1);
      if (state !== 'queued') db.setUrlState(url, state, lastError ? { lastError } : {});
    }
  } finally {
    db.close();
  }
}

describe('media in merge and coverage (issue 13)', () => {
  it('a media URL answered only 5xx or 429 is missing, not archived; a 200 or a final 404 is not listed (issue 21 §5)', async () => {
    const c = path.join(dir, 'c');
    const d = path.join(dir, 'd');
    // c fetched them all once: 503, 429, 500 recorded in its WARC (the crawl gave up on them), 404 and 200 final answers.
    await makeShard({ dir: c, start: 1, end: 5, baseUrl: base, mediaAnswers: { '/media/busy.png': 503, '/media/slow.png': 429, '/media/err.png': 500, '/media/gone.png': 404, '/media/ok.png': 200 } });
    queue(c, [[`${base}/media/busy.png`, 'failed'], [`${base}/media/slow.png`, 'failed'], [`${base}/media/err.png`, 'failed'], [`${base}/media/gone.png`, 'done'], [`${base}/media/ok.png`, 'done']]);
    // d's post reported them all too and never got to them.
    await makeShard({ dir: d, start: 6, end: 10, baseUrl: base });
    queue(d, ['busy', 'slow', 'err', 'gone', 'ok'].map((n) => [`${base}/media/${n}.png`, 'queued'] as [string, 'queued']));
    const out = path.join(dir, 'merged-5xx');
    const merged = await run(['merge', c, d, '--out', out]);
    expect(merged.stderr).toBe('');
    expect(readFileSync(path.join(out, 'missing-media.txt'), 'utf8')).toBe(`${base}/media/busy.png\n${base}/media/err.png\n${base}/media/slow.png\n`);
    // coverage.json counts the same way: archived are the avatar, ok.png and gone.png (a final answer).
    expect(JSON.parse(readFileSync(path.join(out, 'coverage.json'), 'utf8')).media).toEqual({ archived: 3, missing: 3 });
  });

  it('node --only takes posts or media, nothing else (exit 2 before anything is created)', async () => {
    const out = path.join(dir, 'never');
    const r = await run(['node', '--tracker', 'http://127.0.0.1:9', '--nick', 'x', '--out', out, '--only', 'video']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--only video: use posts or media/);
    expect(existsSync(out)).toBe(false);
  });

  it('missing-media.txt lists media queued somewhere and archived nowhere; seed --media-from-file queues them again', async () => {
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    await makeShard({ dir: a, start: 1, end: 20, baseUrl: base });
    await makeShard({ dir: b, start: 21, end: 40, baseUrl: base });
    // a's post item reported three URLs (left queued); the avatar is archived in the shards themselves.
    queue(a, [[`${base}/media/avatar.gif`, 'queued'], [`${base}/media/x.png#frag`, 'queued'], [`${base}/media/y.png`, 'queued']]);
    // b's media item tried x.png and gave up (issue 21 §2: its reason reaches missing-media.txt).
    queue(b, [[`${base}/media/x.png`, 'failed', 'connection reset by peer\n(8 attempts)'], [`${base}/media/z.png`, 'done']]);
    const out = path.join(dir, 'merged');
    const merged = await run(['merge', a, b, '--out', out]);
    expect(merged.stderr).toBe('');
    const missing = readFileSync(path.join(out, 'missing-media.txt'), 'utf8');
    expect(missing).toBe(`${base}/media/x.png  # failed: connection reset by peer (8 attempts)\n${base}/media/y.png\n`);
    const coverage = JSON.parse(readFileSync(path.join(out, 'coverage.json'), 'utf8'));
    expect(coverage.media).toEqual({ archived: 1, missing: 2 });

    const project = path.join(dir, 'project.yaml');
    writeFileSync(project, 'name: rescue\nprofile: demo\n');
    const file = path.join(dir, 'tracker.sqlite');
    const db = `sqlite:${file}`;
    // x.png was handed out before and its media item finished: it is queued again all the same.
    const store = new SqliteItemStore({ path: file, project: 'rescue' });
    await store.init();
    await store.queueMedia([{ url: `${base}/media/x.png` }]);
    const node = await store.registerNode({ nick: 'n', tokenHash: 'h', now: 1 });
    const claim = await store.claim({ nodeId: node.id, now: 1, leaseMs: 60_000 });
    if (claim.kind !== 'lease') throw new Error('expected a lease');
    await store.done({ nodeId: node.id, leaseId: claim.lease.leaseId, stats: { counts: { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0 }, bytes: 0, warcs: [] }, now: 1 });
    const seeded = await run(['tracker', 'seed', '--project', project, '--db', db, '--media-from-file', path.join(out, 'missing-media.txt')]);
    expect(seeded.stderr).toBe('');
    expect(seeded.stdout).toBe('queued 2 media URLs into project rescue\n');
    expect(await store.mediaCounts()).toMatchObject({ urls: 2, pending: 2 });
    const status = await run(['tracker', 'status', '--project', project, '--db', db]);
    expect(status.stdout).toContain('media: 0 / 2 URLs done, 2 not yet in a media item');
    const again = await run(['tracker', 'seed', '--project', project, '--db', db, '--media-from-file', path.join(out, 'missing-media.txt')]);
    expect(again.stdout).toMatch(/^queued 0 media URLs into project rescue; 2 were already queued/);
    await store.close();

    const bad = path.join(dir, 'bad.txt');
    writeFileSync(bad, `# from a merge\n${base}/ok.png\nhttp://127.0.0.2/canary.png\n`);
    const refused = await run(['tracker', 'seed', '--project', project, '--db', db, '--media-from-file', bad]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/bad\.txt:3: host 127\.0\.0\.2 is not in this project's media hosts/);
    expect(refused.stderr).not.toMatch(/\n\s+at /);
    const both = await run(['tracker', 'seed', '--project', project, '--db', db, '--ids', '1-5', '--media-from-file', bad]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/exactly one of --ids, --from-file or --media-from-file/);
  });
});
