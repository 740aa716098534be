import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { existsSync, readdirSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../config/logger.js';
import { RangeSet } from '../config/id-ranges.js';
import { loadProfile } from '../config/profile.js';
import { runCrawl } from '../crawler/run/crawl.js';
import { queueMediaItem } from '../node/media.js';
import { cliLogger, progressLine } from '../scripts/cli/cli-io.js';
import { main } from '../scripts/cli/cli.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { leftIds } from '../storage/curate/status.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { formatStatus as formatTrackerStatus, seedCommand } from '../tracker/server/commands.js';
import { serveTracker } from '../tracker/server/server.js';
import { buildStats } from '../tracker/store/stats.js';

/**
 * Issue 22: a volunteer's work is handed over honestly — `status` counts what was never
 * attempted, a node's folder is one unit, and the mistakes a tired volunteer makes end in one
 * line that says how to go on.
 */

const CLI = resolve('dist/scripts/cli/cli.js');
const STACK = /^\s+at /m;

async function run(args: string[], env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

/** Runs a shell line (the CLI as users pipe it); resolves with its exit code and output. */
function sh(line: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn('bash', ['-c', line], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

let platform: DemoPlatform;
let tmp: string;
const TOKEN = { LIFEBOAT_ADMIN_TOKEN: 'admin-token-for-the-handover-test' };
beforeAll(async () => {
  expect(existsSync(CLI), 'dist/ is built (npm test builds it first)').toBe(true);
  platform = await startDemoPlatform({ posts: 300, trackPaths: false });
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-handover-'));
});
afterAll(async () => {
  await platform.close();
  await rm(tmp, { recursive: true, force: true });
});

const crawlArgs = (out: string, ids: string, extra: string[] = []) => ['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', ids, '--out', out, '--allow-private-network', '--quiet', ...extra];

describe('status tells the truth', () => {
  it('a crawl stopped early leaves its never-attempted IDs left: the summary, status and --json say so', async () => {
    const dir = join(tmp, 'stopped');
    expect((await run(crawlArgs(dir, '1-20'))).code).toBe(0);
    // 1-800 asked for, stopped before it began (as Ctrl-C or --max-hours stops it): 780 never attempted.
    const stopped = await run(crawlArgs(dir, '1-800', ['--max-disk', '1']));
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stdout).toMatch(/^shard: archived \d+, missing \d+, gone \d+, restricted \d+, failed 0; this run: ids 0, records 0, bytes 0, warcs 0\nleft: 780 IDs \(780 never attempted, 0 to retry\)\n$/);
    const status = await run(['status', dir]);
    expect(status.stdout).toContain('left: 780 IDs (780 never attempted, 0 to retry)');
    expect(status.stdout).toContain('IDs left: 21-800\n');
    expect(status.stdout).not.toMatch(/left: nothing|left: 0 IDs/);
    const json = JSON.parse((await run(['status', dir, '--json'])).stdout) as { left: { ids: number; neverAttempted: number; idsToRetry: number; firstRanges: string[] } };
    expect(json.left).toMatchObject({ ids: 780, neverAttempted: 780, idsToRetry: 0, incomplete: 0, firstRanges: ['21-800'] });
    const jsonSummary = JSON.parse((await run(crawlArgs(dir, '1-800', ['--max-disk', '1', '--json']))).stdout) as { left: unknown };
    expect(jsonSummary.left).toEqual({ ids: 780, never_attempted: 780, to_retry: 0, incomplete: 0 });
    // Incomplete IDs (a secondary capture missing, issue 23) count as left too, and say so.
    expect(leftIds({ ids: 5, neverAttempted: 2, idsToRetry: 1, incomplete: 2 })).toBe('5 IDs (2 never attempted, 1 to retry, 2 incomplete)');
    // Finished, nothing is left.
    expect((await run(crawlArgs(dir, '1-800'))).stdout).not.toContain('left:');
    expect((await run(['status', dir])).stdout).toContain('left: nothing');
  });

  it('the progress line says what its error count is, and a media item counts URLs with no "ETA ?"', () => {
    expect(progressLine({ done: 5, total: 10, retries: 92, errors: 0, eta_secs: 3 })).toContain('retries 92  429s 0  failed fetches 0');
    const media = progressLine({ total: 0, done: 0, media_total: 40, media_done: 9, media_failed: 1, eta_secs: -1 });
    expect(media).toMatch(/^10\/40 media URLs 25% {2}/);
    expect(media).not.toMatch(/ETA|0\/0 IDs/);
  });

  it('a media item (URLs, no IDs) says how many media URLs it fetches, not "crawling 0 IDs of 0 requested ()"', async () => {
    const dir = join(tmp, 'media-item');
    await mkdir(dir, { recursive: true });
    const profile = loadProfile('demo', { baseUrl: platform.url });
    const messages: string[] = [];
    const logger = createLogger((e) => messages.push(e.message));
    queueMediaItem({ dir, urls: [1, 2, 3].map((n) => ({ seq: n, url: `${platform.url}/media/img/${n}-0.jpg` })), profile, allowPrivateNetwork: true, log: logger });
    let progress: Record<string, number> | undefined;
    const r = await runCrawl({ profile, ranges: new RangeSet(), outDir: dir, node: 'n', logger, allowPrivateNetwork: true, onProgress: (s) => (progress = s.snapshot()), progressIntervalMs: 1 });
    expect(messages).toContain(`fetching 3 media URLs into ${dir}`);
    expect(messages.join('\n')).not.toMatch(/crawling 0 IDs/);
    expect(r.stats.snapshot().media_total).toBe(3);
    if (progress) expect(progressLine(progress)).toMatch(/^\d\/3 media URLs/);
  });

  it('on a terminal a message clears the progress line first, so the two never run together', () => {
    const written: string[] = [];
    const log = cliLogger({ stdout: { write: () => true }, stderr: { write: (s: string) => written.push(s), isTTY: true }, env: {} }, { json: false, quiet: false });
    log.log('info', 'released item 22');
    expect(written).toEqual(['\r\x1b[2Kreleased item 22\n']);
    const piped: string[] = [];
    cliLogger({ stdout: { write: () => true }, stderr: { write: (s: string) => piped.push(s) }, env: {} }, { json: false, quiet: false }).log('info', 'x');
    expect(piped).toEqual(['x\n']);
  });

  it('the tracker counts media items among items, as its leaderboard rows do; an empty project is not "all done"', () => {
    const stats = buildStats({
      project: 'p',
      rows: {
        itemCounts: [
          { state: 'done', kind: 'posts', items: 2, ids: 20, finished: 20 },
          { state: 'done', kind: 'media', items: 3, ids: 90, finished: 90 },
          { state: 'queued', kind: 'media', items: 1, ids: 30, finished: 0 },
        ],
        nickTotals: [{ nick: 'a', items: 5, ids: 20, bytes: 1 }],
        nickRates: [],
        activeNodes: 0,
        mediaFailed: 0,
      },
      now: 0,
      windowMs: 60_000,
    });
    expect(stats.items).toEqual({ queued: 1, claimed: 0, done: 5, total: 6 });
    expect(stats.ids).toEqual({ total: 20, done: 20 });
    const empty = buildStats({ project: 'p', rows: { itemCounts: [], nickTotals: [], nickRates: [], activeNodes: 0, mediaFailed: 0 }, now: 0, windowMs: 60_000 });
    expect(formatTrackerStatus(empty)).not.toContain('all done');
    expect(formatTrackerStatus(empty)).toContain('nothing seeded yet');
  });
});

describe('closed pipes end quietly', () => {
  it('status, search, verify and help piped into a reader that is gone: exit 0, no EPIPE trace', async () => {
    const shard = join(tmp, 'piped');
    expect((await run(crawlArgs(shard, '1-60'))).code).toBe(0);
    const merged = join(tmp, 'piped-merged');
    expect((await run(['merge', shard, '--out', merged])).code).toBe(0);
    for (const args of [`status ${shard}`, `search ${merged} '' --limit 60`, `verify ${shard}`, 'crawl --help', `status ${shard} --json`]) {
      for (let i = 0; i < 3; i++) {
        // `true` reads nothing and exits at once: every write of the CLI meets a closed pipe.
        const r = await sh(`node ${CLI} ${args} | true; echo "exit=\${PIPESTATUS[0]}" >&2`);
        expect(r.stderr, args).not.toMatch(/EPIPE|\n\s+at /);
        expect(r.stderr, args).toMatch(/exit=0\n$/);
      }
    }
  });
});

describe('a node folder is one unit', () => {
  let trackerUrl: string;
  let close: () => Promise<void>;
  // Slow (it answers 429 above 20 requests a second): the node is stopped in the middle of its item.
  let slow: DemoPlatform;
  const nodeDir = () => join(tmp, 'node');
  beforeAll(async () => {
    const projectFile = join(tmp, 'project.yaml');
    await writeFile(projectFile, 'name: rescue\nprofile: demo\nitem_size: 300\nlease_secs: 60\nmin_client_version: 0.1.0\n');
    const db = `sqlite:${join(tmp, 'tracker.sqlite')}`;
    await seedCommand({ db, project: 'rescue', ids: '1-300', itemSize: 300, create: true });
    const tracker = await serveTracker({ projectFile, db, port: 0, env: TOKEN, logger: false });
    trackerUrl = tracker.url;
    slow = await startDemoPlatform({ posts: 300, trackPaths: false, rateLimit: { rps: 20 } });
    close = async () => {
      await tracker.close();
      await slow.close();
    };
  });
  afterAll(async () => close?.());

  it('a start that never registered does not lock the folder; a registered one says how to go on', async () => {
    const dir = join(tmp, 'unregistered');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'node.json'), JSON.stringify({ tracker: 'http://127.0.0.1:9', nick: 'carol', token: 'x'.repeat(43), registered: false }));
    const r = await run(['node', '--tracker', trackerUrl, '--nick', 'dave', '--out', dir, '--allow-private-network', '--base-url', platform.url, '--only', 'media', '--exit-when-idle']);
    expect(r.stderr).toContain('never registered (nick carol at http://127.0.0.1:9); starting afresh as dave');
    expect(r.stderr).toContain('registered as dave');
    expect(r.code, r.stderr).toBe(0);
    const refused = await run(['node', '--tracker', trackerUrl, '--nick', 'erin', '--out', dir]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(`lifeboat: ${dir} belongs to nick dave at ${trackerUrl}: to go on with it, start the node with --tracker ${trackerUrl} --nick dave; for another nick or tracker, use another --out\n`);
  });

  it('Ctrl-C: the summary counts what the node saved; status, verify and merge take the node folder', async () => {
    const child = spawn(process.execPath, [CLI, 'node', '--tracker', trackerUrl, '--nick', 'volunteer', '--out', nodeDir(), '--allow-private-network', '--base-url', slow.url, '--concurrency', '1', '--heartbeat-secs', '1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((done) => child.on('close', done));
    // Interrupted once some IDs are final (the tracker hears of them through heartbeats).
    for (let i = 0; i < 600; i++) {
      const s = JSON.parse((await run(['tracker', 'status', '--project', join(tmp, 'project.yaml'), '--db', `sqlite:${join(tmp, 'tracker.sqlite')}`, '--json'])).stdout) as { ids: { done: number } };
      if (s.ids.done > 0 || /item \d+ done/.test(stderr)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGINT');
    expect(await exited, stderr).not.toBeNull();
    const status = JSON.parse((await run(['status', nodeDir(), '--json'])).stdout) as { kind: string; nick: string; items: { dir: string }[]; ids: Record<string, number> };
    expect(status.kind).toBe('node');
    expect(status.nick).toBe('volunteer');
    expect(status.items).toHaveLength(1);
    const saved = status.ids.archived!;
    expect(saved).toBeGreaterThan(0);
    expect(stdout).toMatch(new RegExp(`archived ${saved}, `));
    expect(stdout).toMatch(/^items 0 finished, item \d+ stopped part-way \(what it saved counts here, the rest was given back\); archived \d+/);

    const text = await run(['status', nodeDir()]);
    expect(text.stdout).toMatch(new RegExp(`^node ${nodeDir()}: nick volunteer at ${trackerUrl}; 1 item shards`));
    expect(text.stdout).toMatch(/\n {2}item \d+: archived \d+/);
    const verify = await run(['verify', nodeDir()]);
    expect(verify.code, verify.stdout).toBe(0);
    expect(verify.stderr).toContain("a node's folder; taking its 1 item shard");
    expect(verify.stdout).toMatch(/; 0 defects\n$/);
    const merged = join(tmp, 'node-merged');
    const merge = await run(['merge', nodeDir(), '--out', merged]);
    expect(merge.code, merge.stderr).toBe(0);
    expect(merge.stdout).toContain(status.items[0]!.dir);

    // A node item's unfinished WARC: verify says to start the node, not the crawl.
    const copy = join(tmp, 'node-copy');
    await cp(nodeDir(), copy, { recursive: true });
    const item = join(copy, 'items', readdirSync(join(copy, 'items'))[0]!);
    const warc = (await readdir(join(item, 'warcs'))).find((n) => n.endsWith('.warc.gz'))!;
    await rename(join(item, 'warcs', warc), join(item, 'warcs', `${warc}.open`));
    const report = await verifyPaths([item]);
    expect(report.defects.map((d) => d.what)).toContain(`unfinished WARC (.open): the node stopped during this item; start the node again on ${copy} (lifeboat node --out ${copy} …) to repair it`);
  });

  it('upload takes the node folder: each item under PREFIX/items/ITEM', async () => {
    const S3rver = createRequire(import.meta.url)('s3rver') as new (o: Record<string, unknown>) => { configureBuckets(): Promise<void>; callback(): http.RequestListener };
    const s3rver = new S3rver({ silent: true, directory: join(tmp, 's3rver'), configureBuckets: [{ name: 'archive', configs: [] }] });
    await s3rver.configureBuckets();
    const s3 = http.createServer(s3rver.callback()).listen(0, '127.0.0.1');
    await once(s3, 'listening');
    try {
      const endpoint = `http://127.0.0.1:${(s3.address() as AddressInfo).port}`;
      const env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };
      Object.assign(process.env, env);
      const item = readdirSync(join(nodeDir(), 'items'))[0]!;
      const r = await run(['upload', nodeDir(), '--to', 's3://archive/volunteer/', '--endpoint', endpoint], env);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`a node's folder; uploading its 1 item shards to s3://archive/volunteer/items/ITEM`);
      expect(r.stdout).toMatch(new RegExp(`uploaded +items/${item}/warcs/.*\.warc\.gz\n`));
      expect(r.stdout).toMatch(new RegExp(`uploaded +items/${item}/shard\.json\n`));
      expect(r.stdout).toContain(`to s3://archive/volunteer/items/${item}\n`);
      expect(existsSync(join(tmp, 's3rver', 'archive', 'volunteer', 'items', item, 'shard.json._S3rver_object'))).toBe(true);
      // As volunteers run it: the AWS SDK warns about the Node version under Node 20 only; under
      // the Node the README recommends (24, or 22) an upload prints no such warning (issue 22 §4).
      const again = await sh(`AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1 node ${CLI} upload ${nodeDir()} --to s3://archive/volunteer --endpoint ${endpoint}`);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toMatch(/skipped +items\/\d+\/warcs\//);
      const major = Number(process.versions.node.split('.')[0]);
      if (major >= 22) expect(again.stderr).not.toMatch(/NodeVersionSupportWarning/);
      else expect(again.stderr).toMatch(/NodeVersionSupportWarning/);
      const ia = await run(['upload', nodeDir(), '--to', 'ia://some-item']);
      expect(ia.code).toBe(2);
      expect(ia.stderr).toContain('upload each with lifeboat upload');
    } finally {
      s3.close();
    }
  });

  it('a node folder with no item yet is refused with what to do', async () => {
    const empty = join(tmp, 'node-empty');
    await mkdir(empty, { recursive: true });
    await writeFile(join(empty, 'node.json'), '{}');
    for (const args of [['verify', empty], ['merge', empty, '--out', join(tmp, 'never')]]) {
      const r = await run(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`lifeboat: ${empty} is a volunteer node's folder with no item shards yet: run the node first (lifeboat node --out ${empty} …)\n`);
    }
    expect(existsSync(join(tmp, 'never'))).toBe(false);
  });
});

describe('no dead ends', () => {
  it('crawl --out a merge output, a node folder or a folder of other files: exit 2, nothing written', async () => {
    const shard = join(tmp, 'for-merge');
    expect((await run(crawlArgs(shard, '1-10'))).code).toBe(0);
    const merged = join(tmp, 'merged-out');
    expect((await run(['merge', shard, '--out', merged])).code).toBe(0);
    const node = join(tmp, 'a-node');
    await mkdir(join(node, 'items'), { recursive: true });
    await writeFile(join(node, 'node.json'), '{}');
    const other = join(tmp, 'photos');
    await mkdir(other);
    await writeFile(join(other, 'holiday.jpg'), 'x');
    const cases: [string, string][] = [
      [merged, `--out ${merged} is a merge output, not a shard: crawl into a new folder, then merge it into ${merged}`],
      [node, `--out ${node} is a volunteer node's folder (its shards are ${node}/items/*): crawl into a new folder`],
      [other, `--out ${other} is not empty and not a shard (it holds holiday.jpg): give a new or empty folder`],
    ];
    for (const [dir, message] of cases) {
      const before = (await readdir(dir, { recursive: true })).sort();
      const r = await run(crawlArgs(dir, '1-5'));
      expect(r.code, dir).toBe(2);
      expect(r.stderr).toBe(`lifeboat: ${message}\n`);
      expect((await readdir(dir, { recursive: true })).sort()).toEqual(before);
    }
  });

  it('tracker serve on a database without the project needs --create', async () => {
    const projectFile = join(tmp, 'serve-project.yaml');
    await writeFile(projectFile, 'name: typo\nprofile: demo\n');
    const missing = join(tmp, 'trakcer.sqlite');
    const r = await run(['tracker', 'serve', '--project', projectFile, '--db', `sqlite:${missing}`, '--port', '0'], TOKEN);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`lifeboat: tracker database ${missing} does not exist; check --db, or add --create to start project typo in a new one\n`);
    expect(existsSync(missing)).toBe(false);
    // A database that holds another project only.
    const other = join(tmp, 'other.sqlite');
    await seedCommand({ db: `sqlite:${other}`, project: 'other', ids: '1-10', itemSize: 10, create: true });
    const r2 = await run(['tracker', 'serve', '--project', projectFile, '--db', `sqlite:${other}`, '--port', '0'], TOKEN);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toBe(`lifeboat: project typo is not in sqlite:${other} (it holds other); check the name and --db, or add --create to start it\n`);
  });

  it('tracker seed --from-file of an empty file names it and seeds nothing (exit 0)', async () => {
    const projectFile = join(tmp, 'seed-project.yaml');
    await writeFile(projectFile, 'name: rescue\nprofile: demo\n');
    const empty = join(tmp, 'missing-ranges.txt');
    await writeFile(empty, '# nothing missing\n\n');
    const db = join(tmp, 'seed-empty.sqlite');
    const r = await run(['tracker', 'seed', '--project', projectFile, '--from-file', empty, '--db', `sqlite:${db}`, '--create']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`--from-file ${empty} holds no ID ranges: nothing to seed\n`);
    expect(existsSync(db)).toBe(false);
  });

  it('upload --endpoint without a scheme is one line naming the flag, exit 2', async () => {
    const r = await run(['upload', join(tmp, 'stopped'), '--to', 's3://archive/x', '--endpoint', '127.0.0.1:4569']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('lifeboat: --endpoint "127.0.0.1:4569" is not an http(s) URL: write it with its scheme, e.g. http://127.0.0.1:4569\n');
  });

  it('status of a path that does not exist says so', async () => {
    const r = await run(['status', join(tmp, 'doesnotexist')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`lifeboat: ${join(tmp, 'doesnotexist')}: no such file or directory\n`);
  });

  it('demo-server on a port in use prints one line, exit 1', async () => {
    const busy = createNetServer();
    const port = await new Promise<number>((done) => busy.listen(0, '127.0.0.1', () => done((busy.address() as { port: number }).port)));
    try {
      const r = await sh(`node ${resolve('dist/scripts/demo/demo-server.js')} --port ${port}`);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`demo-server: 127.0.0.1:${port} is already in use (another demo server?): stop it or choose another --port\n`);
      expect(r.stderr).not.toMatch(STACK);
    } finally {
      await new Promise<void>((done) => busy.close(() => done()));
    }
  });

  it('crawl --help lists every built-in profile in config/profiles', async () => {
    const names = readdirSync(resolve('config/profiles')).filter((n) => n.endsWith('.yaml')).map((n) => n.replace(/\.yaml$/, ''));
    expect(names.length).toBeGreaterThanOrEqual(6);
    const help = (await run(['crawl', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(help).toContain(`built-in profile name (${names.sort().join(', ')})`);
  });
});
