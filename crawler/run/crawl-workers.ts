/**
 * A crawl spread over worker threads. The crawl is CPU-bound on one thread (hashing, deflate,
 * extraction, SQLite: see BENCHMARKS.md), so a shard's IDs are split by `id % count` among
 * `count` workers, each a full crawl loop (crawl-part.ts) with its own WARC files on the one
 * shard database (WAL; group commits take turns). Per-host limits are split evenly among them
 * (config/crawl-settings.ts `partSettings`).
 * The main thread only relays: progress counters, committed IDs, log lines, the first error.
 */
import { Worker } from 'node:worker_threads';
import { InputError, LifeboatError, ScopeError, StorageError } from '../../config/errors.js';
import type { LogEntry, Logger } from '../../config/logger.js';
import type { CrawlSettings } from '../../config/crawl-settings.js';
import type { CrawlPartOptions } from './crawl-part.js';
import type { CrawlStats, StatsCounters } from '../fetch/crawl-stats.js';
import type { RangeSet } from '../../config/id-ranges.js';

/** What a worker gets: its part's options less what cannot cross a thread (all structured-cloneable). */
export type WorkerInput = Omit<CrawlPartOptions, 'ranges' | 'logger' | 'stats' | 'signal' | 'onCommitted'> & {
  ranges: [number, number][];
  statsIntervalMs: number;
};

export type ToWorker = { type: 'abort'; reason: string };

export type FromWorker =
  | ({ type: 'log' } & LogEntry)
  | { type: 'stats'; counters: StatsCounters }
  | { type: 'committed'; ids: number[] }
  | { type: 'done'; aborted: boolean; counters: StatsCounters }
  | { type: 'error'; counters: StatsCounters; error: { name: string; message: string; code: string | undefined } };

export interface CrawlInWorkersOptions {
  /** Each worker's share of the run's settings (`partSettings`). */
  settings: CrawlSettings;
  count: number;
  ranges: RangeSet;
  outDir: string;
  queuedMedia: { url: string; postId: number | null }[];
  stats: CrawlStats;
  logger: Logger;
  signal?: AbortSignal;
  onCommitted?: (ids: number[]) => void;
}

/** The worker script: the compiled one, also when this module runs from TypeScript source (tests). */
function workerScript(): URL {
  return import.meta.url.endsWith('.ts') ? new URL('../../dist/crawler/run/crawl-worker.js', import.meta.url) : new URL('./crawl-worker.js', import.meta.url);
}

function rebuildError(e: { name: string; message: string; code: string | undefined }): Error {
  const options = e.code ? { code: e.code } : {};
  if (e.name === 'StorageError') return new StorageError(e.message, options);
  if (e.name === 'ScopeError') return new ScopeError(e.message, options);
  if (e.name === 'InputError' || e.name === 'ConfigError') return new InputError(e.message, options);
  return new StorageError(e.message, { code: e.code ?? 'E_WORKER' });
}

export async function crawlInWorkers(o: CrawlInWorkersOptions): Promise<{ aborted: boolean }> {
  const counters: StatsCounters[] = [];
  const workers: Worker[] = [];
  let firstError: Error | undefined;
  let aborted = false;
  const stopAll = (reason: string): void => {
    for (const w of workers) w.postMessage({ type: 'abort', reason } satisfies ToWorker);
  };
  const onAbort = (): void => {
    aborted = true;
    stopAll('interrupted');
  };

  const runs = Array.from({ length: o.count }, (_, index) => {
    const input: WorkerInput = {
      settings: o.settings,
      outDir: o.outDir,
      ranges: o.ranges.toJSON(),
      partition: { index, count: o.count },
      queuedMedia: o.queuedMedia.filter((_, i) => i % o.count === index),
      statsIntervalMs: 250,
    };
    const worker = new Worker(workerScript(), { workerData: input });
    workers.push(worker);
    return new Promise<void>((resolve) => {
      let settled = false;
      const fail = (err: Error): void => {
        if (!firstError) {
          firstError = err;
          stopAll(`worker ${index} failed: ${err.message}`);
        }
      };
      worker.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'log': {
            let log = o.logger;
            for (const part of m.component.split('.').slice(1)) log = log.child(part);
            log.log(m.level, m.message, { ...m.fields, worker: index });
            break;
          }
          case 'stats':
            counters[index] = m.counters;
            o.stats.setSum(counters.filter(Boolean));
            break;
          case 'committed':
            o.onCommitted?.(m.ids);
            break;
          case 'done':
            counters[index] = m.counters;
            o.stats.setSum(counters.filter(Boolean));
            if (m.aborted) aborted = true;
            settled = true;
            break;
          case 'error':
            counters[index] = m.counters;
            o.stats.setSum(counters.filter(Boolean));
            settled = true;
            fail(rebuildError(m.error));
            break;
        }
      });
      worker.on('error', (err) => fail(new StorageError(`crawl worker ${index} crashed: ${err.message}`, { code: 'E_WORKER', cause: err })));
      worker.on('exit', (code) => {
        if (!settled) fail(new StorageError(`crawl worker ${index} exited (code ${code}) before it finished`, { code: 'E_WORKER' }));
        resolve();
      });
    });
  });
  if (o.signal?.aborted) onAbort();
  else o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await Promise.all(runs);
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
  }
  if (firstError) throw firstError instanceof LifeboatError ? firstError : new StorageError(firstError.message, { cause: firstError });
  return { aborted };
}
