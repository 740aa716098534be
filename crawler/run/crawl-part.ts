/**
 * The crawl loop over one part of a shard (ARCHITECTURE.md follows one capture):
 * it only schedules. IDs come from the frontier, each runs as a CapturePlan (fetch → extract →
 * record), its outcome goes to the ShardRecorder, which makes it final after the fsync (group
 * commit) and answers with the media to fetch next. A run is one part (the whole range, on the
 * main thread) or several parts in worker threads (IDs split by `id % count`), each with its own
 * recorder and fetch stack on the one shard directory.
 */
import { setMaxListeners } from 'node:events';
import { setImmediate } from 'node:timers/promises';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { type CrawlSettings, fetchesInline } from '../../config/crawl-settings.js';
import { LifeboatError, StorageError, errorMessage } from '../../config/errors.js';
import { createCodec } from '../../config/id-codec.js';
import type { RangeSet } from '../../config/id-ranges.js';
import type { Logger } from '../../config/logger.js';
import { SOFTWARE } from '../../config/version.js';
import type { IdFinal } from '../../storage/shard/shard-recorder.js';
import { ShardRecorder } from '../../storage/shard/shard-recorder.js';
import { CapturePlan, type IdTrace } from './capture-plan.js';
import type { CrawlStats } from '../fetch/crawl-stats.js';
import { buildFetchStack, closeFetchStack } from './fetch-stack.js';
import { Frontier } from './frontier.js';

/** Which IDs a part crawls: those with `id % count === index`. */
export interface Partition {
  index: number;
  count: number;
}

/** What is truly one part's: the rest is in `settings` (this part's share of the run's limits). */
export interface CrawlPartOptions {
  settings: CrawlSettings;
  ranges: RangeSet;
  outDir: string;
  partition: Partition;
  /** Media URLs an earlier run left queued, for this part to fetch first. */
  queuedMedia: { url: string; postId: number | null }[];
  stats: CrawlStats;
  logger: Logger;
  signal: AbortSignal;
  /** Called after each group commit with the IDs that became final (the node loop reports them). */
  onCommitted?: (ids: number[]) => void;
  /** Called with what happened to each ID, capture by capture (`lifeboat probe`; on the main thread only). */
  onTrace?: (trace: IdTrace) => void;
}

/** Crawls one part; resolves when it is done or stopped, rejects on a storage failure. */
export async function crawlPart(opts: CrawlPartOptions): Promise<{ aborted: boolean }> {
  const { settings, stats, logger, partition } = opts;
  const { profile } = settings;
  const log = logger.child('crawl');
  const abort = new AbortController();
  // Every waiting request listens on this one signal: many listeners are expected, not a leak.
  setMaxListeners(0, abort.signal);
  const onOuterAbort = (): void => abort.abort(opts.signal.reason);
  if (opts.signal.aborted) onOuterAbort();
  else opts.signal.addEventListener('abort', onOuterAbort, { once: true });

  const stack = await buildFetchStack(settings, { spoolDir: join(opts.outDir, 'tmp'), stats, logger, signal: abort.signal });
  const recorder = new ShardRecorder({
    dir: opts.outDir,
    warc: {
      prefix: profile.name,
      node: settings.node,
      // Parts number their files apart (serial ≡ index mod count): names never collide.
      serialStep: { offset: partition.index, step: partition.count },
      maxFileBytes: settings.warcSizeBytes,
      warcinfo: {
        software: SOFTWARE,
        'http-header-user-agent': stack.ua,
        isPartOf: profile.name,
        description: profile.description,
        robots: profile.politeness.robots,
        hostname: settings.node,
        operator: settings.contact,
      },
    },
  });
  const frontier = new Frontier(opts.ranges, recorder.frontierSource(partition));
  const plan = new CapturePlan({ profile, codec: createCodec(profile.codec), stack, recorder, stats, logger, signal: abort.signal, inScope: (id) => frontier.inScope(id), ...(opts.onTrace ? { onTrace: opts.onTrace } : {}) });
  const queue = new PQueue({ concurrency: settings.concurrency });

  let fatalError: Error | undefined;
  const fatal = (err: unknown): void => {
    if (fatalError) return;
    fatalError = err instanceof Error ? err : new Error(String(err));
    log.log('error', `stopping: ${errorMessage(err)}`);
    abort.abort(fatalError);
  };
  const commit = async (): Promise<void> => {
    const ids = await recorder.commit();
    if (ids.length > 0) opts.onCommitted?.(ids);
  };
  const commitTimer = setInterval(() => void commit().catch(fatal), settings.commitIntervalMs);

  // Media is fetched once the transaction that queued it is done, by whichever part queued it first.
  const scheduleMedia = (url: string, postId: number | null): void => {
    void queue.add(() => plan.fetchMedia(url, postId), { priority: 1 }).catch(fatal);
  };
  const finalize = (outcome: IdFinal): void => {
    recorder.finalizeId(outcome).then((media) => {
      stats.count(outcome.status);
      // Media the run does not fetch inline stay queued in the shard: the node reports them.
      for (const url of media) if (fetchesInline(settings, url)) scheduleMedia(url, outcome.id);
    }, () => undefined);
  };

  try {
    // Media left queued by an earlier run (crash or stop) first.
    for (const u of opts.queuedMedia) {
      if (abort.signal.aborted) break;
      await queue.onSizeLessThan(settings.concurrency * 4);
      scheduleMedia(u.url, u.postId);
    }
    for (const id of frontier.ids()) {
      if (id % partition.count !== partition.index) continue;
      if (abort.signal.aborted) break;
      await queue.onSizeLessThan(settings.concurrency * 2);
      if (abort.signal.aborted) break;
      void queue.add(async () => {
        const outcome = await plan.run(id);
        if (outcome) finalize(outcome);
      }).catch(fatal);
    }
    // A commit may start media fetches, whose commits end the run. The media a commit answers
    // are scheduled in its finalizeId callbacks: let them all run before looking at the queue.
    do {
      await queue.onIdle();
      await commit();
      await setImmediate();
    } while (queue.size + queue.pending > 0);
  } catch (err) {
    fatal(err);
    await queue.onIdle().catch(() => undefined);
  } finally {
    clearInterval(commitTimer);
    opts.signal.removeEventListener('abort', onOuterAbort);
  }
  // Commit what is durable-able, then close: a failed commit leaves the shard as the last good one.
  try {
    await commit();
    await recorder.close();
  } catch (err) {
    fatal(err);
    await recorder.abandon();
  }
  stats.recorded({ records: 0, bytes: 0 }, recorder.warcsClosed);
  await closeFetchStack(stack);
  if (fatalError) throw fatalError instanceof LifeboatError ? fatalError : new StorageError(errorMessage(fatalError), { cause: fatalError });
  return { aborted: abort.signal.aborted };
}
