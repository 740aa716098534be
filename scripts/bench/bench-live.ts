/**
 * A live platform and a deadline (issue 14), end to end with the real CLI nodes:
 *
 * follow: the demo platform grows by RATE posts/s for GROW s while a tracker with `follow`
 *   seeds the new IDs and 3 nodes crawl them (one is killed with -9 once and started again).
 *   At the end: every ID up to the platform's final highest is final in some node's shard, and
 *   none in two.
 * deadline: a project with `deadline` (now + SECS) and more work than fits (nodes capped with
 *   --max-bandwidth): the projected coverage per kind shown at a quarter of the time is compared
 *   with the coverage when time is up, and whether any video was fetched before post data was
 *   complete.
 *
 *   npm run build && node dist/scripts/bench/bench-live.js [--rate 20] [--grow 30] [--secs 60]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { loadProfile } from '../../config/profile.js';
import { discoverMaxId } from '../../crawler/run/discover.js';
import { serveTracker } from '../../tracker/server/server.js';
import { startDemoPlatform, type DemoPlatform } from '../demo/demo-platform.js';

const CLI = fileURLToPath(new URL('../cli/cli.js', import.meta.url));
const ADMIN = 'admin-token-for-the-live-bench';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

interface Stats {
  ids: { total: number; done: number };
  items: { total: number; done: number; claimed: number };
  deadline?: { seconds_left: number; kinds: { kind: string; units: number; expected_units: number; finished: number; projected: number; coverage: number }[] };
}
const getStats = async (url: string) => (await (await request(`${url}/api/v1/stats`)).body.json()) as Stats;

function startNode(tracker: string, platform: DemoPlatform, dir: string, nick: string, extra: string[] = []): ChildProcess {
  return spawn(process.execPath, [CLI, 'node', '--tracker', tracker, '--nick', nick, '--out', dir, '--base-url', platform.url, '--allow-private-network', '--heartbeat-secs', '1', '--concurrency', '8', '--quiet', ...extra], { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function stopNodes(nodes: ChildProcess[]): Promise<void> {
  await Promise.all(nodes.map((n) => (n.exitCode !== null || n.signalCode !== null ? undefined : new Promise((r) => (n.once('exit', r), n.kill('SIGINT'))))));
}

/** IDs final in each node's item shards: every ID with how many shards hold it. */
function finalIds(dirs: string[]): Map<number, number> {
  const seen = new Map<number, number>();
  for (const dir of dirs) {
    const items = join(dir, 'items');
    if (!existsSync(items)) continue;
    for (const item of readdirSync(items)) {
      const file = join(items, item, 'shard.sqlite');
      if (!existsSync(file)) continue;
      const db = new Database(file, { readonly: true });
      try {
        for (const { id } of db.prepare('SELECT id FROM ids').all() as { id: number }[]) seen.set(id, (seen.get(id) ?? 0) + 1);
      } finally {
        db.close();
      }
    }
  }
  return seen;
}

async function tracker(tmp: string, name: string, platform: DemoPlatform, yaml: string, seed?: string) {
  const project = join(tmp, `${name}.yaml`);
  writeFileSync(project, `name: ${name}\nprofile: demo\n${yaml}`);
  const db = `sqlite:${join(tmp, `${name}.sqlite`)}`;
  if (seed) await (await import('../../tracker/server/commands.js')).seedCommand({ db, project: name, ids: seed, itemSize: 50, create: true });
  const discoverFor = () => () => discoverMaxId(loadProfile('demo', { baseUrl: platform.url }), { allowPrivateNetwork: true });
  return serveTracker({ projectFile: project, db, port: 0, env: { LIFEBOAT_ADMIN_TOKEN: ADMIN }, logger: false, discoverFor, baseUrl: platform.url });
}

async function follow(tmp: string, rate: number, growSecs: number): Promise<void> {
  const platform = await startDemoPlatform({ posts: 200, trackPaths: false });
  const t = await tracker(tmp, 'live', platform, 'item_size: 50\nlease_secs: 20\nfollow: {every_secs: 1}\nmedia: {collect: false}\n');
  const dirs = [0, 1, 2].map((i) => join(tmp, `follow-n${i}`));
  const nodes = dirs.map((d, i) => startNode(t.url, platform, d, `n${i}`));
  const t0 = Date.now();
  let posts = 200;
  const grower = setInterval(() => platform.setPosts((posts = 200 + Math.floor((rate * (Date.now() - t0)) / 1000))), 100);
  // One node killed with -9 a third of the way in, and started again at once.
  await sleep((growSecs * 1000) / 3);
  nodes[0]!.kill('SIGKILL');
  await new Promise((r) => nodes[0]!.once('exit', r));
  nodes[0] = startNode(t.url, platform, dirs[0]!, 'n0');
  await sleep(Math.max(0, growSecs * 1000 - (Date.now() - t0)));
  clearInterval(grower);
  const highest = posts;
  let s = await getStats(t.url);
  for (let i = 0; i < 600 && !(s.ids.total === highest && s.items.done === s.items.total); i++) {
    await sleep(500);
    s = await getStats(t.url);
  }
  const caughtUpSecs = (Date.now() - t0) / 1000 - growSecs;
  await stopNodes(nodes);
  await t.close();
  await platform.close();
  const seen = finalIds(dirs);
  let missing = 0;
  for (let id = 1; id <= highest; id++) if (!seen.has(id)) missing++;
  const twice = [...seen.values()].filter((n) => n > 1).length;
  const beyond = [...seen.keys()].filter((id) => id > highest).length;
  console.log(`follow: grew 200 → ${highest} posts (${rate}/s for ${growSecs} s), 3 nodes (one killed -9 and restarted); caught up ${caughtUpSecs.toFixed(1)} s after growth stopped`);
  console.log(`  tracker: ${s.ids.done}/${s.ids.total} IDs done in ${s.items.done}/${s.items.total} items; shards: ${seen.size} IDs final, missing ${missing} of 1-${highest}, final in two shards ${twice}, beyond the highest ${beyond}`);
}

async function deadline(tmp: string, secs: number): Promise<void> {
  const platform = await startDemoPlatform({ posts: 4000, trackPaths: false });
  const at = new Date(Date.now() + secs * 1000).toISOString();
  const t = await tracker(tmp, 'deadline', platform, `item_size: 50\nlease_secs: 20\ndeadline: ${at}\nmedia: {item_size: 50}\n`, '1-4000');
  const dirs = [0, 1].map((i) => join(tmp, `deadline-n${i}`));
  const nodes = dirs.map((d, i) => startNode(t.url, platform, d, `d${i}`, ['--max-bandwidth', '300K']));
  const samples: { t: number; s: Stats }[] = [];
  const t0 = Date.now();
  let videoBeforePosts = false;
  while (Date.now() - t0 < secs * 1000) {
    await sleep(1000);
    const s = await getStats(t.url);
    samples.push({ t: (Date.now() - t0) / 1000, s });
    if (process.env.LIFEBOAT_BENCH_TRACE) console.log(JSON.stringify({ t: samples.at(-1)!.t, d: s.deadline }));
    const kinds = new Map(s.deadline!.kinds.map((k) => [k.kind, k]));
    if ((kinds.get('video')?.finished ?? 0) > 0 && kinds.get('posts')!.finished < kinds.get('posts')!.units) videoBeforePosts = true;
  }
  const final = await getStats(t.url);
  await stopNodes(nodes);
  await t.close();
  await platform.close();
  const fmt = (s: Stats) => s.deadline!.kinds.map((k) => `${k.kind} ${(k.coverage * 100).toFixed(1)}%`).join(', ');
  const done = (s: Stats) => s.deadline!.kinds.map((k) => `${k.kind} ${((k.units ? k.finished / k.units : 1) * 100).toFixed(1)}%`).join(', ');
  console.log(`deadline: ${secs} s, 4000 posts, 2 nodes at --max-bandwidth 300K`);
  for (const share of [0.25, 0.5, 0.75]) {
    const x = samples.find((y) => y.t >= secs * share) ?? samples[0]!;
    console.log(`  projected at ${x.t.toFixed(0)} s: ${fmt(x.s)} (media expected: ${x.s.deadline!.kinds.slice(1).map((k) => k.expected_units).join('/')})`);
  }
  console.log(`  done at the deadline: ${done(final)} (units: ${final.deadline!.kinds.map((k) => k.units).join('/')})`);
  console.log(`  video fetched before post data was complete: ${videoBeforePosts ? 'yes' : 'no'}`);
}

const tmp = mkdtempSync(join(tmpdir(), 'lifeboat-bench-live-'));
try {
  if (!process.argv.includes('--deadline-only')) await follow(tmp, arg('--rate', 20), arg('--grow', 30));
  await deadline(tmp, arg('--secs', 60));
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
