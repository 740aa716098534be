import { mkdir, readdir, rm } from 'node:fs/promises';
import { setMaxListeners } from 'node:events';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { InputError, LifeboatError, ScopeError, StorageError, errorMessage } from '../config/errors.js';
import type { Logger } from '../config/logger.js';
import { fillTemplate, type CaptureSpec, type Profile } from '../config/profile.js';
import type { Capture } from '../storage/capture.js';
import { bodyLength } from '../storage/capture.js';
import { ShardDb, type CaptureRow, type IdStatus } from '../storage/shard-db.js';
import { writeManifest } from '../storage/shard-manifest.js';
import { describeWarc, repairOpenWarcs } from '../storage/warc-repair.js';
import { WarcWriter, type RevisitTarget } from '../storage/warc-writer.js';
import { CrawlStats } from './crawl-stats.js';
import { extract, resolveUrls } from './extract.js';
import { Fetcher } from './fetcher.js';
import { Frontier } from './frontier.js';
import { HostLimiter } from './host-limiter.js';
import { HttpCapturer, releaseBody } from './http-capture.js';
import { createCodec, type IdCodec } from './id-codec.js';
import { RangeSet } from './id-ranges.js';
import { RobotsPolicy } from './robots.js';
import { ScopeGuard } from './scope-guard.js';
import { SOFTWARE, userAgent } from './version.js';

export interface CrawlOptions {
  profile: Profile;
  ranges: RangeSet;
  outDir: string;
  node: string;
  logger: Logger;
  allowPrivateNetwork?: boolean;
  concurrency?: number;
  ratePerSec?: number;
  warcSizeBytes?: number;
  contact?: string;
  signal?: AbortSignal;
  onProgress?: (stats: CrawlStats) => void;
  progressIntervalMs?: number;
  /** Group commit: at most this long between a record's write and its ID becoming final. */
  commitIntervalMs?: number;
  /** Called after each group commit with the IDs that became final (the node loop reports them). */
  onCommitted?: (ids: number[]) => void;
  backoffBaseMs?: number;
  /** Browser contexts (pages at once) for `render: browser` captures. Default 2. */
  browserConcurrency?: number;
  /** Chromium executable (the CLI resolves --chromium / LIFEBOAT_CHROMIUM). Default /usr/bin/chromium. */
  chromiumPath?: string;
  /** Store a PNG screenshot of each browser-captured page as a `resource` record. */
  screenshots?: boolean;
  /** Pages a browser context serves before it is replaced. Default 50. */
  browserPagesPerContext?: number;
}

export interface CrawlResult {
  stats: CrawlStats;
  counts: Record<IdStatus, number>;
  aborted: boolean;
}

/** The shard's own record of what the run found for one ID or URL, applied in one transaction. */
type CommitOp = () => void;

class GroupCommit {
  #ops: CommitOp[] = [];
  #finalIds: number[] = [];
  #running: Promise<void> = Promise.resolve();
  readonly #pendingRevisits = new Map<string, RevisitTarget>();
  constructor(
    private readonly writer: WarcWriter,
    private readonly db: ShardDb,
    private readonly onCommitted: ((ids: number[]) => void) | undefined,
  ) {}

  add(op: CommitOp, finalId?: number): void {
    this.#ops.push(op);
    if (finalId !== undefined) this.#finalIds.push(finalId);
  }

  get size(): number {
    return this.#ops.length;
  }

  rememberRevisit(url: string, digest: string, target: RevisitTarget): void {
    this.#pendingRevisits.set(`${digest} ${url}`, target);
  }

  lookupRevisit(url: string, digest: string): RevisitTarget | undefined {
    return this.#pendingRevisits.get(`${digest} ${url}`) ?? this.db.findRevisitTarget(url, digest);
  }

  /** fsync the WARC, then make the batch final in one transaction. */
  commit(): Promise<void> {
    this.#running = this.#running.then(async () => {
      if (this.#ops.length === 0) return;
      const ops = this.#ops;
      const ids = this.#finalIds;
      this.#ops = [];
      this.#finalIds = [];
      await this.writer.flush();
      this.db.transaction(() => {
        for (const op of ops) op();
      });
      this.#pendingRevisits.clear();
      if (ids.length > 0) this.onCommitted?.(ids);
    });
    return this.#running;
  }
}

function statusFor(profile: Profile, http: number): IdStatus | undefined {
  if (profile.status.archived.includes(http)) return 'archived';
  if (profile.status.missing.includes(http)) return 'missing';
  if (profile.status.gone.includes(http)) return 'gone';
  if (profile.status.restricted.includes(http)) return 'restricted';
  return undefined;
}

function fieldText(v: unknown): string | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

/**
 * The crawl loop (DESIGN.md §3): frontier → captures in profile order → WARC → extraction →
 * media queue → group commit. One call is one run over one shard directory; running it again
 * on the same directory resumes.
 */
export async function runCrawl(opts: CrawlOptions): Promise<CrawlResult> {
  const { profile, outDir, logger } = opts;
  const log = logger.child('crawl');
  const codec: IdCodec = createCodec(profile.codec);
  const warcDir = join(outDir, 'warcs');
  const spoolDir = join(outDir, 'tmp');
  try {
    await mkdir(warcDir, { recursive: true });
    await rm(spoolDir, { recursive: true, force: true });
    await mkdir(spoolDir, { recursive: true });
  } catch (err) {
    throw new StorageError(`cannot use the output directory ${outDir}: ${errorMessage(err)}`, { code: 'E_OUT_DIR', cause: err });
  }
  const stats = new CrawlStats();
  const db = new ShardDb(join(outDir, 'shard.sqlite'));
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
  const runId = db.startRun({ profile: profile.name, ranges: opts.ranges.format(codec), node: opts.node });

  const pol = profile.politeness;
  const concurrency = opts.concurrency ?? pol.concurrency;
  const guard = new ScopeGuard({ hosts: profile.scopeHosts, allowPrivateNetwork: opts.allowPrivateNetwork ?? false });
  const ua = userAgent(opts.contact);
  const capturer = new HttpCapturer({
    userAgent: ua,
    spoolDir,
    connector: guard.connector({ timeout: pol.connectTimeoutMs }),
    connectTimeoutMs: pol.connectTimeoutMs,
    headersTimeoutMs: pol.timeoutMs,
    idleTimeoutMs: pol.idleTimeoutMs,
    totalTimeoutMs: pol.totalTimeoutMs,
    maxBodyBytes: pol.maxBodyBytes,
    connections: Math.max(concurrency, pol.perHostConcurrency),
  });
  const robots = new RobotsPolicy({
    userAgent: 'lifeboat',
    mode: pol.robots,
    fetchRobots: async (url) => {
      guard.checkUrl(url);
      const c = await capturer.fetch({ url });
      try {
        const text = c.body.kind === 'buffer' ? c.body.data.toString('utf8') : '';
        return { status: c.status, body: text };
      } finally {
        await releaseBody(c.body);
      }
    },
  });
  const limiter = new HostLimiter({ ratePerSec: opts.ratePerSec ?? pol.ratePerSec, perHostConcurrency: pol.perHostConcurrency });
  const queue = new PQueue({ concurrency });
  const abort = new AbortController();
  // Every waiting request listens on this one signal: many listeners are expected, not a leak.
  setMaxListeners(0, abort.signal);
  const onOuterAbort = (): void => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const fetcher = new Fetcher({
    capturer,
    guard,
    robots,
    limiter,
    maxAttempts: pol.maxAttempts,
    maxRedirects: pol.maxRedirects,
    maxOutageMs: pol.maxOutageMs,
    signal: abort.signal,
    ...(opts.backoffBaseMs !== undefined ? { backoffBaseMs: opts.backoffBaseMs } : {}),
    events: {
      onThrottle: () => stats.throttles++,
      onRetry: () => stats.retries++,
    },
  });
  // Only profiles with `render: browser` captures get a browser pool (Chromium starts on first use);
  // playwright-core is loaded only then (loading it cost ~1.5 s of start-up for HTTP-only crawls).
  const browserMods = profile.captures.some((c) => c.render === 'browser')
    ? await Promise.all([import('./browser-pool.js'), import('./browser-fetcher.js'), import('./browser-capture.js')])
    : undefined;
  const browserPool = browserMods
    ? new browserMods[0].BrowserPool({
        ...(opts.chromiumPath ? { executablePath: opts.chromiumPath } : {}),
        contexts: opts.browserConcurrency ?? 2,
        ...(opts.browserPagesPerContext ? { pagesPerContext: opts.browserPagesPerContext } : {}),
        extraArgs: [browserMods[0].hostResolverRules(profile.scopeHosts)],
        userAgentSuffix: ua,
        logger,
      })
    : undefined;
  const browserFetcher = browserMods && browserPool
    ? new browserMods[1].BrowserFetcher({
        pool: browserPool,
        guard,
        robots,
        limiter,
        maxAttempts: pol.maxAttempts,
        pageTimeoutMs: pol.timeoutMs,
        maxBodyBytes: pol.maxBodyBytes,
        screenshots: opts.screenshots ?? false,
        signal: abort.signal,
        ...(opts.backoffBaseMs !== undefined ? { backoffBaseMs: opts.backoffBaseMs } : {}),
        events: { onThrottle: () => stats.throttles++, onRetry: () => stats.retries++ },
      })
    : undefined;

  let commits: GroupCommit;
  const closedWarcs: { name: string; size: number; sha256: string; records: number }[] = db.warcs().filter((w) => w.state === 'closed');
  const writer = new WarcWriter({
    dir: warcDir,
    prefix: profile.name,
    node: opts.node,
    maxFileBytes: opts.warcSizeBytes ?? 1024 ** 3,
    warcinfo: {
      software: SOFTWARE,
      'http-header-user-agent': ua,
      isPartOf: profile.name,
      description: profile.description,
      robots: pol.robots,
      hostname: opts.node,
      operator: opts.contact,
    },
    lookupRevisit: (url, digest) => commits.lookupRevisit(url, digest),
    onFileClosed: (w) => {
      db.recordWarc(w, 'closed');
      closedWarcs.push(w);
      stats.warcs++;
    },
    onFileOpened: (name) => db.recordWarc({ name, size: 0, sha256: '', records: 0 }, 'open'),
  });
  commits = new GroupCommit(writer, db, opts.onCommitted);
  const commitTimer = setInterval(() => void commits.commit().catch((err) => fatal(err)), opts.commitIntervalMs ?? 250);
  const progressTimer = opts.onProgress ? setInterval(() => opts.onProgress!(stats), opts.progressIntervalMs ?? 1000) : undefined;

  let fatalError: Error | undefined;
  const fatal = (err: unknown): void => {
    if (!fatalError) {
      fatalError = err instanceof Error ? err : new Error(String(err));
      log.log('error', `stopping: ${errorMessage(err)}`);
      abort.abort(fatalError);
    }
  };

  /** Writes every hop of a fetch; returns capture rows to commit. */
  const writeHops = async (hops: Capture[], name: string, postId: number | null): Promise<CaptureRow[]> => {
    const rows: CaptureRow[] = [];
    for (const hop of hops) {
      const written = await writer.writeCapture(hop);
      stats.records += 2;
      stats.bytes += written.request.length + written.response.length;
      if (!written.revisitOf) commits.rememberRevisit(hop.url, hop.payloadDigest, { recordId: written.response.recordId, url: hop.url, date: hop.fetchedAt.toISOString() });
      rows.push({
        postId,
        name,
        url: hop.url,
        status: hop.status,
        request: written.request,
        response: written.response,
        payloadDigest: hop.payloadDigest,
        fetchedAt: hop.fetchedAt.toISOString(),
        revisitOf: written.revisitOf?.recordId ?? null,
        contentType: hop.contentType ?? null,
        bodyBytes: bodyLength(hop.body),
      });
    }
    return rows;
  };

  const scheduleMedia = (url: string, postId: number | null, fresh: boolean): void => {
    if (fresh && !db.queueUrl(url, postId)) return;
    void queue.add(() => fetchMedia(url, postId), { priority: 1 }).catch(fatal);
  };

  const fetchMedia = async (url: string, postId: number | null): Promise<void> => {
    if (abort.signal.aborted) return;
    try {
      const outcome = await fetcher.fetch(url);
      const rows = await writeHops(outcome.hops, 'media', postId);
      for (const hop of outcome.hops) await releaseBody(hop.body);
      const last = outcome.hops[outcome.hops.length - 1]!;
      commits.add(() => {
        for (const row of rows) db.recordCapture(row);
        db.setUrlState(url, 'done', { attempts: outcome.attempts, httpStatus: last.status, lastError: outcome.stopped ?? null });
      });
      stats.mediaDone++;
    } catch (err) {
      if (abort.signal.aborted) return;
      if (err instanceof StorageError) throw err;
      const skipped = err instanceof ScopeError;
      if (skipped) stats.mediaSkipped++;
      else stats.mediaFailed++;
      commits.add(() => db.setUrlState(url, skipped ? 'skipped' : 'failed', { attempts: 1, lastError: errorMessage(err) }));
    }
  };

  const processId = async (id: number): Promise<void> => {
    if (abort.signal.aborted) return;
    const values: Record<string, string | undefined> = { id: codec.encode(id), base_url: profile.baseUrl };
    const fields: Record<string, unknown> = {};
    const rows: CaptureRow[] = [];
    const media: string[] = [];
    const related: string[] = [];
    let status: IdStatus | undefined;
    let httpStatus: number | null = null;
    let attempts = 0;
    let lastError: string | null = null;
    try {
      for (const [i, spec] of profile.captures.entries()) {
        if (i > 0 && spec.when === 'archived' && status !== 'archived') break;
        const outcome = await captureOne(spec, values, id);
        attempts += outcome.attempts;
        rows.push(...outcome.rows);
        if (outcome.error) {
          lastError = outcome.error;
          if (i === 0 || !outcome.skippable) status = 'failed';
          if (status === 'failed') break;
          continue;
        }
        if (i === 0) {
          httpStatus = outcome.status;
          status = statusFor(profile, outcome.status) ?? 'failed';
          if (status === 'failed') lastError = `unexpected HTTP ${outcome.status}${outcome.stopped ? ` (${outcome.stopped})` : ''}`;
          if (status === 'archived' && outcome.text !== undefined && profile.status.missingBodies.includes(outcome.text.trim())) status = 'missing';
        }
        if (status === 'archived' || i === 0) {
          Object.assign(fields, outcome.fields);
          for (const [k, v] of Object.entries(outcome.fields)) values[k] = fieldText(v);
          media.push(...outcome.media);
          related.push(...outcome.ids);
        }
      }
    } catch (err) {
      if (abort.signal.aborted) return;
      throw err;
    }
    if (abort.signal.aborted && status === undefined) return;
    const finalStatus: IdStatus = status ?? 'failed';
    const relatedIds: number[] = [];
    if (finalStatus === 'archived') {
      for (const ref of related) {
        try {
          const rid = codec.decode(ref);
          if (rid !== id && frontier.inScope(rid)) relatedIds.push(rid);
        } catch {
          // not an ID in this codec: ignore
        }
      }
    }
    const mediaUrls = finalStatus === 'archived' && profile.media.fetch ? media.slice(0, profile.media.maxPerPost) : [];
    commits.add(() => {
      for (const row of rows) db.recordCapture(row);
      db.recordOutcome({ id, status: finalStatus, httpStatus, attempts, lastError, ...(Object.keys(fields).length > 0 && finalStatus === 'archived' ? { fields } : {}) });
      for (const rid of relatedIds) if (!db.idState(rid)) db.addRelated(rid);
      stats.count(finalStatus);
    }, finalStatus === 'failed' ? undefined : id);
    for (const url of mediaUrls) scheduleMedia(url, id, true);
  };

  interface OneCapture {
    rows: CaptureRow[];
    attempts: number;
    status: number;
    error?: string;
    skippable?: boolean;
    stopped?: string;
    fields: Record<string, unknown>;
    media: string[];
    ids: string[];
    text: string | undefined;
  }

  const captureOne = async (spec: CaptureSpec, values: Record<string, string | undefined>, id: number): Promise<OneCapture> => {
    const none = { rows: [], attempts: 0, status: 0, fields: {}, media: [], ids: [], text: undefined };
    if (spec.render === 'browser' && browserFetcher) {
      // Every response the page loaded goes to the WARC; extraction runs on the rendered DOM.
      let pageUrl: string;
      try {
        pageUrl = fillTemplate(spec.urlTemplate, values);
      } catch (err) {
        return { ...none, error: `capture "${spec.name}": ${errorMessage(err)}`, skippable: true };
      }
      let got;
      try {
        got = await browserFetcher.fetch(pageUrl);
      } catch (err) {
        if (err instanceof StorageError || abort.signal.aborted || (err instanceof LifeboatError && err.policy === 'stop')) throw err;
        stats.errors++;
        return { ...none, attempts: 1, error: errorMessage(err), skippable: err instanceof ScopeError };
      }
      const page = got.result;
      const rows = await writeHops(page.captures, spec.name, id);
      if (page.screenshot) {
        const shot = await writer.writeRecord({ type: 'resource', url: `urn:screenshot:${page.finalUrl}`, contentType: 'image/png', data: page.screenshot });
        stats.records++;
        stats.bytes += shot.length;
      }
      const ex = await extract(browserMods![2].renderedDomCapture(page), spec.extract, spec.type, profile.politeness.maxExtractBytes);
      if (ex.problem) log.log('debug', `extraction of the rendered ${page.finalUrl}: ${ex.problem}`, { id });
      return { rows, attempts: got.attempts, status: page.status, fields: ex.fields, media: resolveUrls(ex.media, page.finalUrl), ids: ex.ids, text: page.renderedText };
    }
    let url: string;
    try {
      url = fillTemplate(spec.urlTemplate, values);
    } catch (err) {
      return { ...none, error: `capture "${spec.name}": ${errorMessage(err)}`, skippable: true };
    }
    let outcome;
    try {
      outcome = await fetcher.fetch(url, { accept: spec.type === 'json' ? 'application/json' : spec.type === 'html' ? 'text/html,*/*;q=0.8' : '*/*', ...spec.headers });
    } catch (err) {
      if (err instanceof StorageError || abort.signal.aborted) throw err;
      stats.errors++;
      return { ...none, attempts: 1, error: errorMessage(err), skippable: err instanceof ScopeError };
    }
    const last = outcome.hops[outcome.hops.length - 1]!;
    try {
      const ex = await extract(last, spec.extract, spec.type, profile.politeness.maxExtractBytes);
      if (ex.problem) log.log('debug', `extraction of ${last.url}: ${ex.problem}`, { id });
      const rows = await writeHops(outcome.hops, spec.name, id);
      return {
        rows,
        attempts: outcome.attempts,
        status: last.status,
        ...(outcome.stopped ? { stopped: outcome.stopped } : {}),
        fields: ex.fields,
        media: resolveUrls(ex.media, last.url),
        ids: ex.ids,
        text: ex.text,
      };
    } finally {
      for (const hop of outcome.hops) await releaseBody(hop.body);
    }
  };

  const frontier = new Frontier(opts.ranges, {
    finalRanges: () => db.finalRanges(),
    takeRelated: (n) => db.takeRelated(n),
    isFinal: (id) => {
      const s = db.idState(id);
      return s !== undefined && s.status !== 'failed';
    },
  });
  stats.total = frontier.remaining;
  log.log('info', `crawling ${frontier.remaining} IDs of ${opts.ranges.size} requested (${opts.ranges.format(codec)}) into ${outDir}`, { requeued_media: requeued });

  try {
    // Media left queued by an earlier run (crash or stop) first.
    let offset = 0;
    for (;;) {
      const batch = db.queuedUrls(10_000).slice(offset);
      if (batch.length === 0) break;
      for (const u of batch) {
        await queue.onSizeLessThan(concurrency * 4);
        scheduleMedia(u.url, u.postId, false);
      }
      offset += batch.length;
      if (batch.length < 10_000) break;
    }
    for (const id of frontier.ids()) {
      if (abort.signal.aborted) break;
      await queue.onSizeLessThan(concurrency * 2);
      if (abort.signal.aborted) break;
      void queue.add(() => processId(id)).catch(fatal);
    }
    await queue.onIdle();
    await commits.commit();
  } catch (err) {
    fatal(err);
    await queue.onIdle().catch(() => undefined);
  } finally {
    clearInterval(commitTimer);
    if (progressTimer) clearInterval(progressTimer);
    opts.signal?.removeEventListener('abort', onOuterAbort);
  }
  // Commit what is durable-able, then close: a failed commit leaves the shard as the last good one.
  try {
    await commits.commit();
    await writer.close();
  } catch (err) {
    fatal(err);
  }
  await capturer.close().catch(() => undefined);
  await browserPool?.close().catch(() => undefined);
  const counts = db.counts();
  await writeManifest(outDir, {
    format: 'lifeboat-shard-1',
    software: SOFTWARE,
    profile: profile.name,
    node: opts.node,
    ranges: JSON.parse(db.getMeta('ranges') ?? '[]').map((r: [number, number]) => (r[0] === r[1] ? codec.encode(r[0]) : `${codec.encode(r[0])}-${codec.encode(r[1])}`)).join(','),
    counts: { ...counts, ...Object.fromEntries(Object.entries(db.urlCounts()).map(([k, v]) => [`media_${k}`, v])) },
    warcs: db.warcs().filter((w) => w.state === 'closed').map(({ name, size, sha256, records }) => ({ name, size, sha256, records })),
    updated_at: new Date().toISOString(),
  }).catch((err) => fatal(new StorageError(`cannot write ${outDir}/shard.json: ${errorMessage(err)}`, { cause: err })));
  db.endRun(runId, stats.snapshot());
  db.close();
  await rm(spoolDir, { recursive: true, force: true }).catch(() => undefined);
  if (fatalError) throw fatalError instanceof LifeboatError ? fatalError : new StorageError(errorMessage(fatalError), { cause: fatalError });
  return { stats, counts, aborted: abort.signal.aborted };
}
