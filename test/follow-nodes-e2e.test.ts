import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadProfile } from '../config/profile.js';
import { discoverMaxId } from '../crawler/run/discover.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { statusCommand } from '../tracker/server/commands.js';
import { serveTracker, type RunningTracker } from '../tracker/server/server.js';

/**
 * Issue 14: a platform that grows while volunteer nodes (the CLI, in child processes) crawl it
 * through a tracker that follows it; one node is killed with -9 mid-item and started again.
 * Every ID up to the final highest ends final in exactly one shard.
 */
const CLI = resolve('dist/scripts/cli/cli.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a followed platform, 2 nodes, one killed with -9', () => {
  let platform: DemoPlatform;
  let tracker: RunningTracker;
  let tmp: string;
  let db: string;
  beforeAll(async () => {
    expect(existsSync(CLI), 'dist/ is built').toBe(true);
    tmp = mkdtempSync(join(tmpdir(), 'lifeboat-follow-e2e-'));
    platform = await startDemoPlatform({ posts: 60, trackPaths: false });
    const project = join(tmp, 'project.yaml');
    writeFileSync(project, 'name: grow\nprofile: demo\nitem_size: 20\nlease_secs: 30\nfollow: {every_secs: 1, recheck: {attempts: 0}}\nmedia: {collect: false}\n');
    db = `sqlite:${join(tmp, 'tracker.sqlite')}`;
    const discoverFor = () => () => discoverMaxId(loadProfile('demo', { baseUrl: platform.url }), { allowPrivateNetwork: true });
    tracker = await serveTracker({ projectFile: project, db, port: 0, env: { LIFEBOAT_ADMIN_TOKEN: 'admin-token-for-the-follow-test' }, logger: false, discoverFor, baseUrl: platform.url });
  });
  afterAll(async () => {
    await tracker?.close();
    await platform?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('archives every ID up to the final highest, none twice', async () => {
    const dirs = [join(tmp, 'n0'), join(tmp, 'n1')];
    const start = (i: number): ChildProcess =>
      spawn(process.execPath, [CLI, 'node', '--tracker', tracker.url, '--nick', `n${i}`, '--out', dirs[i]!, '--base-url', platform.url, '--allow-private-network', '--heartbeat-secs', '1', '--concurrency', '4', '--quiet'], { stdio: 'ignore' });
    const nodes = [start(0), start(1)];
    try {
      // Grow by 10 posts every 300 ms to 180; kill node 0 with -9 once it holds an item.
      let posts = 60;
      let killed = false;
      while (posts < 180) {
        await sleep(300);
        platform.setPosts((posts += 10));
        if (!killed && existsSync(join(dirs[0]!, 'items'))) {
          nodes[0]!.kill('SIGKILL');
          await new Promise((r) => nodes[0]!.once('exit', r));
          nodes[0] = start(0);
          killed = true;
        }
      }
      expect(killed).toBe(true);
      let stats = (await statusCommand({ db, project: 'grow' })).stats;
      for (let i = 0; i < 240 && !(stats.ids.total === 180 && stats.items.done === stats.items.total); i++) {
        await sleep(250);
        stats = (await statusCommand({ db, project: 'grow' })).stats;
      }
      expect(stats.ids).toEqual({ total: 180, done: 180 });
    } finally {
      await Promise.all(nodes.map((n) => (n.exitCode !== null || n.signalCode !== null ? undefined : new Promise((r) => (n.once('exit', r), n.kill('SIGINT'))))));
    }
    const seen = new Map<number, number>();
    for (const dir of dirs) {
      for (const item of readdirSync(join(dir, 'items'))) {
        const shard = new Database(join(dir, 'items', item, 'shard.sqlite'), { readonly: true });
        for (const { id } of shard.prepare('SELECT id FROM ids').all() as { id: number }[]) seen.set(id, (seen.get(id) ?? 0) + 1);
        shard.close();
      }
    }
    expect(seen.size).toBe(180);
    expect([...seen.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 180 }, (_, i) => i + 1));
    expect([...seen.values()].filter((n) => n > 1)).toEqual([]);
  }, 120_000);
});
