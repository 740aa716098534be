/**
 * Runs the demo platform as its own process, for benchmarks and kill tests:
 *
 *   node dist/scripts/demo/demo-server.js --port 8080 --posts 1000 [--seed 1] [--chaos 0.05]
 *        [--chaos-kinds 5xx,reset,stall,short] [--stall-ms 5000] [--rate-limit 200] [--host 127.0.0.1]
 *        [--heavy-videos]   (half the posts carry a 1-3 MiB video: the media-heavy benchmark)
 *
 * Prints exactly one line to stdout when ready (`demo platform listening on URL`), closes on
 * SIGTERM/SIGINT and then writes its request counters as one JSON line to stderr.
 * Exit codes: 0 closed cleanly, 1 error, 2 bad usage.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { CHAOS_KINDS, startDemoPlatform, type ChaosKind, type DemoPlatformOptions } from './demo-platform.js';

export class DemoServerUsageError extends Error {}

const USAGE =
  'usage: demo-server [--port N] [--posts N] [--seed N] [--chaos RATE] [--chaos-kinds LIST] [--stall-ms N] [--rate-limit RPS] [--host ADDR] [--heavy-videos]';

function integer(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new DemoServerUsageError(`--${name} must be an integer >= ${min}, got "${value}"`);
  return n;
}

/** Turns command-line arguments (without node and the script) into platform options. */
export function parseDemoServerArgs(argv: string[]): DemoPlatformOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string' },
        posts: { type: 'string' },
        seed: { type: 'string' },
        chaos: { type: 'string' },
        'chaos-kinds': { type: 'string' },
        'stall-ms': { type: 'string' },
        'rate-limit': { type: 'string' },
        host: { type: 'string' },
        'heavy-videos': { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new DemoServerUsageError(`${(err as Error).message}\n${USAGE}`);
  }
  const opts: DemoPlatformOptions = { host: values.host ?? '127.0.0.1', trackPaths: false };
  if (values['heavy-videos']) opts.heavyVideos = true;
  const port = integer('port', values.port, 0);
  if (port !== undefined && port > 65535) throw new DemoServerUsageError(`--port must be <= 65535, got ${port}`);
  if (port !== undefined) opts.port = port;
  const posts = integer('posts', values.posts, 0);
  if (posts !== undefined) opts.posts = posts;
  const seed = integer('seed', values.seed, 0);
  if (seed !== undefined) opts.seed = seed;
  if (values.chaos !== undefined) {
    const rate = Number(values.chaos);
    if (!(rate >= 0 && rate <= 1)) throw new DemoServerUsageError(`--chaos must be a rate in [0, 1], got "${values.chaos}"`);
    const kinds = values['chaos-kinds']?.split(',').map((k) => k.trim());
    for (const k of kinds ?? []) {
      if (!(CHAOS_KINDS as readonly string[]).includes(k)) {
        throw new DemoServerUsageError(`--chaos-kinds: unknown kind "${k}" (known: ${CHAOS_KINDS.join(', ')})`);
      }
    }
    opts.chaos = { rate };
    if (kinds) opts.chaos.kinds = kinds as ChaosKind[];
    const stallMs = integer('stall-ms', values['stall-ms'], 0);
    if (stallMs !== undefined) opts.chaos.stallMs = stallMs;
  }
  if (values['rate-limit'] !== undefined) {
    const rps = Number(values['rate-limit']);
    if (!(rps > 0)) throw new DemoServerUsageError(`--rate-limit must be > 0 requests per second, got "${values['rate-limit']}"`);
    opts.rateLimit = { rps };
  }
  return opts;
}

export async function main(argv: string[]): Promise<void> {
  let opts: DemoPlatformOptions;
  try {
    opts = parseDemoServerArgs(argv);
  } catch (err) {
    process.stderr.write(`demo-server: ${(err as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  let platform;
  try {
    platform = await startDemoPlatform(opts);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
    if (e.code !== 'EADDRINUSE' && e.code !== 'EACCES' && e.code !== 'EADDRNOTAVAIL') throw err;
    // The machine's state, not a bug: one line, no stack.
    const where = `${e.address ?? opts.host}:${e.port ?? opts.port ?? '?'}`;
    process.stderr.write(`demo-server: ${where} ${e.code === 'EADDRINUSE' ? 'is already in use (another demo server?): stop it or choose another --port' : `cannot be bound (${e.code})`}\n`);
    process.exitCode = 1;
    return;
  }
  process.stdout.write(`demo platform listening on ${platform.url}\n`);
  const stop = (signal: NodeJS.Signals): void => {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    void platform.close().then(() => {
      const { requests, byStatus, chaos, rateLimited } = platform.stats;
      process.stderr.write(`${JSON.stringify({ signal, requests, byStatus, chaos, rateLimited })}\n`);
      process.exitCode = 0;
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`demo-server: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
