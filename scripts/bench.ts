/**
 * `npm run bench`: lifeboat crawl against the demo platform (no chaos) beside
 *   (a) a plain undici loop fetching the same URLs at the same concurrency and discarding them
 *       (the ceiling on this machine), and
 *   (b) `wget --warc-file` over the same URL list,
 * plus peak RSS over a 10-million-ID range that is mostly missing. The demo platform runs in its
 * own process so its CPU and memory are not counted against the crawler. All three are timed the
 * same way: as whole processes (start-up included), over exactly the same URL list. Prints a
 * markdown table.
 *
 *   node dist/scripts/bench.js [--posts 10000] [--concurrency 32,64] [--big-secs 60]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';

const DIST = resolve(fileURLToPath(new URL('.', import.meta.url)));

interface Row {
  what: string;
  concurrency: number | string;
  secs: number;
  ids: number;
  requests: number;
  mb: number;
  peakRssMb: number | undefined;
}

async function startDemo(posts: number): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [join(DIST, 'demo-server.js'), '--port', '0', '--posts', String(posts)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((res, rej) => {
    child.stdout!.on('data', (d: Buffer) => {
      const m = /listening on (\S+)/.exec(d.toString());
      if (m) res(m[1]!);
    });
    child.on('exit', (code) => rej(new Error(`demo server exited ${code}`)));
  });
  return { url, child };
}

/** Runs a command, sampling its peak RSS (VmHWM) from /proc. */
async function timed(cmd: string, args: string[], stopAfterMs?: number): Promise<{ secs: number; peakRssMb: number | undefined; code: number | null; stdout: string }> {
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const stopper = stopAfterMs !== undefined ? setTimeout(() => child.kill('SIGINT'), stopAfterMs) : undefined;
  let stdout = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', () => undefined);
  let peak: number | undefined;
  const sample = async (): Promise<void> => {
    try {
      const s = await readFile(`/proc/${child.pid}/status`, 'utf8');
      const m = /VmHWM:\s+(\d+) kB/.exec(s);
      if (m) peak = Math.max(peak ?? 0, Number(m[1]) / 1024);
    } catch {
      // exited
    }
  };
  const timer = setInterval(() => void sample(), 100);
  const code = await new Promise<number | null>((res) => child.on('exit', res));
  clearInterval(timer);
  if (stopper) clearTimeout(stopper);
  return { secs: (performance.now() - t0) / 1000, peakRssMb: peak, code, stdout };
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) n += (await stat(join(dir, f))).size;
  return n;
}

export async function runCrawlBench(opts: { posts: number; concurrencies: number[]; bigSecs: number }): Promise<Row[]> {
  const rows: Row[] = [];
  const tmp = await mkdtemp(join(tmpdir(), 'lifeboat-bench-'));
  const demo = await startDemo(opts.posts);
  const cli = join(DIST, 'cli.js');
  try {
    for (const c of opts.concurrencies) {
      const out = join(tmp, `crawl-${c}`);
      const r = await timed(process.execPath, [cli, 'crawl', '--profile', 'demo', '--base-url', demo.url, '--ids', `1-${opts.posts}`, '--out', out, '--allow-private-network', '--quiet', '--concurrency', String(c)]);
      if (r.code !== 0) throw new Error(`lifeboat crawl exited ${r.code}`);
      const db = new Database(join(out, 'shard.sqlite'), { readonly: true });
      const urls = db.prepare<[], { url: string }>('SELECT url FROM captures ORDER BY rowid').all().map((x) => x.url);
      const bodyBytes = db.prepare<[], { n: number }>('SELECT SUM(body_bytes) AS n FROM captures').get()!.n;
      db.close();
      rows.push({ what: 'lifeboat crawl (WARC + SQLite, fsync)', concurrency: c, secs: r.secs, ids: opts.posts, requests: urls.length, mb: bodyBytes / 1e6, peakRssMb: r.peakRssMb });
      if (c === opts.concurrencies[opts.concurrencies.length - 1]) {
        const w = await timed(process.execPath, [cli, 'crawl', '--profile', 'demo', '--base-url', demo.url, '--ids', `1-${opts.posts}`, '--out', `${out}-w2`, '--allow-private-network', '--quiet', '--concurrency', String(c), '--workers', '2']);
        if (w.code !== 0) throw new Error(`lifeboat crawl --workers 2 exited ${w.code}`);
        rows.push({ what: 'lifeboat crawl --workers 2', concurrency: c, secs: w.secs, ids: opts.posts, requests: urls.length, mb: bodyBytes / 1e6, peakRssMb: w.peakRssMb });
      }
      const list = join(tmp, 'urls.txt');
      await writeFile(list, `${urls.join('\n')}\n`);
      const plain = await timed(process.execPath, [join(DIST, 'bench-plain.js'), list, String(c)]);
      if (plain.code !== 0) throw new Error(`bench-plain exited ${plain.code}`);
      rows.push({ what: 'plain undici loop (discard)', concurrency: c, secs: plain.secs, ids: opts.posts, requests: urls.length, mb: Number(plain.stdout.trim()) / 1e6, peakRssMb: plain.peakRssMb });
      if (c === opts.concurrencies[0]) {
        const wdir = join(tmp, 'wget');
        const w = await timed('bash', ['-c', `mkdir -p ${wdir} && cd ${wdir} && wget -q --compression=auto --warc-file=bench -i ${list} -O /dev/null; echo $?`]);
        rows.push({ what: 'wget --warc-file (one connection)', concurrency: 1, secs: w.secs, ids: opts.posts, requests: urls.length, mb: (await dirBytes(wdir)) / 1e6, peakRssMb: w.peakRssMb });
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
    const db = new Database(join(out, 'shard.sqlite'), { readonly: true });
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
  const lines = ['| what | concurrency | seconds | IDs | IDs/s | requests/s | MB/s | peak RSS MB |', '|---|---:|---:|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '–');
    lines.push(`| ${r.what} | ${r.concurrency} | ${f(r.secs, 2)} | ${r.ids} | ${f(r.ids / r.secs)} | ${f(r.requests / r.secs)} | ${f(r.mb / r.secs, 2)} | ${r.peakRssMb === undefined ? '–' : f(r.peakRssMb, 0)} |`);
  }
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { posts: { type: 'string' }, concurrency: { type: 'string' }, 'big-secs': { type: 'string' } } });
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
