/**
 * The poison-post scenario of issue 11: a platform where a few posts are poison — a field nested
 * 5,000 levels deep, a 200,000-entry media list, a page of 200,000 nested `<div>`s, bodies over
 * `max_body_bytes` above the 1 MiB spool threshold — crawled once by `lifeboat crawl` and once by
 * a 2-node tracker run. Every ID must end final (the poison archived, with its extraction note),
 * no run may die, and no node may be stuck on an item that holds poison.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { seedCommand, statusCommand } from '../../tracker/server/commands.js';
import { faultProfile, poisonRoute, startHostileServer, type PoisonKind } from './hostile-server.js';
import { CLI, freePort } from './harness.js';
import { findShards, judge, type ScenarioResult } from './judge.js';
import { hostileCrawl } from './reliability-scenarios.js';
import { shardDbPath } from '../../storage/shard/layout.js';

/** Which posts are poison, spread over the range (and over several tracker items). */
export function poisonKinds(posts: number): Map<number, PoisonKind> {
  const kinds = new Map<number, PoisonKind>();
  const order: PoisonKind[] = ['deep-json', 'huge-list', 'nested-html', 'oversize'];
  for (let id = 7, i = 0; id <= posts; id += 11, i++) kinds.set(id, order[i % order.length]!);
  return kinds;
}

const POLITENESS = { max_body_bytes: 2 << 20 };

/** Poison IDs that are final but carry no extraction note (each poison must leave one). */
function unnotedPoison(shards: string[], kinds: Map<number, PoisonKind>): number[] {
  const noted = new Set<number>();
  for (const dir of shards) {
    const db = new Database(shardDbPath(dir), { readonly: true });
    try {
      for (const r of db.prepare<[], { id: number }>(`SELECT id FROM ids WHERE status = 'archived' AND last_error LIKE 'extraction: %'`).all()) noted.add(r.id);
    } finally {
      db.close();
    }
  }
  return [...kinds.keys()].filter((id) => !noted.has(id));
}

/** `lifeboat crawl` over a platform with poison posts. */
export async function poisonCrawl(o: { dir: string; posts: number }): Promise<ScenarioResult> {
  const kinds = poisonKinds(o.posts);
  const r = await hostileCrawl({ dir: o.dir, posts: o.posts, route: (s) => poisonRoute(kinds, () => s().url, { oversizeBytes: 3 << 20 }), politeness: POLITENESS });
  const unnoted = unnotedPoison([r.out], kinds);
  // A poison post archived without its note would hide what was cut: judged a wrong status.
  r.judgement.wrongStatus.push(...unnoted.map((id) => `${id}: ${kinds.get(id)} archived without an extraction note`));
  return { judgement: r.judgement, exits: r.exits, notes: { poison: kinds.size, unnoted: unnoted.join(',') || 'none' }, seconds: r.seconds };
}

/** A tracker with `nodes` volunteer nodes over a platform with poison posts; nodes that exit idle are started again until every item is done. */
export async function poisonTracker(o: { dir: string; posts: number; nodes: number; itemSize?: number; deadlineMs?: number }): Promise<ScenarioResult> {
  const started = Date.now();
  const kinds = poisonKinds(o.posts);
  const server = await startHostileServer({});
  server.setRoute(poisonRoute(kinds, () => server.url, { oversizeBytes: 3 << 20 }));
  await mkdir(o.dir, { recursive: true });
  const profile = join(o.dir, 'poison-profile.yaml');
  await writeFile(profile, faultProfile({ name: 'poison', politeness: POLITENESS }));
  const project = join(o.dir, 'project.yaml');
  await writeFile(project, `name: poison\nprofile: ${JSON.stringify(profile)}\nitem_size: ${o.itemSize ?? 20}\nlease_secs: 30\nmin_client_version: 0.1.0\n`);
  const db = `sqlite:${join(o.dir, 'tracker.sqlite')}`;
  await seedCommand({ db, project: 'poison', ids: `1-${o.posts}`, itemSize: o.itemSize ?? 20, create: true });
  const port = await freePort();
  const trackerUrl = `http://127.0.0.1:${port}`;
  const env = { ...process.env, LIFEBOAT_ADMIN_TOKEN: 'admin-token-for-the-poison-scenario' };
  const tracker = spawn(process.execPath, [CLI, 'tracker', 'serve', '--project', project, '--db', db, '--port', String(port), '--base-url', server.url], { stdio: ['ignore', 'ignore', 'pipe'], env });
  let trackerErr = '';
  tracker.stderr!.on('data', (d) => (trackerErr = (trackerErr + d).slice(-2000)));
  const live = new Map<number, ChildProcess>();
  const exits: { code: number | null; stderr: string }[] = [];
  const startNode = (n: number): void => {
    const child = spawn(
      process.execPath,
      [CLI, 'node', '--tracker', trackerUrl, '--nick', `p${n}`, '--out', join(o.dir, `p${n}`), '--base-url', server.url, '--allow-private-network', '--exit-when-idle', '--heartbeat-secs', '1', '--concurrency', '4', '--quiet'],
      { stdio: ['ignore', 'ignore', 'pipe'], env },
    );
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    live.set(n, child);
    child.on('exit', (code) => {
      if (live.get(n) === child) live.delete(n);
      exits.push({ code, stderr });
    });
  };
  try {
    for (let i = 0; ; i++) {
      const up = await fetch(`${trackerUrl}/api/v1/project`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
      if (up) break;
      if (tracker.exitCode !== null || i > 600) throw new Error(`tracker did not come up: ${trackerErr.slice(-500)}`);
      await sleep(100);
    }
    for (let n = 0; n < o.nodes; n++) startNode(n);
    const deadline = Date.now() + (o.deadlineMs ?? 300_000);
    for (;;) {
      while (live.size > 0 && Date.now() < deadline) await sleep(200);
      const { stats } = await statusCommand({ db, project: 'poison' });
      if (stats.items.done === stats.items.total || Date.now() >= deadline) break;
      for (let n = 0; n < o.nodes; n++) if (!live.has(n)) startNode(n);
      await sleep(500);
    }
    const { stats } = await statusCommand({ db, project: 'poison' });
    const shards: string[] = [];
    for (let n = 0; n < o.nodes; n++) shards.push(...(await findShards(join(o.dir, `p${n}`, 'items'))));
    const judgement = await judge(shards, { start: 1, end: o.posts });
    const unnoted = unnotedPoison(shards, kinds);
    judgement.wrongStatus.push(...unnoted.map((id) => `${id}: ${kinds.get(id)} archived without an extraction note`));
    const bad = exits.filter((e) => e.code !== 0);
    return {
      judgement,
      exits: exits.map((e) => e.code ?? -1),
      notes: { poison: kinds.size, unnoted: unnoted.join(',') || 'none', itemsDone: stats.items.done, itemsTotal: stats.items.total, badExit: bad[0]?.stderr.slice(-300) ?? '' },
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    for (const c of live.values()) c.kill('SIGKILL');
    if (tracker.exitCode === null) {
      const gone = new Promise((r) => tracker.once('exit', r));
      tracker.kill('SIGKILL');
      await gone;
    }
    await server.close();
  }
}
