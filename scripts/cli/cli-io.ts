import { LifeboatError } from '../../config/errors.js';
import { createLogger, type Logger, type LogLevel } from '../../config/logger.js';
import type { CrawlStats } from '../../crawler/fetch/crawl-stats.js';

/** What a command may touch of the outside world; tests pass their own. */
export interface CliIo {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  /** `columns`: the terminal's width, when it is one (the progress line fits it). */
  stderr: { write(s: string): unknown; isTTY?: boolean; columns?: number };
  env: Record<string, string | undefined>;
  /** Installs a Ctrl-C handler; returns a function that removes it. */
  onInterrupt?: (handler: () => void) => () => void;
}

export const processIo: CliIo = {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  onInterrupt(handler) {
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
    return () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    };
  },
};

/**
 * A closed pipe (`lifeboat search DIR words | head -1`) is the reader saying it has read enough:
 * the command ends quietly with exit 0, not with an EPIPE stack trace. Installed once, for the
 * process's own streams (main() in cli.ts); a stderr that is gone is simply not written to.
 */
let pipesGuarded = false;
export function endQuietlyOnClosedPipe(exit: (code: number) => void = (code) => process.exit(code)): void {
  if (pipesGuarded) return;
  pipesGuarded = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') exit(0);
    else throw err;
  });
  process.stderr.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

/** On a terminal, a message first clears the live progress line (`\r`, erase line): it must not run into it. */
const CLEAR_LINE = '\r\x1b[2K';

export function cliLogger(io: CliIo, options: { json: boolean; quiet: boolean; verbose?: boolean }): Logger {
  const rank: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  const min = options.verbose ? 0 : options.quiet ? 2 : 1;
  return createLogger((e) => {
    if (rank[e.level] < min) return;
    if (options.json) io.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
    else io.stderr.write(`${io.stderr.isTTY ? CLEAR_LINE : ''}${e.level === 'info' ? '' : `${e.level}: `}${e.message}\n`);
  });
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v.toFixed(1)} ${units[i]}`;
}

function fmtEta(secs: number): string {
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s).padStart(2, '0')}s`;
}

/**
 * The progress line's fields in display order, each with its rank (0 = kept longest). When the
 * line is wider than the terminal, the lowest-ranked fields go first; the rest keep their order.
 */
export function progressLine(s: Record<string, number | undefined>, options: { columns?: number; stopping?: boolean; caps?: string } = {}): string {
  const n = (k: string): number => s[k] ?? 0;
  // A media item (issue 13) has URLs to fetch, no IDs: its line counts those.
  const media = n('total') === 0 && n('media_total') > 0;
  const [done, total, unit] = media ? [n('media_done') + n('media_failed') + n('media_skipped'), n('media_total'), 'media URLs'] : [n('done'), n('total'), 'IDs'];
  const pct = total > 0 ? ` ${Math.floor((done / total) * 100)}%` : '';
  // No ETA until there is a rate to base it on (a "?" says nothing).
  const eta = options.stopping ? 'stopping…' : (s.eta_secs ?? -1) >= 0 ? `ETA ${fmtEta(s.eta_secs!)}` : undefined;
  const fields: [text: string, rank: number][] = [
    [`${done}/${total} ${unit}${pct}`, 0],
    ...(eta ? [[eta, 1] as [string, number]] : []),
    [`${n('ids_per_sec')}/s`, 2],
    [`${n('mb_per_sec')} MB/s`, 7],
    [fmtBytes(n('bytes')), 8],
    [`retries ${n('retries')}`, 4],
    [`429s ${n('throttles')}`, 5],
    // Fetches that failed for good, after all their retries (a retry that then worked is not one).
    [`failed fetches ${n('errors')}`, 6],
    [`failed ${n('failed')}`, 3],
    // --max-disk / --max-hours / --max-bandwidth (issue 14), e.g. "caps: disk 1.20/50.0 GiB, 0.5/8 h".
    ...(options.caps ? [[`caps: ${options.caps}`, 3] as [string, number]] : []),
  ];
  // One column spare: some terminals wrap when the last column is written.
  const width = Math.max(1, (options.columns ?? Infinity) - 1);
  const kept = [...fields];
  const join = (): string => kept.map(([t]) => t).join('  ');
  while (kept.length > 1 && join().length > width) {
    const lowest = kept.reduce((worst, f, i) => (f[1] > kept[worst]![1] ? i : worst), 0);
    kept.splice(lowest, 1);
  }
  const line = join();
  return line.length > width ? `${line.slice(0, Math.max(0, width - 1))}…` : line;
}

/** The live progress line on a terminal, a plain line every 10 s otherwise, JSON with --json. */
export function progressReporter(io: CliIo, options: { json: boolean; quiet: boolean; signal?: AbortSignal; caps?: () => string }): (stats: CrawlStats) => void {
  let lastPlain = 0;
  return (stats) => {
    if (options.quiet) return;
    const s = stats.snapshot();
    const stopping = options.signal?.aborted ?? false;
    const caps = options.caps?.() || undefined;
    if (options.json) {
      io.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), progress: s, ...(stopping ? { stopping } : {}), ...(caps ? { caps } : {}) })}\n`);
      return;
    }
    if (io.stderr.isTTY) io.stderr.write(`\r\x1b[2K${progressLine(s, { columns: io.stderr.columns ?? 80, stopping, ...(caps ? { caps } : {}) })}`);
    else if (Date.now() - lastPlain >= 10_000) {
      lastPlain = Date.now();
      io.stderr.write(`${new Date().toISOString()} ${progressLine(s, { stopping, ...(caps ? { caps } : {}) })}\n`);
    }
  };
}

/**
 * Ctrl-C handling shared by long-running commands: the first interrupt aborts the returned
 * signal (the command finishes what is in flight and saves its state), the second exits at once.
 */
export function gracefulInterrupt(io: CliIo, message: string): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  let interrupts = 0;
  const remove = io.onInterrupt?.(() => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    io.stderr.write(`\nstopping: ${message} (Ctrl-C again to stop at once)\n`);
    controller.abort(new LifeboatError('interrupted', { code: 'E_INTERRUPTED', policy: 'stop' }));
  });
  return { signal: controller.signal, dispose: () => remove?.() };
}
