/**
 * Fetch → extract → record for one URL of a capture, HTTP or browser, in one order for both
 * (ARCHITECTURE.md "One ID", steps 5–7), and for one media URL. The primary's answer is fetched
 * again while the status rules say "retry later". It owns what it fetched: spooled bodies are
 * released here once recorded. What an answer means is CaptureStatus.decide's, never this file's.
 */
import { LifeboatError, ScopeError, StorageError, errorMessage } from '../../config/errors.js';
import type { IdCodec } from '../../config/id-codec.js';
import type { Logger } from '../../config/logger.js';
import type { CaptureSpec, Profile } from '../../config/profile.js';
import { parseRetryAfter } from '../../config/retry.js';
import type { Capture } from '../../storage/warc/capture.js';
import type { CaptureRow } from '../../storage/shard/shard-db.js';
import type { MediaFinal, ShardRecorder } from '../../storage/shard/shard-recorder.js';
import type { CrawlStats } from '../fetch/crawl-stats.js';
import { attemptsOf } from '../fetch/fetcher.js';
import { releaseBody } from '../fetch/http-capture.js';
import { extract, resolveUrls, type Extracted } from '../extract/extract.js';
import { extractLimits } from '../extract/extract-bounds.js';
import { Requisites } from '../extract/requisites.js';
import type { FetchStack } from './fetch-stack.js';
import { nothing, type CaptureResult, type CaptureStatus } from './capture-status.js';
import { fetchWithStatusRules, RateLimitGate } from './status-rules.js';

export interface CaptureFetchOptions {
  profile: Profile;
  codec: IdCodec;
  stack: FetchStack;
  recorder: ShardRecorder;
  stats: CrawlStats;
  logger: Logger;
  signal: AbortSignal;
}

function acceptFor(type: CaptureSpec['type']): string {
  return type === 'json' ? 'application/json' : type === 'html' ? 'text/html,*/*;q=0.8' : '*/*';
}

export class CaptureFetch {
  readonly #o: CaptureFetchOptions;
  readonly #status: CaptureStatus;
  readonly #limits;
  readonly #log: Logger;
  /** A "retry later" answer (status rules) holds back every primary of this part for a while. */
  readonly #gate = new RateLimitGate();
  readonly #requisites: Requisites;

  constructor(o: CaptureFetchOptions, status: CaptureStatus) {
    this.#o = o;
    this.#status = status;
    this.#limits = extractLimits(o.profile);
    this.#log = o.logger.child('crawl');
    this.#requisites = new Requisites(o.profile);
  }

  /**
   * One URL of the primary capture, decided by the profile's status rules (crawler/run/status-rules.ts)
   * and fetched again, after a pause for the whole part, while they say "retry later" (a rate limit
   * in a 200 or 400 body); a retried answer is never recorded.
   */
  async primary(spec: CaptureSpec, url: string, id: number): Promise<CaptureResult> {
    const { profile, signal } = this.#o;
    let attempts = 0;
    const got = await fetchWithStatusRules<CaptureResult>({
      attempt: async () => {
        const one = await this.capture(spec, url, id, true);
        attempts += one.attempts;
        return one;
      },
      decide: (one) => {
        const d = one.decision!;
        // A browser capture was recorded as it loaded: it is not fetched again within this run.
        return d.kind === 'retry' && one.rows.length > 0 ? { kind: 'final', status: 'failed', rule: d.rule, reason: d.reason } : d;
      },
      discard: async () => undefined,
      retryAfterMs: (one) => one.retryAfterMs,
      maxAttempts: profile.politeness.maxAttempts,
      gate: this.#gate,
      signal,
      onRetry: (d) => this.#log.log('info', `ID ${this.#o.codec.encode(id)}: ${d.reason}; trying again`, { id }),
    });
    return { ...got.result, attempts, decision: got.decision };
  }

  /** Fetches one URL of a capture (HTTP or browser) and has its answer decided. */
  async capture(spec: CaptureSpec, url: string, id: number, primary: boolean): Promise<CaptureResult> {
    const one = spec.render === 'browser' && this.#o.stack.browserFetcher ? await this.#browserCapture(spec, url, id) : await this.#httpCapture(spec, url, id, primary);
    return { ...one, url, decision: one.decision ?? this.#status.decide(one, primary) };
  }

  /**
   * Fetches, records and makes final one media URL (the one path media becomes final by), after
   * what it refers to when it is a stylesheet; nothing when stopped.
   */
  async fetchMedia(url: string, postId: number | null): Promise<void> {
    const done = await this.#fetchMedia(url, postId);
    if (done) this.#o.recorder.finalizeMedia(done).catch(() => undefined); // a failed commit is reported by commit()
  }

  /** Fetches and records one media URL; undefined when stopped. */
  async #fetchMedia(url: string, postId: number | null): Promise<MediaFinal | undefined> {
    const { stack, stats, signal } = this.#o;
    if (signal.aborted) return undefined;
    let done: MediaFinal;
    let references: string[] = [];
    try {
      const outcome = await stack.fetcher.fetch(url);
      references = await this.#requisites.ofStylesheet(outcome.answer); // read before #record releases the body
      const { rows } = await this.#record(outcome.captures, 'media', postId);
      stats.media('done');
      done = { url, state: 'done', rows, attempts: outcome.attempts, httpStatus: outcome.status, lastError: outcome.stopped ?? null };
    } catch (err) {
      if (signal.aborted) return undefined;
      if (err instanceof StorageError) throw err;
      const state = err instanceof ScopeError ? 'skipped' : 'failed';
      stats.media(state);
      return { url, state, rows: [], attempts: attemptsOf(err), lastError: errorMessage(err) };
    }
    if (references.length > 0) await this.#fetchReferenced(references, postId);
    return done;
  }

  /** What a fetched stylesheet refers to (page requisites): queued in the shard, once per shard, and fetched now. */
  async #fetchReferenced(urls: string[], postId: number | null): Promise<void> {
    const fresh = await this.#o.recorder.queueMedia(urls, postId);
    for (const url of fresh) await this.fetchMedia(url, postId);
  }

  /** Records every hop of one fetch, then releases their spooled bodies (this plan owns them). */
  async #record(hops: Capture[], name: string, postId: number | null): Promise<{ rows: CaptureRow[] }> {
    try {
      const recorded = await this.#o.recorder.recordCapture(hops, name, postId);
      this.#o.stats.recorded(recorded, this.#o.recorder.warcsClosed);
      return recorded;
    } finally {
      for (const hop of hops) await releaseBody(hop.body);
    }
  }

  async #httpCapture(spec: CaptureSpec, url: string, id: number, primary: boolean): Promise<CaptureResult> {
    const { stack, stats, signal } = this.#o;
    let outcome;
    try {
      outcome = await stack.fetcher.fetch(url, { accept: acceptFor(spec.type), ...spec.headers });
    } catch (err) {
      if (err instanceof StorageError || signal.aborted) throw err;
      stats.fetchError();
      return { ...nothing(), attempts: attemptsOf(err), error: errorMessage(err), refused: err instanceof ScopeError };
    }
    const last = outcome.answer;
    let ex: Extracted;
    try {
      ex = await extract(last, spec.extract, spec.type, this.#limits, signal, spec.requisites);
    } catch (err) {
      for (const hop of outcome.captures) await releaseBody(hop.body);
      throw err;
    }
    const decision = this.#status.decide({ status: last.status, text: ex.text }, primary);
    if (decision.kind === 'retry') {
      for (const hop of outcome.captures) await releaseBody(hop.body);
      const retryAfterMs = parseRetryAfter(/^retry-after:[ \t]*(.*)$/im.exec(last.responseHead.toString('latin1'))?.[1]);
      return { ...nothing(), attempts: outcome.attempts, status: last.status, text: ex.text, decision, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
    }
    if (ex.problem) this.#log.log('debug', `extraction of ${last.url}: ${ex.problem}`, { id });
    const { rows } = await this.#record(outcome.captures, spec.name, id);
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
      ...(ex.requisites.length > 0 ? { requisites: this.#requisites.inScope(ex.requisites) } : {}),
      bytes: rows[rows.length - 1]?.bodyBytes ?? 0,
      decision,
    };
  }

  /** Every response the page loaded goes to the WARC (and its screenshot); extraction runs on the rendered DOM. */
  async #browserCapture(spec: CaptureSpec, url: string, id: number): Promise<CaptureResult> {
    const { stack, stats, signal, recorder } = this.#o;
    let got;
    try {
      got = await stack.browserFetcher!.fetch(url);
    } catch (err) {
      if (err instanceof StorageError || signal.aborted || (err instanceof LifeboatError && err.policy === 'stop')) throw err;
      stats.fetchError();
      return { ...nothing(), attempts: 1, error: errorMessage(err), refused: err instanceof ScopeError };
    }
    let ex: Extracted;
    try {
      ex = await extract(got.answer, spec.extract, spec.type, this.#limits, signal);
    } catch (err) {
      for (const hop of got.captures) await releaseBody(hop.body);
      throw err;
    }
    if (ex.problem) this.#log.log('debug', `extraction of the rendered ${got.finalUrl}: ${ex.problem}`, { id });
    const { rows } = await this.#record(got.captures, spec.name, id);
    if (got.rendered?.screenshot) {
      const shot = await recorder.recordResource({ url: `urn:screenshot:${got.finalUrl}`, contentType: 'image/png', data: got.rendered.screenshot });
      stats.recorded({ records: 1, bytes: shot.length }, recorder.warcsClosed);
    }
    return {
      rows,
      attempts: got.attempts,
      status: got.status,
      fields: ex.fields,
      media: resolveUrls(ex.media, got.finalUrl),
      ids: ex.ids,
      text: got.rendered?.text,
      bytes: rows.reduce((n, r) => n + r.bodyBytes, 0),
      ...(ex.problem ? { problem: ex.problem } : {}),
    };
  }
}
