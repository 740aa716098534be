/**
 * A whole rescue, rehearsed (issue 21 §6): all the parts at once against a live, glitching platform
 * with volunteers nobody vetted, then merge and verify against the platform's truth.
 *
 * - The platform grows while the rescue runs; its `latest` runs ahead of what is readable
 *   (replication lag: announced IDs answer 404 for a while) and answers 10^15 once (a glitch).
 * - A few media URLs never answer (connection reset): poison.
 * - A tracker process follows the platform (SQLite or PostgreSQL store).
 * - Honest node processes are killed with -9 at random moments and started again.
 * - A hoarding node claims all it may, every round, and keeps its leases alive with empty
 *   heartbeats; a flooding node reports junk media URLs on the platform's own host.
 * - At the end: every shard merged, the merge verified, and every public post up to the final
 *   highest ID checked archived with its page and media (poison media excepted, and listed in
 *   missing-media.txt with a reason); `stats` answered within 2 s throughout; the tracker never
 *   seeded more than twice the real range; the hoarder never held again an item the tracker took
 *   from it for no progress (its stall marks, `items.stalled_by`, read from the tracker's
 *   database every round, against the items of the leases the tracker granted it).
 *
 * `test/rescue.test.ts` runs it small; `npm run soak` runs it longer and writes its row.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { RangeSet } from '../../config/id-ranges.js';
import { verifyPaths } from '../../storage/curate/verify.js';
import { TrackerClient } from '../../tracker/client/client.js';
import { TrackerRequestError } from '../../tracker/client/errors.js';
import { seedCommand } from '../../tracker/server/commands.js';
import { startDemoPlatform } from '../demo/demo-platform.js';
import { CLI, freePort, prng, runCli } from './harness.js';
import { demoTruth, findShards } from './judge.js';

export interface RescueOptions {
  dir: string;
  /** `sqlite:PATH` or `postgres://…?schema=…`. */
  db: string;
  /** Posts when the rescue starts. */
  startPosts: number;
  /** Posts when the platform stops growing. */
  finalPosts: number;
  /** New posts per second while it grows. */
  growPerSec: number;
  /** How far `latest` runs ahead of what is readable (IDs). */
  lagIds: number;
  /** Honest nodes. */
  nodes: number;
  /** kill -9 of a random honest node, this many times. */
  kills: number;
  /** Media paths that never answer. */
  poisonMedia: number;
  /** Give up after this long. */
  deadlineMs: number;
  /** The longest `stats` may take (default 2 s; a frozen tracker does not answer within the probe's 10 s at all). */
  statsLimitMs?: number;
  seed?: number;
  /** Told what the rehearsal is doing (the soak prints it). */
  log?: (line: string) => void;
}

export interface RescueResult {
  ok: boolean;
  failures: string[];
  notes: Record<string, number | string>;
  seconds: number;
}

const ADMIN = 'admin-token-for-the-rescue-rehearsal';

/** The tracker's answers to `GET /api/v1/stats`, timed; the longest wait is what counts. */
class StatsProbe {
  maxMs = 0;
  failures = 0;
  lastFailure = '';
  samples = 0;
  last: Record<string, unknown> = {};
  #stop = false;
  #done: Promise<void> | undefined;

  start(url: string): void {
    this.#done = (async () => {
      while (!this.#stop) {
        const t0 = performance.now();
        try {
          // With the admin token, which the tracker's rate limits exempt (every process here shares
          // 127.0.0.1 and its per-address budget): a 429 would be a refusal, not an answer.
          const res = await fetch(`${url}/api/v1/stats`, { headers: { authorization: `Bearer ${ADMIN}` }, signal: AbortSignal.timeout(10_000) });
          const body = (await res.json()) as Record<string, unknown>;
          if (res.ok) this.last = body;
          else {
            this.failures++;
            this.lastFailure = `HTTP ${res.status}`;
          }
        } catch (err) {
          this.failures++;
          this.lastFailure = (err as Error).message;
        }
        this.maxMs = Math.max(this.maxMs, performance.now() - t0);
        this.samples++;
        await sleep(500);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#done;
  }
}

export async function rescueRehearsal(o: RescueOptions): Promise<RescueResult> {
  const started = Date.now();
  const log = (line: string) => o.log?.(`${((Date.now() - started) / 1000).toFixed(1)} s ${line}`);
  const rand = prng(o.seed ?? 21);
  const failures: string[] = [];
  await mkdir(o.dir, { recursive: true });
  const platform = await startDemoPlatform({ posts: o.startPosts, trackPaths: false });
  // Poison: image URLs of the first public posts, which never answer.
  const poisonUrls: string[] = [];
  for (let id = 1; poisonUrls.length < o.poisonMedia && id <= o.startPosts; id++) {
    const url = platform.post(id).mediaUrls.find((u) => u.includes('/media/img/'));
    if (url) poisonUrls.push(url);
  }
  platform.setPoisonPaths(poisonUrls.map((u) => new URL(u).pathname));
  let posts = o.startPosts;
  platform.setLatest(posts + o.lagIds);

  const project = join(o.dir, 'project.yaml');
  await writeFile(
    project,
    [
      'name: rescue',
      'profile: demo',
      'item_size: 25',
      'lease_secs: 15',
      'min_client_version: 0.1.0',
      'media: {item_size: 20, max_attempts: 2}',
      'nodes: {max_leases: 3, stall_secs: 60}',
      // Every process here shares 127.0.0.1; in a rescue each volunteer has its own address. With
      // the default per-address budget the villains' traffic made everyone wait out 429s: the
      // hoarder's 15 s leases then ran out between its rounds instead of stalling (CI saw no stall
      // at all once). Each token keeps its own budget (rate_limit.max, the default 600 a minute).
      'rate_limit: {max: 600, window_secs: 60, per_address_max: 100000}',
      // Follow fast; lagging IDs are asked again after 2 s, then 4, 8, 16 (window over the lag).
      `follow: {every_secs: 1, chunk_items: 20, recheck: {window: ${o.lagIds * 4}, attempts: 4, delay_secs: 2}}`,
      '',
    ].join('\n'),
  );
  await seedCommand({ db: o.db, project: 'rescue', ids: `1-${o.startPosts}`, itemSize: 25, create: true });
  const port = await freePort();
  const trackerUrl = `http://127.0.0.1:${port}`;
  const env = { ...process.env, LIFEBOAT_ADMIN_TOKEN: ADMIN };
  let trackerErr = '';
  const tracker = spawn(process.execPath, [CLI, 'tracker', 'serve', '--project', project, '--db', o.db, '--port', String(port), '--base-url', platform.url, '--allow-private-network'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env,
  });
  tracker.stderr!.on('data', (d) => (trackerErr = (trackerErr + d).slice(-4000)));
  for (let i = 0; i < 600; i++) {
    if (await fetch(`${trackerUrl}/api/v1/project`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false)) break;
    if (tracker.exitCode !== null) throw new Error(`tracker exited ${tracker.exitCode}: ${trackerErr}`);
    await sleep(100);
  }
  const probe = new StatsProbe();
  probe.start(trackerUrl);

  const live = new Map<number, ChildProcess>();
  const startedAt = new Map<number, number>();
  const badExits: string[] = [];
  const startNode = (n: number): void => {
    const child = spawn(
      process.execPath,
      [CLI, 'node', '--tracker', trackerUrl, '--nick', `honest${n}`, '--out', join(o.dir, `honest${n}`), '--base-url', platform.url, '--allow-private-network', '--exit-when-idle', '--heartbeat-secs', '1', '--concurrency', '8', '--quiet'],
      { stdio: ['ignore', 'ignore', 'pipe'], env },
    );
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
    live.set(n, child);
    startedAt.set(n, Date.now());
    child.on('exit', (code, signal) => {
      if (live.get(n) === child) live.delete(n);
      if (signal === null && code !== 0 && code !== 3) badExits.push(`honest${n} exit ${code}: ${stderr.slice(-300)}`);
    });
  };

  // The hoarder: every round it claims all it may (until the tracker says later) and keeps every
  // lease alive without progress; a lease whose heartbeat is refused was taken from it.
  const hoarder = new TrackerClient({ baseUrl: trackerUrl, clientVersion: '0.1.0' });
  const hoarderNode = (await hoarder.register('hoarder')).nodeId;
  const hoarded = new Set<string>();
  /** Every lease the tracker granted the hoarder: its item, and a time after the answer came. */
  const granted: { item: number; at: number }[] = [];
  /** Each item the tracker took from the hoarder for no progress, and every take-back time seen (stalled_at). */
  const stalledOn = new Map<number, Set<number>>();
  const trackerDb = await openTrackerDb(o.db);
  const readMarks = async () => {
    for (const m of await trackerDb.all<{ id: number; stalled_at: number }>('SELECT id, stalled_at FROM items WHERE stalled_by = $1', [hoarderNode])) {
      const times = stalledOn.get(Number(m.id)) ?? new Set<number>();
      stalledOn.set(Number(m.id), times.add(Number(m.stalled_at)));
    }
  };
  let hoarderRefused = 0;
  /** Leases whose heartbeat the tracker refused (taken for no progress, or run out while a round was slow). */
  let hoarderLeasesLost = 0;
  /** When the hoarder asked for work (each ask after a take-back is one the stall bar must answer). */
  const hoarderAsks: number[] = [];
  // The flooder: claims one item and reports junk media on the platform's own host.
  const flooder = new TrackerClient({ baseUrl: trackerUrl, clientVersion: '0.1.0' });
  await flooder.register('flooder');
  let floodSent = 0;
  let floodQueued = 0;
  let stopVillains = false;
  const villains = (async () => {
    let floodLease: string | undefined;
    for (let round = 0; !stopVillains; round++) {
      try {
        // It takes all it is given, every round, until the lease cap (or an empty queue) says "later".
        for (let k = 0; k < 10; k++) {
          hoarderAsks.push(Date.now());
          const item = await hoarder.tryClaim({ only: 'posts' }).catch(() => undefined);
          if (item?.kind !== 'item') {
            if (item?.kind === 'later') hoarderRefused++;
            break;
          }
          hoarded.add(item.item.leaseId);
          granted.push({ item: item.item.id, at: Date.now() });
        }
        // The marks after the claims: a claim that took a lease back for no progress marks it in the same transaction.
        await readMarks().catch(() => undefined);
        for (const lease of hoarded) {
          await hoarder.heartbeat(lease, new RangeSet()).catch((err: unknown) => {
            // The tracker answers 409 for a lease it no longer holds for this node.
            if (err instanceof TrackerRequestError && err.status === 409 && hoarded.delete(lease)) hoarderLeasesLost++;
          });
        }
        // One item, claimed once: the flood is its point.
        if (round === 0) floodLease = (await flooder.claim({ only: 'posts' }).catch(() => null))?.leaseId;
        if (floodLease) {
          const junk = Array.from({ length: 400 }, (_, i) => `${platform.url}/media/img/junk-${round}-${i}.jpg`);
          floodSent += junk.length;
          const r = await flooder.heartbeat(floodLease, new RangeSet(), junk).catch(() => undefined);
          if (r) floodQueued += r.mediaQueued;
          else floodLease = undefined;
        }
      } catch {
        // a villain's trouble is its own
      }
      await sleep(700);
    }
  })();

  for (let n = 0; n < o.nodes; n++) startNode(n);
  // The platform grows; latest runs lagIds ahead; one poll sees a glitch of 10^15.
  const growMs = ((o.finalPosts - o.startPosts) / o.growPerSec) * 1000;
  const glitchAt = Date.now() + growMs / 2;
  let glitched = false;
  const killEvery = growMs / Math.max(1, o.kills);
  let nextKill = Date.now() + killEvery * (0.5 + rand() / 2);
  let kills = 0;
  // kill -9 of an honest node that has been working a while (an idle one exits by itself), every so often.
  let stopKilling = false;
  const killer = (async () => {
    while (!stopKilling && kills < o.kills) {
      await sleep(200);
      if (Date.now() < nextKill) continue;
      const busy = [...live.keys()].filter((n) => Date.now() - startedAt.get(n)! > 1500);
      const victim = busy[Math.floor(rand() * busy.length)];
      if (victim === undefined) continue;
      live.get(victim)!.kill('SIGKILL');
      kills++;
      nextKill = Date.now() + killEvery;
    }
  })();
  while (posts < o.finalPosts) {
    await sleep(1000);
    posts = Math.min(o.finalPosts, posts + o.growPerSec);
    platform.setPosts(posts);
    if (!glitched && Date.now() >= glitchAt) {
      platform.setLatest(1e15);
      glitched = true;
      await sleep(1500);
    }
    platform.setLatest(posts < o.finalPosts ? posts + o.lagIds : undefined);
    for (let n = 0; n < o.nodes; n++) if (!live.has(n)) startNode(n);
    log(`posts ${posts}, kills ${kills}, stats ${JSON.stringify(probe.last.items ?? {})}`);
  }
  platform.setLatest(undefined);
  // Until everything the tracker knows is done (rechecks included), nodes restarted as they go idle.
  const deadline = started + o.deadlineMs;
  let stats: Record<string, unknown> = {};
  for (;;) {
    await sleep(1000);
    stats = probe.last;
    const items = stats.items as { done?: number; total?: number } | undefined;
    const follow = stats.follow as { highest?: number; frontier_ids?: number } | undefined;
    const caughtUp = (follow?.highest ?? 0) >= posts && (follow?.frontier_ids ?? 0) === 0;
    if (items && items.total! > 0 && items.done === items.total && caughtUp && live.size === 0) break;
    log(`waiting: ${JSON.stringify({ items, follow, live: live.size })}`);
    if (Date.now() > deadline) {
      failures.push(`not finished in ${o.deadlineMs / 1000} s: ${JSON.stringify({ items, follow })}`);
      break;
    }
    for (let n = 0; n < o.nodes; n++) if (!live.has(n)) startNode(n);
  }
  stopVillains = true;
  stopKilling = true;
  await villains;
  await killer;
  await readMarks();
  await probe.stop();
  for (const c of live.values()) c.kill('SIGKILL');
  const trackerGone = new Promise((r) => (tracker.exitCode !== null || tracker.signalCode !== null ? r(undefined) : tracker.once('exit', r)));
  tracker.kill('SIGKILL');
  await trackerGone;
  log('merging');

  // The seeded range never ran far ahead of the platform (the glitch was not seeded).
  const seededMax = maxSeeded(await trackerDb.all<{ ranges: string }>("SELECT ranges FROM items WHERE kind = 'posts'"));
  if (seededMax > 2 * posts) failures.push(`seeded up to ${seededMax}, more than twice the real range ${posts}`);
  const statsLimitMs = o.statsLimitMs ?? 2000;
  if (probe.maxMs > statsLimitMs) failures.push(`stats took ${Math.round(probe.maxMs)} ms once (over ${statsLimitMs} ms)`);
  if (probe.failures > 0) failures.push(`stats failed ${probe.failures} times (last: ${probe.lastFailure})`);
  if (badExits.length > 0) failures.push(`honest nodes failed: ${badExits[0]}`);
  // The stall bar (README, threat model), from the tracker's side: no lease granted to the hoarder
  // names an item the tracker had taken from it for no progress before the grant.
  const takenBefore = (g: { item: number; at: number }) => [...(stalledOn.get(g.item) ?? [])].filter((t) => t <= g.at);
  const reheld = granted.filter((g) => takenBefore(g).length > 0);
  if (reheld.length > 0) {
    const first = reheld[0]!;
    failures.push(`the hoarder held again ${reheld.length} items it had stalled on, first item ${first.item}, ${Math.round((first.at - Math.max(...takenBefore(first))) / 1000)} s after it was taken`);
  }
  const stallsSeen = [...stalledOn.values()].reduce((n, times) => n + times.size, 0);
  const stallsCounted = Number((await trackerDb.all<{ n: number }>('SELECT stalled_leases AS n FROM nodes WHERE id = $1', [hoarderNode]))[0]?.n ?? 0);
  if (stallsCounted < stallsSeen) failures.push(`the tracker counted ${stallsCounted} stalled leases of the hoarder, its items show ${stallsSeen}`);
  await trackerDb.close();
  const firstStall = Math.min(...[...stalledOn.values()].flatMap((times) => [...times]));

  // Merge and verify against the platform's truth.
  const shards: string[] = [];
  for (let n = 0; n < o.nodes; n++) shards.push(...(await findShards(join(o.dir, `honest${n}`, 'items'))));
  const merged = join(o.dir, 'merged');
  const m = await runCli(['merge', ...shards, '--out', merged]);
  if (m.code !== 0) failures.push(`merge exit ${m.code}: ${m.stderr.slice(-300)}`);
  const verify = await verifyPaths([merged]);
  if (verify.defects.length > 0) failures.push(`verify: ${verify.defects.length} defects, first ${verify.defects[0]!.what}`);
  const truth = demoTruth(platform);
  const db = new Database(join(merged, 'merged.sqlite'), { readonly: true });
  const wrong: string[] = [];
  const mediaMissing: string[] = [];
  const poison = new Set(poisonUrls);
  let publicPosts = 0;
  try {
    const statusOf = db.prepare<[number], { status: string }>('SELECT status FROM ids WHERE id = ?');
    const pageOf = db.prepare<[number], { n: number }>("SELECT COUNT(*) AS n FROM captures WHERE post_id = ? AND name = 'page' AND http_status = 200");
    const recordOf = db.prepare<[string], { n: number }>("SELECT COUNT(*) AS n FROM records WHERE url = ? AND type IN ('response', 'revisit') AND status = 200");
    for (let id = 1; id <= posts; id++) {
      const want = truth(id);
      const got = statusOf.get(id)?.status;
      if (got !== want) {
        wrong.push(`${id}: ${got ?? 'absent'}, expected ${want}`);
        continue;
      }
      if (want !== 'archived') continue;
      publicPosts++;
      if (pageOf.get(id)!.n === 0) wrong.push(`${id}: archived without its page`);
      for (const url of platform.post(id).mediaUrls) if (!poison.has(url) && recordOf.get(url)!.n === 0) mediaMissing.push(url);
    }
  } finally {
    db.close();
  }
  if (wrong.length > 0) failures.push(`${wrong.length} IDs wrong, first ${wrong.slice(0, 3).join('; ')}`);
  if (mediaMissing.length > 0) failures.push(`${mediaMissing.length} media of public posts archived nowhere, first ${mediaMissing[0]}`);
  const missingMedia = existsSync(join(merged, 'missing-media.txt')) ? await readFile(join(merged, 'missing-media.txt'), 'utf8') : '';
  const unlisted = poisonUrls.filter((u) => !missingMedia.split('\n').some((line) => line.startsWith(u) && /#\s*failed/.test(line)));
  if (unlisted.length > 0) failures.push(`${unlisted.length} poison media not listed as failed in missing-media.txt, first ${unlisted[0]}`);
  const refused = stats.refused as { media?: number; claims?: number; stalled_leases?: number } | undefined;
  return {
    ok: failures.length === 0,
    failures,
    notes: {
      finalPosts: posts,
      publicPosts,
      wrongIds: wrong.length,
      mediaMissing: mediaMissing.length,
      defects: verify.defects.length,
      seededMax,
      statsMaxMs: Math.round(probe.maxMs),
      statsSamples: probe.samples,
      kills,
      hoarderLeases: granted.length,
      hoarderLeasesAfterStall: granted.filter((g) => g.at > firstStall).length,
      hoarderAsksAfterStall: hoarderAsks.filter((at) => at > firstStall).length,
      hoarderStalledItems: stalledOn.size,
      hoarderStalls: stallsSeen,
      hoarderReheld: reheld.length,
      hoarderLeasesLost,
      hoarderRefused,
      floodSent,
      floodQueued,
      refusedMedia: refused?.media ?? 0,
      refusedClaims: refused?.claims ?? 0,
      stalledLeases: refused?.stalled_leases ?? 0,
      poison: poisonUrls.length,
      shards: shards.length,
    },
    seconds: (Date.now() - started) / 1000,
  };
}

/** The highest post ID of the tracker's post items' stored ranges (media items number URLs, not IDs). */
function maxSeeded(rows: { ranges: string }[]): number {
  return rows.reduce((m, r) => Math.max(m, ...(JSON.parse(r.ranges) as [number, number][]).map(([, end]) => end)), 0);
}

/** Reads the tracker's database beside the tracker process (SQLite read-only, or PostgreSQL in the store's schema); `$1` parameters in both. */
async function openTrackerDb(db: string): Promise<{ all<R>(sql: string, values?: unknown[]): Promise<R[]>; close(): Promise<void> }> {
  if (db.startsWith('sqlite:')) {
    const d = new Database(db.slice('sqlite:'.length), { readonly: true });
    return { all: async <R>(sql: string, values: unknown[] = []) => d.prepare(sql.replace(/\$\d+/g, '?')).all(...values) as R[], close: async () => void d.close() };
  }
  const url = new URL(db);
  const schema = url.searchParams.get('schema');
  for (const k of ['schema', 'synchronous_commit', 'application_name']) url.searchParams.delete(k);
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url.toString(), ...(schema ? { options: `-c search_path=${schema}` } : {}) });
  await client.connect();
  return { all: async <R>(sql: string, values: unknown[] = []) => (await client.query(sql, values)).rows as R[], close: () => client.end() };
}
