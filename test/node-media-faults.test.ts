import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { type RunningTracker, serveTracker } from '../tracker/server/server.js';

/**
 * Issue 13 faults: a node killed with -9 in the middle of a media item and started again
 * resumes its lease, fetches only what it had not made final, and the item ends done with every
 * URL archived once.
 */

const CLI = resolve('dist/scripts/cli/cli.js');
let platform: DemoPlatform;
let tracker: RunningTracker;
let tmp: string;
let urls: string[];

beforeAll(async () => {
  expect(existsSync(CLI), 'dist/ is built (npm test builds it first)').toBe(true);
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-media-faults-'));
  // A slow platform (20 requests/s, then 429 with Retry-After) so the kill lands mid-item.
  platform = await startDemoPlatform({ posts: 120, rateLimit: { rps: 20, burst: 1, retryAfter: true } });
  const project = join(tmp, 'project.yaml');
  await writeFile(project, 'name: media-faults\nprofile: demo\nlease_secs: 60\nmedia: {item_size: 40}\n');
  tracker = await serveTracker({ projectFile: project, db: `sqlite:${join(tmp, 'tracker.sqlite')}`, port: 0, env: { LIFEBOAT_ADMIN_TOKEN: 'admin-token-for-media-faults' }, logger: false, baseUrl: platform.url });
  const all = new Set<string>();
  for (let id = 1; id <= 120; id++) for (const u of platform.post(id).mediaUrls) all.add(new URL(u).href);
  urls = [...all].filter((u) => u.endsWith('.png') || u.endsWith('.jpg')).slice(0, 40);
  await tracker.store.queueMedia(urls.map((url) => ({ url })));
});

afterAll(async () => {
  await tracker?.close();
  await platform?.close();
  await rm(tmp, { recursive: true, force: true });
});

function startNode(out: string, options: { url?: string; nick?: string; only?: string } = {}): { child: ChildProcess; exited: Promise<number | null>; stderr: () => string } {
  const { url = tracker.url, nick = 'killed', only = 'media' } = options;
  const child = spawn(process.execPath, [CLI, 'node', '--tracker', url, '--nick', nick, '--out', out, '--base-url', platform.url, '--allow-private-network', '--exit-when-idle', '--only', only, '--heartbeat-secs', '1', '--concurrency', '2', '--quiet'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  return { child, exited: new Promise((ok) => child.once('exit', (code) => ok(code))), stderr: () => stderr };
}

function doneUrls(shard: string): string[] {
  if (!existsSync(join(shard, 'shard.sqlite'))) return [];
  const db = new Database(join(shard, 'shard.sqlite'), { readonly: true });
  try {
    return db.prepare<[], { url: string }>(`SELECT url FROM urls WHERE state = 'done'`).all().map((r) => r.url);
  } catch {
    return [];
  } finally {
    db.close();
  }
}

describe('a node killed mid-media-item (issue 13)', () => {
  it('resumes the item on its lease after kill -9, refetches nothing it had made final, and finishes it', async () => {
    const out = join(tmp, 'node');
    const first = startNode(out);
    // Wait until some, not all, of the item's URLs are final in its shard.
    let shard = '';
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const items = existsSync(join(out, 'items')) ? await readdir(join(out, 'items')) : [];
      if (items.length === 0) continue;
      shard = join(out, 'items', items[0]!);
      const n = doneUrls(shard).length;
      if (n >= 5 && n < urls.length) break;
    }
    first.child.kill('SIGKILL');
    await first.exited;
    const before = doneUrls(shard);
    expect(before.length).toBeGreaterThanOrEqual(5);
    expect(before.length).toBeLessThan(urls.length);
    const hitsAtKill = new Map(before.map((u) => [new URL(u).pathname, platform.stats.paths.get(new URL(u).pathname) ?? 0]));

    const second = startNode(out);
    expect(await second.exited, second.stderr()).toBe(0);
    expect(await readdir(join(out, 'items'))).toHaveLength(1);
    // Nothing lost: every URL done, on the tracker and in the shard; each archived once.
    expect(await tracker.store.mediaCounts()).toEqual({ urls: urls.length, done: urls.length, pending: 0, failed: 0 });
    expect(new Set(doneUrls(shard))).toEqual(new Set(urls));
    const db = new Database(join(shard, 'shard.sqlite'), { readonly: true });
    const captures = db.prepare<[], { url: string; n: number }>(`SELECT url, COUNT(*) AS n FROM captures WHERE name = 'media' AND http_status = 200 GROUP BY url`).all();
    db.close();
    expect(captures.filter((c) => c.n !== 1)).toEqual([]);
    expect(captures).toHaveLength(urls.length);
    // What was final before the kill was not requested again.
    for (const [path, hits] of hitsAtKill) expect(platform.stats.paths.get(path), path).toBe(hits);
    expect((await verifyPaths([shard])).defects).toEqual([]);
  }, 120_000);

  it('a node killed mid-post-item and restarted reports every medium its shard holds: none is lost', async () => {
    const project = join(tmp, 'posts.yaml');
    await writeFile(project, 'name: posts-killed\nprofile: demo\nitem_size: 60\nlease_secs: 60\n');
    const db = `sqlite:${join(tmp, 'posts.sqlite')}`;
    const { seedCommand } = await import('../tracker/server/commands.js');
    await seedCommand({ db, project: 'posts-killed', ids: '1-60', itemSize: 60, create: true });
    const t = await serveTracker({ projectFile: project, db, port: 0, env: { LIFEBOAT_ADMIN_TOKEN: 'admin-token-for-media-faults' }, logger: false, baseUrl: platform.url });
    try {
      const out = join(tmp, 'poster');
      const first = startNode(out, { url: t.url, nick: 'poster', only: 'posts' });
      const shard = join(out, 'items');
      let final = 0;
      for (let i = 0; i < 600 && (final < 10 || final >= 50); i++) {
        await new Promise((r) => setTimeout(r, 50));
        const items = existsSync(shard) ? await readdir(shard) : [];
        if (items.length === 0 || !existsSync(join(shard, items[0]!, 'shard.sqlite'))) continue;
        const sdb = new Database(join(shard, items[0]!, 'shard.sqlite'), { readonly: true });
        try {
          final = (sdb.prepare(`SELECT COUNT(*) AS n FROM ids`).get() as { n: number }).n;
        } catch {
          final = 0;
        } finally {
          sdb.close();
        }
      }
      first.child.kill('SIGKILL');
      await first.exited;
      expect(final).toBeGreaterThanOrEqual(10);
      const second = startNode(out, { url: t.url, nick: 'poster', only: 'posts' });
      expect(await second.exited, second.stderr()).toBe(0);
      const expected = new Set<string>();
      for (let id = 1; id <= 60; id++) for (const u of platform.post(id).mediaUrls) expected.add(new URL(u).href);
      const stats = await t.store.stats({ now: Date.now(), windowMs: 60_000 });
      expect(stats.ids).toEqual({ total: 60, done: 60 });
      // Every medium of the 60 posts reached the tracker, none fetched by the post item.
      expect(await t.store.mediaCounts()).toEqual({ urls: expected.size, done: 0, pending: expected.size, failed: 0 });
      const sdb = new Database(join(shard, (await readdir(shard))[0]!, 'shard.sqlite'), { readonly: true });
      expect((sdb.prepare(`SELECT COUNT(*) AS n FROM captures WHERE name = 'media'`).get() as { n: number }).n).toBe(0);
      sdb.close();
    } finally {
      await t.close();
    }
  }, 120_000);
});
