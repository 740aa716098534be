import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError, LifeboatError, StorageError, errorMessage } from '../../config/errors.js';
import type { Logger } from '../../config/logger.js';
import type { Profile } from '../../config/profile.js';
import { checkShardOut } from '../../storage/shard/shard-dir.js';
import { acquireDirLock } from '../../storage/shard/dir-lock.js';
import { ShardDb, type IdStatus } from '../../storage/shard/shard-db.js';
import { writeManifest } from '../../storage/shard/shard-manifest.js';
import { describeWarc, repairOpenWarcs } from '../../storage/warc/warc-repair.js';
import { fetchesInline, partSettings, resolveCrawlSettings, type CrawlFlags, type CrawlSettings } from '../../config/crawl-settings.js';
import { crawlPart } from './crawl-part.js';
import type { IdTrace } from './capture-plan.js';
import { CrawlStats } from '../fetch/crawl-stats.js';
import { crawlInWorkers } from './crawl-workers.js';
import { createCodec, type IdCodec } from '../../config/id-codec.js';
import { RangeSet } from '../../config/id-ranges.js';
import { checkCrawlScope } from '../fetch/scope-preflight.js';
import { SOFTWARE } from '../../config/version.js';
import { shardDbPath, warcsDir } from '../../storage/shard/layout.js';

/** A run: the flags (resolved once into CrawlSettings with the profile) and what is the run's own. */
export interface CrawlOptions extends CrawlFlags {
  profile: Profile;
  ranges: RangeSet;
  outDir: string;
  logger: Logger;
  signal?: AbortSignal;
  onProgress?: (stats: CrawlStats) => void;
  progressIntervalMs?: number;
  /** Called after each group commit with the IDs that became final (the node loop reports them). */
  onCommitted?: (ids: number[]) => void;
  /** Called with what happened to each ID, capture by capture (`lifeboat probe`); with one worker only. */
  onTrace?: (trace: IdTrace) => void;
  /**
   * IDs whose `missing` is asked again (issue 21 §1): those of them the shard holds as `missing`
   * are made not final before the run (a live edge's recheck, `crawl --recheck missing`).
   */
  recheckMissing?: RangeSet;
  /** IDs to report back in `CrawlResult.missing` if they are `missing` after the run (the live edge's). */
  watchMissing?: RangeSet;
}

export interface CrawlResult {
  stats: CrawlStats;
  counts: Record<IdStatus, number>;
  /** IDs of the shard whose status is final but that miss a capture (retried by the next run). */
  incomplete: number;
  aborted: boolean;
  /** The IDs of `watchMissing` that are `missing` after the run. */
  missing: number[];
  /** How many `missing` IDs `recheckMissing` made not final. */
  reopened: number;
}

/**
 * The crawl loop (ARCHITECTURE.md "One ID"): frontier → captures in profile order → WARC → extraction →
 * media queue → group commit. One call is one run over one shard directory; running it again
 * on the same directory resumes.
 */
export async function runCrawl(opts: CrawlOptions): Promise<CrawlResult> {
  const { profile, ranges, outDir, logger, signal, onProgress, progressIntervalMs, onCommitted, onTrace, recheckMissing, watchMissing, ...flags } = opts;
  if (onTrace && (flags.workers ?? 1) > 1) throw new InputError('a crawl traced ID by ID runs on one worker', { code: 'E_CRAWL_OPTION' });
  const settings = resolveCrawlSettings(profile, flags);
  // Refused before the directory is created: a profile whose every fetch would be refused.
  await checkCrawlScope(profile, { allowPrivateNetwork: settings.allowPrivateNetwork });
  await checkShardOut(opts.outDir);
  try {
    await mkdir(warcsDir(opts.outDir), { recursive: true });
  } catch (err) {
    throw new StorageError(`cannot use the output directory ${opts.outDir}: ${errorMessage(err)}`, { code: 'E_OUT_DIR', cause: err });
  }
  // One writer per shard (issue 10 §2): a second crawl or node on this directory stops here,
  // before it touches the live .open WARC. --workers threads write under this one lock.
  const lock = acquireDirLock(opts.outDir, 'crawl');
  try {
    return await crawlLocked(settings, opts);
  } finally {
    lock.release();
  }
}

async function crawlLocked(settings: CrawlSettings, opts: CrawlOptions): Promise<CrawlResult> {
  const { profile, outDir, logger } = opts;
  const log = logger.child('crawl');
  const codec: IdCodec = createCodec(profile.codec);
  const warcDir = warcsDir(outDir);
  const spoolDir = join(outDir, 'tmp');
  try {
    await rm(spoolDir, { recursive: true, force: true });
    await mkdir(spoolDir, { recursive: true });
  } catch (err) {
    throw new StorageError(`cannot use the output directory ${outDir}: ${errorMessage(err)}`, { code: 'E_OUT_DIR', cause: err });
  }
  const db = new ShardDb(shardDbPath(outDir));
  const prior = db.getMeta('profile');
  if (prior && prior !== profile.name) {
    db.close();
    throw new InputError(`${outDir} holds a shard of profile "${prior}", not "${profile.name}": use another --out`, { code: 'E_SHARD_PROFILE' });
  }
  db.setMeta('profile', profile.name);
  db.setMeta('codec', codec.name);
  const known = db.getMeta('ranges');
  const allRanges = known ? opts.ranges.union(RangeSet.fromJSON(JSON.parse(known))).toJSON() : opts.ranges.toJSON();
  db.setMeta('ranges', JSON.stringify(allRanges));

  for (const r of await repairOpenWarcs(warcDir)) {
    log.log('warn', `repaired ${r.name} after a crash: cut ${r.cutBytes} bytes${r.removed ? ' (no records left; removed)' : ''}`, { ...r });
    if (!r.removed) db.recordWarc(r, 'closed');
  }
  // A kill between a file's rename and its row leaves a closed file the DB still calls open.
  const recorded = new Map(db.warcs().map((w) => [w.name, w.state]));
  for (const name of (await readdir(warcDir)).filter((n) => n.endsWith('.warc.gz'))) {
    if (recorded.get(name) === 'closed') continue;
    db.recordWarc(await describeWarc(join(warcDir, name), name), 'closed');
  }
  const requeued = db.requeueFailedUrls();
  const reopened = opts.recheckMissing ? db.reopenMissing(opts.recheckMissing.ranges) : 0;
  if (reopened > 0) log.log('info', `asking again for ${reopened} IDs that answered missing`, { reopened });
  const runId = db.startRun({ profile: profile.name, ranges: opts.ranges.format(codec), node: settings.node });

  // Media an earlier run left queued: fetched first (read once here, before any part can add more).
  const queuedMedia = db.queuedUrls(Number.MAX_SAFE_INTEGER).filter(({ url }) => fetchesInline(settings, url)).map(({ url, postId }) => ({ url, postId }));
  const stats = new CrawlStats();
  stats.total = opts.ranges.subtract(new RangeSet(db.finalRanges())).size;
  const workers = settings.workers;
  if (opts.ranges.isEmpty) {
    // No IDs (a node's media item): only the media queued in the shard are fetched.
    stats.mediaTotal = queuedMedia.length;
    log.log('info', `fetching ${queuedMedia.length} media URLs into ${outDir}`, { requeued_media: requeued });
  } else {
    log.log('info', `crawling ${stats.total} IDs of ${opts.ranges.size} requested (${opts.ranges.format(codec)}) into ${outDir}${workers > 1 ? ` with ${workers} workers` : ''}`, {
      requeued_media: requeued,
    });
  }
  const progressTimer = opts.onProgress ? setInterval(() => opts.onProgress!(stats), opts.progressIntervalMs ?? 1000) : undefined;
  let fatalError: Error | undefined;
  let aborted = false;
  try {
    const result =
      workers === 1
        ? await crawlPart({
            settings,
            ranges: opts.ranges,
            outDir,
            partition: { index: 0, count: 1 },
            queuedMedia,
            stats,
            logger,
            signal: opts.signal ?? new AbortController().signal,
            ...(opts.onCommitted ? { onCommitted: opts.onCommitted } : {}),
            ...(opts.onTrace ? { onTrace: opts.onTrace } : {}),
          })
        : await crawlInWorkers({
            settings: partSettings(settings, workers),
            count: workers,
            ranges: opts.ranges,
            outDir,
            queuedMedia,
            stats,
            logger,
            ...(opts.signal ? { signal: opts.signal } : {}),
            ...(opts.onCommitted ? { onCommitted: opts.onCommitted } : {}),
          });
    aborted = result.aborted;
  } catch (err) {
    fatalError = err instanceof Error ? err : new Error(String(err));
  } finally {
    if (progressTimer) clearInterval(progressTimer);
  }
  const counts = db.counts();
  const incomplete = db.incompleteCount();
  await writeManifest(outDir, {
    format: 'lifeboat-shard-1',
    software: SOFTWARE,
    profile: profile.name,
    node: settings.node,
    ranges: JSON.parse(db.getMeta('ranges') ?? '[]').map((r: [number, number]) => (r[0] === r[1] ? codec.encode(r[0]) : `${codec.encode(r[0])}-${codec.encode(r[1])}`)).join(','),
    counts: { ...counts, ...Object.fromEntries(Object.entries(db.urlCounts()).map(([k, v]) => [`media_${k}`, v])) },
    warcs: db.warcs().filter((w) => w.state === 'closed').map(({ name, size, sha256, records }) => ({ name, size, sha256, records })),
    updated_at: new Date().toISOString(),
  }).catch((err) => {
    fatalError ??= new StorageError(`cannot write ${outDir}/shard.json: ${errorMessage(err)}`, { cause: err });
  });
  db.endRun(runId, stats.snapshot());
  const missing = opts.watchMissing ? db.missingIn(opts.watchMissing.ranges) : [];
  db.close();
  await rm(spoolDir, { recursive: true, force: true }).catch(() => undefined);
  if (fatalError) throw fatalError instanceof LifeboatError ? fatalError : new StorageError(errorMessage(fatalError), { cause: fatalError });
  return { stats, counts, incomplete, aborted, missing, reopened };
}
