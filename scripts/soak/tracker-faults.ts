/**
 * The tracker's faults (issue 7): a tracker process and volunteer node processes on loopback,
 * the tracker killed with -9 or its database connections cut while the nodes run; judged as the
 * other scenarios are (judge.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { seedCommand, statusCommand } from '../../tracker/server/commands.js';
import { startDemoPlatform } from '../demo/demo-platform.js';
import { CLI, freePort, prng } from './harness.js';
import { demoTruth, findShards, judge, type ScenarioResult } from './judge.js';

/**
 * Tracker faults: a tracker process (SQLite or PostgreSQL store) with `nodes` volunteer node
 * processes; the tracker is killed with -9 (`kills` times, down `downMs` each time) or just
 * unreachable while the nodes run, then comes back on the same port. Nodes that exited
 * (idle while items were still leased) are started again until every item is done.
 */
/**
 * Tracker faults while nodes run. `fault: 'kill'` (default) kills the tracker process with -9 and
 * starts it again after `downMs`; `fault: 'drop-db'` instead has PostgreSQL terminate every
 * connection of the tracker (`pg_terminate_backend`, selected by application_name) — what a
 * database restart looks like to the tracker — without touching other users of the server.
 */
export async function trackerFaults(o: { dir: string; db: string; posts: number; nodes: number; kills: number; downMs: number; firstKillMs?: number; itemSize?: number; deadlineMs?: number; fault?: 'kill' | 'drop-db' }): Promise<ScenarioResult> {
  const started = Date.now();
  const platform = await startDemoPlatform({ posts: o.posts, trackPaths: false, chaos: { rate: 0.02, stallMs: 500 } });
  const port = await freePort();
  const env = { ...process.env, LIFEBOAT_ADMIN_TOKEN: 'admin-token-for-the-reliability-suite' };
  const project = join(o.dir, 'project.yaml');
  await mkdir(o.dir, { recursive: true });
  await writeFile(project, `name: rel\nprofile: demo\nitem_size: ${o.itemSize ?? 40}\nlease_secs: 20\nmin_client_version: 0.1.0\n`);
  await seedCommand({ db: o.db, project: 'rel', ids: `1-${o.posts}`, itemSize: o.itemSize ?? 40, create: true });
  const trackerUrl = `http://127.0.0.1:${port}`;
  let tracker: ChildProcess | undefined;
  let trackerStarts = 0;
  const startTracker = async (): Promise<void> => {
    trackerStarts++;
    tracker = spawn(process.execPath, [CLI, 'tracker', 'serve', '--project', project, '--db', o.db, '--port', String(port), '--base-url', platform.url], { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    tracker.stderr!.on('data', (d) => (err += d));
    // Startup can take seconds on a loaded machine: wait up to 60 s.
    for (let i = 0; i < 600; i++) {
      const up = await fetch(`${trackerUrl}/api/v1/project`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
      if (up) return;
      if (tracker.exitCode !== null) throw new Error(`tracker exited ${tracker.exitCode}: ${err.slice(-500)}`);
      await sleep(100);
    }
    throw new Error(`tracker did not come up: ${err.slice(-500)}`);
  };
  const stopTracker = async (): Promise<void> => {
    const t = tracker;
    if (!t || t.exitCode !== null || t.signalCode !== null) return;
    const gone = new Promise((r) => t.once('exit', r));
    t.kill('SIGKILL');
    await gone;
  };
  const live = new Map<number, ChildProcess>();
  const exits: { node: number; code: number | null; signal: string | null; stderr: string }[] = [];
  const startNode = (n: number): void => {
    const child = spawn(process.execPath, [CLI, 'node', '--tracker', trackerUrl, '--nick', `n${n}`, '--out', join(o.dir, `n${n}`), '--base-url', platform.url, '--allow-private-network', '--exit-when-idle', '--heartbeat-secs', '1', '--concurrency', '4', '--quiet'], { stdio: ['ignore', 'ignore', 'pipe'], env });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    live.set(n, child);
    child.on('exit', (code, signal) => {
      if (live.get(n) === child) live.delete(n);
      exits.push({ node: n, code, signal, stderr });
    });
  };
  let kills = 0;
  let dropped = 0;
  try {
    await startTracker();
    for (let n = 0; n < o.nodes; n++) startNode(n);
    await sleep(o.firstKillMs ?? 1500);
    const rand = prng(o.posts * 31 + o.kills);
    for (let k = 0; k < o.kills; k++) {
      if (o.fault === 'drop-db') {
        dropped += await dropTrackerConnections(o.db);
        kills++;
        await sleep(o.downMs);
      } else {
        await stopTracker();
        kills++;
        await sleep(o.downMs);
        await startTracker();
      }
      await sleep(500 + Math.floor(rand() * 1500));
    }
    const deadline = Date.now() + (o.deadlineMs ?? 240_000);
    for (;;) {
      while (live.size > 0 && Date.now() < deadline) await sleep(200);
      const { stats } = await statusCommand({ db: o.db, project: 'rel' });
      if (stats.items.done === stats.items.total || Date.now() >= deadline) break;
      for (let n = 0; n < Math.min(2, o.nodes); n++) if (!live.has(n)) startNode(n);
      await sleep(500);
    }
    const { stats } = await statusCommand({ db: o.db, project: 'rel' });
    const shards: string[] = [];
    for (let n = 0; n < o.nodes; n++) shards.push(...(await findShards(join(o.dir, `n${n}`, 'items'))));
    const judgement = await judge(shards, { start: 1, end: o.posts }, demoTruth(platform));
    const badExits = exits.filter((e) => e.signal === null && e.code !== 0);
    return {
      judgement,
      exits: exits.map((e) => e.code ?? -1),
      notes: { trackerKills: kills, droppedConnections: dropped, trackerStarts, itemsDone: stats.items.done, itemsTotal: stats.items.total, badExits: badExits.length, badExit: badExits[0]?.stderr.slice(-400) ?? '' },
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    for (const c of live.values()) c.kill('SIGKILL');
    await stopTracker();
    await platform.close();
  }
}

/** Terminates the server-side backends of the tracker whose `db` URL names an application_name. */
async function dropTrackerConnections(db: string): Promise<number> {
  const url = new URL(db);
  const app = url.searchParams.get('application_name');
  if (!app) throw new Error('drop-db needs ?application_name=... in the database URL');
  for (const k of ['schema', 'synchronous_commit', 'application_name']) url.searchParams.delete(k);
  const { default: pg } = await import('pg');
  const admin = new pg.Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    const r = await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()', [app]);
    return r.rowCount ?? 0;
  } finally {
    await admin.end();
  }
}
