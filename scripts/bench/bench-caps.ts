/**
 * Volunteers' caps measured (issue 14), through the real CLI in a child process against a local
 * server whose posts are large JSON bodies:
 *  - `crawl --max-bandwidth CAP` for SECS seconds: the bytes the server sent per second (counted
 *    as its writes complete), over the whole run and per 10-s window, against the cap;
 *  - `crawl --max-disk CAP`: the shard folder's size sampled every 20 ms, its highest against the cap.
 *
 *   npm run build && node dist/scripts/bench/bench-caps.js [--bandwidth 8M] [--secs 60] [--disk 20M]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dirBytes } from '../../crawler/run/caps.js';
import { capSize } from '../cli/cli-options.js';

const POST_BYTES = 256 * 1024;
const CLI = fileURLToPath(new URL('../cli/cli.js', import.meta.url));

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

/** A platform of large posts; counts the body bytes it has sent. */
async function startBigPosts() {
  const filler = Buffer.alloc(POST_BYTES, 'x');
  for (let i = 0; i < filler.length; i += 97) filler[i] = 97 + (i % 26);
  let sent = 0;
  const server = createServer((req, res) => {
    const m = /^\/api\/posts\/(\d+)$/.exec(req.url ?? '');
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const body = Buffer.concat([Buffer.from(`{"id":${m[1]},"text":"`), filler, Buffer.from('"}')]);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(body.length) });
    res.end(body, () => (sent += body.length));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, sentBytes: () => sent, close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))) };
}

function crawl(args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'crawl', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

async function main(): Promise<void> {
  const bandwidth = capSize('--bandwidth')(arg('--bandwidth', '8M'));
  const secs = Number(arg('--secs', '60'));
  const disk = capSize('--disk')(arg('--disk', '20M'));
  const tmp = mkdtempSync(join(tmpdir(), 'lifeboat-bench-caps-'));
  const platform = await startBigPosts();
  try {
    const profile = join(tmp, 'big.yaml');
    writeFileSync(
      profile,
      `name: big\nbase_url: ${platform.url}\nids: {codec: integer}\ncaptures:\n  - {name: post, url: "{base_url}/api/posts/{id}", type: json}\n` +
        `politeness: {concurrency: 16, per_host_concurrency: 16, rate: 1000, robots: ignore}\n`,
    );
    const common = ['--profile', profile, '--ids', '1-1000000', '--allow-private-network', '--quiet'];

    // Bandwidth: sample the server's counter each second.
    const samples: number[] = [];
    const t0 = Date.now();
    const timer = setInterval(() => samples.push(platform.sentBytes()), 1000);
    const until = new Date(t0 + secs * 1000).toISOString();
    const code = await crawl([...common, '--out', join(tmp, 'bw'), '--max-bandwidth', String(bandwidth), '--until', until]);
    clearInterval(timer);
    const total = platform.sentBytes();
    const elapsed = (Date.now() - t0) / 1000;
    const windows: number[] = [];
    for (let i = 10; i <= samples.length; i += 10) windows.push((samples[i - 1]! - (i > 10 ? samples[i - 11]! : 0)) / 10);
    const mib = (n: number) => (n / 1024 ** 2).toFixed(2);
    console.log(`bandwidth cap ${mib(bandwidth)} MiB/s, crawl exit ${code}, ${elapsed.toFixed(1)} s: ${mib(total)} MiB sent, mean ${mib(total / elapsed)} MiB/s (${((total / elapsed / bandwidth) * 100).toFixed(1)}% of the cap)`);
    console.log(`  per 10 s: ${windows.map((w) => `${mib(w)}`).join(', ')} MiB/s`);

    // Disk: the shard folder sampled every 20 ms.
    const out = join(tmp, 'disk');
    let highest = 0;
    const watch = setInterval(() => void dirBytes(out).then((b) => (highest = Math.max(highest, b))), 20);
    const before = platform.sentBytes();
    const diskCode = await crawl([...common, '--out', out, '--max-disk', String(disk)]);
    clearInterval(watch);
    const final = await dirBytes(out);
    console.log(`disk cap ${mib(disk)} MiB, crawl exit ${diskCode}: highest ${mib(highest)} MiB (${((highest / disk) * 100).toFixed(1)}% of the cap), final ${mib(final)} MiB, ${mib(platform.sentBytes() - before)} MiB fetched`);
  } finally {
    await platform.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
