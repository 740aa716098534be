import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage, InputError } from '../config/errors.js';
import type { CrawlFlags } from '../config/crawl-settings.js';
import type { Logger } from '../config/logger.js';
import { loadProfile } from '../config/profile.js';
import { acquireDirLock } from '../storage/dir-lock.js';
import { ShardDb } from '../storage/shard-db.js';
import { readManifest } from '../storage/shard-manifest.js';
import { shardFailureReasons } from '../storage/status.js';
import { TrackerClient, type TrackerItem } from '../tracker/client.js';
import type { MediaUrl } from '../tracker/api-types.js';
import type { ItemKind } from '../config/media-kinds.js';
import { TrackerRequestError } from '../tracker/errors.js';
import { runCrawl } from './crawl.js';
import { MediaReporter, mediaFinished, mediaCounts, queueMediaItem } from './node-media.js';
import { ScopeGuard } from './scope-guard.js';
import { uploadThenDoneWithRetry } from './node-upload.js';
import { type NodeCaps, markUploaded } from './node-caps.js';
import type { CrawlStats } from './crawl-stats.js';
import { RangeSet } from '../config/id-ranges.js';
import { VERSION } from '../config/version.js';

/**
 * The volunteer node (DESIGN.md §8): register once, then claim → crawl with the standalone
 * engine → heartbeat finished sub-ranges → done (or give back what is left) → claim again.
 * Each item is crawled into its own shard directory `DIR/items/ITEM`; `DIR/node.json` keeps
 * the token and the lease in hand, so a node killed with -9 and started again continues its
 * item on the same lease (when the lease has not expired) and never redoes what is final.
 */
/** A node's own options; the crawl flags it passes on to each item's crawl are the crawl settings' own (config/crawl-settings.ts). */
export interface NodeOptions extends Pick<CrawlFlags, 'concurrency' | 'allowPrivateNetwork' | 'contact' | 'maxBandwidthBytesPerSec'> {
  trackerUrl: string;
  nick: string;
  outDir: string;
  logger: Logger;
  nodeName: string;
  baseUrl?: string;
  signal?: AbortSignal;
  /** How often finished sub-ranges are reported (and the lease extended). Default: a third of the lease, at most 30 s. */
  heartbeatMs?: number;
  /** Stop after this many items (tests, `--items`). */
  maxItems?: number;
  /** Give up when the tracker says "later" and `exitWhenIdle` is set, instead of waiting. */
  exitWhenDone?: boolean;
  onProgress?: (stats: CrawlStats) => void;
  client?: TrackerClient;
  /** Claim only this kind of item (`--only posts|media`); default either, post items first. */
  only?: ItemKind;
  /** First wait after an upload or `done` failed for a passing reason; doubles up to 10 min. Default 15 s. */
  uploadRetryBaseMs?: number;
  /** `--max-disk`, `--max-hours` (issue 14): checked before each claim and, for the disk, during an item. */
  caps?: NodeCaps;
}

interface NodeState {
  tracker: string;
  nick: string;
  token: string;
  /** false while the registration with `token` is not known to have reached the tracker. */
  registered?: boolean;
  current?: {
    itemId: number;
    leaseId: string;
    ranges: [number, number][];
    profile: string;
    leaseSecs: number;
    /** Absent in node.json written before issue 13: a post item that fetched its media itself. */
    kind?: ItemKind;
    urls?: MediaUrl[];
    media?: TrackerItem['media'];
  };
}

export interface NodeResult {
  items: number;
  counts: Record<string, number>;
  interrupted: boolean;
}

async function readState(path: string): Promise<NodeState | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as NodeState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InputError(`${path} is not valid node state (${errorMessage(err)}); move it away to register afresh`, { code: 'E_NODE_STATE', cause: err });
  }
}

async function writeState(path: string, state: NodeState): Promise<void> {
  await writeFile(`${path}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  await rename(`${path}.tmp`, path);
}

/** IDs of `ranges` that are final in the shard at `dir`. */
function finishedIn(dir: string, ranges: RangeSet): RangeSet {
  let db: ShardDb;
  try {
    db = new ShardDb(join(dir, 'shard.sqlite'));
  } catch {
    return new RangeSet();
  }
  try {
    return new RangeSet(db.finalRanges()).intersect(ranges);
  } finally {
    db.close();
  }
}

/** The tracker's URL, or an InputError saying how to write it (`127.0.0.1:8070` has no scheme). */
function checkTrackerUrl(raw: string): void {
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) {
    throw new InputError(`--tracker ${JSON.stringify(raw)} is not an http(s) URL: write it with its scheme, e.g. http://${raw.replace(/^[a-z]+:\/\//i, '')}`, {
      code: 'E_USAGE',
    });
  }
}

export async function runNode(opts: NodeOptions): Promise<NodeResult> {
  checkTrackerUrl(opts.trackerUrl); // before anything is created
  await mkdir(join(opts.outDir, 'items'), { recursive: true });
  // One node per --out (issue 10 §2): two would share node.json's lease and the item shards.
  const lock = acquireDirLock(opts.outDir, 'node');
  try {
    return await nodeLocked(opts);
  } finally {
    lock.release();
  }
}

async function nodeLocked(opts: NodeOptions): Promise<NodeResult> {
  const log = opts.logger.child('node');
  const statePath = join(opts.outDir, 'node.json');
  let state = await readState(statePath);
  if (state && (state.tracker !== opts.trackerUrl || state.nick !== opts.nick)) {
    throw new InputError(`${opts.outDir} belongs to nick ${state.nick} at ${state.tracker}: use another --out`, { code: 'E_NODE_STATE' });
  }
  const client =
    opts.client ??
    new TrackerClient({
      baseUrl: opts.trackerUrl,
      clientVersion: VERSION,
      ...(state ? { token: state.token } : {}),
      // Silence while the tracker is down looks like a hang: say each failed attempt.
      onRetry: (r) =>
        log.log('warn', `tracker ${opts.trackerUrl}${r.path}: ${r.problem}; attempt ${r.attempt} of ${r.maxAttempts} failed, next try in ${Math.max(1, Math.round(r.waitMs / 1000))} s`, { ...r }),
    });
  if (!state || state.registered === false) {
    // The token is chosen and saved first: a node killed before it saved the answer registers
    // again with the same token, which the tracker recognises (a nick has one owner).
    if (!state) {
      state = { tracker: opts.trackerUrl, nick: opts.nick, token: randomBytes(32).toString('base64url'), registered: false };
      await writeState(statePath, state);
    }
    let reg;
    try {
      reg = await client.register(opts.nick, { token: state.token, ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (err) {
      // Ctrl-C while the tracker is still unreachable: nothing was claimed, nothing to give back.
      if (opts.signal?.aborted) return { items: 0, counts: { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0 }, interrupted: true };
      throw err;
    }
    state = { tracker: opts.trackerUrl, nick: opts.nick, token: reg.token };
    await writeState(statePath, state);
    log.log('info', `registered as ${reg.nick} (node ${reg.nodeId})`);
  }
  const counts: Record<string, number> = { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0 };
  let items = 0;
  let idleWaitMs = 1000;

  while (!opts.signal?.aborted && (opts.maxItems === undefined || items < opts.maxItems)) {
    let item: TrackerItem;
    if (state.current) {
      const c = state.current;
      item = {
        id: c.itemId,
        kind: c.kind ?? 'posts',
        ...(c.urls ? { urls: c.urls } : {}),
        media: c.media ?? { collect: false, inline: [] },
        leaseId: c.leaseId,
        ranges: RangeSet.fromJSON(c.ranges),
        leaseExpiresAt: new Date(0),
        leaseSecs: c.leaseSecs,
        profile: c.profile,
        upload: null,
      };
      // Still ours? A heartbeat with what the shard already finished tells (and extends the lease).
      // A post item whose media go to the tracker names no IDs here: their media are reported first, by crawlItem.
      const itemDir = join(opts.outDir, 'items', String(item.id));
      const resumed = item.kind === 'media' ? mediaFinished(itemDir, item.urls ?? []) : item.media.collect ? new RangeSet() : finishedIn(itemDir, item.ranges);
      try {
        await client.heartbeat(item.leaseId, resumed);
        log.log('info', `resuming item ${item.id} on lease ${item.leaseId}`);
      } catch (err) {
        if (!(err instanceof TrackerRequestError)) throw err;
        log.log('warn', `the lease on item ${item.id} is gone (${errorMessage(err)}); claiming anew`);
        delete state.current;
        await writeState(statePath, state);
        continue;
      }
    } else {
      const capped = await opts.caps?.beforeClaim();
      if (capped) {
        log.log('info', `${capped}; not claiming more work`);
        break;
      }
      let answer;
      try {
        answer = await client.tryClaim({ ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.only ? { only: opts.only } : {}) });
      } catch (err) {
        if (opts.signal?.aborted) break;
        if (err instanceof TrackerRequestError) throw err;
        log.log('warn', `tracker unreachable: ${errorMessage(err)}; retrying in ${Math.round(idleWaitMs / 1000)} s`);
        await sleep(idleWaitMs, undefined, opts.signal ? { signal: opts.signal } : undefined).catch(() => undefined);
        idleWaitMs = Math.min(idleWaitMs * 2, 60_000);
        continue;
      }
      idleWaitMs = 1000;
      if (answer.kind === 'done') {
        log.log('info', 'the tracker has no work left');
        break;
      }
      if (answer.kind === 'later') {
        if (opts.exitWhenDone) break;
        log.log('info', `the tracker says come back in ${answer.retryAfterSecs} s`);
        await sleep(answer.retryAfterSecs * 1000, undefined, opts.signal ? { signal: opts.signal } : undefined).catch(() => undefined);
        continue;
      }
      item = answer.item;
      state.current = {
        itemId: item.id,
        leaseId: item.leaseId,
        ranges: item.ranges.toJSON(),
        profile: item.profile,
        leaseSecs: item.leaseSecs,
        kind: item.kind,
        ...(item.urls ? { urls: item.urls } : {}),
        media: item.media,
      };
      await writeState(statePath, state);
      const what = item.kind === 'media' ? `${item.urls?.length ?? 0} media URLs` : item.ranges.format();
      log.log('info', `claimed ${item.kind === 'media' ? 'media ' : ''}item ${item.id}: ${what} (lease ${item.leaseSecs} s)`);
    }

    const result = await crawlItem(item, opts, client, log);
    if (result.interrupted && result.diskFull) {
      // At --max-disk mid-item: the rest goes back; the next claim check frees room or stops.
      await client.release(item.leaseId, result.finished).catch((err: unknown) => log.log('warn', `could not release item ${item.id} (${errorMessage(err)}); its lease will expire`));
      log.log('info', `--max-disk reached during item ${item.id}: ${result.finished.size} IDs final, the rest given back`);
      delete state.current;
      await writeState(statePath, state);
      continue;
    }
    if (result.interrupted) {
      // Ctrl-C: report what is final and give the rest back, so nobody waits for the lease.
      try {
        await client.release(item.leaseId, result.finished);
        delete state.current;
        await writeState(statePath, state);
        log.log('info', `released item ${item.id}; ${result.finished.size} IDs were finished`);
      } catch (err) {
        log.log('warn', `could not release item ${item.id} (${errorMessage(err)}); its lease will expire and the remainder return to the queue`);
      }
      return { items, counts, interrupted: true };
    }
    // A media item's URLs are not post IDs: they count apart (media_archived, media_failed, …).
    for (const [k, v] of Object.entries(result.counts)) {
      const key = item.kind === 'media' ? `media_${k}` : k;
      counts[key] = (counts[key] ?? 0) + v;
    }
    items++;
    delete state.current;
    await writeState(statePath, state);
  }
  return { items, counts, interrupted: !!opts.signal?.aborted };
}

async function crawlItem(
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
  const progress = (): RangeSet => (media ? mediaFinished(dir, item.urls ?? []) : finishedIn(dir, item.ranges));
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
    const snapshot = media ? progress() : finished;
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
      node: opts.nodeName,
      logger: opts.logger,
      ...(opts.allowPrivateNetwork ? { allowPrivateNetwork: true } : {}),
      ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
      ...(opts.contact ? { contact: opts.contact } : {}),
      ...(opts.maxBandwidthBytesPerSec ? { maxBandwidthBytesPerSec: opts.maxBandwidthBytesPerSec } : {}),
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
    // Ctrl-C: the release may name only IDs whose media the tracker holds.
    if (!reporter) return { interrupted: true, finished, counts, diskFull };
    await reporter.report(finished).catch((err: unknown) => log.log('warn', `could not report the media of item ${item.id} (${errorMessage(err)})`));
    return { interrupted: true, finished: reporter.acked, counts, diskFull };
  }
  finished = progress();
  if (reporter) {
    try {
      await reporter.report(finished);
    } catch (err) {
      if (!(err instanceof TrackerRequestError)) throw err;
      log.log('warn', `tracker refused the media report for item ${item.id}: ${errorMessage(err)}; stopping this item`);
      return { interrupted: false, finished, counts };
    }
  }
  const left = item.ranges.subtract(finished);
  if (media) counts = mediaItemCounts(dir);
  if (!left.isEmpty) {
    // Some IDs failed (retries exhausted): hand them back for another try, keep what is final.
    const why = media ? `${counts.failed ?? 0} media URLs failed` : shardFailureReasons(dir, 3).map((x) => `${x.count} × ${x.reason}`).join('; ');
    const r = await client.fail(item.leaseId, `${left.size} IDs failed after all retries${why ? `; most common: ${why}` : ''}`, finished);
    log.log('warn', `item ${item.id}: ${left.size} IDs failed${why ? ` (${why})` : ''}; returned ${r.remaining.format()} to the tracker`);
    return { interrupted: false, finished, counts };
  }
  const manifest = await readManifest(dir);
  const warcs = (manifest?.warcs ?? []).map(({ name, size, sha256 }) => {
    // The node's own shard.json, written by this crawl: an entry without them was edited by hand.
    if (size === undefined || sha256 === undefined) throw new InputError(`${join(dir, 'shard.json')}: ${name} has no size or sha256`, { code: 'E_MANIFEST' });
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
  const outcome = await uploadThenDoneWithRetry({
    client,
    item,
    dir,
    stats,
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
