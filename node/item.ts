import { mkdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { errorMessage, InputError } from '../config/errors.js';
import { backoffMs } from '../config/retry.js';
import { RangeSet } from '../config/id-ranges.js';
import type { Logger } from '../config/logger.js';
import { loadProfile } from '../config/profile.js';
import { ShardDb } from '../storage/shard/shard-db.js';
import { readManifest } from '../storage/shard/shard-manifest.js';
import { shardFailureReasons, shardIncompleteReasons } from '../storage/curate/status.js';
import type { TrackerClient, TrackerItem } from '../tracker/client/client.js';
import { TrackerRequestError, TrackerUnavailableError } from '../tracker/client/errors.js';
import { runCrawl } from '../crawler/run/crawl.js';
import { markUploaded } from '../crawler/run/caps.js';
import { MediaReporter, mediaCounts, mediaFailures, mediaFinished, queueMediaItem } from './media.js';
import type { NodeOptions } from './options.js';
import { uploadThenDoneWithRetry } from './upload.js';
import { ScopeGuard } from '../crawler/fetch/scope-guard.js';
import { manifestPath, shardDbPath } from '../storage/shard/layout.js';
import { pickCrawlFlags } from '../config/crawl-settings.js';

/**
 * One claimed item of a volunteer node (ARCHITECTURE.md "Tracker and nodes"): crawl it into `DIR/items/ITEM` with the
 * standalone engine while heartbeats report finished sub-ranges (and, when the tracker collects
 * media, the media they found), then upload and `done`, or give back what failed.
 */

/**
 * IDs of `ranges` that are final in the shard at `dir`. With `waitForMedia` (a post item that
 * fetches its media itself), an ID whose media are still queued is not finished yet: reported
 * finished, it would leave the remainder without it, and a node killed before fetching them (its
 * lease then handed on) would lose those media for good.
 */
export function finishedIn(dir: string, ranges: RangeSet, options: { waitForMedia?: boolean } = {}): RangeSet {
  let db: ShardDb;
  try {
    db = new ShardDb(shardDbPath(dir));
  } catch {
    return new RangeSet();
  }
  try {
    const final = new RangeSet(db.finalRanges()).intersect(ranges);
    if (!options.waitForMedia) return final;
    return final.subtract(db.postsWithQueuedMedia().map((id) => ({ start: id, end: id })));
  } finally {
    db.close();
  }
}

/** The IDs of `ranges` the item's shard holds as `missing`. */
function missingIn(dir: string, ranges: RangeSet): RangeSet {
  const db = new ShardDb(shardDbPath(dir), { readonly: true });
  try {
    return new RangeSet(db.missingIn(ranges.ranges).map((id) => ({ start: id, end: id })));
  } finally {
    db.close();
  }
}

export async function crawlItem(
  item: TrackerItem,
  opts: NodeOptions,
  client: TrackerClient,
  log: Logger,
): Promise<{ interrupted: boolean; finished: RangeSet; counts: Record<string, number>; diskFull?: boolean }> {
  const dir = join(opts.outDir, 'items', String(item.id));
  const profile = loadProfile(item.profile, opts.baseUrl ? { baseUrl: opts.baseUrl } : {});
  const media = item.kind === 'media';
  if (media) {
    await mkdir(dir, { recursive: true });
    queueMediaItem({ dir, urls: item.urls ?? [], profile, allowPrivateNetwork: opts.allowPrivateNetwork ?? false, log });
  }
  // Post IDs final in the shard, or a media item's seqs whose URL is final.
  const progress = (): RangeSet => (media ? mediaFinished(dir, item.urls ?? []) : finishedIn(dir, item.ranges, { waitForMedia: !item.media.collect }));
  // A post item of a project that collects media reports them before (or with) their IDs.
  const reporter = !media && item.media.collect ? new MediaReporter({ client, leaseId: item.leaseId, dir, inline: item.media.inline, scope: reportScope(item, profile, opts) }) : undefined;
  let finished = progress();
  let heartbeatError: Error | undefined;
  const heartbeatMs = opts.heartbeatMs ?? Math.min(30_000, Math.max(1000, (item.leaseSecs * 1000) / 3));
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let beating: Promise<void> = Promise.resolve();
  const beat = (): void => {
    const snapshot = media || !reporter ? progress() : finished;
    beating = beating.then(async () => {
      try {
        if (reporter) await reporter.report(snapshot);
        else await client.heartbeat(item.leaseId, snapshot);
      } catch (err) {
        if (err instanceof TrackerRequestError) {
          // The tracker took the item back (lease expired, ban): stop working on it.
          log.log('warn', `tracker refused the heartbeat for item ${item.id}: ${errorMessage(err)}; stopping this item`);
          heartbeatError = err;
          controller.abort(err);
        } else {
          log.log('warn', `heartbeat failed (${errorMessage(err)}); will try again`);
        }
      }
    });
  };
  const timer = setInterval(beat, heartbeatMs);
  let diskFull = false;
  // The disk check is asynchronous: one that answers after the crawl ended must not abort the item.
  let crawling = true;
  const caps = opts.caps;
  await caps?.itemStarted(dir);
  const diskTimer = caps
    ? setInterval(() => {
        void caps.diskFull().then((full) => {
          if (!full || controller.signal.aborted || !crawling) return;
          diskFull = true;
          controller.abort(new Error('--max-disk reached'));
        }, () => undefined);
      }, 250)
    : undefined;
  let counts: Record<string, number> = {};
  try {
    const result = await runCrawl({
      profile,
      // A media item has no IDs: the crawl fetches the URLs queued in its shard, as media left by an earlier run.
      ranges: media ? new RangeSet() : item.ranges,
      ...(reporter ? { inlineMedia: item.media.inline } : {}),
      outDir: dir,
      ...pickCrawlFlags(opts),
      node: opts.nodeName,
      logger: opts.logger,
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      signal: controller.signal,
      onCommitted: (ids) => {
        finished = finished.union(ids.map((id) => ({ start: id, end: id })));
      },
    });
    counts = { ...result.counts };
  } finally {
    crawling = false;
    clearInterval(timer);
    clearInterval(diskTimer);
    opts.signal?.removeEventListener('abort', onAbort);
    await beating;
    await caps?.itemFinished();
  }
  if (heartbeatError) return { interrupted: false, finished, counts: {} };
  // Stopped at --max-disk with every ID already final: finish it normally (done, uploads).
  const finishedAnyway = diskFull && !opts.signal?.aborted && !media && item.ranges.subtract(progress()).isEmpty;
  if (controller.signal.aborted && !finishedAnyway) {
    if (media) counts = mediaItemCounts(dir);
    // Ctrl-C: the release may name only IDs whose media the tracker holds.
    if (!reporter) return { interrupted: true, finished: progress(), counts, diskFull };
    await reporter.report(finished).catch((err: unknown) => log.log('warn', `could not report the media of item ${item.id} (${errorMessage(err)})`));
    return { interrupted: true, finished: reporter.acked, counts, diskFull };
  }
  finished = progress();
  if (reporter) {
    // The last report names every final ID with its media. A tracker that is away is waited out
    // (it holds the lease while it is down, and gives live leases their time back on restart); a
    // stop while waiting releases only what the tracker acknowledged, as Ctrl-C above does.
    for (let attempt = 1; ; attempt++) {
      try {
        await reporter.report(finished);
        break;
      } catch (err) {
        if (err instanceof TrackerRequestError) {
          log.log('warn', `tracker refused the media report for item ${item.id}: ${errorMessage(err)}; stopping this item`);
          return { interrupted: false, finished, counts };
        }
        if (!(err instanceof TrackerUnavailableError)) throw err;
        if (!opts.signal?.aborted) {
          const waitMs = backoffMs(attempt, { baseMs: opts.uploadRetryBaseMs ?? 15_000, maxMs: 600_000, jitter: 'none' });
          log.log('warn', `could not report the media of item ${item.id} (${errorMessage(err)}); trying again in ${Math.max(1, Math.round(waitMs / 1000))} s`);
          await sleep(waitMs, undefined, opts.signal ? { signal: opts.signal } : undefined).catch(() => undefined);
        }
        if (opts.signal?.aborted) return { interrupted: true, finished: reporter.acked, counts };
      }
    }
  }
  const left = item.ranges.subtract(finished);
  if (media) counts = mediaItemCounts(dir);
  if (!left.isEmpty) {
    // Some IDs failed (retries exhausted): hand them back for another try, keep what is final.
    // Incomplete IDs (a capture missing) are not finished either: they go back with the failed ones.
    const why = media ? `${counts.failed ?? 0} media URLs failed` : [...shardFailureReasons(dir, 3), ...shardIncompleteReasons(dir, 3).reasons.map((x) => ({ ...x, reason: `incomplete: ${x.reason}` }))].map((x) => `${x.count} × ${x.reason}`).join('; ');
    // IDs that answered 404 are reported as a done reports them: a followed project asks again for those near its live edge (issue 21 §1).
    const missing = !media && (counts.missing ?? 0) > 0 ? missingIn(dir, item.ranges) : undefined;
    const r = await client.fail(item.leaseId, `${left.size} IDs failed after all retries${why ? `; most common: ${why}` : ''}`, finished, media ? mediaFailures(dir, item.urls ?? []) : undefined, missing ? { missing } : {});
    log.log('warn', `item ${item.id}: ${left.size} IDs failed${why ? ` (${why})` : ''}; returned ${r.remaining.format()} to the tracker`);
    return { interrupted: false, finished, counts };
  }
  const manifest = await readManifest(dir);
  const warcs = (manifest?.warcs ?? []).map(({ name, size, sha256 }) => {
    // The node's own shard.json, written by this crawl: an entry without them was edited by hand.
    if (size === undefined || sha256 === undefined) throw new InputError(`${manifestPath(dir)}: ${name} has no size or sha256`, { code: 'E_MANIFEST' });
    return { name, size, sha256 };
  });
  const stats = {
    counts: { archived: counts.archived ?? 0, missing: counts.missing ?? 0, gone: counts.gone ?? 0, restricted: counts.restricted ?? 0, failed: counts.failed ?? 0 },
    bytes: warcs.reduce((n, w) => n + w.size, 0),
    warcs,
  };
  // With uploads through the tracker, the WARCs and shard.json go up first; an outage of the
  // tracker or the storage is waited out with the lease kept. A stale lease means the tracker
  // already gave the remainder to someone else: our shard keeps what it has.
  // IDs that answered 404: a followed project asks again for those near its live edge (issue 21 §1).
  const missing = !media && stats.counts.missing > 0 ? missingIn(dir, item.ranges) : undefined;
  const outcome = await uploadThenDoneWithRetry({
    client,
    item,
    dir,
    stats,
    ...(missing ? { missing } : {}),
    log,
    finished,
    heartbeatMs,
    ...(opts.uploadRetryBaseMs !== undefined ? { baseWaitMs: opts.uploadRetryBaseMs } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (outcome === 'lease-lost') return { interrupted: false, finished, counts };
  // Accepted with uploads configured: the tracker found every WARC in the bucket (size, sha256).
  if (item.upload) await markUploaded(dir, warcs);
  log.log('info', `item ${item.id} done: ${Object.entries(stats.counts).map(([k, v]) => `${k} ${v}`).join(', ')}; ${warcs.length} WARCs`);
  return { interrupted: false, finished, counts };
}

/** A media item's URLs in the done stats' terms: fetched ones archived, refused ones restricted. */
function mediaItemCounts(dir: string): Record<string, number> {
  const c = mediaCounts(dir);
  return { archived: c.done ?? 0, missing: 0, gone: 0, restricted: c.skipped ?? 0, failed: c.failed ?? 0 };
}

/** The hosts a post item may report media on: the tracker's list (older trackers: the profile's scope), as this node checks them. */
function reportScope(item: TrackerItem, profile: { scopeHosts: string[] }, opts: NodeOptions): ScopeGuard {
  const allowPrivateNetwork = opts.allowPrivateNetwork ?? false;
  try {
    return new ScopeGuard({ hosts: item.media.hosts ?? profile.scopeHosts, allowPrivateNetwork });
  } catch {
    return new ScopeGuard({ hosts: profile.scopeHosts, allowPrivateNetwork }); // a host entry this node cannot read
  }
}
