/**
 * `npm run bench`: lifeboat crawl against the demo platform (no chaos) beside
 *   (a) the minimal archiver (bench-minimal.ts), the yardstick of issue 26,
 *   (b) a plain undici loop fetching the same URLs at the same concurrency and discarding them
 *       (the ceiling on this machine), and
 *   (c) with `--wget`, `wget --warc-file` over the same URL list,
 * plus (without `--pinned-only`) a two-core table and peak RSS over a 10-million-ID range that is
 * mostly missing. All are timed the same way: as whole processes (start-up included), over
 * exactly the same URL list, with their CPU seconds (user + system, from /usr/bin/time) per URL.
 *
 * The headline (issue 26) is lifeboat's ratio to a minimal archiver (bench-minimal.ts: only the
 * work an archive cannot skip), one core each: the platform alone on core 0, each client alone
 * on core 1 (taskset), so no client's number carries the platform's CPU; small records and a
 * media-heavy platform (half the posts carry a 1-3 MiB video), best of `--repeat` runs. The
 * two-core table (platform and client sharing both cores) follows unless `--pinned-only`.
 * `--compare DIST` (repeatable) adds lifeboat as built elsewhere, alternating with this build
 * (A/B of a change in one run); `--wget` adds wget --warc-file to the pinned runs.
 *
 *   node dist/scripts/bench/bench.js [--posts 10000] [--concurrency 32,64] [--big-secs 60]
 *        [--pinned-posts 3000] [--media-heavy 400] [--repeat 3] [--pinned-only] [--wget] [--compare DIST]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { shardDbPath } from '../../storage/shard/layout.js';

const DIST = resolve(fileURLToPath(new URL('.', import.meta.url)));

interface Row {
  what: string;
  concurrency: number | string;
  secs: number;
  ids: number;
  requests: number;
  mb: number;
  peakRssMb: number | undefined;
  /** User + system CPU seconds of the whole process (all its threads). */
  cpuSecs?: number;
}

/** `taskset -c CPUS` in front of a command, when pinning was asked for. */
function pinned(cpus: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpus === undefined ? [cmd, args] : ['taskset', ['-c', cpus, cmd, ...args]];
}

async function startDemo(posts: number, o: { cpus?: string; heavyVideos?: boolean } = {}): Promise<{ url: string; child: ChildProcess }> {
  const [cmd, args] = pinned(o.cpus, process.execPath, [join(DIST, '..', 'demo', 'demo-server.js'), '--port', '0', '--posts', String(posts), ...(o.heavyVideos ? ['--heavy-videos'] : [])]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((res, rej) => {
    child.stdout!.on('data', (d: Buffer) => {
      const m = /listening on (\S+)/.exec(d.toString());
      if (m) res(m[1]!);
    });
    child.on('exit', (code) => rej(new Error(`demo server exited ${code}`)));
  });
  return { url, child };
}

/**
 * Runs a command (pinned to `cpus` when given), sampling its peak RSS (VmHWM) from /proc; its CPU
 * seconds come from /usr/bin/time (user + system of the process and its threads).
 */
async function timed(cmd0: string, args0: string[], stopAfterMs?: number, cpus?: string): Promise<{ secs: number; peakRssMb: number | undefined; code: number | null; stdout: string; cpuSecs: number | undefined }> {
  const timeFile = join(tmpdir(), `lifeboat-bench-time-${process.pid}-${++timedRuns}`);
  const [cmd, args] = pinned(cpus, cmd0, args0);
  const t0 = performance.now();
  const child = spawn('/usr/bin/time', ['-q', '-f', '%U %S', '-o', timeFile, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  // The measured process is /usr/bin/time's child (taskset execs in place): RSS and Ctrl-C go to it.
  const measured = async (): Promise<number | undefined> => {
    const kids = await readFile(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').catch(() => '');
    const pid = Number(kids.trim().split(/\s+/)[0]);
    return pid > 0 ? pid : undefined;
  };
  const stopper = stopAfterMs !== undefined ? setTimeout(() => void measured().then((pid) => pid && process.kill(pid, 'SIGINT')), stopAfterMs) : undefined;
  let stdout = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', () => undefined);
  let peak: number | undefined;
  const sample = async (): Promise<void> => {
    try {
      const pid = await measured();
      if (pid === undefined) return;
      const s = await readFile(`/proc/${pid}/status`, 'utf8');
      const m = /VmHWM:\s+(\d+) kB/.exec(s);
      if (m) peak = Math.max(peak ?? 0, Number(m[1]) / 1024);
    } catch {
      // exited
    }
  };
  const timer = setInterval(() => void sample(), 100);
  const code = await new Promise<number | null>((res) => child.on('exit', res));
  const secs = (performance.now() - t0) / 1000;
  clearInterval(timer);
  if (stopper) clearTimeout(stopper);
  const m = /^([\d.]+) ([\d.]+)\s*$/m.exec(await readFile(timeFile, 'utf8').catch(() => ''));
  await rm(timeFile, { force: true });
  return { secs, peakRssMb: peak, code, stdout, cpuSecs: m ? Number(m[1]) + Number(m[2]) : undefined };
}
let timedRuns = 0;

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) n += (await stat(join(dir, f))).size;
  return n;
}

/**
 * The pinned one-core measurement (issues 17, 26): the platform alone on core 0; lifeboat, the
 * minimal archiver (bench-minimal.ts), the bare loop and (with `wget`) wget each alone on core 1,
 * one after the other, over the URL list lifeboat fetched. `compare` adds lifeboat as built in
 * other dist/ folders (A/B of a change, alternating within each repetition). Repeated `repeat`
 * times: compare within one run (the machine is shared).
 */
export async function runPinnedBench(o: { posts: number; concurrency: number; repeat: number; heavyVideos?: boolean; wget?: boolean; compare?: string[] }): Promise<Row[][]> {
  const runs: Row[][] = [];
  const tmp = await mkdtemp(join(tmpdir(), 'lifeboat-bench-pinned-'));
  const demo = await startDemo(o.posts, { cpus: '0', heavyVideos: o.heavyVideos ?? false });
  const builds = [{ what: 'lifeboat crawl (WARC + SQLite, fsync)', cli: join(DIST, '..', 'cli', 'bin.js') }, ...(o.compare ?? []).map((d) => ({ what: `lifeboat crawl, build ${d}`, cli: join(resolve(d), 'scripts', 'cli', 'bin.js') }))];
  const list = join(tmp, 'urls.txt');
  try {
    for (let i = 0; i < o.repeat; i++) {
      const rows: Row[] = [];
      for (const [b, build] of (i % 2 === 0 ? builds : [...builds].reverse()).entries()) {
        const out = join(tmp, `crawl-${i}-${b}`);
        const r = await timed(process.execPath, [build.cli, 'crawl', '--profile', 'demo', '--base-url', demo.url, '--ids', `1-${o.posts}`, '--out', out, '--allow-private-network', '--quiet', '--concurrency', String(o.concurrency)], undefined, '1');
        if (r.code !== 0) throw new Error(`${build.what} exited ${r.code}`);
        const db = new Database(shardDbPath(out), { readonly: true });
        const urls = db.prepare<[], { url: string }>('SELECT url FROM captures ORDER BY rowid').all().map((x) => x.url);
        const bodyBytes = db.prepare<[], { n: number }>('SELECT SUM(body_bytes) AS n FROM captures').get()!.n;
        db.close();
        await rm(out, { recursive: true, force: true });
        rows.push({ what: build.what, concurrency: o.concurrency, secs: r.secs, ids: o.posts, requests: urls.length, mb: bodyBytes / 1e6, peakRssMb: r.peakRssMb, cpuSecs: r.cpuSecs });
        if (i === 0 && b === 0) await writeFile(list, `${urls.join('\n')}\n`);
      }
      const requests = rows[0]!.requests;
      const mdir = join(tmp, `minimal-${i}`);
      await mkdir(mdir);
      const m = await timed(process.execPath, [join(DIST, 'bench-minimal.js'), list, String(o.concurrency), mdir], undefined, '1');
      if (m.code !== 0) throw new Error(`bench-minimal exited ${m.code}`);
      await rm(mdir, { recursive: true, force: true });
      rows.push({ what: MINIMAL, concurrency: o.concurrency, secs: m.secs, ids: o.posts, requests, mb: Number(m.stdout.trim()) / 1e6, peakRssMb: m.peakRssMb, cpuSecs: m.cpuSecs });
      const plain = await timed(process.execPath, [join(DIST, 'bench-plain.js'), list, String(o.concurrency)], undefined, '1');
      if (plain.code !== 0) throw new Error(`bench-plain exited ${plain.code}`);
      rows.push({ what: 'plain undici loop (discard)', concurrency: o.concurrency, secs: plain.secs, ids: o.posts, requests, mb: Number(plain.stdout.trim()) / 1e6, peakRssMb: plain.peakRssMb, cpuSecs: plain.cpuSecs });
      if (o.wget) {
        const wdir = join(tmp, `wget-${i}`);
        const w = await timed('bash', ['-c', `mkdir -p ${wdir} && cd ${wdir} && wget -q --compression=auto --warc-file=bench -i ${list} -O /dev/null; echo $?`], undefined, '1');
        rows.push({ what: 'wget --warc-file (one connection)', concurrency: 1, secs: w.secs, ids: o.posts, requests, mb: (await dirBytes(wdir)) / 1e6, peakRssMb: w.peakRssMb, cpuSecs: w.cpuSecs });
        await rm(wdir, { recursive: true, force: true });
      }
      runs.push(rows);
    }
  } finally {
    demo.child.kill('SIGTERM');
    await rm(tmp, { recursive: true, force: true });
  }
  return runs;
}

const MINIMAL = 'minimal archiver (bench-minimal)';

/**
 * The headline of issue 26: each client's best of the runs (highest URLs/s; least CPU per URL),
 * and lifeboat's ratio to the minimal archiver on both. CPU per URL is the steadier figure on a
 * shared machine; with the client's core the limit, the URLs/s ratio tends to the CPU ratio.
 */
export function headline(runs: Row[][]): string {
  const whats = [...new Set(runs.flat().map((r) => r.what))];
  const best = new Map(whats.map((w) => {
    const rows = runs.flat().filter((r) => r.what === w);
    return [w, { urlsPerSec: Math.max(...rows.map((r) => r.requests / r.secs)), cpuMsPerUrl: Math.min(...rows.map((r) => ((r.cpuSecs ?? NaN) / r.requests) * 1e3)) }];
  }));
  const m = best.get(MINIMAL)!;
  const lines = ['| what | best URLs/s | best CPU ms / URL | URLs/s ÷ minimal | minimal CPU ÷ this CPU |', '|---|---:|---:|---:|---:|'];
  for (const [w, b] of best) lines.push(`| ${w} | ${b.urlsPerSec.toFixed(0)} | ${b.cpuMsPerUrl.toFixed(3)} | ${(b.urlsPerSec / m.urlsPerSec).toFixed(2)} | ${(m.cpuMsPerUrl / b.cpuMsPerUrl).toFixed(2)} |`);
  return lines.join('\n');
}

export async function runCrawlBench(opts: { posts: number; concurrencies: number[]; bigSecs: number }): Promise<Row[]> {
  const rows: Row[] = [];
  const tmp = await mkdtemp(join(tmpdir(), 'lifeboat-bench-'));
  const demo = await startDemo(opts.posts);
  const cli = join(DIST, '..', 'cli', 'bin.js');
  try {
    for (const c of opts.concurrencies) {
      const out = join(tmp, `crawl-${c}`);
      const r = await timed(process.execPath, [cli, 'crawl', '--profile', 'demo', '--base-url', demo.url, '--ids', `1-${opts.posts}`, '--out', out, '--allow-private-network', '--quiet', '--concurrency', String(c)]);
      if (r.code !== 0) throw new Error(`lifeboat crawl exited ${r.code}`);
      const db = new Database(shardDbPath(out), { readonly: true });
      const urls = db.prepare<[], { url: string }>('SELECT url FROM captures ORDER BY rowid').all().map((x) => x.url);
      const bodyBytes = db.prepare<[], { n: number }>('SELECT SUM(body_bytes) AS n FROM captures').get()!.n;
      db.close();
      rows.push({ what: 'lifeboat crawl (WARC + SQLite, fsync)', concurrency: c, secs: r.secs, ids: opts.posts, requests: urls.length, mb: bodyBytes / 1e6, peakRssMb: r.peakRssMb, cpuSecs: r.cpuSecs });
      if (c === opts.concurrencies[opts.concurrencies.length - 1]) {
        const w = await timed(process.execPath, [cli, 'crawl', '--profile', 'demo', '--base-url', demo.url, '--ids', `1-${opts.posts}`, '--out', `${out}-w2`, '--allow-private-network', '--quiet', '--concurrency', String(c), '--workers', '2']);
        if (w.code !== 0) throw new Error(`lifeboat crawl --workers 2 exited ${w.code}`);
        rows.push({ what: 'lifeboat crawl --workers 2', concurrency: c, secs: w.secs, ids: opts.posts, requests: urls.length, mb: bodyBytes / 1e6, peakRssMb: w.peakRssMb, cpuSecs: w.cpuSecs });
      }
      const list = join(tmp, 'urls.txt');
      await writeFile(list, `${urls.join('\n')}\n`);
      const plain = await timed(process.execPath, [join(DIST, 'bench-plain.js'), list, String(c)]);
      if (plain.code !== 0) throw new Error(`bench-plain exited ${plain.code}`);
      rows.push({ what: 'plain undici loop (discard)', concurrency: c, secs: plain.secs, ids: opts.posts, requests: urls.length, mb: Number(plain.stdout.trim()) / 1e6, peakRssMb: plain.peakRssMb, cpuSecs: plain.cpuSecs });
      if (c === opts.concurrencies[0]) {
        const wdir = join(tmp, 'wget');
        const w = await timed('bash', ['-c', `mkdir -p ${wdir} && cd ${wdir} && wget -q --compression=auto --warc-file=bench -i ${list} -O /dev/null; echo $?`]);
        rows.push({ what: 'wget --warc-file (one connection)', concurrency: 1, secs: w.secs, ids: opts.posts, requests: urls.length, mb: (await dirBytes(wdir)) / 1e6, peakRssMb: w.peakRssMb, cpuSecs: w.cpuSecs });
      }
    }
  } finally {
    demo.child.kill('SIGTERM');
  }
  // 10 million IDs, almost all missing: the platform has 1,000 posts and answers 404 beyond them.
  // The run is stopped (Ctrl-C) after `bigSecs`; peak RSS and the rate so far are reported.
  const big = await startDemo(1000);
  try {
    const out = join(tmp, 'big');
    const r = await timed(process.execPath, [cli, 'crawl', '--profile', 'demo', '--base-url', big.url, '--ids', '1-10000000', '--out', out, '--allow-private-network', '--quiet', '--concurrency', '64'], opts.bigSecs * 1000);
    const db = new Database(shardDbPath(out), { readonly: true });
    const done = db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM ids').get()!.n;
    db.close();
    rows.push({ what: '10M-ID range (stopped after the time shown)', concurrency: 64, secs: r.secs, ids: done, requests: NaN, mb: NaN, peakRssMb: r.peakRssMb });
  } finally {
    big.child.kill('SIGTERM');
    await rm(tmp, { recursive: true, force: true });
  }
  return rows;
}

function table(rows: Row[]): string {
  const lines = ['| what | concurrency | seconds | IDs | IDs/s | requests/s | MB/s | CPU s / 1,000 URLs | peak RSS MB |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '–');
    lines.push(`| ${r.what} | ${r.concurrency} | ${f(r.secs, 2)} | ${r.ids} | ${f(r.ids / r.secs)} | ${f(r.requests / r.secs)} | ${f(r.mb / r.secs, 2)} | ${r.cpuSecs === undefined || !Number.isFinite(r.requests) ? '–' : f((r.cpuSecs / r.requests) * 1000, 3)} | ${r.peakRssMb === undefined ? '–' : f(r.peakRssMb, 0)} |`);
  }
  return lines.join('\n');
}

/** One pinned run's ratios: each lifeboat build's URLs/s and CPU per URL against the minimal archiver's and the bare loop's. */
function pinnedSummary(rows: Row[]): string {
  const m = rows.find((r) => r.what === MINIMAL)!;
  const p = rows.find((r) => r.what.startsWith('plain'))!;
  const cpuMs = (r: Row): number => ((r.cpuSecs ?? NaN) / r.requests) * 1e3;
  return rows
    .filter((r) => r.what.startsWith('lifeboat'))
    .map((l) => `${l.what}: ${(m.secs / l.secs).toFixed(2)} of the minimal archiver's URLs/s (CPU ${(cpuMs(m) / cpuMs(l)).toFixed(2)}), ${(p.secs / l.secs).toFixed(2)} of the bare loop's (CPU ${(cpuMs(p) / cpuMs(l)).toFixed(2)})`)
    .join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      posts: { type: 'string' },
      concurrency: { type: 'string' },
      'big-secs': { type: 'string' },
      'pinned-posts': { type: 'string' },
      'media-heavy': { type: 'string' },
      repeat: { type: 'string' },
      'pinned-only': { type: 'boolean' },
      wget: { type: 'boolean' },
      compare: { type: 'string', multiple: true },
    },
  });
  const repeat = Number(values.repeat ?? 3);
  const concurrency = Number((values.concurrency ?? '32,64').split(',')[0]);
  const pinnedPosts = Number(values['pinned-posts'] ?? 3000);
  const common = { concurrency, repeat, wget: values.wget ?? false, compare: values.compare ?? [] };
  const heads: string[] = [];
  console.log(`## One core each, pinned: platform on core 0, each client alone on core 1 (${pinnedPosts} posts, concurrency ${concurrency}, ${repeat} runs)\n`);
  const small = await runPinnedBench({ posts: pinnedPosts, ...common });
  for (const [i, run] of small.entries()) console.log(`run ${i + 1}:\n${table(run)}\n${pinnedSummary(run)}\n`);
  heads.push(`Small records (${pinnedPosts} posts), best of ${repeat}:\n\n${headline(small)}`);
  const heavy = Number(values['media-heavy'] ?? 400);
  if (heavy > 0) {
    console.log(`## Media-heavy, pinned: half the posts carry a 1-3 MiB video (${heavy} posts, ${repeat} runs)\n`);
    const media = await runPinnedBench({ posts: heavy, heavyVideos: true, ...common });
    for (const [i, run] of media.entries()) console.log(`run ${i + 1}:\n${table(run)}\n${pinnedSummary(run)}\n`);
    heads.push(`Media-heavy (${heavy} posts, half with a 1-3 MiB video), best of ${repeat}:\n\n${headline(media)}`);
  }
  console.log(`## Headline (issue 26): lifeboat / minimal archiver, one core each\n\n${heads.join('\n\n')}\n`);
  if (values['pinned-only']) process.exit(0);
  console.log('## Two cores shared by the platform and the client\n');
  const rows = await runCrawlBench({
    posts: Number(values.posts ?? 10000),
    concurrencies: (values.concurrency ?? '32,64').split(',').map(Number),
    bigSecs: Number(values['big-secs'] ?? 60),
  });
  console.log(table(rows));
  const byC = new Map<number | string, Row[]>();
  for (const r of rows) byC.set(r.concurrency, [...(byC.get(r.concurrency) ?? []), r]);
  for (const [c, rs] of byC) {
    const p = rs.find((r) => r.what.startsWith('plain'));
    for (const l of rs.filter((r) => r.what.startsWith('lifeboat'))) {
      if (p) console.log(`concurrency ${c}: ${l.what} at ${((p.secs / l.secs) * 100).toFixed(0)}% of the plain-undici ceiling`);
    }
  }
  const w = rows.find((r) => r.what.startsWith('wget'));
  const l0 = rows.find((r) => r.what.startsWith('lifeboat'));
  if (w && l0) console.log(`lifeboat is ${(w.secs / l0.secs).toFixed(1)}x faster than wget --warc-file`);
}
