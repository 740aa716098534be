import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedCommand, statusCommand } from '../tracker/server/commands.js';
import { serveTracker, type RunningTracker } from '../tracker/server/server.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { verifyPaths } from '../storage/curate/verify.js';

const CLI = resolve('dist/scripts/cli/cli.js');
const POSTS = 1200;
const NODES = 8;

describe('8 volunteer nodes against one tracker, killed at random and restarted', () => {
  let platform: DemoPlatform;
  let tracker: RunningTracker;
  let tmp: string;
  let db: string;
  beforeAll(async () => {
    expect(existsSync(CLI), 'dist/ is built (npm test builds it first)').toBe(true);
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-nodes-'));
    platform = await startDemoPlatform({ posts: POSTS, trackPaths: false, chaos: { rate: 0.02, stallMs: 500 } });
    const project = join(tmp, 'project.yaml');
    await writeFile(project, 'name: e2e\nprofile: demo\nitem_size: 50\nlease_secs: 30\nmin_client_version: 0.1.0\n');
    db = `sqlite:${join(tmp, 'tracker.sqlite')}`;
    await seedCommand({ db, project: 'e2e', ids: `1-${POSTS}`, itemSize: 50, create: true });
    tracker = await serveTracker({ projectFile: project, db, port: 0, env: { LIFEBOAT_ADMIN_TOKEN: 'admin-token-for-the-e2e-test' }, logger: false, baseUrl: platform.url });
  });
  afterAll(async () => {
    await tracker?.close();
    await platform?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  it('reaches 100% coverage with no ID final in two shards and every WARC valid', async () => {
    const live = new Map<number, ChildProcess>();
    const exits: { node: number; code: number | null; signal: string | null; stderr: string }[] = [];
    const start = (n: number): ChildProcess => {
      const child = spawn(process.execPath, [CLI, 'node', '--tracker', tracker.url, '--nick', `n${n}`, '--out', join(tmp, `n${n}`), '--base-url', platform.url, '--allow-private-network', '--exit-when-idle', '--heartbeat-secs', '1', '--concurrency', '4', '--quiet'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += d));
      live.set(n, child);
      child.on('exit', (code, signal) => {
        if (live.get(n) === child) live.delete(n);
        exits.push({ node: n, code, signal, stderr });
      });
      return child;
    };
    for (let n = 0; n < NODES; n++) start(n);

    // Kill a random live node every 400-1200 ms and start it again at once, 12 times.
    let seed = 42;
    const rand = (k: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % k;
    let kills = 0;
    while (kills < 12 && live.size > 0) {
      await new Promise((r) => setTimeout(r, 400 + rand(800)));
      const nodes = [...live.keys()];
      if (nodes.length === 0) break;
      const n = nodes[rand(nodes.length)]!;
      const child = live.get(n)!;
      live.delete(n);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      kills++;
      start(n);
    }
    expect(kills).toBeGreaterThanOrEqual(8);

    // Let them finish; nodes that left while others still held leases are started again until the tracker is done.
    // Post items report their media; media items (issue 13) come after them, so wait for those too.
    // A node killed last leaves its lease for up to lease_secs (30 s) before the item is queued again:
    // the wait is bounded by time, not by a count of rounds (20 quick rounds took less than 30 s once).
    const deadline = Date.now() + 150_000;
    while (Date.now() < deadline) {
      while (live.size > 0) await new Promise((r) => setTimeout(r, 200));
      const { stats } = await statusCommand({ db, project: 'e2e' });
      const media = await tracker.store.mediaCounts();
      if (stats.items.done === stats.items.total && media.pending === 0 && media.done === media.urls) break;
      for (let n = 0; n < 2; n++) start(n);
      await new Promise((r) => setTimeout(r, 500));
    }
    const failedExits = exits.filter((e) => e.signal === null && e.code !== 0);
    expect(failedExits.map((e) => `node ${e.node} exit ${e.code}: ${e.stderr.slice(-500)}`)).toEqual([]);
    const { stats } = await statusCommand({ db, project: 'e2e' });
    expect(stats.items.done).toBe(stats.items.total);
    expect(stats.ids.done).toBe(POSTS);

    // Coverage across every node's item shards: each ID final exactly once, with the right status.
    const finalIn = new Map<number, string[]>();
    const shards: string[] = [];
    for (let n = 0; n < NODES; n++) {
      const items = join(tmp, `n${n}`, 'items');
      if (!existsSync(items)) continue;
      for (const item of await readdir(items)) {
        const dir = join(items, item);
        if (!existsSync(join(dir, 'shard.sqlite'))) continue;
        shards.push(dir);
        const sdb = new Database(join(dir, 'shard.sqlite'), { readonly: true });
        for (const row of sdb.prepare<[], { id: number; status: string }>("SELECT id, status FROM ids WHERE status != 'failed'").all()) {
          finalIn.set(row.id, [...(finalIn.get(row.id) ?? []), `n${n}/${item}:${row.status}`]);
        }
        sdb.close();
      }
    }
    const expected = { public: 'archived', missing: 'missing', gone: 'gone', private: 'restricted' } as const;
    const twice: string[] = [];
    for (let id = 1; id <= POSTS; id++) {
      const where = finalIn.get(id) ?? [];
      expect(where.length, `ID ${id} is final somewhere`).toBeGreaterThan(0);
      if (where.length > 1) twice.push(`${id}: ${where.join(', ')}`);
      expect(where[0]!.split(':')[1]).toBe(expected[platform.post(id).status]);
    }
    expect(twice).toEqual([]);

    // Every medium of every public post archived (a 200) in some shard, fetched by a media item.
    const archivedMedia = new Map<string, number>();
    for (const dir of shards) {
      const sdb = new Database(join(dir, 'shard.sqlite'), { readonly: true });
      for (const { url } of sdb.prepare<[], { url: string }>(`SELECT url FROM captures WHERE name = 'media' AND http_status = 200`).all()) {
        const path = new URL(url).pathname;
        archivedMedia.set(path, (archivedMedia.get(path) ?? 0) + 1);
      }
      sdb.close();
    }
    // Kills cost only fetches whose records were never committed: no medium is kept twice across nodes.
    expect([...archivedMedia].filter(([, n]) => n > 1)).toEqual([]);
    const media = new Set<string>();
    for (let id = 1; id <= POSTS; id++) for (const url of platform.post(id).mediaUrls) media.add(new URL(url).pathname);
    expect([...media].filter((p) => !archivedMedia.has(p))).toEqual([]);
    expect(await tracker.store.mediaCounts()).toEqual({ urls: media.size, done: media.size, pending: 0, failed: 0 });
    const report = await verifyPaths(shards);
    expect(report.defects).toEqual([]);
  }, 400_000);
});
