/**
 * The crawl loop over one part of a shard (DESIGN.md §3): frontier → captures in profile order →
 * WARC → extraction → media queue → group commit. A run is one part (the whole range, on the main
 * thread) or several parts in worker threads (IDs split by `id % count`), each with its own HTTP
 * client, WARC writer and connection to the one shard database.
 */
import { setMaxListeners } from 'node:events';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { LifeboatError, ScopeError, StorageError, errorMessage } from '../config/errors.js';
import type { Logger } from '../config/logger.js';
import { fillTemplate, type CaptureSpec, type Profile } from '../config/profile.js';
import type { Capture } from '../storage/capture.js';
import { bodyLength } from '../storage/capture.js';
import type { CaptureRow, IdStatus, ShardDb } from '../storage/shard-db.js';
import { WarcWriter } from '../storage/warc-writer.js';
import type { CrawlStats } from './crawl-stats.js';
import { extract, resolveUrls } from './extract.js';
import { extractLimits } from './extract-bounds.js';
import { buildFetchStack } from './fetch-stack.js';
import { attemptsOf } from './fetcher.js';
import { GroupCommit } from './group-commit.js';
import { Frontier } from './frontier.js';
import { releaseBody } from './http-capture.js';
import { createCodec } from '../config/id-codec.js';
import type { RangeSet } from '../config/id-ranges.js';
import { SOFTWARE } from '../config/version.js';

/** Which IDs a part crawls: those with `id % count === index`. */
export interface Partition {
  index: number;
  count: number;
}

export interface CrawlPartOptions extends PartTuning {
  profile: Profile;
  ranges: RangeSet;
  outDir: string;
  node: string;
  logger: Logger;
  db: ShardDb;
  stats: CrawlStats;
  partition: Partition;
  /** Media URLs an earlier run left queued, for this part to fetch first. */
  queuedMedia: { url: string; postId: number | null }[];
  allowPrivateNetwork: boolean;
  /** Requests in flight in this part. */
  concurrency: number;
  /** Requests per second per host, for this part. */
  ratePerSec: number;
  /** Requests in flight per host, for this part. */
  perHostConcurrency: number;
  warcSizeBytes: number;
  signal: AbortSignal;
  commitIntervalMs: number;
}

/** Options a run hands to each of its parts as they are (runCrawl's CrawlOptions has them too). */
export interface PartTuning {
  /** A URL or e-mail address for the User-Agent and warcinfo. */
  contact?: string;
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

/** Crawls one part; resolves when it is done or stopped, rejects on a storage failure. */
export async function crawlPart(opts: CrawlPartOptions): Promise<{ aborted: boolean }> {
  const { profile, db, stats, logger } = opts;
  const log = logger.child('crawl');
  const codec = createCodec(profile.codec);
  const { index, count } = opts.partition;
  const pol = profile.politeness;
  const limits = extractLimits(profile);
  const concurrency = opts.concurrency;
  const abort = new AbortController();
  // Every waiting request listens on this one signal: many listeners are expected, not a leak.
  setMaxListeners(0, abort.signal);
  const onOuterAbort = (): void => abort.abort(opts.signal.reason);
  if (opts.signal.aborted) onOuterAbort();
  else opts.signal.addEventListener('abort', onOuterAbort, { once: true });
  const queue = new PQueue({ concurrency });
  const { ua, capturer, fetcher, browserPool, browserFetcher, renderedDomCapture } = await buildFetchStack({ ...opts, signal: abort.signal });

  let commits: GroupCommit;
  const writer = new WarcWriter({
    dir: join(opts.outDir, 'warcs'),
    prefix: profile.name,
    node: opts.node,
    // Parts number their files apart (serial ≡ index mod count): names never collide.
    serialStep: { offset: index, step: count },
    maxFileBytes: opts.warcSizeBytes,
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
      stats.warcs++;
    },
    onFileOpened: (name) => db.recordWarc({ name, size: 0, sha256: '', records: 0 }, 'open'),
  });
  commits = new GroupCommit(writer, db, opts.onCommitted);
  const commitTimer = setInterval(() => void commits.commit().catch((err) => fatal(err)), opts.commitIntervalMs);

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

  const scheduleMedia = (url: string, postId: number | null): void => {
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
      commits.add(() => db.setUrlState(url, skipped ? 'skipped' : 'failed', { attempts: attemptsOf(err), lastError: errorMessage(err) }));
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
    const notes: string[] = [];
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
        if (outcome.problem) notes.push(`${spec.name}: ${outcome.problem}`);
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
    // Serialised here, not in the commit: a value that cannot be stored costs its own fields, never the batch.
    let fieldsJson: string | undefined;
    if (finalStatus === 'archived' && Object.keys(fields).length > 0) {
      try {
        fieldsJson = JSON.stringify(fields);
      } catch (err) {
        notes.push(`fields not stored: ${errorMessage(err)}`);
      }
    }
    // An archived ID keeps what extraction had to leave out or cut as its note (ids.last_error).
    if (notes.length > 0 && finalStatus !== 'failed') {
      lastError = `extraction: ${notes.join('; ')}`.slice(0, 2000);
      stats.extractionNotes++;
      log.log('warn', `ID ${codec.encode(id)} ${finalStatus}, but ${lastError}`, { id });
    }
    commits.add(() => {
      for (const row of rows) db.recordCapture(row);
      db.recordOutcome({ id, status: finalStatus, httpStatus, attempts, lastError, ...(fieldsJson !== undefined ? { fieldsJson } : {}) });
      for (const rid of relatedIds) if (!db.idState(rid)) db.addRelated(rid);
      stats.count(finalStatus);
      // Media is queued in the transaction that makes its post final (a crash leaves both or
      // neither), and fetched once that transaction is done, by whoever queued it first: the
      // INSERT is the shard-wide dedupe, exact also across worker threads.
      const fresh = mediaUrls.filter((url) => db.queueUrl(url, id));
      if (fresh.length > 0) return () => fresh.forEach((url) => scheduleMedia(url, id));
    }, finalStatus === 'failed' ? undefined : id);
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
    /** What extraction could not do or had to cut. */
    problem?: string;
  }

  const captureOne = async (spec: CaptureSpec, values: Record<string, string | undefined>, id: number): Promise<OneCapture> => {
    const none = { rows: [], attempts: 0, status: 0, fields: {}, media: [], ids: [], text: undefined };
    let url: string;
    try {
      url = fillTemplate(spec.urlTemplate, values);
    } catch (err) {
      return { ...none, error: `capture "${spec.name}": ${errorMessage(err)}`, skippable: true };
    }
    if (spec.render === 'browser' && browserFetcher) {
      // Every response the page loaded goes to the WARC; extraction runs on the rendered DOM.
      const pageUrl = url;
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
      const ex = await extract(renderedDomCapture!(page), spec.extract, spec.type, limits, abort.signal);
      if (ex.problem) log.log('debug', `extraction of the rendered ${page.finalUrl}: ${ex.problem}`, { id });
      return { rows, attempts: got.attempts, status: page.status, fields: ex.fields, media: resolveUrls(ex.media, page.finalUrl), ids: ex.ids, text: page.renderedText, ...(ex.problem ? { problem: ex.problem } : {}) };
    }
    let outcome;
    try {
      outcome = await fetcher.fetch(url, { accept: spec.type === 'json' ? 'application/json' : spec.type === 'html' ? 'text/html,*/*;q=0.8' : '*/*', ...spec.headers });
    } catch (err) {
      if (err instanceof StorageError || abort.signal.aborted) throw err;
      stats.errors++;
      return { ...none, attempts: attemptsOf(err), error: errorMessage(err), skippable: err instanceof ScopeError };
    }
    const last = outcome.hops[outcome.hops.length - 1]!;
    try {
      const ex = await extract(last, spec.extract, spec.type, limits, abort.signal);
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
        ...(ex.problem ? { problem: ex.problem } : {}),
      };
    } finally {
      for (const hop of outcome.hops) await releaseBody(hop.body);
    }
  };

  const frontier = new Frontier(opts.ranges, {
    finalRanges: () => db.finalRanges(),
    takeRelated: (n) => db.takeRelated(n, opts.partition),
    isFinal: (id) => {
      const s = db.idState(id);
      return s !== undefined && s.status !== 'failed';
    },
  });

  try {
    // Media left queued by an earlier run (crash or stop) first.
    for (const u of opts.queuedMedia) {
      if (abort.signal.aborted) break;
      await queue.onSizeLessThan(concurrency * 4);
      scheduleMedia(u.url, u.postId);
    }
    for (const id of frontier.ids()) {
      if (id % count !== index) continue;
      if (abort.signal.aborted) break;
      await queue.onSizeLessThan(concurrency * 2);
      if (abort.signal.aborted) break;
      void queue.add(() => processId(id)).catch(fatal);
    }
    // A commit may start media fetches, whose commits end the run.
    do {
      await queue.onIdle();
      await commits.commit();
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
    await commits.commit();
    await writer.close();
  } catch (err) {
    fatal(err);
  }
  await capturer.close().catch(() => undefined);
  await browserPool?.close().catch(() => undefined);
  if (fatalError) throw fatalError instanceof LifeboatError ? fatalError : new StorageError(errorMessage(fatalError), { cause: fatalError });
  return { aborted: abort.signal.aborted };
}
