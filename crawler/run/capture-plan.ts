/**
 * A profile's captures for one ID (ARCHITECTURE.md "One ID"), HTTP or browser, in one order for both:
 * fetch → extract → record. The primary capture decides the ID's status; later captures run
 * while it is archived (or always, as the profile says); templates take fields extracted by
 * earlier captures. Returns the ID's outcome for the ShardRecorder to make final; it never
 * commits. It owns what it fetched: spooled bodies are released here once recorded.
 */
import { LifeboatError, ScopeError, StorageError, errorMessage } from '../../config/errors.js';
import type { IdCodec } from '../../config/id-codec.js';
import type { Logger } from '../../config/logger.js';
import { fillTemplate, type CaptureSpec, type Profile } from '../../config/profile.js';
import type { Capture } from '../../storage/warc/capture.js';
import type { CaptureRow, IdStatus } from '../../storage/shard/shard-db.js';
import type { IdFinal, MediaFinal, ShardRecorder } from '../../storage/shard/shard-recorder.js';
import type { CrawlStats } from '../fetch/crawl-stats.js';
import { extract, resolveUrls, type Extracted } from '../extract/extract.js';
import { extractLimits } from '../extract/extract-bounds.js';
import type { FetchStack } from './fetch-stack.js';
import { attemptsOf } from '../fetch/fetcher.js';
import { releaseBody } from '../fetch/http-capture.js';
import { Requisites } from '../extract/requisites.js';
import { parseRetryAfter } from '../../config/retry.js';
import { decideStatus, fetchWithStatusRules, RateLimitGate, type StatusDecision } from './status-rules.js';

export interface CapturePlanOptions {
  profile: Profile;
  codec: IdCodec;
  stack: FetchStack;
  recorder: ShardRecorder;
  stats: CrawlStats;
  logger: Logger;
  signal: AbortSignal;
  /** Whether a related ID is one this run was asked for (the frontier's ranges). */
  inScope: (id: number) => boolean;
}

/** One capture of an ID: what was fetched, extracted and recorded. */
interface CaptureResult {
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
  /** In-scope page requisites (profile `requisites`), queued like media. */
  requisites?: string[];
  /** The primary's status as its profile's status rules decided it. */
  decision?: StatusDecision;
  /** A "retry later" answer's Retry-After, when it had one. */
  retryAfterMs?: number;
}

/** A capture that recorded nothing (its fetch failed or its URL could not be filled in). */
function nothing(): CaptureResult {
  return { rows: [], attempts: 0, status: 0, fields: {}, media: [], ids: [], text: undefined };
}

function fieldText(v: unknown): string | undefined {
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

function acceptFor(type: CaptureSpec['type']): string {
  return type === 'json' ? 'application/json' : type === 'html' ? 'text/html,*/*;q=0.8' : '*/*';
}

export class CapturePlan {
  readonly #o: CapturePlanOptions;
  readonly #limits;
  readonly #log: Logger;
  /** A "retry later" answer (status rules) holds back every primary of this part for a while. */
  readonly #gate = new RateLimitGate();
  readonly #requisites: Requisites;

  constructor(o: CapturePlanOptions) {
    this.#o = o;
    this.#limits = extractLimits(o.profile);
    this.#log = o.logger.child('crawl');
    this.#requisites = new Requisites(o.profile);
  }

  /** Runs the profile's captures for `id`; undefined when stopped before the primary answered. */
  async run(id: number): Promise<IdFinal | undefined> {
    const { profile, codec, signal } = this.#o;
    if (signal.aborted) return undefined;
    const values: Record<string, string | undefined> = { id: codec.encode(id), base_url: profile.baseUrl };
    const fields: Record<string, unknown> = {};
    const rows: CaptureRow[] = [];
    const media: string[] = [];
    const related: string[] = [];
    const requisites: string[] = [];
    const notes: string[] = [];
    let status: IdStatus | undefined;
    let httpStatus: number | null = null;
    let attempts = 0;
    let lastError: string | null = null;
    try {
      for (const [i, spec] of profile.captures.entries()) {
        if (i > 0 && spec.when === 'archived' && status !== 'archived') break;
        const one = i === 0 ? await this.#primary(spec, values, id) : await this.#capture(spec, values, id);
        attempts += one.attempts;
        rows.push(...one.rows);
        if (one.error) {
          lastError = one.error;
          if (i === 0 || !one.skippable) status = 'failed';
          if (status === 'failed') break;
          continue;
        }
        if (i === 0) {
          httpStatus = one.status;
          const decision = one.decision ?? decideStatus(profile.status, { code: one.status, text: one.text });
          status = decision.kind === 'final' ? decision.status : 'failed';
          if (status === 'failed') lastError = `${decision.kind === 'final' && decision.reason ? decision.reason : `HTTP ${one.status}`}${one.stopped ? ` (${one.stopped})` : ''}`;
        }
        if (one.problem) notes.push(`${spec.name}: ${one.problem}`);
        if (status === 'archived' || i === 0) {
          Object.assign(fields, one.fields);
          for (const [k, v] of Object.entries(one.fields)) values[k] = fieldText(v);
          media.push(...one.media);
          requisites.push(...(one.requisites ?? []));
          related.push(...one.ids);
        }
      }
    } catch (err) {
      if (signal.aborted) return undefined;
      throw err;
    }
    if (signal.aborted && status === undefined) return undefined;
    const finalStatus: IdStatus = status ?? 'failed';
    const archived = finalStatus === 'archived';
    // Serialised here, not in the commit: a value that cannot be stored costs its own fields, never the batch.
    let fieldsJson: string | undefined;
    if (archived && Object.keys(fields).length > 0) {
      try {
        fieldsJson = JSON.stringify(fields);
      } catch (err) {
        notes.push(`fields not stored: ${errorMessage(err)}`);
      }
    }
    // An archived ID keeps what extraction had to leave out or cut as its note (ids.last_error).
    if (notes.length > 0 && finalStatus !== 'failed') {
      lastError = `extraction: ${notes.join('; ')}`.slice(0, 2000);
      this.#o.stats.extractionNote();
      this.#log.log('warn', `ID ${codec.encode(id)} ${finalStatus}, but ${lastError}`, { id });
    }
    return {
      id,
      status: finalStatus,
      httpStatus,
      attempts,
      lastError,
      ...(fieldsJson !== undefined ? { fieldsJson } : {}),
      rows,
      relatedIds: archived ? this.#relatedIds(id, related) : [],
      // Requisites were asked for by name (a capture's `requisites`): queued even when media.fetch is off.
      media: archived ? [...(profile.media.fetch ? media.slice(0, profile.media.maxPerPost) : []), ...requisites] : [],
    };
  }

  /** Fetches and records one media URL; undefined when stopped. */
  async fetchMedia(url: string, postId: number | null): Promise<MediaFinal | undefined> {
    const { stack, stats, signal } = this.#o;
    if (signal.aborted) return undefined;
    let done: MediaFinal;
    let references: string[] = [];
    try {
      const outcome = await stack.fetcher.fetch(url);
      const last = outcome.hops[outcome.hops.length - 1]!;
      references = await this.#requisites.ofStylesheet(last); // read before #record releases the body
      const { rows } = await this.#record(outcome.hops, 'media', postId);
      stats.media('done');
      done = { url, state: 'done', rows, attempts: outcome.attempts, httpStatus: last.status, lastError: outcome.stopped ?? null };
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
    for (const url of fresh) {
      const done = await this.fetchMedia(url, postId);
      if (done) this.#o.recorder.finalizeMedia(done).catch(() => undefined); // a failed commit is reported by commit()
    }
  }

  #relatedIds(id: number, refs: string[]): number[] {
    const out: number[] = [];
    for (const ref of refs) {
      try {
        const rid = this.#o.codec.decode(ref);
        if (rid !== id && this.#o.inScope(rid)) out.push(rid);
      } catch {
        // not an ID in this codec: ignore
      }
    }
    return out;
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

  /**
   * The primary capture, decided by the profile's status rules (crawler/run/status-rules.ts) and
   * fetched again, after a pause for the whole part, while they say "retry later" (a rate limit
   * in a 200 or 400 body); a retried answer is never recorded.
   */
  async #primary(spec: CaptureSpec, values: Record<string, string | undefined>, id: number): Promise<CaptureResult> {
    const { profile, signal } = this.#o;
    let attempts = 0;
    const got = await fetchWithStatusRules<CaptureResult>({
      attempt: async () => {
        const one = await this.#capture(spec, values, id, true);
        attempts += one.attempts;
        return one;
      },
      decide: (one) => {
        if (one.error) return { kind: 'final', status: 'failed' };
        const d = one.decision ?? decideStatus(profile.status, { code: one.status, text: one.text });
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

  async #capture(spec: CaptureSpec, values: Record<string, string | undefined>, id: number, primary = false): Promise<CaptureResult> {
    let url: string;
    try {
      url = fillTemplate(spec.urlTemplate, values);
    } catch (err) {
      return { ...nothing(), error: `capture "${spec.name}": ${errorMessage(err)}`, skippable: true };
    }
    return spec.render === 'browser' && this.#o.stack.browserFetcher ? this.#browserCapture(spec, url, id) : this.#httpCapture(spec, url, id, primary);
  }

  async #httpCapture(spec: CaptureSpec, url: string, id: number, primary: boolean): Promise<CaptureResult> {
    const { stack, stats, signal } = this.#o;
    let outcome;
    try {
      outcome = await stack.fetcher.fetch(url, { accept: acceptFor(spec.type), ...spec.headers });
    } catch (err) {
      if (err instanceof StorageError || signal.aborted) throw err;
      stats.fetchError();
      return { ...nothing(), attempts: attemptsOf(err), error: errorMessage(err), skippable: err instanceof ScopeError };
    }
    const last = outcome.hops[outcome.hops.length - 1]!;
    let ex: Extracted;
    try {
      ex = await extract(last, spec.extract, spec.type, this.#limits, signal, spec.requisites);
    } catch (err) {
      for (const hop of outcome.hops) await releaseBody(hop.body);
      throw err;
    }
    const decision = primary ? decideStatus(this.#o.profile.status, { code: last.status, text: ex.text }) : undefined;
    if (decision?.kind === 'retry') {
      for (const hop of outcome.hops) await releaseBody(hop.body);
      const retryAfterMs = parseRetryAfter(/^retry-after:[ \t]*(.*)$/im.exec(last.responseHead.toString('latin1'))?.[1]);
      return { ...nothing(), attempts: outcome.attempts, status: last.status, text: ex.text, decision, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
    }
    if (ex.problem) this.#log.log('debug', `extraction of ${last.url}: ${ex.problem}`, { id });
    const { rows } = await this.#record(outcome.hops, spec.name, id);
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
      ...(decision ? { decision } : {}),
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
      return { ...nothing(), attempts: 1, error: errorMessage(err), skippable: err instanceof ScopeError };
    }
    const page = got.result;
    let ex: Extracted;
    try {
      ex = await extract(stack.renderedDomCapture!(page), spec.extract, spec.type, this.#limits, signal);
    } catch (err) {
      for (const hop of page.captures) await releaseBody(hop.body);
      throw err;
    }
    if (ex.problem) this.#log.log('debug', `extraction of the rendered ${page.finalUrl}: ${ex.problem}`, { id });
    const { rows } = await this.#record(page.captures, spec.name, id);
    if (page.screenshot) {
      const shot = await recorder.recordResource({ url: `urn:screenshot:${page.finalUrl}`, contentType: 'image/png', data: page.screenshot });
      stats.recorded({ records: 1, bytes: shot.length }, recorder.warcsClosed);
    }
    return { rows, attempts: got.attempts, status: page.status, fields: ex.fields, media: resolveUrls(ex.media, page.finalUrl), ids: ex.ids, text: page.renderedText, ...(ex.problem ? { problem: ex.problem } : {}) };
  }
}
