/**
 * The fault scenarios of issue 7, as functions the quick tests (test/reliability-*.test.ts) and
 * the soak (`npm run soak`, scripts/soak/soak.ts) both run — the tests with small numbers, the soak
 * with large ones and many repetitions. Each scenario runs lifeboat against a local platform on
 * loopback, then judges the result the same way: coverage, `verify` defects, IDs lost, IDs final
 * without their records.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { verifyPaths } from '../../storage/curate/verify.js';
import { seedCommand, statusCommand } from '../../tracker/server/commands.js';
import { main } from '../cli/cli.js';
import { startDemoPlatform, type ChaosKind, type DemoPlatform, type DemoPlatformOptions } from '../demo/demo-platform.js';
import { faultProfile, startHostileServer, type HostileServer, type Route } from './hostile-server.js';
import { shardDbPath, warcsDir } from '../../storage/shard/layout.js';

export const CLI = resolve('dist/scripts/cli/cli.js');

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** The CLI in-process (`main(argv, io)`). */
export async function runCli(args: string[]): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: {} });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

/** The CLI as a child process (for kill -9); `killAfterMs` sends SIGKILL. */
export function spawnCli(args: string[], killAfterMs?: number, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = killAfterMs !== undefined ? setTimeout(() => child.kill('SIGKILL'), killAfterMs) : undefined;
    child.on('exit', (code, signal) => {
      if (timer) clearTimeout(timer);
      done({ code, signal, stdout, stderr });
    });
  });
}

/** A deterministic PRNG (mulberry32): a failing fuzz case or kill schedule can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Judgement {
  ids: number;
  /** IDs with a final status (not `failed`), anywhere. */
  final: number;
  failed: { id: number; lastError: string | null }[];
  /** IDs with no row anywhere: lost. */
  lost: number[];
  /** IDs final without the capture row holding the HTTP status that made them final. */
  finalWithoutRecords: number[];
  /** IDs whose final status differs from the platform's ground truth. */
  wrongStatus: string[];
  /** IDs final in more than one shard (node runs). */
  finalTwice: number[];
  /** `verify` defects: corrupt records, DB rows pointing nowhere, manifest mismatches. */
  defects: string[];
  records: number;
  warcs: number;
}

export const coverage = (j: Judgement): number => (100 * j.final) / j.ids;

/** Every shard directory below `root` (a crawl's DIR, or a node's DIR/items/*). */
export async function findShards(root: string): Promise<string[]> {
  if (existsSync(shardDbPath(root))) return [root];
  const out: string[] = [];
  if (!existsSync(root)) return out;
  for (const e of await readdir(root, { withFileTypes: true })) if (e.isDirectory()) out.push(...(await findShards(join(root, e.name))));
  return out;
}

const EXPECTED = { public: 'archived', missing: 'missing', gone: 'gone', private: 'restricted' } as const;

/**
 * Judges shard directories over IDs `start..end`. `verify` checks that every DB row points at a
 * real record of the right type and URI and that every archived ID has its 2xx response; on top,
 * every final ID must have the capture that shows its status (a 404 for `missing`, …).
 */
export async function judge(dirs: string[], ids: { start: number; end: number }, truth?: (id: number) => string | undefined): Promise<Judgement> {
  const report = await verifyPaths(dirs);
  const state = new Map<number, { status: string; lastError: string | null; captured: boolean; finalIn: number }>();
  let warcs = 0;
  for (const dir of dirs) {
    warcs += (await readdir(warcsDir(dir))).length;
    const db = new Database(shardDbPath(dir), { readonly: true });
    try {
      const rows = db
        .prepare<[], { id: number; status: string; last_error: string | null; captured: number }>(
          `SELECT i.id, i.status, i.last_error,
                  EXISTS (SELECT 1 FROM captures c WHERE c.post_id = i.id AND c.http_status = i.http_status) AS captured
           FROM ids i`,
        )
        .all();
      for (const r of rows) {
        const prev = state.get(r.id);
        const final = r.status !== 'failed';
        if (prev && prev.status !== 'failed') {
          if (final) prev.finalIn++;
          continue;
        }
        state.set(r.id, { status: r.status, lastError: r.last_error, captured: r.captured === 1, finalIn: final ? 1 : 0 });
      }
    } finally {
      db.close();
    }
  }
  const j: Judgement = {
    ids: ids.end - ids.start + 1,
    final: 0,
    failed: [],
    lost: [],
    finalWithoutRecords: [],
    wrongStatus: [],
    finalTwice: [],
    defects: report.defects.map((d) => `${d.file}@${d.offset ?? '-'}: ${d.what}`),
    records: report.records,
    warcs,
  };
  for (let id = ids.start; id <= ids.end; id++) {
    const s = state.get(id);
    if (!s) j.lost.push(id);
    else if (s.status === 'failed') j.failed.push({ id, lastError: s.lastError });
    else {
      j.final++;
      if (!s.captured) j.finalWithoutRecords.push(id);
      if (s.finalIn > 1) j.finalTwice.push(id);
      const want = truth?.(id);
      if (want !== undefined && want !== s.status) j.wrongStatus.push(`${id}: ${s.status}, expected ${want}`);
    }
  }
  return j;
}

export const demoTruth = (platform: Pick<DemoPlatform, 'post'>) => (id: number) => EXPECTED[platform.post(id).status];

export interface ScenarioResult {
  judgement: Judgement;
  /** Exit codes of the runs, in order. */
  exits: number[];
  /** What the platform (or tracker) went through. */
  notes: Record<string, number | string>;
  seconds: number;
}

async function profileFile(dir: string, politeness?: Record<string, number | string>, extra: { media?: boolean; page?: boolean } = {}): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'profile.yaml');
  await writeFile(file, faultProfile({ ...(politeness ? { politeness } : {}), ...extra }));
  return file;
}

const crawlArgs = (profile: string, base: string, ids: string, out: string, extra: string[] = []) => ['crawl', '--profile', profile, '--base-url', base, '--ids', ids, '--out', out, '--allow-private-network', '--quiet', ...extra];

/**
 * One platform fault on the demo platform: every request fails with `kind` at `rate`
 * (at most 3 times in a row per path, so the 4th attempt gets through), stalls last `stallMs`
 * (far beyond the profile's 800 ms header / 500 ms idle timeouts).
 */
export async function platformFault(o: { dir: string; kind: ChaosKind; posts: number; rate: number; stallMs?: number }): Promise<ScenarioResult> {
  const started = Date.now();
  const platform = await startDemoPlatform({ posts: o.posts, trackPaths: false, chaos: { rate: o.rate, kinds: [o.kind], stallMs: o.stallMs ?? 30_000 } });
  try {
    const profile = await profileFile(o.dir, { concurrency: 32, per_host_concurrency: 32 });
    const out = join(o.dir, 'shard');
    const r = await runCli(crawlArgs(profile, platform.url, `1-${o.posts}`, out));
    const judgement = await judge([out], { start: 1, end: o.posts }, demoTruth(platform));
    return { judgement, exits: [r.code], notes: { faults: platform.stats.chaos, requests: platform.stats.requests, stderr: r.stderr.slice(-300) }, seconds: (Date.now() - started) / 1000 };
  } finally {
    await platform.close();
  }
}

/** A 429 storm: a global token bucket far below the crawl rate, with or without Retry-After. */
export async function rateLimitStorm(o: { dir: string; posts: number; rps: number; retryAfter: boolean }): Promise<ScenarioResult> {
  const started = Date.now();
  const platform = await startDemoPlatform({ posts: o.posts, trackPaths: false, rateLimit: { rps: o.rps, burst: Math.max(1, Math.floor(o.rps / 4)), retryAfter: o.retryAfter } });
  try {
    const profile = await profileFile(o.dir, { concurrency: 16, per_host_concurrency: 16, max_attempts: 12 });
    const out = join(o.dir, 'shard');
    const r = await runCli(crawlArgs(profile, platform.url, `1-${o.posts}`, out));
    const judgement = await judge([out], { start: 1, end: o.posts }, demoTruth(platform));
    return { judgement, exits: [r.code], notes: { rateLimited: platform.stats.rateLimited, requests: platform.stats.requests }, seconds: (Date.now() - started) / 1000 };
  } finally {
    await platform.close();
  }
}

/**
 * The platform goes away (connection refused) `afterMs` into the crawl for `downMs`, then comes
 * back on the same port with the same content. When the outage outlasts the retry budget, IDs
 * in flight end `failed` (exit 3) and the same command run again finishes them: `maxRuns` runs.
 */
export async function platformOutage(o: { dir: string; posts: number; afterMs: number; downMs: number; maxRuns?: number; politeness?: Record<string, number | string> }): Promise<ScenarioResult> {
  const started = Date.now();
  const opts: DemoPlatformOptions = { posts: o.posts, trackPaths: false };
  let platform = await startDemoPlatform(opts);
  const port = platform.port;
  const truth = demoTruth(platform);
  let refused = 0;
  try {
    const profile = await profileFile(o.dir, { concurrency: 16, per_host_concurrency: 16, ...o.politeness });
    const out = join(o.dir, 'shard');
    const args = crawlArgs(profile, platform.url, `1-${o.posts}`, out);
    const outage = (async () => {
      await sleep(o.afterMs);
      await platform.close();
      const downAt = Date.now();
      // Count refused connections while down: proof the platform was really gone.
      while (Date.now() - downAt < o.downMs) {
        await new Promise<void>((res) => {
          const s = createServer().once('error', () => res());
          s.listen(port, '127.0.0.1', () => s.close(() => res()));
        });
        refused++;
        await sleep(Math.min(500, o.downMs));
      }
      platform = await startDemoPlatform({ ...opts, port });
    })();
    const firstStart = Date.now();
    const exits: number[] = [(await runCli(args)).code];
    const firstRunMs = Date.now() - firstStart;
    const afterFirst = await judge([out], { start: 1, end: o.posts });
    await outage;
    for (let i = 1; i < (o.maxRuns ?? 1) && exits[exits.length - 1] !== 0; i++) exits.push((await runCli(args)).code);
    const judgement = await judge([out], { start: 1, end: o.posts }, truth);
    return { judgement, exits, notes: { downMs: o.downMs, probes: refused, firstRunFailed: afterFirst.failed.length, firstRunMs }, seconds: (Date.now() - started) / 1000 };
  } finally {
    await platform.close();
  }
}

/** Permanent faults on the hostile server: per-ID answers replaced by `route`. */
export async function hostileCrawl(o: {
  dir: string;
  posts: number;
  route: (server: () => HostileServer) => Route;
  politeness?: Record<string, number | string>;
  media?: boolean;
  page?: boolean;
}): Promise<ScenarioResult & { server: HostileServer; out: string }> {
  const started = Date.now();
  let server: HostileServer | undefined;
  server = await startHostileServer({});
  server.setRoute(o.route(() => server!));
  try {
    const profile = await profileFile(o.dir, o.politeness, { ...(o.media !== undefined ? { media: o.media } : {}), ...(o.page !== undefined ? { page: o.page } : {}) });
    const out = join(o.dir, 'shard');
    const r = await runCli(crawlArgs(profile, server.url, `1-${o.posts}`, out));
    const judgement = await judge([out], { start: 1, end: o.posts });
    return { judgement, exits: [r.code], notes: { endlessBytes: server.endlessBytes, stderr: r.stderr.slice(-300) }, seconds: (Date.now() - started) / 1000, server, out };
  } finally {
    await server.close();
  }
}

/** Redirect loops (A → B → A) and endless redirect chains on some IDs: those end `failed`, the rest archived. */
export const redirectRoute = (loopIds: Set<number>, chainIds: Set<number>): Route => (path) => {
  const m = /^\/api\/v1\/posts\/(\d+)$/.exec(path);
  const id = m ? Number(m[1]) : undefined;
  if (id !== undefined && loopIds.has(id)) return { kind: 'reply', status: 302, headers: { location: `/loop/${id}` } };
  const loop = /^\/loop\/(\d+)$/.exec(path);
  if (loop) return { kind: 'reply', status: 301, headers: { location: `/api/v1/posts/${loop[1]}` } };
  if (id !== undefined && chainIds.has(id)) return { kind: 'reply', status: 302, headers: { location: `/chain/${id}/1` } };
  const chain = /^\/chain\/(\d+)\/(\d+)$/.exec(path);
  if (chain) return { kind: 'reply', status: 307, headers: { location: `/chain/${chain[1]}/${Number(chain[2]) + 1}` } };
  return undefined;
};

/** Responses that never end: a fast endless body on some posts, an endless media file. */
export const endlessRoute = (endlessIds: Set<number>): Route => (path) => {
  const m = /^\/api\/v1\/posts\/(\d+)$/.exec(path);
  if (m && endlessIds.has(Number(m[1]))) return { kind: 'endless', headers: { 'content-type': 'application/json' } };
  const media = /^\/media\/(\d+)\.jpg$/.exec(path);
  if (media && endlessIds.has(Number(media[1]) - 1)) return { kind: 'endless', headers: { 'content-type': 'image/jpeg' } };
  return undefined;
};

/** A free TCP port on 127.0.0.1 (for processes that must come back on the same one). */
export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

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

/** kill -9 of a crawl at random moments, `kills` times, then one run to the end. */
export async function killResume(o: { dir: string; posts: number; kills: number; seed: number; workers?: number }): Promise<ScenarioResult> {
  const started = Date.now();
  const platform = await startDemoPlatform({ posts: o.posts, trackPaths: false, chaos: { rate: 0.02, stallMs: 800 } });
  try {
    const out = join(o.dir, 'shard');
    const args = ['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', `1-${o.posts}`, '--out', out, '--allow-private-network', '--quiet', '--concurrency', '8', '--warc-size', '300000', ...(o.workers ? ['--workers', String(o.workers)] : [])];
    const rand = prng(o.seed);
    let kills = 0;
    const exits: number[] = [];
    for (let i = 0; i < o.kills * 3 && kills < o.kills; i++) {
      const r = await spawnCli(args, 500 + Math.floor(rand() * 2500));
      exits.push(r.code ?? -9);
      if (r.signal === 'SIGKILL') kills++;
      else break; // finished before the kill: nothing left to interrupt
    }
    const last = await spawnCli(args);
    exits.push(last.code ?? -9);
    const judgement = await judge([out], { start: 1, end: o.posts }, demoTruth(platform));
    return { judgement, exits, notes: { kills }, seconds: (Date.now() - started) / 1000 };
  } finally {
    await platform.close();
  }
}
