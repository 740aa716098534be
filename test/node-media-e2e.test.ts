import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../config/logger.js';
import { runNode } from '../node/loop.js';
import { main } from '../scripts/cli/cli.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { seedCommand } from '../tracker/server/commands.js';
import { type RunningTracker, serveTracker } from '../tracker/server/server.js';
import { startCanary, type Canary } from './fixtures/canary.js';

/**
 * Issue 13 end to end: three nodes (one of them `--only media`) crawl a platform whose 50 authors'
 * avatars appear on most posts. Post items report their media; the tracker hands each URL out
 * once; the platform's own request log shows every medium fetched once, and no post twice.
 */

const POSTS = 300;
let platform: DemoPlatform;
let tracker: RunningTracker;
let canary: Canary;
let tmp: string;
let db: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-media-e2e-'));
  platform = await startDemoPlatform({ posts: POSTS });
  canary = await startCanary();
  const project = join(tmp, 'project.yaml');
  await writeFile(project, 'name: media-e2e\nprofile: demo\nitem_size: 50\nlease_secs: 30\nmedia: {item_size: 25}\n');
  db = `sqlite:${join(tmp, 'tracker.sqlite')}`;
  await seedCommand({ db, project: 'media-e2e', ids: `1-${POSTS}`, itemSize: 50, create: true });
  tracker = await serveTracker({ projectFile: project, db, port: 0, env: { LIFEBOAT_ADMIN_TOKEN: 'admin-token-for-the-media-e2e' }, logger: false, baseUrl: platform.url });
});

afterAll(async () => {
  await tracker?.close();
  await platform?.close();
  await canary?.close();
  await rm(tmp, { recursive: true, force: true });
});

const node = (nick: string, extra: Partial<Parameters<typeof runNode>[0]> = {}) =>
  runNode({ trackerUrl: tracker.url, nick, outDir: join(tmp, nick), logger: silentLogger, nodeName: nick, baseUrl: platform.url, allowPrivateNetwork: true, exitWhenDone: true, heartbeatMs: 200, concurrency: 4, ...extra });

async function shardsOf(nicks: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const nick of nicks) {
    const items = join(tmp, nick, 'items');
    if (!existsSync(items)) continue;
    for (const item of await readdir(items)) if (existsSync(join(items, item, 'shard.sqlite'))) out.push(join(items, item));
  }
  return out;
}

describe('shared media across nodes (issue 13)', () => {
  it('fetches every medium as a full 200 exactly once across nodes, after the posts that found it', async () => {
    const nicks = ['a', 'b', 'm'];
    // Rounds until the tracker has nothing left: a media-only node idles out while posts are in flight.
    for (let round = 0; round < 10; round++) {
      const results = await Promise.all([node('a'), node('b'), node('m', { only: 'media' })]);
      expect(results.every((r) => !r.interrupted)).toBe(true);
      const counts = await tracker.store.mediaCounts();
      const s = await tracker.store.stats({ now: Date.now(), windowMs: 60_000 });
      if (s.items.done === s.items.total && counts.pending === 0 && counts.done === counts.urls) break;
    }
    const expected = new Set<string>();
    for (let id = 1; id <= POSTS; id++) for (const url of platform.post(id).mediaUrls) expected.add(new URL(url).pathname);
    expect(expected.size).toBeGreaterThan(50);
    const counts = await tracker.store.mediaCounts();
    expect(counts).toEqual({ urls: expected.size, done: expected.size, pending: 0, failed: 0 });

    // The platform's request log: each medium requested once (a 200), each post's API once.
    const log = platform.stats.paths;
    const mediaHits = [...log].filter(([path]) => path.startsWith('/media/'));
    expect(mediaHits.filter(([, n]) => n !== 1)).toEqual([]);
    expect(new Set(mediaHits.map(([path]) => path))).toEqual(expected);
    const postHits = [...log].filter(([path]) => /^\/api\/v1\/posts\/\d+$/.test(path));
    expect(postHits.filter(([, n]) => n !== 1)).toEqual([]);

    // Every medium is in exactly one shard, fetched by a media item; post items fetched none.
    const shards = await shardsOf(nicks);
    const fetchedBy = new Map<string, number>();
    let postItemMedia = 0;
    for (const dir of shards) {
      const sdb = new Database(join(dir, 'shard.sqlite'), { readonly: true });
      const isMediaItem = (sdb.prepare('SELECT COUNT(*) AS n FROM ids').get() as { n: number }).n === 0;
      for (const { url } of sdb.prepare<[], { url: string }>(`SELECT url FROM captures WHERE name = 'media' AND http_status = 200`).all()) {
        fetchedBy.set(url, (fetchedBy.get(url) ?? 0) + 1);
        if (!isMediaItem) postItemMedia++;
      }
      sdb.close();
    }
    expect(postItemMedia).toBe(0);
    expect([...fetchedBy.values()].every((n) => n === 1)).toBe(true);
    expect(fetchedBy.size).toBe(expected.size);
    expect((await verifyPaths(shards)).defects).toEqual([]);

    // Merged, the post items' queued URLs are matched by the media items' captures: nothing missing.
    const merged = join(tmp, 'merged');
    const code = await main(['merge', ...shards, '--out', merged], { stdout: { write: () => true }, stderr: { write: () => true }, env: process.env });
    expect(code).toBe(0);
    const coverage = JSON.parse(await readFile(join(merged, 'coverage.json'), 'utf8'));
    expect(coverage.media).toEqual({ archived: expected.size, missing: 0 });
    expect(coverage.missing_ids).toBe(0);
    expect(await readFile(join(merged, 'missing-media.txt'), 'utf8')).toBe('');
  }, 300_000);

  it('media.inline: post items still fetch the listed kinds themselves and report only the others', async () => {
    const p2 = await startDemoPlatform({ posts: 80 });
    const project = join(tmp, 'inline.yaml');
    await writeFile(project, 'name: inline\nprofile: demo\nitem_size: 40\nmedia: {inline: [image]}\n');
    const db2 = `sqlite:${join(tmp, 'inline.sqlite')}`;
    await seedCommand({ db: db2, project: 'inline', ids: '1-80', itemSize: 40, create: true });
    const t2 = await serveTracker({ projectFile: project, db: db2, port: 0, env: { LIFEBOAT_ADMIN_TOKEN: 'admin-token-for-the-media-e2e' }, logger: false, baseUrl: p2.url });
    try {
      const out = join(tmp, 'inline-node');
      await runNode({ trackerUrl: t2.url, nick: 'i', outDir: out, logger: silentLogger, nodeName: 'i', baseUrl: p2.url, allowPrivateNetwork: true, exitWhenDone: true, heartbeatMs: 200, only: 'posts' });
      const images = new Set<string>();
      const videos = new Set<string>();
      for (let id = 1; id <= 80; id++) for (const u of p2.post(id).mediaUrls) (u.endsWith('.mp4') ? videos : images).add(new URL(u).pathname);
      expect(videos.size).toBeGreaterThan(0);
      // Videos went to the tracker, images were fetched by the post items.
      expect(await t2.store.mediaCounts()).toMatchObject({ urls: videos.size, pending: videos.size });
      const fetched = [...p2.stats.paths.keys()].filter((path) => path.startsWith('/media/'));
      expect(new Set(fetched)).toEqual(images);
    } finally {
      await t2.close();
      await p2.close();
    }
  }, 120_000);

  it('a node refuses a media URL outside its scope even when the tracker hands it out (canary sees nothing)', async () => {
    // A tampered tracker database: a URL on 127.0.0.2 queued as media work directly, past the API's check.
    await tracker.store.queueMedia([{ url: `${canary.url}/steal.png` }]);
    const r = await node('c', { only: 'media' });
    expect(r.counts.media_restricted).toBe(1);
    expect(canary.hits).toEqual([]);
    expect(canary.connections).toBe(0);
    expect(await tracker.store.mediaCounts()).toMatchObject({ pending: 0 });
    const c = await shardsOf(['c']);
    const sdb = new Database(join(c[0]!, 'shard.sqlite'), { readonly: true });
    expect(sdb.prepare(`SELECT state, last_error FROM urls`).all()).toEqual([{ state: 'skipped', last_error: expect.stringMatching(/refused by this node's scope guard: host 127\.0\.0\.2/) }]);
    sdb.close();
  }, 60_000);
});
