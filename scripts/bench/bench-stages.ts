/**
 * Issue 17: the cost of each stage of archiving a URL, measured alone, in CPU microseconds per URL
 * (user + system of this process; the demo platform runs in a child process, so its CPU is not
 * counted). Fetches a sample of the demo platform's URLs (API answer, page, media of each post)
 * once, then runs every stage over that sample several times:
 *
 *   fetch (bare undici loop, discard) · fetch (lifeboat's HttpCapturer: request bytes from the
 *   diagnostics channel, response head rebuilt, two SHA-1s, body kept) · hashing alone ·
 *   fetch through the whole fetch stack (scope guard, robots, host limiter, retries) ·
 *   record building · compression per record · the WARC writer (build + compress + append +
 *   file SHA-256) · extraction · group commit (the SQLite rows of a capture, batched)
 *
 * Run pinned, platform on core 0 and this on core 1 (the script pins its child itself):
 *   npm run build && taskset -c 1 node dist/scripts/bench/bench-stages.js [--posts 600] [--rounds 5]
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import PQueue from 'p-queue';
import { Agent, request } from 'undici';
import { resolveCrawlSettings } from '../../config/crawl-settings.js';
import { createLogger } from '../../config/logger.js';
import { loadProfile } from '../../config/profile.js';
import { CrawlStats } from '../../crawler/fetch/crawl-stats.js';
import { buildFetchStack, closeFetchStack } from '../../crawler/run/fetch-stack.js';
import { extract } from '../../crawler/extract/extract.js';
import { extractLimits } from '../../crawler/extract/extract-bounds.js';
import { HttpCapturer } from '../../crawler/fetch/http-capture.js';
import type { Capture } from '../../storage/warc/capture.js';
import { ShardDb } from '../../storage/shard/shard-db.js';
import { captureRecords, recordBytes, recordHeadOf } from '../../storage/warc/warc-build.js';
import { compress } from '../../storage/warc/warc-compress.js';
import { WarcWriter } from '../../storage/warc/warc-writer.js';

const DIST = resolve(fileURLToPath(new URL('.', import.meta.url)));

interface Sample {
  url: string;
  kind: 'post' | 'page' | 'media';
  capture: Capture;
}

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** CPU µs per item of `fn` over `items`, best of `rounds` (the machine is shared: the least disturbed round). */
async function perItem<T>(rounds: number, items: T[], fn: (items: T[]) => Promise<void> | void): Promise<number> {
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t0 = cpuUs();
    await fn(items);
    best = Math.min(best, (cpuUs() - t0) / items.length);
  }
  return best;
}

async function startDemo(posts: number): Promise<{ url: string; stop: () => void }> {
  const args = [join(DIST, '..', 'demo', 'demo-server.js'), '--port', '0', '--posts', String(posts)];
  const child = spawn('taskset', ['-c', '0', process.execPath, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await new Promise<string>((res, rej) => {
    child.stdout!.on('data', (d: Buffer) => {
      const m = /listening on (\S+)/.exec(d.toString());
      if (m) res(m[1]!);
    });
    child.on('exit', (code) => rej(new Error(`demo server exited ${code}`)));
  });
  return { url, stop: () => child.kill('SIGTERM') };
}

async function each<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  const queue = new PQueue({ concurrency });
  for (const it of items) void queue.add(() => fn(it));
  await queue.onIdle();
}

export async function runStages(o: { posts: number; rounds: number }): Promise<Record<string, number>> {
  const demo = await startDemo(o.posts);
  const tmp = await mkdtemp(join(tmpdir(), 'lifeboat-stages-'));
  const profile = loadProfile('demo', { baseUrl: demo.url });
  const limits = extractLimits(profile);
  const capturer = new HttpCapturer({ userAgent: 'bench', spoolDir: tmp, connectTimeoutMs: 10_000, headersTimeoutMs: 30_000, idleTimeoutMs: 30_000, totalTimeoutMs: 60_000, maxBodyBytes: 1 << 30, connections: 32 });
  const out: Record<string, number> = {};
  try {
    // The sample: every post's API answer and page, and the media the API answers name.
    const samples: Sample[] = [];
    const ids = Array.from({ length: o.posts }, (_, i) => i + 1);
    await each(ids, 32, async (id) => {
      const post = await capturer.fetch({ url: `${demo.url}/api/v1/posts/${id}`, headers: { accept: 'application/json' } });
      if (post.status !== 200) return;
      samples.push({ url: post.url, kind: 'post', capture: post });
      const page = await capturer.fetch({ url: `${demo.url}/p/${id}` });
      samples.push({ url: page.url, kind: 'page', capture: page });
      const ex = await extract(post, profile.captures[0]!.extract, 'json', limits);
      for (const m of ex.media) {
        const media = await capturer.fetch({ url: new URL(m, post.url).href });
        if (media.status === 200 && media.body.kind === 'buffer') samples.push({ url: media.url, kind: 'media', capture: media });
      }
    });
    const urls = samples.map((s) => s.url);
    const bytes = samples.reduce((n, s) => n + (s.capture.body.kind === 'buffer' ? s.capture.body.data.length : 0), 0);
    out['sample URLs'] = samples.length;
    out['sample body KB per URL'] = bytes / samples.length / 1024;

    const agent = new Agent({ connections: 32 });
    out['fetch, bare undici loop (discard)'] = await perItem(o.rounds, urls, (us) =>
      each(us, 32, async (url) => {
        const res = await request(url, { dispatcher: agent, headers: { 'accept-encoding': 'gzip, deflate, br' } });
        for await (const chunk of res.body) void chunk;
      }),
    );
    await agent.close();
    out['fetch, HttpCapturer (head capture, 2 SHA-1, body kept)'] = await perItem(o.rounds, urls, (us) =>
      each(us, 32, async (url) => {
        await capturer.fetch({ url });
      }),
    );
    const stack = await buildFetchStack(resolveCrawlSettings(profile, { node: 'bench', allowPrivateNetwork: true, concurrency: 32, ratePerSec: 1e6 }), { spoolDir: tmp, stats: new CrawlStats(), logger: createLogger(() => undefined), signal: new AbortController().signal });
    out['fetch, whole fetch stack (scope guard, robots, host limiter, retries)'] = await perItem(o.rounds, urls, (us) =>
      each(us, 32, async (url) => {
        await stack.fetcher.fetch(url);
      }),
    );
    await closeFetchStack(stack);
    const caps = samples.map((s) => s.capture);
    out['hashing alone (payload + block SHA-1)'] = await perItem(o.rounds, caps, (cs) => {
      for (const c of cs) {
        const body = c.body.kind === 'buffer' ? c.body.data : Buffer.alloc(0);
        createHash('sha1').update(body).digest();
        createHash('sha1').update(c.responseHead).update(body).digest();
      }
    });
    const ids2 = { response: '<urn:uuid:00000000-0000-4000-8000-000000000001>', request: '<urn:uuid:00000000-0000-4000-8000-000000000002>' };
    out['record building (both records, heads)'] = await perItem(o.rounds, caps, (cs) => {
      for (const c of cs) for (const spec of captureRecords(c, ids2)) recordHeadOf(spec);
    });
    const records = caps.flatMap((c) => captureRecords(c, ids2).map((spec) => ({ spec, data: recordBytes({ ...spec, block: spec.block.map((p) => (Buffer.isBuffer(p) ? p : p.kind === 'buffer' ? p.data : Buffer.alloc(0))) }) })));
    out['compression (both records, gzip member each)'] =
      (await perItem(o.rounds, records, async (rs) => {
        for (const r of rs) await compress(r.data, r.spec.stored ? 0 : 6);
      })) * 2;
    let n = 0;
    out['WARC writer (build + compress + append + file SHA-256)'] = await perItem(o.rounds, caps, async (cs) => {
      const writer = new WarcWriter({ dir: join(tmp, `w${n++}`), prefix: 'bench', node: 'n', maxFileBytes: 1 << 30, warcinfo: {} });
      await Promise.all(cs.map((c) => writer.writeCapture(c)));
      await writer.flush();
      await writer.close();
    });
    const byKind = (k: Sample['kind']) => samples.filter((s) => s.kind === k).map((s) => s.capture);
    const posts = byKind('post');
    const pages = byKind('page');
    const postUs = await perItem(o.rounds, posts, async (cs) => {
      for (const c of cs) await extract(c, profile.captures[0]!.extract, 'json', limits);
    });
    const pageUs = await perItem(o.rounds, pages, async (cs) => {
      for (const c of cs) await extract(c, profile.captures[1]!.extract, 'html', limits);
    });
    out['extraction, per API answer (gunzip + JSON + JSONPath)'] = postUs;
    out['extraction, per page (HTML parse + CSS)'] = pageUs;
    out['extraction, per URL of the sample'] = (postUs * posts.length + pageUs * pages.length) / samples.length;
    const writer = new WarcWriter({ dir: join(tmp, 'rows'), prefix: 'bench', node: 'n', maxFileBytes: 1 << 30, warcinfo: {} });
    const written = await Promise.all(caps.map((c) => writer.writeCapture(c)));
    await writer.close();
    let d = 0;
    out['group commit (capture row + outcome, 64 per transaction, no fsync)'] = await perItem(o.rounds, written, (ws) => {
      const db = new ShardDb(join(tmp, `db${d++}.sqlite`));
      for (let i = 0; i < ws.length; i += 64) {
        db.transaction(() => {
          for (const [k, w] of ws.slice(i, i + 64).entries()) {
            const c = caps[i + k]!;
            db.recordCapture({ postId: i + k, name: 'post', url: c.url, status: c.status, request: w.request, response: w.response, payloadDigest: c.payloadDigest, fetchedAt: c.fetchedAt.toISOString(), revisitOf: null, contentType: c.contentType ?? null, bodyBytes: 0 });
            db.recordOutcome({ id: i + k, status: 'archived', httpStatus: 200, attempts: 1, lastError: null, fieldsJson: '{"text":"x"}' });
          }
        });
      }
      db.close();
    });
  } finally {
    await capturer.close();
    demo.stop();
    await rm(tmp, { recursive: true, force: true });
  }
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { posts: { type: 'string' }, rounds: { type: 'string' } } });
  const out = await runStages({ posts: Number(values.posts ?? 600), rounds: Number(values.rounds ?? 5) });
  console.log('| stage | CPU µs per URL |\n|---|---:|');
  for (const [k, v] of Object.entries(out)) console.log(`| ${k} | ${Number.isInteger(v) ? v : v.toFixed(1)} |`);
}
