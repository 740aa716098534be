/**
 * Tracker benchmark: claim → heartbeat → done round trips per second over HTTP with many
 * simulated nodes (concurrent async clients in this process; the tracker runs in child
 * processes so it gets its own event loop), against SQLite and PostgreSQL; and the time to
 * seed 1,000,000 items into each store.
 *
 *   npm run build && node dist/scripts/bench/bench-tracker.js [--rounds N] [--no-postgres] [--no-sqlite]
 *
 * Runs from the compiled tree only (the child processes import dist/tracker/*.js).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { Agent } from 'undici';
import { RangeSet } from '../../config/id-ranges.js';
import { TrackerClient } from '../../tracker/client/client.js';
import { packItems } from '../../tracker/store/item-store.js';
import { openItemStore } from '../../tracker/store/open-store.js';

export interface Row {
  store: 'sqlite' | 'postgres';
  case: string;
  nodes: number;
  processes: number;
  rounds: number;
  seconds: number;
  roundsPerSec: number;
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface TrackerBenchOptions {
  /** Round trips per case (bounded so each case ends well under 2 minutes); default 6000. */
  rounds?: number;
  /** Stop a case after this long even if rounds remain; default 90 s. */
  maxSecs?: number;
  nodeCounts?: number[];
  /** Skip SQLite (to re-measure PostgreSQL alone). */
  skipSqlite?: boolean;
  /** PostgreSQL server; the bench uses (and drops) its own schema. Null skips PostgreSQL. */
  postgresUrl?: string | null;
  /** Also run PostgreSQL with this many tracker processes sharing the database; default 2. */
  postgresProcesses?: number;
  seedItems?: number;
}

const VERSION = '0.1.0';
const ADMIN = 'bench-admin-token-0123456789';
const ITEM_SIZE = 100;

const CHILD = `
const [serverUrl, storeUrl, projectUrl, db, project] = process.argv.slice(1);
const { buildTrackerApp } = await import(serverUrl);
const { openItemStore } = await import(storeUrl);
const { parseProject } = await import(projectUrl);
const store = await openItemStore({ db, project, maxConnections: 16 });
const app = await buildTrackerApp({
  store, adminToken: ${JSON.stringify(ADMIN)}, leaseMs: 600000,
  project: parseProject({ name: project, profile: 'demo', item_size: ${ITEM_SIZE}, lease_secs: 600, min_client_version: '0.1.0' }),
  rateLimit: { max: 1e9, timeWindowMs: 60000 },
});
const url = await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(url + '\\n');
process.on('SIGTERM', async () => { await app.close(); await store.close(); process.exit(0); });
`;

async function startTracker(db: string, project: string): Promise<{ url: string; child: ChildProcess }> {
  const mod = (p: string) => new URL(p, import.meta.url).href;
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', CHILD, mod('../../tracker/server/server.js'), mod('../../tracker/store/open-store.js'), mod('../../tracker/store/project.js'), db, project],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) resolve(line.trim());
    });
    child.once('exit', (code) => reject(new Error(`tracker child exited with ${code}`)));
  });
  return { url, child };
}

async function stopTracker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;

async function roundTrips(options: {
  store: Row['store'];
  db: string;
  nodes: number;
  processes: number;
  rounds: number;
  maxSecs: number;
}): Promise<Row> {
  const { db, nodes, processes, rounds, maxSecs } = options;
  const project = `bench-${nodes}-${processes}-${Date.now().toString(36)}`;
  const seeder = await openItemStore({ db, project });
  await seeder.seed(packItems(new RangeSet([{ start: 1, end: (rounds + nodes * 2) * ITEM_SIZE }]), ITEM_SIZE));
  await seeder.close();
  const trackers = await Promise.all(Array.from({ length: processes }, () => startTracker(db, project)));
  const agent = new Agent({ connections: 256, pipelining: 1 });
  try {
    const clients = Array.from(
      { length: nodes },
      (_, i) => new TrackerClient({ baseUrl: trackers[i % processes]!.url, clientVersion: VERSION, dispatcher: agent, retry: { maxAttempts: 5, baseDelayMs: 50 } }),
    );
    for (let i = 0; i < nodes; i += 100) await Promise.all(clients.slice(i, i + 100).map((c, j) => c.register(`node${i + j}`)));
    const stats = { counts: { archived: 90, missing: 10, gone: 0, restricted: 0, failed: 0 }, bytes: 1_000_000, warcs: [{ name: 'w.warc.gz', size: 1_000_000, sha256: 'c'.repeat(64) }] };
    let started = 0;
    const latencies: number[] = [];
    const t0 = performance.now();
    const deadline = t0 + maxSecs * 1000;
    await Promise.all(
      clients.map(async (client) => {
        while (started < rounds && performance.now() < deadline) {
          started++;
          const r0 = performance.now();
          const item = await client.claim();
          if (!item) return;
          const half = item.ranges.min! + Math.floor(item.ranges.size / 2) - 1;
          await client.heartbeat(item.leaseId, new RangeSet([{ start: item.ranges.min!, end: half }]));
          await client.done(item.leaseId, stats);
          latencies.push(performance.now() - r0);
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      store: options.store,
      case: 'claim+heartbeat+done',
      nodes,
      processes,
      rounds: latencies.length,
      seconds,
      roundsPerSec: latencies.length / seconds,
      requestsPerSec: (latencies.length * 3) / seconds,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
    };
  } finally {
    await agent.close();
    await Promise.all(trackers.map((t) => stopTracker(t.child)));
  }
}

async function seedTiming(store: Row['store'], db: string, items: number): Promise<Row> {
  const s = await openItemStore({ db, project: `seed-${Date.now().toString(36)}` });
  try {
    const t0 = performance.now();
    const result = await s.seed(packItems(new RangeSet([{ start: 1, end: items * 10 }]), 10));
    const seconds = (performance.now() - t0) / 1000;
    return { store, case: `seed ${result.items.toLocaleString('en-US')} items`, nodes: 0, processes: 1, rounds: result.items, seconds, roundsPerSec: result.items / seconds, requestsPerSec: 0, p50Ms: 0, p99Ms: 0 };
  } finally {
    await s.close();
  }
}

export async function runTrackerBench(options: TrackerBenchOptions = {}): Promise<Row[]> {
  const { rounds = 6000, maxSecs = 90, nodeCounts = [100, 1000], skipSqlite = false, postgresUrl = 'postgres://postgres@127.0.0.1:5432/test', postgresProcesses = 2, seedItems = 1_000_000 } = options;
  const rows: Row[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'lifeboat-bench-tracker-'));
  const schema = `lb_bench_${process.pid}`;
  try {
    const sqlite = `sqlite:${join(dir, 'tracker.sqlite')}`;
    if (!skipSqlite) {
      rows.push(await seedTiming('sqlite', sqlite, seedItems));
      for (const nodes of nodeCounts) rows.push(await roundTrips({ store: 'sqlite', db: sqlite, nodes, processes: 1, rounds, maxSecs }));
    }
    if (postgresUrl) {
      const db = `${postgresUrl}?schema=${schema}`;
      rows.push(await seedTiming('postgres', db, seedItems));
      for (const nodes of nodeCounts) {
        rows.push(await roundTrips({ store: 'postgres', db, nodes, processes: 1, rounds, maxSecs }));
        if (postgresProcesses > 1) rows.push(await roundTrips({ store: 'postgres', db, nodes, processes: postgresProcesses, rounds, maxSecs }));
        const fast = await roundTrips({ store: 'postgres', db: `${db}&synchronous_commit=off`, nodes, processes: postgresProcesses, rounds, maxSecs });
        rows.push({ ...fast, case: `${fast.case} (synchronous_commit=off)` });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    if (postgresUrl) {
      const client = new pg.Client({ connectionString: postgresUrl });
      await client.connect().then(() => client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)).catch(() => {});
      await client.end().catch(() => {});
    }
  }
  return rows;
}

export function formatTrackerBench(rows: readonly Row[]): string {
  const lines = ['| store | case | nodes | tracker processes | rounds | s | rounds/s | requests/s | p50 ms | p99 ms |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    const seed = r.case.startsWith('seed');
    lines.push(
      `| ${r.store} | ${r.case} | ${seed ? '–' : r.nodes} | ${r.processes} | ${r.rounds} | ${r.seconds.toFixed(2)} | ${r.roundsPerSec.toFixed(0)}${seed ? ' items/s' : ''} | ${seed ? '–' : r.requestsPerSec.toFixed(0)} | ${seed ? '–' : r.p50Ms.toFixed(1)} | ${seed ? '–' : r.p99Ms.toFixed(1)} |`,
    );
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const i = process.argv.indexOf('--rounds');
  const rows = await runTrackerBench({
    rounds: i > 0 ? Number(process.argv[i + 1]) : undefined,
    postgresUrl: process.argv.includes('--no-postgres') ? null : undefined,
    skipSqlite: process.argv.includes('--no-sqlite'),
  });
  process.stdout.write(`${formatTrackerBench(rows)}\n`);
}
