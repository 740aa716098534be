/**
 * The fault scenarios of issue 7, as functions the quick tests (test/reliability-*.test.ts) and
 * the soak (`npm run soak`, scripts/soak/soak.ts) both run — the tests with small numbers, the soak
 * with large ones and many repetitions. Each scenario runs lifeboat against a local platform on
 * loopback, then judges the result the same way (judge.ts): coverage, `verify` defects, IDs lost,
 * IDs final without their records. The tracker's faults are tracker-faults.ts's; what the
 * scenarios share to run lifeboat is harness.ts's.
 */
import { createServer } from 'node:net';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDemoPlatform, type ChaosKind, type DemoPlatformOptions } from '../demo/demo-platform.js';
import { faultProfile, startHostileServer, type HostileServer, type Route } from './hostile-server.js';
import { prng, runCli, spawnCli } from './harness.js';
import { demoTruth, judge, type ScenarioResult } from './judge.js';

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
