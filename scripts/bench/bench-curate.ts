import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { mergeShards } from '../../storage/curate/merge.js';
import type { ScanTask } from '../../storage/curate/input/scan-files.js';
import { ScanPool } from '../../storage/curate/input/scan-pool.js';
import { verifyPaths } from '../../storage/curate/verify.js';
import { generateShard } from './bench-merge.js';

/**
 * `verify` and `merge` on every core, and `merge --index-only` (issue 25), on generated shards
 * (default 4 × ~100 MB, adjacent shards overlapping by a quarter; media-heavy like a real rescue).
 * Every run is a child process (its own workers, its own peak RSS), runs alternate A/B/A/B so a
 * noisy neighbour hits both sides, and the best of `--rounds` is reported. Then the parts alone,
 * to explain the totals: sha256 of the files, reading (inflate + sha1 digests) of every record,
 * reading with declared sha1 digests believed (what index-only does), and `cat`.
 *
 *   npm run build && taskset -c 0,1 node dist/scripts/bench/bench-curate.js [--shard-mb 100] [--rounds 3]
 */
const MB = 1024 * 1024;

type Child = { kind: 'verify' | 'merge' | 'index-only' | 'scan-hash' | 'scan-full' | 'scan-trust'; jobs: number };

/** CPU seconds of this process's main thread alone (Linux: utime + stime of its task, in clock ticks of 10 ms). */
function mainThreadCpu(): number {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

async function child(c: Child, inputs: string[], out: string): Promise<void> {
  const t = process.hrtime.bigint();
  let extra: Record<string, unknown> = {};
  if (c.kind === 'verify') {
    const r = await verifyPaths(inputs, { jobs: c.jobs });
    if (r.defectCount > 0) throw new Error(`verify found ${r.defectCount} defects: ${JSON.stringify(r.defects.slice(0, 3))}`);
    extra = { records: r.records };
  } else if (c.kind === 'merge' || c.kind === 'index-only') {
    const r = await mergeShards({ inputs, out, jobs: c.jobs, indexOnly: c.kind === 'index-only' });
    if (r.defectCount > 0) throw new Error(`merge found ${r.defectCount} defects`);
    extra = { kept: r.recordsKept, duplicates: r.duplicates };
  } else {
    // A part alone: every input file through the pool, nothing decided or written.
    const files: string[] = [];
    for (const d of inputs) for (const n of (await readdir(join(d, 'warcs'))).sort()) files.push(join(d, 'warcs', n));
    const pool = new ScanPool(c.jobs);
    try {
      const task = (path: string): ScanTask => (c.kind === 'scan-hash' ? { kind: 'hash', path } : { kind: 'merge', path, trust: c.kind === 'scan-trust', spool: false });
      const streams = files.map((f) => pool.submit(task(f)));
      let events = 0;
      for (const s of streams) for await (const _ of s) events++;
      extra = { events };
    } finally {
      await pool.close();
    }
  }
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  const cpu = process.cpuUsage();
  // CPU seconds of all threads, and the main thread's busy time (its event loop's active time): on
  // a machine whose cores are shared, the ratio of the two says what dedicated cores would give.
  const mainBusy = performance.eventLoopUtilization().active / 1000;
  process.stdout.write(`${JSON.stringify({ seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, mainCpuSeconds: mainThreadCpu(), mainBusySeconds: mainBusy, peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024), ...extra })}\n`);
}

type Measured = { seconds: number; cpuSeconds: number; mainCpuSeconds: number; mainBusySeconds: number; peakRssMB: number };

function runChild(c: Child, inputs: string[], out: string): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', JSON.stringify(c), out, ...inputs], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(stdout.trim().split('\n').pop()!) as Measured) : reject(new Error(`${c.kind} --jobs ${c.jobs} exited ${code}`))));
  });
}

function timeCat(files: string[]): Promise<number> {
  const t = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const p = spawn('cat', files, { stdio: ['ignore', 'ignore', 'inherit'] });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(Number(process.hrtime.bigint() - t) / 1e9) : reject(new Error(`cat exited ${code}`))));
  });
}

async function main(): Promise<void> {
  const arg = (name: string, dflt: number): number => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : dflt;
  };
  const shardMB = arg('--shard-mb', 100);
  const rounds = arg('--rounds', 3);
  const shards = arg('--shards', 4);
  const mediaBytes = 256 * 1024;
  const postsPerShard = Math.ceil((shardMB * MB) / (mediaBytes + 2000));
  const step = Math.floor(postsPerShard * 0.75);
  const root = await mkdtemp(join(tmpdir(), 'lifeboat-bench-curate-'));
  const log = (s: string): void => void process.stderr.write(`${s}\n`);
  try {
    const inputs: string[] = [];
    for (let s = 0; s < shards; s++) {
      const dir = join(root, `shard-${s}`);
      log(`generating shard ${s + 1}/${shards} (${postsPerShard} posts)`);
      await generateShard(dir, 1 + s * step, s * step + postsPerShard, mediaBytes);
      inputs.push(dir);
    }
    const files: string[] = [];
    let bytes = 0;
    for (const d of inputs) for (const n of await readdir(join(d, 'warcs'))) {
      files.push(join(d, 'warcs', n));
      bytes += (await stat(join(d, 'warcs', n))).size;
    }
    await timeCat(files);
    const cat = await timeCat(files);
    const runs: Child[] = [
      { kind: 'verify', jobs: 1 }, { kind: 'verify', jobs: 2 },
      { kind: 'merge', jobs: 1 }, { kind: 'merge', jobs: 2 },
      { kind: 'index-only', jobs: 1 }, { kind: 'index-only', jobs: 2 },
      { kind: 'scan-hash', jobs: 1 }, { kind: 'scan-hash', jobs: 2 },
      { kind: 'scan-full', jobs: 1 }, { kind: 'scan-full', jobs: 2 },
      { kind: 'scan-trust', jobs: 1 }, { kind: 'scan-trust', jobs: 2 },
    ];
    const best = new Map<string, Measured & { all: number[] }>();
    for (let r = 0; r < rounds; r++) {
      for (const c of runs) {
        const out = join(root, `out-${c.kind}-${c.jobs}`);
        await rm(out, { recursive: true, force: true });
        const m = await runChild(c, inputs, out);
        await rm(out, { recursive: true, force: true });
        const key = `${c.kind} --jobs ${c.jobs}`;
        const prev = best.get(key);
        const all = [...(prev?.all ?? []), m.seconds];
        best.set(key, !prev || m.seconds < prev.seconds ? { ...m, all } : { ...prev, all });
        log(`round ${r + 1}: ${key}: ${m.seconds.toFixed(2)} s (${(bytes / MB / m.seconds).toFixed(0)} MB/s), CPU ${m.cpuSeconds.toFixed(2)} s (main thread ${m.mainCpuSeconds.toFixed(2)} s), main thread busy ${m.mainBusySeconds.toFixed(2)} s, peak RSS ${m.peakRssMB} MB`);
      }
    }
    const s = (k: string): number => best.get(k)!.seconds;
    const result = {
      inputMB: Math.round(bytes / MB), files: files.length, catSeconds: cat, rounds,
      runs: Object.fromEntries(
        [...best].map(([k, v]) => [
          k,
          { seconds: +v.seconds.toFixed(2), mbPerSec: +(bytes / MB / v.seconds).toFixed(0), cpuSeconds: +v.cpuSeconds.toFixed(2), mainCpuSeconds: +v.mainCpuSeconds.toFixed(2), twoCoreModelSeconds: +Math.max(v.mainCpuSeconds, v.cpuSeconds / 2).toFixed(2), mainBusySeconds: +v.mainBusySeconds.toFixed(2), peakRssMB: v.peakRssMB, all: v.all.map((x) => +x.toFixed(2)) },
        ]),
      ),
      ratios: {
        verifyJobs2: +(s('verify --jobs 1') / s('verify --jobs 2')).toFixed(2),
        mergeJobs2: +(s('merge --jobs 1') / s('merge --jobs 2')).toFixed(2),
        indexOnlyVsFullJobs1: +(s('merge --jobs 1') / s('index-only --jobs 2')).toFixed(2),
        indexOnlyJobs1VsFullJobs1: +(s('merge --jobs 1') / s('index-only --jobs 1')).toFixed(2),
      },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv[2] === '--child') await child(JSON.parse(process.argv[3]!) as Child, process.argv.slice(5), process.argv[4]!);
  else await main();
}
